"""Members' credits, read from the bot's SQLite database on a read-only connection.

The bot (another process) owns the file and its write fence; the playground only looks, with
SQLite's `mode=ro`, so nothing it does can change a balance. The file does not exist until
the bot has opened it; then every member simply has nothing yet.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Credits:
    available: int
    held: int


class CreditReader:
    def __init__(self, database_path: Path) -> None:
        self.database_path = database_path

    def connect(self) -> sqlite3.Connection:
        """A read-only connection (sqlite3.OperationalError if the file cannot be opened)."""
        uri = f"{self.database_path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=2.0)

    def _read(self, guild_id: int) -> dict[int, Credits]:
        if not self.database_path.exists():
            return {}
        try:
            conn = self.connect()
        except sqlite3.Error:
            return {}
        try:
            rows = conn.execute(
                "SELECT user_id, balance, held FROM accounts WHERE guild_id = ?", (guild_id,)
            ).fetchall()
        except sqlite3.Error:  # not migrated yet, or busy beyond the timeout: try next time
            return {}
        finally:
            conn.close()
        return {int(uid): Credits(int(balance), int(held)) for uid, balance, held in rows}

    async def read(self, guild_id: int) -> dict[int, Credits]:
        """Each member's balance by user id (members without an account are missing)."""
        return await asyncio.to_thread(self._read, guild_id)
