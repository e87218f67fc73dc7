"""One SQLite file through aiosqlite: pragmas, forward migrations, and write transactions.

All statements of this process go through one connection guarded by one asyncio lock, so a
transaction is never interleaved with another coroutine's statements. Other processes on
the same file are held off by `BEGIN IMMEDIATE` and `busy_timeout`.

A process that runs the bot fences its database with the instance lease it holds
(`fence_with`, see storage/lease.py): every write transaction then first checks, under the
write lock, that the lease is still its own - by its own monotonic deadline, then by the
row's holder - so a process that lost it (paused, or its renewals were late) writes nothing
once it may no longer act, let alone after another took over. Reads are not fenced, and a
database opened without a fence (the ops CLI, tests) writes as before.

`Database.open()` migrates the schema unless told not to (`migrate=False`); the bot opens
without migrating and calls `migrate()` once it holds the lease, so a standby never
rewrites the schema under the running process (bot.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BUSY_TIMEOUT_MS = 10_000


class MigrationError(RuntimeError):
    pass


class LeaseLost(RuntimeError):
    """This process no longer holds the instance lease its database is fenced with: another
    process took over. Raised by a write transaction before it ran; nothing was written."""


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
    def __init__(self, conn: aiosqlite.Connection, path: Path,
                 migrations_dir: Path | None = None) -> None:
        self._conn = conn
        self.path = path
        self._migrations_dir = migrations_dir
        self._lock = asyncio.Lock()
        self._fence: tuple[str, str, Callable[[], bool] | None] | None = None

    @classmethod
    async def open(cls, path: Path, *, migrate: bool = True,
                   migrations_dir: Path | None = None) -> Database:
        """Open (creating it if need be) and, unless `migrate` is False, migrate the schema
        to the newest version (`migrations_dir`, default MIGRATIONS_DIR)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path, migrations_dir)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed capture or release survives a power cut, not only a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            if migrate:
                await db.migrate()
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

    async def pending_migrations(self) -> int:
        """How many migrations `migrate()` would apply (a read). Raises MigrationError if
        the file is at a version newer than this code knows."""
        known = len(load_migrations(self._directory()))
        current = await self.schema_version()
        self._check_not_newer(current, known)
        return known - current

    async def migrate(self) -> None:
        """Apply the migrations this file lacks, in one write transaction - fenced, if the
        database is fenced. Raises MigrationError if the file is newer than this code."""
        async with self._lock:
            # SQLite's procedure for rebuilding a table others reference (0005 rebuilds
            # `jobs`): foreign keys off, which only works outside a transaction, so the DROP
            # neither cascades nor fails; then foreign_key_check before COMMIT proves nothing
            # dangles. Under the lock: no other coroutine's transaction is open meanwhile.
            await self._conn.execute("PRAGMA foreign_keys = OFF")
            try:
                await self._migrate_unchecked(self._directory())
            finally:
                await self._conn.execute("PRAGMA foreign_keys = ON")

    def fence_with(self, name: str, holder: str,
                   still_held: Callable[[], bool] | None = None) -> None:
        """From now on, every fenced write transaction first checks that this process still
        holds the lease - `still_held()`, its own judgement by its own deadline, and then
        the `instance_lease` row `name` still naming `holder` - and raises LeaseLost
        (writing nothing) if not."""
        self._fence = (name, holder, still_held)

    @asynccontextmanager
    async def transaction(self, *, fenced: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, taken with the write lock at BEGIN (no upgrade deadlocks).
        `fenced=False` skips the lease check: only for the lease's own rows, whose updates
        carry their own holder condition (storage/lease.py)."""
        async with self._lock, self._begin(fenced=fenced) as conn:
            yield conn

    @asynccontextmanager
    async def _begin(self, *, fenced: bool) -> AsyncIterator[aiosqlite.Connection]:
        """The transaction itself; the caller holds self._lock."""
        try:
            # Inside the try: a task cancelled while BEGIN waits for the write lock (a
            # timed-out lease renewal, a close) must not leave the connection in a
            # transaction that the BEGIN still opened in aiosqlite's thread.
            await self._conn.execute("BEGIN IMMEDIATE")
            if fenced and self._fence is not None:
                await self._check_fence(*self._fence)
            yield self._conn
        except BaseException:
            await _rollback(self._conn)
            raise
        try:
            await self._conn.execute("COMMIT")
        except BaseException:
            await _rollback(self._conn)
            raise

    async def _check_fence(self, name: str, holder: str,
                           still_held: Callable[[], bool] | None) -> None:
        # After BEGIN (which may wait for the write lock): whether we may still act is
        # judged at the moment the transaction starts. Under BEGIN IMMEDIATE no other
        # process can take the lease until we COMMIT, so a check that passes here holds
        # for the whole transaction.
        if still_held is not None and not still_held():
            raise LeaseLost(f"instance lease {name!r}: {holder} no longer holds it by its own "
                            "deadline (renewals late, or the lease was lost); nothing was "
                            "written")
        async with self._conn.execute(
            "SELECT holder FROM instance_lease WHERE name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        if row is None or row[0] != holder:
            now_held_by = "nobody" if row is None else str(row[0])
            raise LeaseLost(f"instance lease {name!r} is no longer held by {holder} "
                            f"(now: {now_held_by}); nothing was written")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Reads in autocommit mode; the lock keeps them out of another coroutine's transaction."""
        async with self._lock:
            yield self._conn

    def _directory(self) -> Path:
        return self._migrations_dir if self._migrations_dir is not None else MIGRATIONS_DIR

    def _check_not_newer(self, current: int, known: int) -> None:
        if current > known:
            raise MigrationError(
                f"database {self.path} is at schema version {current}, newer than this "
                f"code knows ({known}): run the newer version of the bot"
            )

    async def _migrate_unchecked(self, migrations_dir: Path) -> None:
        migrations = load_migrations(migrations_dir)
        async with self._begin(fenced=True) as conn:
            current = await _user_version(conn)
            self._check_not_newer(current, len(migrations))
            for number, path in migrations[current:]:
                log.info("applying migration %s", path.name)
                for statement in split_statements(path.read_text(encoding="utf-8")):
                    await conn.execute(statement)
                # PRAGMA takes no parameters; number is an int from our own file names.
                await conn.execute(f"PRAGMA user_version = {int(number)}")
            async with conn.execute("PRAGMA foreign_key_check") as cur:
                dangling = list(await cur.fetchall())
            if dangling:
                raise MigrationError(f"migrations left {len(dangling)} rows whose foreign "
                                     f"keys point nowhere, e.g. {tuple(dangling[0])}")


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _rollback(conn: aiosqlite.Connection) -> None:
    # No transaction may be open (BEGIN itself failed, or COMMIT already ended it).
    with contextlib.suppress(sqlite3.OperationalError):
        await conn.execute("ROLLBACK")
