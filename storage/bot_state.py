"""Small key/value facts the bot keeps between runs (e.g. the last synced command tree)."""

from __future__ import annotations

import time

from storage.database import Database


class BotState:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        async with self.db.reading() as conn, conn.execute(
            "SELECT value FROM bot_state WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def set(self, key: str, value: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, time.time()),
            )


MODE_KEY = "wavespeed_mode"


class ModeConflict(Exception):
    """The database was used with the other WAVESPEED_MODE; str() says what to do."""


async def claim_mode(db: Database, mode: str, path: object) -> None:
    """Record that this database is used in `mode` (LIVE or SIMULATE), or raise ModeConflict
    if it was used in the other one. Its jobs would otherwise resume against the other
    WaveSpeed: a job a member was told is simulated submitted to the paid API, or a stand-in
    clip captured as a real one. A database from before modes were recorded is LIVE's if it
    holds any job."""
    state = BotState(db)
    stored = recorded = await state.get(MODE_KEY)
    if recorded is None:
        async with db.reading() as conn, conn.execute("SELECT 1 FROM jobs LIMIT 1") as cur:
            recorded = "LIVE" if await cur.fetchone() is not None else mode
    if recorded != mode:
        other = "simulate" if mode == "SIMULATE" else "live"
        raise ModeConflict(
            f"The database {path} holds the jobs and credits of {recorded} mode, and "
            f"WAVESPEED_MODE is {mode}: its jobs would run against the wrong WaveSpeed. "
            f"Give {other} mode a database of its own (e.g. DATABASE_PATH=data/{other}.sqlite3), "
            f"or set WAVESPEED_MODE back to {recorded}.")
    if stored is None:
        await state.set(MODE_KEY, mode)
