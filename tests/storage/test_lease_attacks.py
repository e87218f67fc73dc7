"""Attacks on "one active bot per database": the instance lease (storage/lease.py), the write
fence (storage/database.py), the standby and heartbeat (engine/leadership.py), and how
bot.py migrates, stops and closes around them.

These came from a hostile review, and every one of them failed on the first version of the
lease (expiry judged by the wall clock, migrations run by the standby, a fence that checked
only the holder column, a graceful close after a loss, a close that stopped at the first
part that failed). Each test now states the guarantee it checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest

import bot
import storage.database
from bot import Ref2VideoBot, _Stopper
from config import Secret, Settings
from engine.leadership import Leadership
from storage.bot_state import BotState
from storage.database import MIGRATIONS_DIR, Database, LeaseLost, load_migrations
from storage.jobs import JobState
from storage.lease import LEASE_SCHEMA_VERSION, LeaseStore, instance_id
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import FAST_LIMITS, Harness


class WallClock:
    """time.time() plus an offset the test can step: one host's wall clock, shared by every
    process on it (NTP stepping it, an operator running `date -s`)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Monotonic:
    """time.monotonic() plus an offset: a process paused for `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
async def two(db_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    a = await Database.open(db_path)
    b = await Database.open(db_path)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def _never_lost(reason: str) -> None:
    raise AssertionError(f"unexpected loss: {reason}")


def _settings(db_path: Path, takeover: float = 2.0) -> Settings:
    return Settings(discord_token=Secret("x"), wavespeed_api_key=Secret("y"),
                    database_path=db_path, instance_takeover_seconds=takeover)


async def _lease(db_path: Path) -> Any:
    db = await Database.open(db_path, migrate=False)
    try:
        return await LeaseStore(db).current()
    finally:
        await db.close()


# 1 ---------------------------------------------------------------------------------------

async def test_a_wall_clock_step_never_hands_a_healthy_holders_lease_over(
    two: tuple[Database, Database],
) -> None:
    """The host's wall clock steps an hour forward, then an hour back (NTP after a suspend,
    a VM resumed, `date -s`). The holder keeps renewing, so the standby keeps waiting: no
    clock reading decides a takeover, only a row that stopped changing."""
    db_a, db_b = two
    clock = WallClock()
    ttl = 1.5
    active = Leadership(LeaseStore(db_a, clock=clock), "A", ttl, on_lost=_never_lost)
    assert await active.wait_for_lease() is not None
    standby = Leadership(LeaseStore(db_b, clock=clock), "B", ttl, on_lost=_never_lost)
    stop = asyncio.Event()
    waiting = asyncio.create_task(standby.wait_for_lease(stop))
    try:
        await asyncio.sleep(0.2)
        for offset in (3600.0, -3600.0):
            clock.offset = offset
            await asyncio.sleep(ttl + 0.5)  # longer than the takeover time, each way
            assert not waiting.done(), f"the standby took over after a {offset:+.0f}s step"
            assert active.holds() and active.lost is None
        lease = await LeaseStore(db_b).current()
        assert lease is not None and lease.holder == "A"
        await BotState(db_a).set("k", "still the holder")  # and it may still write
    finally:
        stop.set()
        assert await asyncio.wait_for(waiting, 2.0) is None
        assert await active.release()


# 2 ---------------------------------------------------------------------------------------

async def test_a_lease_renewed_under_a_fast_clock_is_taken_over_after_the_takeover_time(
    two: tuple[Database, Database],
) -> None:
    """The holder renewed while the wall clock was an hour ahead, then died. Its row says
    "until an hour from now"; the standby still takes over INSTANCE_TAKEOVER_SECONDS after
    it last saw the row change, by its own monotonic clock."""
    db_a, db_b = two
    ttl = 2.0
    fast = WallClock()
    fast.offset = 3600.0
    assert (await LeaseStore(db_a, clock=fast).acquire("A", ttl)).acquired  # then dies
    standby = Leadership(LeaseStore(db_b), "B", ttl, on_lost=_never_lost)
    t0 = time.monotonic()
    status = await asyncio.wait_for(standby.wait_for_lease(), 3 * ttl)
    took = time.monotonic() - t0
    print(f"took a fast-clock lease over after {took:.2f}s (ttl {ttl}s)")
    assert ttl <= took <= ttl + 1.0
    assert status is not None and status.acquired and status.previous is not None
    assert status.previous.expires_at > time.time() + 3000  # what the old rule waited for
    await standby.release()


# 3 ---------------------------------------------------------------------------------------

def _newer_migrations(tmp_path: Path) -> tuple[Path, int]:
    newer = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, newer)
    number = len(load_migrations()) + 1
    (newer / f"{number:04d}_new_column.sql").write_text(
        "ALTER TABLE jobs ADD COLUMN review_marker INTEGER;\n", encoding="utf-8")
    return newer, number


async def test_a_standby_leaves_the_schema_alone_until_it_holds_the_lease(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deploy as the README says: the new version starts first (standby) while the old
    one runs, then the old one stops. The new version's migrations run only once it holds
    the lease, inside a fenced transaction - never under the running old process."""
    db_a = await Database.open(db_path)  # the running old version
    active = Leadership(LeaseStore(db_a), "old", 2.0, on_lost=_never_lost)
    try:
        assert await active.wait_for_lease() is not None
        version_before = await db_a.schema_version()
        newer, number = _newer_migrations(tmp_path)
        monkeypatch.setattr(storage.database, "MIGRATIONS_DIR", newer)  # the new version
        seen: list[int] = []

        async def bot_runs(settings: Settings, db: Database, stopper: _Stopper) -> None:
            seen.append(await db.schema_version())

        monkeypatch.setattr(bot, "_run_bot", bot_runs)
        new_version = asyncio.create_task(bot.run(_settings(db_path)))
        await asyncio.sleep(1.0)
        assert not new_version.done()  # a standby
        assert await db_a.schema_version() == version_before, (
            "a process that does not hold the instance lease migrated the shared database")
        async with db_a.reading() as conn, conn.execute("PRAGMA table_info(jobs)") as cur:
            assert "review_marker" not in {str(r[1]) for r in await cur.fetchall()}
        await BotState(db_a).set("k", "the old one still works")

        assert await active.release()  # the old one stops: the new one migrates and runs
        await asyncio.wait_for(new_version, 5.0)
        assert seen == [number]
    finally:
        await active.release()
        await db_a.close()


async def test_a_database_from_before_the_lease_is_migrated_before_the_standby_waits(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No process can hold a lease on a schema without the lease table, so an older file
    is migrated at once (else the standby could not even read the lease)."""
    old = tmp_path / "old"
    old.mkdir()
    for n, path in load_migrations():
        if n < LEASE_SCHEMA_VERSION:
            shutil.copy(path, old / path.name)
    await (await Database.open(db_path, migrations_dir=old)).close()
    seen: list[tuple[int, str]] = []

    async def bot_runs(settings: Settings, db: Database, stopper: _Stopper) -> None:
        lease = await LeaseStore(db).current()
        assert lease is not None
        seen.append((await db.schema_version(), lease.holder))

    monkeypatch.setattr(bot, "_run_bot", bot_runs)
    await asyncio.wait_for(bot.run(_settings(db_path)), 5.0)
    assert seen == [(len(load_migrations()), instance_id())]
    lease = await _lease(db_path)
    assert lease is not None and lease.released


# 4 ---------------------------------------------------------------------------------------

async def test_an_engine_that_lost_the_lease_stops_its_jobs_for_good(tmp_path: Path) -> None:
    """LeaseLost is terminal in the engine: a job that meets it ends, and nothing goes on
    polling WaveSpeed (or downloading clips, asking Discord) for a process that may no
    longer act."""
    async with FakeWaveSpeed(processing_after=0.0) as fake:
        h = Harness(tmp_path, fake, FAST_LIMITS)
        await h.open()
        try:
            assert (await LeaseStore(h.db).acquire("A", 60)).acquired
            h.db.fence_with("engine", "A")
            await h.grant(1, 500)
            fake.queue_tasks(TaskBehaviour.never())
            job = await h.create(1)
            await h.wait_state(job.id, JobState.RUNNING)
            # Another process takes the lease over (A's renewals were late, say).
            other = await Database.open(h.db.path)
            try:
                async with other.transaction() as conn:
                    await conn.execute("UPDATE instance_lease SET holder = 'B'")
            finally:
                await other.close()
            [submission] = fake.submissions
            before = len(fake.requests)
            fake.finish_task(submission.task_id)  # the next R -> D transition: LeaseLost
            await asyncio.sleep(2.5)
            polls = [r for r in fake.requests[before:] if r.path.endswith("/result")]
            # One poll finds the task done and meets LeaseLost; nothing should follow it.
            assert len(polls) <= 1, (
                f"{len(polls)} result polls in the 2.5 s after the lease was lost")
        finally:
            await h.close()


# 5 ---------------------------------------------------------------------------------------

async def test_a_holder_past_its_own_deadline_writes_nothing(
    two: tuple[Database, Database],
) -> None:
    """Paused up to its deadline (start of its last renewal + ttl - margin), the holder may
    no longer act: the fence refuses its writes at once, although its row still names it
    and no standby has taken over yet - and whatever the wall clock says."""
    db_a, _ = two
    paused = Monotonic()
    lost: list[str] = []
    leader = Leadership(LeaseStore(db_a), "A", 2.0, on_lost=lost.append, monotonic=paused)
    assert await leader.wait_for_lease() is not None
    await BotState(db_a).set("k", "in time")
    paused.offset = leader.ttl - leader.margin  # woke up just at its deadline
    with pytest.raises(LeaseLost, match="no longer holds it by its own deadline"):
        await BotState(db_a).set("k", "late")
    lease = await LeaseStore(db_a).current()
    assert lease is not None and lease.holder == "A"  # the holder column alone would allow
    assert await BotState(db_a).get("k") == "in time"
    await asyncio.sleep(leader.renew_interval + 0.2)  # the heartbeat wakes and gives up
    assert lost == [f"no renewal of the instance lease succeeded for "
                    f"{leader.ttl - leader.margin:.1f}s"]
    assert await leader.release()  # the row is given back: a standby need not wait


# 6 ---------------------------------------------------------------------------------------

async def test_losing_the_lease_stops_the_engine_within_the_margin(tmp_path: Path) -> None:
    """on_lost fires `margin` seconds (2 s at the default 10 s) before a standby may take
    over. The urgent close it leads to (engine.close(urgent=True)) does not wait for the
    dispatcher's step or give a slow submit POST in flight its shutdown grace."""
    margin = Leadership(LeaseStore.__new__(LeaseStore), "A", 10.0, on_lost=_never_lost).margin
    async with FakeWaveSpeed(processing_after=0.0) as fake:
        limits = dataclasses.replace(FAST_LIMITS, shutdown_grace=3.0)  # default: 10
        h = Harness(tmp_path, fake, limits)
        h.request_timeout = 30.0
        await h.open()
        try:
            await h.grant(1, 500)
            fake.inject("submit", Fault.delay(20.0))  # a slow POST is in flight at the loss
            await h.create(1)
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            await h.engine.close(urgent=True)
            took = time.monotonic() - t0
            print(f"urgent engine close with a submit in flight: {took:.3f}s")
            assert took < min(margin, 0.5), f"engine.close(urgent=True) took {took:.1f}s"
        finally:
            await h.close()


class SpyEngine:
    """An engine whose graceful close waits for submits in flight (forever here)."""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.graceful_cut_short = False

    async def close(self, *, urgent: bool = False) -> None:
        self.calls.append(urgent)
        if urgent:
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.graceful_cut_short = True
            raise


class Part:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        if self.fails:
            raise RuntimeError("status board task had crashed")


def _bot(db: Database, db_path: Path, *, engine: Any = None, board: Any = None,
         balance: Any = None) -> Ref2VideoBot:
    client = Ref2VideoBot(_settings(db_path), db, wavespeed=None)  # type: ignore[arg-type]
    client.services = SimpleNamespace(  # type: ignore[assignment]
        engine=engine or SpyEngine(), board=board or Part(), balance=balance or Part(),
        costs=Part())
    return client


async def test_a_lost_lease_closes_the_bot_urgently_and_a_signal_gracefully(
    db: Database, db_path: Path,
) -> None:
    """SIGTERM closes gracefully (submits in flight are answered); a loss of the lease
    closes urgently - also when it comes during a graceful close, which it cuts short, and
    when it comes before the bot was attached."""
    engine = SpyEngine()
    client = _bot(db, db_path, engine=engine)
    stopper = _Stopper()
    stopper.attach(client)
    stopper.stop()  # SIGTERM
    await asyncio.sleep(0.1)
    assert engine.calls == [False] and not client.is_closed()  # waiting for the grace
    t0 = time.monotonic()
    stopper.stop(urgent=True)  # meanwhile the lease is lost
    await asyncio.wait_for(stopper.closed(), 1.0)
    assert time.monotonic() - t0 < 0.5
    assert engine.calls == [False, True] and engine.graceful_cut_short
    assert client.is_closed()

    early = SpyEngine()
    stopper = _Stopper()
    stopper.stop(urgent=True)  # lost while the bot was being built
    client = _bot(db, db_path, engine=early)
    stopper.attach(client)
    await asyncio.wait_for(stopper.closed(), 1.0)
    assert early.calls == [True] and client.is_closed()


# 7 ---------------------------------------------------------------------------------------

async def test_every_part_and_the_discord_client_are_closed_when_one_close_fails(
    db: Database, db_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A board whose task had crashed re-raises from its close. The balance watch after it
    is still closed, and so is the Discord client (so bot.start() returns and run() goes on
    to release the lease); the failure is logged and raised once everything is closed. A
    second close (discord.py's own) joins the first instead of closing the parts again."""
    engine, board, balance = SpyEngine(), Part(fails=True), Part()
    client = _bot(db, db_path, engine=engine, board=board, balance=balance)
    with pytest.raises(RuntimeError, match="status board task had crashed"):
        await client.close(urgent=True)
    assert client.is_closed(), "the Discord client stays open when a part's close raises"
    assert engine.calls == [True] and board.closed and balance.closed
    assert any("closing the status board failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError):
        await client.close()
    assert engine.calls == [True]


async def test_run_releases_the_lease_when_closing_fails(
    db_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def bot_fails_to_close(settings: Settings, db: Database, stopper: _Stopper) -> None:
        raise RuntimeError("closing the status board failed")

    monkeypatch.setattr(bot, "_run_bot", bot_fails_to_close)
    with pytest.raises(RuntimeError, match="status board"):
        await bot.run(_settings(db_path))
    lease = await _lease(db_path)
    assert lease is not None and lease.holder == instance_id() and lease.released


def test_after_a_loss_main_exits_3_and_releases_the_lease_even_if_closing_failed(
    db_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Renewals fail (a locked database): the holder gives up at its deadline, closes
    urgently, and although that close raised, run() still releases the row (still its
    own) and main() exits with 3 so a supervisor restarts it as a standby."""
    settings = _settings(db_path)
    monkeypatch.setattr(bot, "load_settings", lambda: settings)
    monkeypatch.setattr(discord.utils, "setup_logging", lambda **kw: None)
    monkeypatch.setattr(bot, "install_log_redaction", lambda secrets: None)

    async def locked(self: LeaseStore, holder: str, ttl: float) -> str | None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(LeaseStore, "renew_or_holder", locked)
    seen: dict[str, bool] = {}

    async def bot_runs(settings: Settings, db: Database, stopper: _Stopper) -> None:
        await stopper.requested.wait()  # the loss stops it
        seen["urgent"] = stopper.urgent
        raise RuntimeError("closing the status board failed")

    monkeypatch.setattr(bot, "_run_bot", bot_runs)
    t0 = time.monotonic()
    assert bot.main() == bot.EXIT_LEASE_LOST
    print(f"main() exited {time.monotonic() - t0:.2f}s after start (deadline 1.5s)")
    assert seen == {"urgent": True}
    lease = asyncio.run(_lease(db_path))
    assert lease is not None and lease.holder == instance_id() and lease.released

