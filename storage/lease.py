"""The instance lease: which one of the processes sharing a database file may act.

One row of `instance_lease` per lease name names its holder, when it last renewed the row
(`renewed_at`) and until when it means to hold it (`expires_at`). The active process renews
it; another process waits as a standby (engine/leadership.py). Every change is one
`BEGIN IMMEDIATE` transaction, so two processes trying at once cannot both win.

No clock is compared across processes. Both timestamps are the holder's wall clock, which
NTP or an operator may step at any moment, so `expires_at` is for display only. What a
standby goes by instead (engine/leadership.py): the row is free when there is none, it was
released, or it is already ours; it is dead when its holder names a process on this host
that no longer exists (`gone_process`); otherwise only when the standby has watched the
row's `(holder, renewed_at)` stay the same for the takeover time on its own monotonic
clock. A renewal therefore always raises `renewed_at`, and `acquire` takes a live row over
only if it is still exactly the row the standby judged (compare-and-swap), so a renewal
that lands in between wins.

A released lease keeps its row, so the next holder can say whom it took over from: release
sets `expires_at` to the moment of release and `renewed_at` to the same value, which no
renewal does (a renewal always expires after it was made).
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from storage.database import Database

ENGINE_LEASE = "engine"
# The first schema version with the `instance_lease` table
# (storage/migrations/0005_lost_submits_and_lease.sql).
LEASE_SCHEMA_VERSION = 5


@functools.cache
def instance_id() -> str:
    """This process's holder id: host name, pid and a random suffix (a pid can be reused),
    made once per process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def gone_process(holder: str) -> int | None:
    """The pid in `holder` if the id names this host (`socket.gethostname()`) and no process
    with that pid exists any more: its holder died, and nobody can renew its lease. None when
    it is alive (a pid of another user's process is alive too), on another host, or the id
    cannot be read."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return None
    try:
        pid = int(parts[1])
    except ValueError:
        return None
    if pid <= 0:  # 0 and negative pids name process groups, not a process
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except OSError:  # PermissionError: alive, not ours to signal; anything else: unknown
        return None
    return None


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: float
    renewed_at: float
    expires_at: float  # the holder's wall clock: shown in logs, never compared

    @property
    def released(self) -> bool:
        """Given back by a clean stop (as opposed to left to expire)."""
        return self.expires_at <= self.renewed_at

    def same_renewal(self, other: Lease | None) -> bool:
        """The same holder and the same last renewal: nobody renewed it in between."""
        return (other is not None and self.holder == other.holder
                and self.renewed_at == other.renewed_at)


@dataclass(frozen=True)
class LeaseStatus:
    """What an acquire attempt found. `acquired`: the lease is now `holder`'s. `current`:
    the row after the attempt (ours if acquired, else the other holder's). `previous`: the
    row we replaced when we took the lease over from another holder (dead or released),
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
        """The clock the rows' timestamps are written by."""
        return self._clock()

    async def ready(self) -> bool:
        """Whether the schema has the lease: at least LEASE_SCHEMA_VERSION and the table
        exists. (A database older than that cannot have been used by a lease holder.)"""
        version = await self.db.schema_version()
        async with self.db.reading() as conn, conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instance_lease'"
        ) as cur:
            exists = await cur.fetchone() is not None
        return version >= LEASE_SCHEMA_VERSION and exists

    async def acquire(self, holder: str, ttl: float, *,
                      judged: Lease | None = None) -> LeaseStatus:
        """Take the lease if there is no row, it was released, it is already ours (then this
        renews it), or it is still exactly `judged` - the row the caller judged dead, with
        the same holder and the same `renewed_at`; otherwise change nothing and report the
        row as it is. `expires_at` is set `ttl` seconds ahead (for display)."""
        async with self.db.transaction(fenced=False) as conn:
            now = self._clock()
            row = await self._row(conn)
            if not (row is None or row.released or row.holder == holder
                    or row.same_renewal(judged)):
                return LeaseStatus(acquired=False, current=row)
            if row is not None and row.holder == holder:
                renewed = _changed(now, row.renewed_at)
                lease = Lease(self.name, holder, row.acquired_at, renewed, renewed + ttl)
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
        """Renew our lease (a new `renewed_at`, `expires_at` `ttl` seconds ahead). False: it
        is no longer ours (another process took it over), and nothing was changed."""
        return await self.renew_or_holder(holder, ttl) is None

    async def renew_or_holder(self, holder: str, ttl: float) -> str | None:
        """`renew()`, saying in the same transaction who holds the lease when it is not
        ours: None if renewed, else that holder ("(none)" if there is no row)."""
        return await self._extend(holder, ttl)

    async def release(self, holder: str) -> bool:
        """Give the lease up at once (a clean stop), if it is still ours; True if it was."""
        return await self._extend(holder, 0.0) is None

    async def current(self) -> Lease | None:
        """The lease row as it is (a read, no lock taken); None if none."""
        async with self.db.reading() as conn:
            return await self._row(conn)

    async def _extend(self, holder: str, ttl: float) -> str | None:
        """Stamp our row renewed now, expiring `ttl` seconds later (0: released). Not fenced:
        the holder condition is its own fence, and a release must work after a loss."""
        async with self.db.transaction(fenced=False) as conn:
            row = await self._row(conn)
            if row is None or row.holder != holder:
                return "(none)" if row is None else row.holder
            renewed = _changed(self._clock(), row.renewed_at)
            await conn.execute(
                "UPDATE instance_lease SET renewed_at = ?, expires_at = ?"
                " WHERE name = ? AND holder = ?",
                (renewed, renewed + ttl, self.name, holder),
            )
            return None

    async def _row(self, conn: aiosqlite.Connection) -> Lease | None:
        async with conn.execute(
            "SELECT name, holder, acquired_at, renewed_at, expires_at FROM instance_lease"
            " WHERE name = ?", (self.name,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Lease(str(row[0]), str(row[1]), float(row[2]), float(row[3]), float(row[4]))


def _changed(now: float, before: float) -> float:
    """`now`, but always above `before`: a standby watches `renewed_at` for a change, so
    every renewal must make one, and never back to a value it may have seen already (a wall
    clock that stands still, or stepped back, would repeat one)."""
    return now if now > before else math.nextafter(before, math.inf)
