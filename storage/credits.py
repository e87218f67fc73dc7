"""Credit accounts and their append-only ledger.

Money moves only inside a `Database.transaction()`: a conditional UPDATE whose row count
says whether it was allowed, then the ledger row. Nothing reads a balance, awaits, and
writes it back. The module-level functions take the open transaction's connection so the
job store can move money and change a job's state in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from storage.database import Database

LEDGER_KINDS = ("grant", "revoke", "adjust", "reserve", "capture", "release")


class CreditError(Exception):
    """A money operation that is not allowed; the message is safe to show the user."""


class InsufficientCreditsError(CreditError):
    def __init__(self, *, balance: int, needed: int) -> None:
        super().__init__(f"needs {needed} credits, but the balance is {balance}")
        self.balance = balance
        self.needed = needed


@dataclass(frozen=True)
class Balance:
    available: int
    held: int


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    guild_id: int
    user_id: int
    kind: str
    delta_balance: int
    delta_held: int
    balance_after: int
    held_after: int
    reservation_id: int | None
    job_id: int | None
    actor_id: int | None
    reason: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> LedgerEntry:
        return cls(**{key: row[key] for key in row.keys()})  # noqa: SIM118 (Row has no __iter__ of keys)


async def ensure_account(
    conn: aiosqlite.Connection, guild_id: int, user_id: int, *, starting_credits: int, now: float
) -> None:
    """Create the account on first sight, with its starting grant as the first ledger row."""
    cur = await conn.execute(
        "INSERT INTO accounts (guild_id, user_id, balance, held, created_at) "
        "VALUES (?, ?, 0, 0, ?) ON CONFLICT DO NOTHING",
        (guild_id, user_id, now),
    )
    if cur.rowcount == 1 and starting_credits > 0:
        await move_in(conn, guild_id, user_id, "grant", starting_credits, 0,
                    reason="starting credits", now=now)


async def move_in(
    conn: aiosqlite.Connection,
    guild_id: int,
    user_id: int,
    kind: str,
    delta_balance: int,
    delta_held: int,
    *,
    now: float,
    reservation_id: int | None = None,
    job_id: int | None = None,
    actor_id: int | None = None,
    reason: str | None = None,
) -> LedgerEntry:
    """Apply a delta only if neither column would go negative, and write its ledger row."""
    cur = await conn.execute(
        "UPDATE accounts SET balance = balance + ?, held = held + ? "
        "WHERE guild_id = ? AND user_id = ? AND balance + ? >= 0 AND held + ? >= 0 "
        "RETURNING balance, held",
        (delta_balance, delta_held, guild_id, user_id, delta_balance, delta_held),
    )
    row = await cur.fetchone()
    await cur.close()
    if row is None:
        current = await balance_in(conn, guild_id, user_id)
        raise InsufficientCreditsError(balance=current.available, needed=-delta_balance)
    cur = await conn.execute(
        "INSERT INTO ledger (guild_id, user_id, kind, delta_balance, delta_held, balance_after,"
        " held_after, reservation_id, job_id, actor_id, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        (guild_id, user_id, kind, delta_balance, delta_held, row["balance"], row["held"],
         reservation_id, job_id, actor_id, reason, now),
    )
    entry = await cur.fetchone()
    await cur.close()
    assert entry is not None
    return LedgerEntry.from_row(entry)


async def balance_in(conn: aiosqlite.Connection, guild_id: int, user_id: int) -> Balance:
    async with conn.execute(
        "SELECT balance, held FROM accounts WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    ) as cur:
        row = await cur.fetchone()
    return Balance(row["balance"], row["held"]) if row else Balance(0, 0)


async def reserve(
    conn: aiosqlite.Connection, guild_id: int, user_id: int, amount: int, job_id: int, *, now: float
) -> int:
    """Hold `amount` for a job; returns the reservation id. Raises InsufficientCreditsError."""
    if amount <= 0:
        raise ValueError("a reservation must be positive")
    cur = await conn.execute(
        "INSERT INTO reservations (job_id, guild_id, user_id, amount, status, created_at)"
        " VALUES (?, ?, ?, ?, 'held', ?)",
        (job_id, guild_id, user_id, amount, now),
    )
    reservation_id = cur.lastrowid
    assert reservation_id is not None
    await move_in(conn, guild_id, user_id, "reserve", -amount, amount, now=now,
                reservation_id=reservation_id, job_id=job_id, reason="reserved for a job")
    return reservation_id


async def settle(
    conn: aiosqlite.Connection, reservation_id: int, outcome: str, *, now: float,
    reason: str | None = None,
) -> bool:
    """Capture (spend) or release (refund) a reservation. Only the first settle counts:
    a second capture or release of the same reservation changes nothing and returns False."""
    if outcome not in ("captured", "released"):
        raise ValueError(f"unknown settlement {outcome!r}")
    cur = await conn.execute(
        "UPDATE reservations SET status = ?, settled_at = ? WHERE id = ? AND status = 'held' "
        "RETURNING guild_id, user_id, amount, job_id, refund_forfeited",
        (outcome, now, reservation_id),
    )
    row = await cur.fetchone()
    await cur.close()
    if row is None:
        return False
    amount = row["amount"]
    if outcome == "captured":
        await move_in(conn, row["guild_id"], row["user_id"], "capture", 0, -amount, now=now,
                    reservation_id=reservation_id, job_id=row["job_id"],
                    reason=reason or "clip delivered")
    elif row["refund_forfeited"]:
        # A moderator set the balance to an exact amount while this was held: the hold
        # ends, but the credits do not come back on top of the amount they chose.
        await move_in(conn, row["guild_id"], row["user_id"], "release", 0, -amount, now=now,
                    reservation_id=reservation_id, job_id=row["job_id"],
                    reason=f"{reason or 'refund'}; not refunded: the balance was set by a "
                    "moderator after this job started")
    else:
        await move_in(conn, row["guild_id"], row["user_id"], "release", amount, -amount, now=now,
                    reservation_id=reservation_id, job_id=row["job_id"],
                    reason=reason or "refunded")
    return True


class CreditStore:
    """Grants and queries for the front end; reservations go through the job store."""

    def __init__(
        self, db: Database, *, starting_credits: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._starting_credits = starting_credits
        self._clock = clock

    def _now(self) -> float:
        return self._clock()

    async def balance(self, guild_id: int, user_id: int) -> Balance:
        async with self._db.transaction() as conn:
            await ensure_account(conn, guild_id, user_id,
                                 starting_credits=self._starting_credits, now=self._now())
            return await balance_in(conn, guild_id, user_id)

    async def available(self, guild_id: int, user_id: int) -> int:
        """The spendable balance of an existing account, read without a write transaction."""
        async with self._db.reading() as conn:
            return (await balance_in(conn, guild_id, user_id)).available

    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor_id: int | None,
        reason: str | None = None,
    ) -> LedgerEntry:
        if amount <= 0:
            raise CreditError("the amount to grant must be a positive whole number")
        async with self._db.transaction() as conn:
            await ensure_account(conn, guild_id, user_id,
                                 starting_credits=self._starting_credits, now=self._now())
            return await move_in(conn, guild_id, user_id, "grant", amount, 0, now=self._now(),
                               actor_id=actor_id, reason=reason)

    async def revoke(
        self, guild_id: int, user_id: int, amount: int, *, actor_id: int | None,
        reason: str | None = None,
    ) -> LedgerEntry:
        """Take credits back; refused (not clamped) when the balance is smaller."""
        if amount <= 0:
            raise CreditError("the amount to revoke must be a positive whole number")
        async with self._db.transaction() as conn:
            await ensure_account(conn, guild_id, user_id,
                                 starting_credits=self._starting_credits, now=self._now())
            return await move_in(conn, guild_id, user_id, "revoke", -amount, 0, now=self._now(),
                               actor_id=actor_id, reason=reason)

    async def set_balance(
        self, guild_id: int, user_id: int, amount: int, *, actor_id: int | None,
        reason: str | None = None,
    ) -> LedgerEntry | None:
        """Set the spendable balance to exactly `amount`; recorded as an 'adjust' row of the
        difference. Read and write share one IMMEDIATE transaction, so nothing slips in
        between.

        Credits held for unfinished jobs at that moment stay held: a delivered clip is still
        paid from them, but a failed or cancelled one is not refunded on top of `amount`
        (the hold is released without refund), so the balance the moderator set holds."""
        if amount < 0:
            raise CreditError("a balance cannot be negative")
        async with self._db.transaction() as conn:
            now = self._now()
            await ensure_account(conn, guild_id, user_id,
                                 starting_credits=self._starting_credits, now=now)
            await conn.execute(
                "UPDATE reservations SET refund_forfeited = 1"
                " WHERE guild_id = ? AND user_id = ? AND status = 'held'", (guild_id, user_id))
            current = await balance_in(conn, guild_id, user_id)
            delta = amount - current.available
            if delta == 0:
                return None
            return await move_in(conn, guild_id, user_id, "adjust", delta, 0, now=now,
                               actor_id=actor_id, reason=reason)

    async def history(
        self, guild_id: int, user_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[LedgerEntry]:
        """Newest first."""
        async with self._db.reading() as conn, conn.execute(
            "SELECT * FROM ledger WHERE guild_id = ? AND user_id = ? "
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            (guild_id, user_id, limit, offset),
        ) as cur:
            rows = await cur.fetchall()
        return [LedgerEntry.from_row(r) for r in rows]

    async def history_count(self, guild_id: int, user_id: int) -> int:
        async with self._db.reading() as conn, conn.execute(
            "SELECT COUNT(*) FROM ledger WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0


async def audit(db: Database) -> list[str]:
    """Every way the books could disagree with themselves; empty when they agree."""
    problems: list[str] = []
    queries = {
        "balance differs from the sum of its ledger deltas":
            "SELECT a.guild_id, a.user_id FROM accounts a LEFT JOIN ledger l"
            " ON l.guild_id = a.guild_id AND l.user_id = a.user_id"
            " GROUP BY a.guild_id, a.user_id"
            " HAVING a.balance != COALESCE(SUM(l.delta_balance), 0)"
            " OR a.held != COALESCE(SUM(l.delta_held), 0)",
        "held differs from the sum of open reservations":
            "SELECT a.guild_id, a.user_id FROM accounts a LEFT JOIN reservations r"
            " ON r.guild_id = a.guild_id AND r.user_id = a.user_id AND r.status = 'held'"
            " GROUP BY a.guild_id, a.user_id HAVING a.held != COALESCE(SUM(r.amount), 0)",
        "reservation settled more than once or not as its status says":
            "SELECT r.id, r.status FROM reservations r WHERE"
            " (SELECT COUNT(*) FROM ledger l WHERE l.reservation_id = r.id"
            "  AND l.kind IN ('capture', 'release')) != (r.status != 'held')",
        "finished job with credits still held":
            "SELECT j.id, j.state FROM jobs j JOIN reservations r ON r.job_id = j.id"
            " WHERE r.status = 'held' AND j.state IN ('delivered', 'failed', 'cancelled')",
        "job charged but not delivered, or delivered but not charged":
            "SELECT j.id, j.state FROM jobs j JOIN reservations r ON r.job_id = j.id"
            " WHERE (r.status = 'captured') != (j.state = 'delivered')"
            " AND j.state IN ('delivered', 'failed', 'cancelled')",
    }
    async with db.reading() as conn:
        for problem, sql in queries.items():
            async with conn.execute(sql) as cur:
                for row in await cur.fetchall():
                    problems.append(f"{problem}: {tuple(row)}")
    return problems
