"""One SQLite file through aiosqlite: pragmas, forward migrations, and write transactions.

All statements of this process go through one connection guarded by one asyncio lock, so a
transaction is never interleaved with another coroutine's statements. Other processes on
the same file are held off by `BEGIN IMMEDIATE` and `busy_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 10_000


class MigrationError(RuntimeError):
    pass


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """Numbered migration files, checked to run 1, 2, 3... with no gaps."""
    found: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    for expected, (number, path) in enumerate(found, start=1):
        if number != expected:
            raise MigrationError(f"migration {path.name} is out of sequence (expected {expected})")
    return found


def split_statements(script: str) -> list[str]:
    """Split SQL into statements; sqlite3.complete_statement keeps trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise MigrationError(f"incomplete SQL statement at the end: {buffer.strip()[:80]!r}")
    return statements


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, migrations_dir: Path = MIGRATIONS_DIR) -> Database:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed capture or release survives a power cut, not only a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await db._migrate(migrations_dir)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def schema_version(self) -> int:
        async with self.reading() as conn:
            return await _user_version(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, taken with the write lock at BEGIN (no upgrade deadlocks)."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await _rollback(self._conn)
                raise
            try:
                await self._conn.execute("COMMIT")
            except BaseException:
                await _rollback(self._conn)
                raise

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Reads in autocommit mode; the lock keeps them out of another coroutine's transaction."""
        async with self._lock:
            yield self._conn

    async def _migrate(self, migrations_dir: Path) -> None:
        migrations = load_migrations(migrations_dir)
        async with self.transaction() as conn:
            current = await _user_version(conn)
            if current > len(migrations):
                raise MigrationError(
                    f"database {self.path} is at schema version {current}, newer than this "
                    f"code knows ({len(migrations)}): run the newer version of the bot"
                )
            for number, path in migrations[current:]:
                log.info("applying migration %s", path.name)
                for statement in split_statements(path.read_text(encoding="utf-8")):
                    await conn.execute(statement)
                # PRAGMA takes no parameters; number is an int from our own file names.
                await conn.execute(f"PRAGMA user_version = {int(number)}")


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _rollback(conn: aiosqlite.Connection) -> None:
    # No transaction may be open (BEGIN itself failed, or COMMIT already ended it).
    with contextlib.suppress(sqlite3.OperationalError):
        await conn.execute("ROLLBACK")
