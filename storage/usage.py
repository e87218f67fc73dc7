"""What a user and a server have used, read from the `jobs` table, and the periodic
allowance, granted at most once per (server, user, period).

What counts: a job counts toward a user's daily jobs, their cooldown and the server's
spend when it is unfinished (queued, submitting, running, delivering) or delivered.
Cancelled and failed jobs do not count: every one of them was refunded in full, so the
user paid nothing and should not lose a daily job to WaveSpeed being busy. (A failed job
whose submit outcome was unknown may still have cost the operator; `ops reconcile` tracks
those, not the spend cap.) Unfinished jobs count because their held credits may still be
captured. A job belongs to the UTC day in which it was created (admitted and charged),
whenever it finishes. A clip withheld as NSFW but charged is `delivered`, so it counts;
one that was refunded is `failed`, so it does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.credits import balance_in, ensure_account, move_in
from storage.database import Database
from storage.guild_settings import Period
from storage.jobs import ACTIVE_STATES, JobState

COUNTED_STATES: tuple[JobState, ...] = (*ACTIVE_STATES, JobState.DELIVERED)

# Fixed state names, the only text formatted into the SQL below.
_COUNTED = ",".join(f"'{state.value}'" for state in COUNTED_STATES)
_ACTIVE = ",".join(f"'{state.value}'" for state in ACTIVE_STATES)

ALLOWANCE_REASONS: dict[str, str] = {"day": "daily allowance", "week": "weekly allowance"}


@dataclass(frozen=True)
class LimitUsage:
    """Everything `admission.server_rules.check_limits` needs to know, read at one moment."""

    jobs_since: int               # the user's counted jobs created since `since`
    last_job_at: float | None     # when the user's last counted job was created
    active_jobs: int              # the user's unfinished jobs
    guild_spend_since: int        # credits of the server's counted jobs created since `since`


# -- reads usable inside a caller's transaction ----------------------------------------------

async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    async with conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return None if row is None else row[0]


async def count_jobs_since_in(
    conn: aiosqlite.Connection, guild_id: int, user_id: int, since: float
) -> int:
    value = await _scalar(
        conn,
        "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?"  # noqa: S608
        f" AND created_at >= ? AND state IN ({_COUNTED})",
        (guild_id, user_id, since),
    )
    return int(value or 0)


async def last_job_at_in(conn: aiosqlite.Connection, guild_id: int, user_id: int) -> float | None:
    value = await _scalar(
        conn,
        "SELECT MAX(created_at) FROM jobs WHERE guild_id = ? AND user_id = ?"  # noqa: S608
        f" AND state IN ({_COUNTED})",
        (guild_id, user_id),
    )
    return None if value is None else float(value)


async def active_job_count_in(conn: aiosqlite.Connection, guild_id: int, user_id: int) -> int:
    value = await _scalar(
        conn,
        "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?"  # noqa: S608
        f" AND state IN ({_ACTIVE})",
        (guild_id, user_id),
    )
    return int(value or 0)


async def guild_spend_since_in(conn: aiosqlite.Connection, guild_id: int, since: float) -> int:
    value = await _scalar(
        conn,
        "SELECT COALESCE(SUM(price), 0) FROM jobs WHERE guild_id = ?"  # noqa: S608
        f" AND created_at >= ? AND state IN ({_COUNTED})",
        (guild_id, since),
    )
    return int(value or 0)


async def guild_jobs_since_in(conn: aiosqlite.Connection, guild_id: int, since: float) -> int:
    value = await _scalar(
        conn,
        "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND created_at >= ?"  # noqa: S608
        f" AND state IN ({_COUNTED})",
        (guild_id, since),
    )
    return int(value or 0)


async def limit_usage_in(
    conn: aiosqlite.Connection, guild_id: int, user_id: int, *, since: float
) -> LimitUsage:
    return LimitUsage(
        jobs_since=await count_jobs_since_in(conn, guild_id, user_id, since),
        last_job_at=await last_job_at_in(conn, guild_id, user_id),
        active_jobs=await active_job_count_in(conn, guild_id, user_id),
        guild_spend_since=await guild_spend_since_in(conn, guild_id, since),
    )


# -- the same reads on their own ------------------------------------------------------------

async def last_job_at(db: Database, guild_id: int, user_id: int) -> float | None:
    """When the user's last counted job on this server was created; None if never."""
    async with db.reading() as conn:
        return await last_job_at_in(conn, guild_id, user_id)


async def guild_spend_since(db: Database, guild_id: int, since: float) -> int:
    """Credits of the server's counted jobs created at or after `since`."""
    async with db.reading() as conn:
        return await guild_spend_since_in(conn, guild_id, since)


async def limit_usage(db: Database, guild_id: int, user_id: int, *, since: float) -> LimitUsage:
    """All four numbers in one read (no write can land between them)."""
    async with db.reading() as conn:
        return await limit_usage_in(conn, guild_id, user_id, since=since)


# -- allowance ------------------------------------------------------------------------------

async def grant_allowance_once(
    db: Database, guild_id: int, user_id: int, amount: int, period_start: int, now: float, *,
    period: Period, starting_credits: int, cap: int | None = None,
) -> int:
    """Grant the allowance of the period starting at `period_start` (see
    `admission.periods.period_start`) unless this user already had it; returns the credits
    granted, 0 if they already had it.

    With `cap`, the grant never lifts the balance (spendable plus held) above it:
    min(amount, cap - available - held), and 0 when the balance is already there. Even a
    grant of 0 uses up the period, so a user who spends down and acts again is not topped
    up twice. Claiming the period and
    the ledger row are one BEGIN IMMEDIATE transaction: under any number of concurrent
    calls, one grants and the rest return 0. `starting_credits` is the bot-wide
    STARTING_CREDITS, for an account this creates."""
    if amount < 0:
        raise ValueError("an allowance cannot be negative")
    if cap is not None and cap < 0:
        raise ValueError("an allowance cap cannot be negative")
    if period not in ALLOWANCE_REASONS:
        raise ValueError(f"unknown allowance period {period!r}")
    if amount == 0:
        return 0
    async with db.transaction() as conn:
        await ensure_account(conn, guild_id, user_id, starting_credits=starting_credits, now=now)
        cur = await conn.execute(
            "INSERT INTO allowance_grants (guild_id, user_id, period, period_start, amount,"
            " granted_at) VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
            (guild_id, user_id, period, int(period_start), now),
        )
        if cur.rowcount != 1:
            return 0
        granted = amount
        if cap is not None:
            # Held credits are the member's too (refunded if the job fails): counting only
            # `available` would top a member with queued jobs up past the cap every period.
            balance = await balance_in(conn, guild_id, user_id)
            granted = max(0, min(amount, cap - balance.available - balance.held))
        if granted == 0:
            return 0
        entry = await move_in(conn, guild_id, user_id, "grant", granted, 0, now=now,
                            actor_id=None, reason=ALLOWANCE_REASONS[period])
        await conn.execute(
            "UPDATE allowance_grants SET amount = ?, ledger_id = ?"
            " WHERE guild_id = ? AND user_id = ? AND period = ? AND period_start = ?",
            (granted, entry.id, guild_id, user_id, period, int(period_start)),
        )
        return granted


class GuildUsage:
    """A server's counted jobs and spend since a moment (for /admin status)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def jobs_since(self, guild_id: int, since: float) -> int:
        async with self._db.reading() as conn:
            return await guild_jobs_since_in(conn, guild_id, since)

    async def spend_since(self, guild_id: int, since: float) -> int:
        return await guild_spend_since(self._db, guild_id, since)
