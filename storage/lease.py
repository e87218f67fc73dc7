"""The instance lease: which one of the processes sharing a database file may act.

One row of `instance_lease` per lease name names its holder and when the lease expires. The
active process renews it; another process sees an unexpired row held by someone else and
waits as a standby (engine/leadership.py). Every change is one `BEGIN IMMEDIATE`
transaction, so two processes trying at once cannot both win. Expiry is wall-clock time
(`time.time()`), which every process on the machine shares: SQLite's file locking already
means they all run on one machine.

A released lease keeps its row, so the next holder can say whom it took over from: release
sets `expires_at` to the moment of release and `renewed_at` to the same value, which no
renewal does (a renewal always expires after it was made).
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from storage.database import Database, LeaseLost

ENGINE_LEASE = "engine"


@functools.cache
def instance_id() -> str:
    """This process's holder id: host name, pid and a random suffix (a pid can be reused),
    made once per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: float
    renewed_at: float
    expires_at: float

    @property
    def released(self) -> bool:
        """Given back by a clean stop (as opposed to left to expire)."""
        return self.expires_at <= self.renewed_at

    def expired(self, now: float) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class LeaseStatus:
    """What an acquire attempt found. `acquired`: the lease is now `holder`'s. `current`:
    the row after the attempt (ours if acquired, else the other holder's). `previous`: the
    row we replaced when we took the lease over from another holder (expired or released),
    None if there was none or it was already ours."""

    acquired: bool
    current: Lease
    previous: Lease | None = None


class LeaseStore:
    def __init__(self, db: Database, name: str = ENGINE_LEASE, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.name = name
        self._clock = clock

    def now(self) -> float:
        """The clock leases expire by."""
        return self._clock()

    async def acquire(self, holder: str, ttl: float) -> LeaseStatus:
        """Take the lease for `ttl` seconds if nobody holds it, its holder's expired, or it is
        already ours; otherwise report who holds it until when."""
        async with self.db.transaction() as conn:
            now = self._clock()
            row = await self._row(conn)
            if row is not None and row.holder != holder and not row.expired(now):
                return LeaseStatus(acquired=False, current=row)
            if row is not None and row.holder == holder:
                lease = Lease(self.name, holder, row.acquired_at, now, now + ttl)
                previous = None
            else:
                lease = Lease(self.name, holder, now, now, now + ttl)
                previous = row
            await conn.execute(
                "INSERT INTO instance_lease (name, holder, acquired_at, renewed_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " holder = excluded.holder, acquired_at = excluded.acquired_at,"
                " renewed_at = excluded.renewed_at, expires_at = excluded.expires_at",
                (lease.name, lease.holder, lease.acquired_at, lease.renewed_at,
                 lease.expires_at),
            )
            return LeaseStatus(acquired=True, current=lease, previous=previous)

    async def renew(self, holder: str, ttl: float) -> bool:
        """Extend our lease by `ttl` seconds from now. False: it is no longer ours (another
        process took it over), and nothing was changed."""
        return await self._extend(holder, ttl)

    async def release(self, holder: str) -> bool:
        """Give the lease up at once (a clean stop), if it is still ours; True if it was."""
        return await self._extend(holder, 0.0)

    async def current(self) -> Lease | None:
        """The lease row as it is (a read, no lock taken), expired or not; None if none."""
        async with self.db.reading() as conn:
            return await self._row(conn)

    async def _extend(self, holder: str, ttl: float) -> bool:
        """Set our row to expire `ttl` seconds from now (0: released); False if not ours."""
        try:
            async with self.db.transaction() as conn:
                now = self._clock()
                cur = await conn.execute(
                    "UPDATE instance_lease SET renewed_at = ?, expires_at = ?"
                    " WHERE name = ? AND holder = ?",
                    (now, now + ttl, self.name, holder),
                )
                return cur.rowcount == 1
        except LeaseLost:  # the database is fenced with this lease, and it is gone
            return False

    async def _row(self, conn: aiosqlite.Connection) -> Lease | None:
        async with conn.execute(
            "SELECT name, holder, acquired_at, renewed_at, expires_at FROM instance_lease"
            " WHERE name = ?", (self.name,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Lease(str(row[0]), str(row[1]), float(row[2]), float(row[3]), float(row[4]))
