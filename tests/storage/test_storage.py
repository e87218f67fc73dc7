"""The database file itself: pragmas, migrations, constraints."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from storage.bot_state import BotState, ModeConflict, claim_mode
from storage.database import Database, MigrationError, load_migrations, split_statements
from storage.jobs import JobStore
from tests.conftest import ALICE, GUILD
from wavespeed.models import GenerationRequest

REQUEST = GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt="a cat surfing")


async def test_pragmas_and_schema_version(db: Database) -> None:
    async with db.reading() as conn:
        for pragma, expected in (("journal_mode", "wal"), ("foreign_keys", 1)):
            async with conn.execute(f"PRAGMA {pragma}") as cur:
                row = await cur.fetchone()
            assert row is not None and row[0] == expected
        async with conn.execute("PRAGMA busy_timeout") as cur:
            row = await cur.fetchone()
        assert row is not None and row[0] >= 5000
        async with conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ) as cur:
            tables = {r[0]: r[1] for r in await cur.fetchall()}
    assert {"accounts", "jobs", "ledger", "reservations", "job_events"} <= set(tables)
    assert all("STRICT" in sql for name, sql in tables.items() if not name.startswith("sqlite"))
    assert await db.schema_version() == len(load_migrations())


async def test_reopen_does_not_reapply_migrations(db_path: Path) -> None:
    first = await Database.open(db_path)
    async with first.transaction() as conn:
        await conn.execute(
            "INSERT INTO accounts (guild_id, user_id, balance, held, created_at)"
            " VALUES (?, ?, 5, 0, 0)", (GUILD, ALICE))
    await first.close()
    second = await Database.open(db_path)
    async with second.reading() as conn, conn.execute("SELECT balance FROM accounts") as cur:
        assert [r[0] for r in await cur.fetchall()] == [5]
    await second.close()


async def test_forward_migration_applies_only_new_files(db_path: Path, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_first.sql").write_text("CREATE TABLE a (x INTEGER) STRICT;\n")
    db = await Database.open(db_path, migrations_dir=migrations)
    await db.close()
    (migrations / "0002_second.sql").write_text(
        "CREATE TABLE b (y INTEGER) STRICT;\nINSERT INTO a VALUES (1);\n")
    db = await Database.open(db_path, migrations_dir=migrations)
    assert await db.schema_version() == 2
    async with db.reading() as conn, conn.execute("SELECT COUNT(*) FROM a") as cur:
        row = await cur.fetchone()
    assert row is not None and row[0] == 1
    await db.close()


async def test_failed_migration_leaves_database_unchanged(db_path: Path, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER) STRICT;\n")
    (migrations / "0002_bad.sql").write_text(
        "CREATE TABLE b (y INTEGER) STRICT;\nINSERT INTO nowhere VALUES (1);\n")
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(db_path, migrations_dir=migrations)
    conn = sqlite3.connect(db_path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert tables == set() and version == 0


async def test_database_newer_than_code_is_refused(db_path: Path, tmp_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        await Database.open(db_path)


def test_migration_numbering_must_be_contiguous(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0003_c.sql").write_text("")
    with pytest.raises(MigrationError, match="out of sequence"):
        load_migrations(tmp_path)


def test_split_keeps_trigger_bodies_whole() -> None:
    script = (
        "CREATE TABLE t (x INTEGER);\n-- a comment\n"
        "CREATE TRIGGER tr BEFORE DELETE ON t\nBEGIN\n  SELECT RAISE(ABORT, 'no');\nEND;\n"
    )
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("-- a comment") or statements[1].startswith("CREATE TRIGGER")
    assert statements[1].rstrip().endswith("END;")


async def test_ledger_rejects_update_and_delete(db: Database) -> None:
    from storage.credits import CreditStore

    await CreditStore(db).grant(GUILD, ALICE, 10, actor_id=None)
    for sql in ("UPDATE ledger SET delta_balance = 1000", "DELETE FROM ledger"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(sql)


async def test_balance_check_constraint_backs_up_the_code(db: Database) -> None:
    from storage.credits import CreditStore

    await CreditStore(db).grant(GUILD, ALICE, 10, actor_id=None)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        async with db.transaction() as conn:
            await conn.execute("UPDATE accounts SET balance = -1")


async def test_bot_state_survives_reopening(db_path: Path) -> None:
    db = await Database.open(db_path)
    try:
        state = BotState(db)
        assert await state.get("tree") is None
        await state.set("tree", "abc")
        await state.set("tree", "def")
    finally:
        await db.close()
    db = await Database.open(db_path)
    try:
        assert await BotState(db).get("tree") == "def"
    finally:
        await db.close()


async def test_jobs_rebuild_keeps_every_row_and_reference(db_path: Path, tmp_path: Path) -> None:
    """0005 rebuilds `jobs` (a new state needs a new CHECK): a database made by 0001-0004
    keeps its jobs, reservations, ledger and events, and they still point at each other."""
    old = tmp_path / "old_migrations"
    old.mkdir()
    for _, path in load_migrations()[:4]:
        (old / path.name).write_text(path.read_text())
    db = await Database.open(db_path, migrations_dir=old)
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO accounts VALUES (?, ?, 90, 10, 0)", (GUILD, ALICE))
        await conn.execute(
            "INSERT INTO jobs (id, guild_id, channel_id, user_id, state, request, price,"
            " created_at, updated_at, start_key, submitted_at) VALUES"
            " (7, ?, 3, ?, 'submitting', '{}', 10, 1, 1, 'ix:1', 2)", (GUILD, ALICE))
        await conn.execute("INSERT INTO reservations (id, job_id, guild_id, user_id, amount,"
                           " status, created_at) VALUES (1, 7, ?, ?, 10, 'held', 1)",
                           (GUILD, ALICE))
        await conn.execute(
            "INSERT INTO ledger (guild_id, user_id, kind, delta_balance, delta_held,"
            " balance_after, held_after, reservation_id, job_id, created_at)"
            " VALUES (?, ?, 'reserve', -10, 10, 90, 10, 1, 7, 1)", (GUILD, ALICE))
        await conn.execute("INSERT INTO job_events (job_id, to_state, at) VALUES (7, 'queued', 1)")
    await db.close()

    db = await Database.open(db_path)
    try:
        assert await db.schema_version() == len(load_migrations())
        async with db.reading() as conn:
            async with conn.execute("SELECT id, state, start_key, submitted_at FROM jobs") as cur:
                assert [tuple(r) for r in await cur.fetchall()] == [(7, "submitting", "ix:1", 2.0)]
            async with conn.execute("PRAGMA foreign_keys") as cur:
                row = await cur.fetchone()
                assert row is not None and row[0] == 1
            async with conn.execute("PRAGMA foreign_key_check") as cur:
                assert await cur.fetchall() == []
        async with db.transaction() as conn:
            await conn.execute("UPDATE jobs SET state = 'checking' WHERE id = 7")
        with pytest.raises(sqlite3.IntegrityError):  # the references are still enforced
            async with db.transaction() as conn:
                await conn.execute("DELETE FROM jobs WHERE id = 7")
        with pytest.raises(sqlite3.IntegrityError):  # and the CHECK still guards the state
            async with db.transaction() as conn:
                await conn.execute("UPDATE jobs SET state = 'lost' WHERE id = 7")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute("DELETE FROM ledger")
    finally:
        await db.close()


async def test_job_messages_move_from_the_context_json_to_typed_columns(
        db_path: Path, tmp_path: Path) -> None:
    """0006 adds typed columns for where a job's messages are and the balance it left, and
    fills them from the `context` JSON of a database at schema 5, whether the ids were
    saved as numbers or as strings; a job with no (or unreadable) context gets NULLs."""
    old = tmp_path / "old_migrations"
    old.mkdir()
    for _, path in load_migrations()[:5]:
        (old / path.name).write_text(path.read_text())
    db = await Database.open(db_path, migrations_dir=old)
    assert await db.schema_version() == 5
    contexts = {
        1: '{"status_channel_id": 3, "status_message_id": 1234567890123456789,'
           ' "thread_id": 1234567890123456790, "balance_after": 400}',
        2: '{"status_channel_id": "3", "status_message_id": "1234567890123456791",'
           ' "thread_id": "1234567890123456792", "balance_after": "0"}',
        3: '{"status_channel_id": 3, "status_message_id": 11}',   # no thread, no balance
        4: "{}",
        5: '{"thread_id": "not an id", "balance_after": -5}',
    }
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO accounts VALUES (?, ?, 90, 50, 0)", (GUILD, ALICE))
        for job_id, context in contexts.items():
            await conn.execute(
                "INSERT INTO jobs (id, guild_id, channel_id, user_id, state, request, price,"
                " context, created_at, updated_at) VALUES (?, ?, 3, ?, 'queued', ?, 10, ?, 1, 1)",
                (job_id, GUILD, ALICE, json.dumps(REQUEST.to_json()), context))
            await conn.execute("INSERT INTO reservations (id, job_id, guild_id, user_id, amount,"
                               " status, created_at) VALUES (?, ?, ?, ?, 10, 'held', 1)",
                               (job_id, job_id, GUILD, ALICE))
    await db.close()

    db = await Database.open(db_path)
    try:
        assert await db.schema_version() == len(load_migrations())
        async with db.reading() as conn, conn.execute(
            "SELECT typeof(status_channel_id), typeof(status_message_id), typeof(thread_id),"
            " typeof(balance_after) FROM jobs WHERE id IN (1, 2)"
        ) as cur:
            assert {tuple(r) for r in await cur.fetchall()} == {("integer",) * 4}
        store = JobStore(db)
        found = [await store.get(job_id) for job_id in contexts]
        assert [(j.status_channel_id, j.status_message_id, j.thread_id, j.balance_after)
                for j in found if j is not None] == [
            (3, 1234567890123456789, 1234567890123456790, 400),
            (3, 1234567890123456791, 1234567890123456792, 0),
            (3, 11, None, None),
            (None, None, None, None),
            (None, None, None, None),
        ]
        with pytest.raises(sqlite3.IntegrityError):   # the balance left is never negative
            async with db.transaction() as conn:
                await conn.execute("UPDATE jobs SET balance_after = -1 WHERE id = 1")
    finally:
        await db.close()


async def test_a_database_keeps_to_the_mode_it_was_used_in(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "modes.sqlite3")
    try:
        await claim_mode(db, "SIMULATE", "modes.sqlite3")
        await claim_mode(db, "SIMULATE", "modes.sqlite3")  # again: fine
        with pytest.raises(ModeConflict, match="holds the jobs and credits of SIMULATE mode"):
            await claim_mode(db, "LIVE", "modes.sqlite3")
    finally:
        await db.close()
    # A database from before modes were recorded, with jobs in it, is live mode's.
    old = await Database.open(tmp_path / "old.sqlite3")
    try:
        await JobStore(old, starting_credits=500).create(
            guild_id=GUILD, channel_id=1, user_id=ALICE, price=100, max_active=3,
            request=GenerationRequest(videos=("https://cdn.example/a.mp4",), prompt="p"))
        with pytest.raises(ModeConflict, match="holds the jobs and credits of LIVE mode"):
            await claim_mode(old, "SIMULATE", "old.sqlite3")
        await claim_mode(old, "LIVE", "old.sqlite3")
        assert await BotState(old).get("wavespeed_mode") == "LIVE"
    finally:
        await old.close()
