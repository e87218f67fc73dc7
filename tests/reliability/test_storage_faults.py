"""The bot's SQLite file failing under it (issue 13, storage faults), through the whole bot
(tests/e2e/scene.py: the real bot against the Discord emulator and the fake WaveSpeed):

- **locked**: a second process holds `BEGIN EXCLUSIVE` on the database for longer than
  the bot's busy timeout while members run /ref2video, /credits grant, /jobs cancel and
  press Confirm, all at once; and while the engine captures a delivered clip or releases
  a failed job's credits;
- **disk full**: `PRAGMA max_page_count` pinned at the file's size on the bot's own
  connection, so any write that needs another page fails with SQLITE_FULL, as on a full
  disk (a write that fits in the file's existing pages succeeds there too; so the
  commands under test write what cannot fit, or repeat until the file is full; /jobs
  cancel, an update and one small ledger row, may fit, so it is not among them);
- **read-only**: `PRAGMA query_only` on the bot's connection, so every write fails with
  SQLITE_READONLY, as on a file that became read-only under the running bot (root, which
  runs CI, ignores chmod).

For each: every command is acknowledged within Discord's 3 s and answered privately in
plain words (no traceback, no secret), nothing is half-applied (balances, held credits,
the ledger, the jobs table and WaveSpeed's submissions are as before; the ledger audit is
clean), and once the fault clears the same commands work and every job ends with one clip
and one charge, or a full refund.

The CI sample shortens the bot's busy timeout to CI_BUSY_MS, still past Discord's 3 s
acknowledgement window (what makes a command that writes before it acknowledges fail);
`--soak` runs the real BUSY_TIMEOUT_MS and more rounds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from discord_emulator.emulator import InteractionRecord, MessageRecord
from storage.credits import audit, balance_in
from storage.database import BUSY_TIMEOUT_MS, Database
from tests.e2e.scene import Scene, custom_ids, job_done, open_scene
from tests.fakes.wavespeed import TaskBehaviour
from tests.harness import wait_for
from tests.reliability.scale import SOAK, record, size

T = TypeVar("T")

SUITE = "storage faults"
COMMAND = "scripts/run-tests tests/reliability/test_storage_faults.py" + (
    " --soak" if SOAK else "")

CI_BUSY_MS = 3_500  # past Discord's 3 s: a command must acknowledge before it writes
ENGINE_BUSY_MS = BUSY_TIMEOUT_MS if SOAK else 500  # the engine has no 3 s to keep
BUSY_MS = BUSY_TIMEOUT_MS if SOAK else CI_BUSY_MS
LONG_PROMPT = "a slow pan over a harbour at dawn, " * 160  # ~5,600 chars: overflow pages
SETTINGS = {"wavespeed_max_concurrent": 1, "max_prompt_chars": 6000}

# Holds the database's write lock until told to let go (a line on stdin, or stdin closed):
# another process on the same file, as an operator's sqlite3 shell left in a transaction.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
conn.close()
"""


@contextlib.asynccontextmanager
async def locked_by_another_process(path: Path) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOCKER, str(path), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line.strip() == b"locked", line
        yield
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(b"release\n")
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout=30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0


async def pragma(db: Database, statement: str) -> int | None:
    """Run a PRAGMA on the bot's own connection (the one every store writes through)."""
    async with db.reading() as conn, conn.execute(f"PRAGMA {statement}") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None else None


async def scalar(db: Database, sql: str) -> int:
    async with db.reading() as conn, conn.execute(sql) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


@dataclass(frozen=True)
class Books:
    """Everything a half-applied change would show in."""
    balances: tuple[tuple[int, ...], ...]  # (available, held) of alice and bob
    ledger: int
    jobs: int
    job_states: tuple[str, ...]
    offers_taken: int  # jobs started from a price question
    submissions: int

    @classmethod
    async def of(cls, s: Scene) -> Books:
        db = s.world.db
        assert await audit(db) == []
        async with db.reading() as conn:  # reads only: a write would fail under the fault
            balances = tuple([astuple(await balance_in(conn, s.guild.id, m.id))
                              for m in (s.alice, s.bob)])
            async with conn.execute("SELECT state FROM jobs ORDER BY id") as cur:
                states = tuple(str(r[0]) for r in await cur.fetchall())
        return cls(balances, await scalar(db, "SELECT COUNT(*) FROM ledger"),
                   await scalar(db, "SELECT COUNT(*) FROM jobs"), states,
                   await scalar(db, "SELECT COUNT(*) FROM jobs WHERE start_key LIKE 'offer:%'"),
                   len(s.wavespeed.submissions))


def assert_failed_cleanly(s: Scene, name: str, rec: InteractionRecord, reply: MessageRecord,
                          why: str) -> None:
    """Acknowledged in time, answered privately, in words: the cause and what to do."""
    assert rec.acked_at is not None and rec.acked_at < 3.0 and not rec.late, (
        name, rec.describe())
    assert reply.ephemeral, (name, reply.content)
    text = reply.content
    assert why in text and "try again" in text, (name, text)
    for leak in ("Traceback", "File \"", "sqlite3", "OperationalError", "database is locked",
                 s.emu.bot_token, s.wavespeed.api_key):
        assert leak not in text, (name, leak, text)


async def answered(rec: InteractionRecord, within: float) -> MessageRecord:
    await rec.wait_acked(within=3.0)
    return await rec.wait_response(within=within)


# ---- the four ways in, ready to run under a fault ----------------------------------------


@dataclass
class Stage:
    """A scene with job 1 running (never finishing, so it holds the only slot), job 2
    queued behind it (for /jobs cancel) and a price question whose Confirm is unanswered."""
    s: Scene
    question: MessageRecord
    queued_job: int


async def stage(s: Scene) -> Stage:
    await s.grant(s.alice, 1000)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    assert "is queued" in (await s.generate(s.alice, "holds the slot")).content
    await s.world.wait_job_state(1, "running", within=15.0)
    assert "is queued" in (await s.generate(s.alice, "waits its turn")).content
    guild_settings = s.world.services.guild_settings
    await guild_settings.set_confirm_cost(s.guild.id, True, actor=s.admin.id)
    # Long: accepting it writes a job row that cannot fit in a page already in the file.
    question = await s.generate(s.alice, LONG_PROMPT)
    assert "Start it?" in question.content, question.content
    await guild_settings.set_confirm_cost(s.guild.id, False, actor=s.admin.id)
    return Stage(s, question, 2)


def run_all(st: Stage, prompt: str) -> list[Callable[[], Awaitable[InteractionRecord]]]:
    s = st.s
    return [
        lambda: s.emu.invoke("credits", subcommand="grant", user=s.admin, channel=s.channel,
                             options={"user": s.bob, "amount": 70}),
        lambda: s.emu.invoke("ref2video", user=s.alice, channel=s.channel,
                             options={"prompt": prompt, "video": s.video()}),
        lambda: s.emu.invoke("jobs", subcommand="cancel", user=s.alice, channel=s.channel,
                             options={"job": st.queued_job}),
        lambda: s.emu.click(st.question, custom_ids(st.question)[0], user=s.alice),
    ]


NAMES = ("/credits grant", "/ref2video", "/jobs cancel", "Confirm")


async def fire(st: Stage, prompt: str, within: float) -> list[tuple[InteractionRecord,
                                                                    MessageRecord]]:
    """All four at once (members do not wait for each other); their answers. The grant
    goes first and the rest once it is acknowledged: its write is then waiting for the
    lock, and the bot's one connection with it, so the others must acknowledge before
    they read anything."""
    grant, *others = run_all(st, prompt)
    first = await grant()
    await first.wait_acked(within=3.0)
    recs = [first, *[await start() for start in others]]
    replies = await asyncio.gather(*(answered(r, within) for r in recs))
    return list(zip(recs, replies, strict=True))


async def works_again(st: Stage, prompt: str) -> None:
    """The same four, fault cleared: each does what it says."""
    s = st.s
    done = await fire(st, prompt, within=30.0)
    (_, granted), (_, started), (_, cancelled), (_, confirmed) = done
    assert "is queued" in started.content, started.content
    assert "Granted 70 credits" in granted.content, granted.content
    assert f"Job #{st.queued_job} is cancelled" in cancelled.content, cancelled.content
    assert "is queued" in confirmed.content, confirmed.content
    assert await s.world.ledger_kinds(st.queued_job) == ["reserve", "release"]


async def all_settled(st: Stage) -> None:
    """Job 1 released from its never-ending task; every job ends with one clip and one
    charge (or the queued one's refund), and the books balance."""
    s = st.s
    first = s.wavespeed.submissions[0].task_id
    if s.wavespeed.tasks[first].finished_at is None:
        s.wavespeed.finish_task(first)
    jobs = await scalar(s.world.db, "SELECT COUNT(*) FROM jobs")
    for job_id in range(1, jobs + 1):
        if job_id != st.queued_job:
            await s.world.wait_job_state(job_id, "delivered", within=30.0)
            assert await s.world.ledger_kinds(job_id) == ["reserve", "capture"]
    assert await audit(s.world.db) == []
    assert len(s.wavespeed.submissions) == jobs - 1  # each once; the cancelled one never
    clips = [m for m in s.thread_messages() if m.attachments]
    assert len(clips) == jobs - 1, [m.content for m in clips]
    # 1000 granted, and every delivered clip charged 100 once.
    assert await s.world.balance(s.guild.id, s.alice.id) == (1000 - 100 * (jobs - 1), 0)
    assert await s.world.balance(s.guild.id, s.bob.id) == (70, 0)


# ---- (1) locked by another process ----------------------------------------------------------


async def test_commands_fail_cleanly_while_another_process_holds_the_write_lock(
        tmp_path: Path) -> None:
    rounds = size(ci=1, soak=4)
    for n in range(rounds):
        async with open_scene(tmp_path / f"round{n}", **SETTINGS) as s:
            await pragma(s.world.db, f"busy_timeout = {BUSY_MS}")
            st = await stage(s)
            before = await Books.of(s)
            async with locked_by_another_process(s.world.settings.database_path):
                # Each write waits out the busy timeout in turn (one connection).
                failed = await fire(st, "under the lock", within=4 * BUSY_MS / 1000 + 30)
                for (rec, reply), name in zip(failed, NAMES, strict=True):
                    assert_failed_cleanly(s, name, rec, reply, "busy")
                # Reads still work under another's write lock (WAL): nothing moved.
                assert await Books.of(s) == before
            assert await Books.of(s) == before
            await works_again(st, "after the lock")
            await all_settled(st)
    record(SUITE, "the database write-locked by another process (BEGIN EXCLUSIVE) past the "
           "bot's busy timeout while /ref2video, /credits grant, /jobs cancel and Confirm "
           "run at once: each acknowledged in time and told the database is busy, nothing "
           "half-applied; the same four work once the lock is gone",
           rounds * len(NAMES), 0, command=COMMAND,
           detail=f"busy timeout {BUSY_MS} ms; balances, ledger, jobs, submissions and the "
                  "audit unchanged under the lock; every job then one clip and one charge "
                  "or a full refund")


async def test_the_engine_retries_a_capture_and_a_release_held_up_by_the_lock(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="engine.engine")
    rounds = size(ci=1, soak=5)
    for n in range(rounds):
        caplog.clear()
        await engine_round(tmp_path / f"round{n}", caplog)
    record(SUITE, "the database write-locked by another process past the busy timeout just "
           "as the engine captures a delivered clip, and as it releases a failed job's "
           "credits: the engine retries from the saved state and, once the lock is gone, "
           "captures once (the clip not posted again) or refunds in full and tells the member",
           rounds * 2, 0, command=COMMAND, detail=f"busy timeout {ENGINE_BUSY_MS} ms")


async def engine_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with open_scene(tmp_path, wavespeed_max_concurrent=1) as s:
        db_path = s.world.settings.database_path
        await pragma(s.world.db, f"busy_timeout = {ENGINE_BUSY_MS}")
        await s.grant(s.alice, 1000)

        # A capture: the lock is taken the moment Discord has stored the clip, before the
        # bot hears back, so the capture right after the post finds it taken. (A connection
        # of the test's own: it must be held before the emulator answers, with the loop
        # blocked; the bot has no transaction open while it waits for that answer.)
        locker = sqlite3.connect(db_path, isolation_level=None, timeout=0)

        def lock_on_clip(what: str) -> None:
            if not locker.in_transaction and what.startswith("POST ") and any(
                    m.attachments for m in s.thread_messages()):
                locker.execute("BEGIN EXCLUSIVE")

        try:
            stop_watching = s.emu.on_change(lock_on_clip)
            await s.generate(s.alice, "captured under a lock")
            await wait_for(lambda: _async(locker.in_transaction), 30.0)
            stop_watching()
            await wait_for(lambda: _async(engine_failed(caplog, 1)), 30.0)
            # Held up: the clip is on screen, the credits still only held.
            assert await state_of(s, 1) == "delivering"
            assert await s.world.ledger_kinds(1) == ["reserve"]
        finally:
            if locker.in_transaction:
                locker.execute("ROLLBACK")
            locker.close()
        await s.world.wait_job_state(1, "delivered", within=30.0)
        assert await s.world.ledger_kinds(1) == ["reserve", "capture"]
        assert len([m for m in s.thread_messages() if m.attachments]) == 1  # not reposted

        # A release: the task fails while another process holds the lock.
        s.wavespeed.queue_tasks(TaskBehaviour.fail("the model crashed", complete_after=600))
        await s.generate(s.alice, "released under a lock")
        await s.world.wait_job_state(2, "running", within=15.0)
        async with locked_by_another_process(db_path):
            s.wavespeed.finish_task(s.wavespeed.submissions[1].task_id)
            await wait_for(lambda: _async(engine_failed(caplog, 2)), 30.0)
            assert await state_of(s, 2) == "running"
            assert await s.world.ledger_kinds(2) == ["reserve"]
        await job_done(s, 2, "failed")
        assert await s.world.ledger_kinds(2) == ["reserve", "release"]
        await s.emu.wait_for(lambda: any(
            "job #2 failed" in m.content and "were refunded" in m.content
            for m in s.emu.messages), within=15.0)

        assert await s.world.balance(s.guild.id, s.alice.id) == (900, 0)
        assert await audit(s.world.db) == []
        assert len(s.wavespeed.submissions) == 2


async def _async(value: T) -> T:
    """A plain value as wait_for's probe wants it."""
    return value


async def state_of(s: Scene, job_id: int) -> str:
    job = await s.world.services.jobs.get(job_id)
    assert job is not None
    return job.state.value


def engine_failed(caplog: pytest.LogCaptureFixture, job_id: int) -> bool:
    """The engine logged that a step of the job failed and will be picked up again."""
    return any(r.name == "engine.engine" and r.getMessage().startswith(f"job {job_id}: ")
               and ("unexpected error" in r.getMessage() or "resuming it failed"
                    in r.getMessage()) for r in caplog.records)


# ---- (2) the disk full ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def disk_full(db: Database) -> AsyncIterator[None]:
    """No page beyond those the file has: as on a full disk, a write that needs more space
    fails with SQLITE_FULL."""
    limit = await pragma(db, "max_page_count")
    # No free page inside the file either (else a write could still fit in it).
    assert await pragma(db, "freelist_count") == 0, "the file has free pages"
    pages = await pragma(db, "page_count")
    assert await pragma(db, f"max_page_count = {pages}") == pages
    try:
        yield
    finally:
        await pragma(db, f"max_page_count = {limit}")


async def test_commands_fail_cleanly_on_a_full_disk(tmp_path: Path) -> None:
    rounds = size(ci=1, soak=10)
    grants = 0
    for n in range(rounds):
        async with open_scene(tmp_path / f"round{n}", **SETTINGS) as s:
            st = await stage(s)
            before = await Books.of(s)
            async with disk_full(s.world.db):
                # A job row with a long prompt needs new pages: /ref2video and Confirm.
                start = await s.emu.invoke("ref2video", user=s.alice, channel=s.channel,
                                           options={"prompt": LONG_PROMPT, "video": s.video()})
                confirm = await s.emu.click(st.question, custom_ids(st.question)[0],
                                            user=s.alice)
                for name, rec in (("/ref2video", start), ("Confirm", confirm)):
                    assert_failed_cleanly(s, name, rec, await answered(rec, 30.0), "full")
                assert await Books.of(s) == before
                # A grant's ledger row is small: grants succeed until the file is full, and
                # the first that does not fit fails whole.
                while True:
                    assert grants < 500 * (n + 1), "the file never filled up"
                    was = await Books.of(s)
                    rec = await s.emu.invoke(
                        "credits", subcommand="grant", user=s.admin, channel=s.channel,
                        options={"user": s.bob, "amount": 1, "reason": "r" * 200})
                    reply = await answered(rec, 30.0)
                    grants += 1
                    if "Granted" not in reply.content:
                        break
                    assert (await Books.of(s)).balances[1] == (was.balances[1][0] + 1, 0)
                assert_failed_cleanly(s, "/credits grant", rec, reply, "full")
                assert await Books.of(s) == was
            # Space is back: the same commands work, and every job ends right.
            full_grants = (await Books.of(s)).balances[1][0]
            await s.world.services.credits.revoke(s.guild.id, s.bob.id, full_grants,
                                                  actor_id=s.admin.id, reason="test reset")
            await works_again(st, "after the disk was full")
            await all_settled(st)
    record(SUITE, "the disk full on write (SQLITE_FULL: the bot's connection may not grow "
           "the file): /ref2video and Confirm writing a job that needs a new page, and "
           "/credits grant repeated until the file is full, each told the database is full, "
           "nothing half-applied; the same commands work once there is space",
           rounds * 3, 0, command=COMMAND,
           detail=f"{grants} grants over {rounds} round(s), the last of each round refused; "
                  "each grant that fit was applied whole")


# ---- (3) a read-only database ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def read_only(db: Database) -> AsyncIterator[None]:
    """Every write refused with SQLITE_READONLY, reads served: as when the file became
    read-only under the running bot."""
    await pragma(db, "query_only = ON")
    try:
        yield
    finally:
        await pragma(db, "query_only = OFF")


async def test_commands_and_the_engine_recover_from_a_read_only_database(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="engine.engine")
    rounds = size(ci=1, soak=10)
    for n in range(rounds):
        caplog.clear()
        async with open_scene(tmp_path / f"round{n}", **SETTINGS) as s:
            st = await stage(s)
            before = await Books.of(s)
            async with read_only(s.world.db):
                failed = await fire(st, "while read-only", within=30.0)
                for (rec, reply), name in zip(failed, NAMES, strict=True):
                    assert_failed_cleanly(s, name, rec, reply, "read-only")
                # Job 1's task finishes: the engine cannot record it, and tries again.
                s.wavespeed.finish_task(s.wavespeed.submissions[0].task_id)
                await wait_for(lambda: _async(engine_failed(caplog, 1)), 30.0)
                assert await Books.of(s) == before
                assert not [m for m in s.thread_messages() if m.attachments]
            await works_again(st, "after read-only")
            await all_settled(st)
    record(SUITE, "the database read-only under the running bot (SQLITE_READONLY on every "
           "write) while /ref2video, /credits grant, /jobs cancel and Confirm run and a job's "
           "task finishes: each told the database is read-only, nothing half-applied; once "
           "writable, the same four work and the finished job is delivered and charged once",
           rounds * (len(NAMES) + 1), 0, command=COMMAND)
