"""The instance lease (storage/lease.py), the write fence (storage/database.py) and the
standby/heartbeat logic (engine/leadership.py), each process played by its own Database
connection on one file - or, for the race, by real processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.leadership import Leadership
from storage.bot_state import BotState
from storage.credits import CreditStore, audit
from storage.database import Database, LeaseLost
from storage.lease import LEASE_SCHEMA_VERSION, LeaseStore, gone_process, instance_id
from tests.conftest import ALICE, GUILD

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def two(db_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two connections on one file, as two processes would have."""
    a = await Database.open(db_path)
    b = await Database.open(db_path)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _ledger_rows(db: Database) -> int:
    async with db.reading() as conn, conn.execute("SELECT COUNT(*) FROM ledger") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


# --- LeaseStore -----------------------------------------------------------------------


async def test_a_live_row_is_taken_only_as_judged_or_once_released(
    two: tuple[Database, Database],
) -> None:
    """No clock decides: another holder's row is taken only if it is still exactly the row
    the standby judged dead (compare-and-swap on holder and renewed_at), or released."""
    clock = Clock()
    a, b = (LeaseStore(db, clock=clock) for db in two)
    t0 = clock.now
    first = await a.acquire("A", 10)
    assert first.acquired and first.previous is None
    assert (first.current.holder, first.current.expires_at) == ("A", t0 + 10)

    clock.now = t0 + 3600  # far past expires_at: it is only shown, never compared
    refused = await b.acquire("B", 10)
    assert not refused.acquired
    assert (refused.current.holder, refused.current.expires_at) == ("A", t0 + 10)
    lease = await b.current()
    assert lease == first.current  # a refused attempt changed nothing

    judged = lease
    assert await a.renew("A", 10)  # A renews after B judged its row dead: A wins
    stale = await b.acquire("B", 10, judged=judged)
    assert not stale.acquired and stale.current.holder == "A"
    assert stale.current.renewed_at != judged.renewed_at

    taken = await b.acquire("B", 10, judged=stale.current)  # still exactly the judged row
    assert taken.acquired and taken.current.holder == "B"
    assert taken.previous == stale.current and not taken.previous.released
    assert not await a.renew("A", 10)  # A learns it lost the lease
    assert await a.renew_or_holder("A", 10) == "B"  # and from whom, in the same transaction
    assert not await a.release("A")  # and cannot give away B's
    assert not (await a.acquire("A", 10)).acquired
    assert not (await a.acquire("A", 10, judged=judged)).acquired  # an old judgement: no

    clock.now = t0 + 3601
    assert await b.release("B")  # a clean stop: free at once
    released = await a.current()
    assert released is not None and released.released and released.holder == "B"
    again = await a.acquire("A", 10)
    assert again.acquired and again.previous is not None
    assert again.previous.holder == "B" and again.previous.released


async def test_every_renewal_changes_renewed_at_even_if_the_clock_repeats(
    two: tuple[Database, Database],
) -> None:
    """A standby watches renewed_at for a change, so a renewal must make one - and never
    back to an earlier value - even when the wall clock stands still or steps back."""
    clock = Clock()  # never advances
    a, b = (LeaseStore(db, clock=clock) for db in two)
    assert (await a.acquire("A", 10)).acquired
    seen = []
    for _ in range(3):
        row = await b.current()
        assert row is not None
        seen.append(row.renewed_at)
        assert await a.renew("A", 10)
        assert not (await b.acquire("B", 10, judged=row)).acquired
    assert seen == sorted(set(seen)) and len(seen) == 3
    clock.now -= 3600  # stepped back an hour
    assert await a.renew("A", 10)
    row = await b.current()
    assert row is not None and row.renewed_at > seen[-1]
    seen.append(row.renewed_at)
    assert not await b.renew("B", 10)  # renewing is not taking
    assert await b.renew_or_holder("B", 10) == "A"
    # Acquiring a lease one already holds renews it and keeps its acquired_at.
    mine = await a.acquire("A", 10)
    assert mine.acquired and mine.previous is None
    assert mine.current.acquired_at == clock.now + 3600
    assert mine.current.renewed_at > seen[-1]
    async with two[1].transaction() as conn:
        await conn.execute("DELETE FROM instance_lease")
    assert await a.renew_or_holder("A", 10) == "(none)"


def test_gone_process_only_for_a_dead_pid_on_this_host() -> None:
    import os
    import socket
    import subprocess

    host = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: its pid names no process now
    assert gone_process(f"{host}:{child.pid}:abcdef") == child.pid
    assert gone_process(f"{host}:{os.getpid()}:abcdef") is None  # alive
    assert gone_process(f"{host}:1:abcdef") is None  # init: alive (or not ours: alive too)
    assert gone_process(f"other-{host}:{child.pid}:abcdef") is None  # another host: unknown
    for unreadable in ("A", f"{host}:x:abcdef", f"{host}:0:abcdef", f"{host}:-1:abcdef",
                       f"{host}:{child.pid}"):
        assert gone_process(unreadable) is None, unreadable
    assert gone_process(instance_id()) is None


async def test_concurrent_acquires_from_two_connections_one_wins(
    two: tuple[Database, Database],
) -> None:
    a, b = two
    for round_ in range(30):
        name = f"race-{round_}"
        results = await asyncio.gather(LeaseStore(a, name).acquire("A", 60),
                                       LeaseStore(b, name).acquire("B", 60))
        winners = [r.current.holder for r in results if r.acquired]
        assert len(winners) == 1, results
        # The loser was told who won.
        assert {r.current.holder for r in results} == set(winners)


RACER = """
import asyncio, json, sys, time
from pathlib import Path
from storage.database import Database
from storage.lease import LeaseStore, instance_id

async def main() -> None:
    db = await Database.open(Path(sys.argv[1]))
    try:
        time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all start at once
        status = await LeaseStore(db).acquire(instance_id(), 60)
        print(json.dumps({"me": instance_id(), "won": status.acquired,
                          "holder": status.current.holder}))
    finally:
        await db.close()

asyncio.run(main())
"""


async def test_processes_started_at_once_one_wins(db_path: Path) -> None:
    db = await Database.open(db_path)  # the schema exists before the race
    await db.close()
    start_at = time.time() + 1.2
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", RACER, str(db_path), str(start_at), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE) for _ in range(4)]
    outputs = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0
        outputs.append(json.loads(out))
    winners = [o["me"] for o in outputs if o["won"]]
    assert len(winners) == 1, outputs
    assert all(o["holder"] == winners[0] for o in outputs)
    assert len({o["me"] for o in outputs}) == 4  # holder ids differ per process


def test_holder_ids_name_the_host_and_process_and_stay_the_same() -> None:
    import os
    import socket

    me = instance_id()
    host, pid, suffix = me.rsplit(":", 2)
    assert host == socket.gethostname() and pid == str(os.getpid()) and len(suffix) == 6
    assert instance_id() == me


# --- The fence ---------------------------------------------------------------------------


async def test_a_fenced_database_writes_nothing_once_another_holder_took_over(
    two: tuple[Database, Database], db_path: Path,
) -> None:
    clock = Clock()
    db_a, db_b = two
    a, b = LeaseStore(db_a, clock=clock), LeaseStore(db_b, clock=clock)
    assert (await a.acquire("A", 10)).acquired
    db_a.fence_with(a.name, "A")
    credits_a = CreditStore(db_a)
    await credits_a.grant(GUILD, ALICE, 100, actor_id=None)  # still ours: writes go through
    await BotState(db_a).set("k", "a1")

    assert (await b.acquire("B", 10, judged=await b.current())).acquired  # A was too slow
    rows = await _ledger_rows(db_b)
    with pytest.raises(LeaseLost, match="no longer held by A"):
        await credits_a.grant(GUILD, ALICE, 50, actor_id=None)
    with pytest.raises(LeaseLost):
        await BotState(db_a).set("k", "a2")
    with pytest.raises(LeaseLost):  # nothing of a transaction runs, however it starts
        async with db_a.transaction() as conn:
            await conn.execute("UPDATE accounts SET balance = 0")
    assert await BotState(db_b).get("k") == "a1"
    assert await _ledger_rows(db_b) == rows
    assert (await CreditStore(db_b).balance(GUILD, ALICE)).available == 100
    assert await audit(db_b) == []
    # Reads are not fenced, and the connection is not left inside a transaction.
    assert await BotState(db_a).get("k") == "a1"
    assert (await CreditStore(db_b).grant(GUILD, ALICE, 5, actor_id=None)).delta_balance == 5
    # A database opened without a fence (the ops CLI) writes whoever holds the lease.
    ops = await Database.open(db_path)
    try:
        await BotState(ops).set("ops", "yes")
    finally:
        await ops.close()
    assert await BotState(db_b).get("ops") == "yes"


async def test_the_fence_also_holds_when_the_lease_row_is_gone(
    two: tuple[Database, Database],
) -> None:
    db_a, db_b = two
    assert (await LeaseStore(db_a).acquire("A", 10)).acquired
    db_a.fence_with("engine", "A")
    async with db_b.transaction() as conn:
        await conn.execute("DELETE FROM instance_lease")
    with pytest.raises(LeaseLost, match="now: nobody"):
        await BotState(db_a).set("k", "v")
    assert await BotState(db_b).get("k") is None


async def test_the_fence_asks_the_holder_first_and_the_lease_rows_are_not_fenced(
    two: tuple[Database, Database],
) -> None:
    db_a, db_b = two
    a, b = LeaseStore(db_a), LeaseStore(db_b)
    assert (await a.acquire("A", 10)).acquired
    holds = True
    db_a.fence_with("engine", "A", lambda: holds)
    await BotState(db_a).set("k", "v1")
    holds = False  # past its own deadline: the row still names A, but A may not act
    with pytest.raises(LeaseLost, match="no longer holds it by its own deadline"):
        await BotState(db_a).set("k", "v2")
    lease = await b.current()
    assert await BotState(db_b).get("k") == "v1" and lease is not None and lease.holder == "A"
    # The lease's own writes carry their holder condition instead: a release after a loss
    # still gives the row back.
    assert await a.release("A")
    assert (await b.acquire("B", 10)).acquired
    holds = True  # believing it still holds is not enough: the row decides next
    with pytest.raises(LeaseLost, match="now: B"):
        await BotState(db_a).set("k", "v3")
    assert await BotState(db_b).get("k") == "v1"


async def test_open_without_migrating_leaves_the_schema_for_migrate(
    db_path: Path, tmp_path: Path,
) -> None:
    import shutil

    from storage.database import MIGRATIONS_DIR, MigrationError, load_migrations

    old = tmp_path / "old"
    old.mkdir()
    for number, path in load_migrations():
        if number < LEASE_SCHEMA_VERSION:
            shutil.copy(path, old / path.name)
    await (await Database.open(db_path, migrations_dir=old)).close()  # a pre-lease file
    db = await Database.open(db_path, migrate=False)
    try:
        assert await db.schema_version() == LEASE_SCHEMA_VERSION - 1
        assert await db.pending_migrations() == len(load_migrations()) - LEASE_SCHEMA_VERSION + 1
        assert not await LeaseStore(db).ready()
        await db.migrate()
        assert await db.schema_version() == len(load_migrations())
        assert await db.pending_migrations() == 0 and await LeaseStore(db).ready()
    finally:
        await db.close()
    again = await Database.open(db_path)  # the default still migrates (ops, tests)
    await again.close()

    newer = tmp_path / "newer"
    shutil.copytree(MIGRATIONS_DIR, newer)
    (newer / f"{len(load_migrations()) + 1:04d}_extra.sql").write_text(
        "CREATE TABLE extra (x INTEGER);\n", encoding="utf-8")
    db = await Database.open(db_path, migrate=False, migrations_dir=newer)
    try:
        assert (await LeaseStore(db).acquire("A", 10)).acquired
        db.fence_with("engine", "A", lambda: False)  # the lease was lost meanwhile
        with pytest.raises(LeaseLost):
            await db.migrate()  # the migration is a fenced write like any other
        assert await db.schema_version() == len(load_migrations())
    finally:
        await db.close()
    db = await Database.open(db_path, migrations_dir=newer)
    await db.close()
    current = await Database.open(db_path, migrate=False)  # this code, a newer file
    try:
        with pytest.raises(MigrationError, match="newer than this code knows"):
            await current.pending_migrations()
    finally:
        await current.close()


async def test_a_transaction_cancelled_while_begin_waits_leaves_no_transaction_open(
    two: tuple[Database, Database],
) -> None:
    """The heartbeat gives up on a renewal stuck behind another process's write lock by
    cancelling it; the BEGIN still completes in aiosqlite's thread and must be rolled back,
    or every later transaction of this process fails."""
    db_a, db_b = two
    assert (await LeaseStore(db_a).acquire("A", 10)).acquired
    holding = asyncio.Event()

    async def hold_the_write_lock() -> None:  # another process, busy for half a second
        async with db_b.transaction():
            holding.set()
            await asyncio.sleep(0.5)

    holder = asyncio.create_task(hold_the_write_lock())
    await holding.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(LeaseStore(db_a).renew("A", 10), 0.2)
    await holder
    assert await LeaseStore(db_a).renew("A", 10)  # the connection is usable again
    await BotState(db_a).set("k", "v")
    assert await BotState(db_b).get("k") == "v"


# --- Leadership ------------------------------------------------------------------------


class Losses:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.at: list[float] = []
        self.event = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.at.append(time.monotonic())
        self.event.set()


async def test_on_lost_when_another_holder_took_the_lease(
    two: tuple[Database, Database],
) -> None:
    db_a, db_b = two
    lost = Losses()
    leader = Leadership(LeaseStore(db_a), "A", 1.5, on_lost=lost)
    assert (await leader.wait_for_lease()) is not None
    await BotState(db_a).set("k", "mine")  # fenced and ours
    async with db_b.transaction() as conn:  # B took over (A's renewals were late, say)
        await conn.execute("UPDATE instance_lease SET holder = 'B'")
    t0 = time.monotonic()
    await asyncio.wait_for(lost.event.wait(), 3.0)
    assert time.monotonic() - t0 <= leader.renew_interval + 0.5  # at the next renewal
    assert lost.reasons == ["instance B took the instance lease over"]
    assert leader.lost == lost.reasons[0] and not leader.held
    with pytest.raises(LeaseLost):
        await BotState(db_a).set("k", "late")
    assert await BotState(db_b).get("k") == "mine"
    assert not await leader.release()  # B's lease is left alone
    lease = await LeaseStore(db_b).current()
    assert lease is not None and lease.holder == "B" and not lease.released


@pytest.mark.parametrize("failure", ["error", "hang"])
async def test_on_lost_before_expiry_when_renewals_keep_failing(
    two: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch, failure: str,
) -> None:
    """A database that stays locked (or a renewal that never returns) must make the holder
    stop before its lease can expire and a standby takes over."""
    db_a, _ = two
    store = LeaseStore(db_a)
    lost = Losses()
    leader = Leadership(store, "A", 2.0, on_lost=lost)
    assert leader.margin > 0 and leader.renew_interval < leader.ttl - leader.margin
    t0 = time.monotonic()
    status = await leader.wait_for_lease()
    assert status is not None
    expires_at = status.current.expires_at
    calls = 0

    async def broken(holder: str, ttl: float) -> str | None:
        nonlocal calls
        calls += 1
        if failure == "hang":
            await asyncio.Event().wait()
        raise sqlite3.OperationalError("database is locked")

    await BotState(db_a).set("k", "before")
    monkeypatch.setattr(store, "renew_or_holder", broken)
    await asyncio.wait_for(lost.event.wait(), 5.0)
    elapsed = lost.at[0] - t0
    assert leader.ttl - leader.margin - 0.05 <= elapsed < leader.ttl, elapsed
    assert time.time() < expires_at  # stopped while the lease still stood
    assert calls >= 1
    assert lost.reasons == ["no renewal of the instance lease succeeded for 1.5s"]
    monkeypatch.undo()
    assert not leader.holds()
    lease = await store.current()
    assert lease is not None and lease.holder == "A"  # the row still names A...
    with pytest.raises(LeaseLost, match="by its own deadline"):  # ...but A writes nothing
        await BotState(db_a).set("k", "after")
    assert await BotState(db_a).get("k") == "before"
    # Still ours in the database (nobody took it): released, so a standby need not wait.
    assert await leader.release()


async def test_renewals_keep_the_lease_and_a_standby_out(
    two: tuple[Database, Database], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.leadership")
    db_a, db_b = two
    lost = Losses()
    leader = Leadership(LeaseStore(db_a), "A", 2.0, on_lost=lost)
    assert await leader.wait_for_lease() is not None
    standby = Leadership(LeaseStore(db_b), "B", 2.0, on_lost=lost)
    stop = asyncio.Event()
    waiting = asyncio.create_task(standby.wait_for_lease(stop))
    await asyncio.sleep(2 * leader.ttl + 0.5)  # more than two lease lifetimes
    assert not waiting.done() and not lost.reasons
    lease = await LeaseStore(db_b).current()
    assert lease is not None and lease.holder == "A" and lease.expires_at > time.time()
    standby_lines = [r.getMessage() for r in caplog.records if "standby:" in r.getMessage()]
    assert len(standby_lines) == 1  # logged once, not at every check
    assert standby_lines[0].startswith("standby: instance A is active (lease until ")
    assert "waiting to take over" in standby_lines[0]
    stop.set()  # SIGTERM while standby
    assert await asyncio.wait_for(waiting, 2.0) is None
    assert await leader.release()


async def test_standby_takes_over_promptly_after_a_release(
    two: tuple[Database, Database], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="engine.leadership")
    db_a, db_b = two
    lost = Losses()
    active = Leadership(LeaseStore(db_a), "A", 10.0, on_lost=lost)
    assert await active.wait_for_lease() is not None
    standby = Leadership(LeaseStore(db_b), "B", 10.0, on_lost=lost)
    waiting = asyncio.create_task(standby.wait_for_lease())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    t0 = time.monotonic()
    assert await active.release()
    status = await asyncio.wait_for(waiting, 5.0)
    took = time.monotonic() - t0
    print(f"standby took over {took:.2f}s after the release (ttl 10s)")
    assert took < 1.5  # about the check interval, nowhere near the 10 s expiry
    assert status is not None and status.previous is not None
    assert status.previous.holder == "A" and status.previous.released
    assert any("took over from A, which released it" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith("released the lease") for r in caplog.records)
    await BotState(db_b).set("k", "b")  # the new holder writes; the old one no longer can
    with pytest.raises(LeaseLost):
        await BotState(db_a).set("k", "a")
    assert await BotState(db_b).get("k") == "b"
    assert not lost.reasons
    assert await standby.release()


async def test_standby_takes_over_when_the_holder_dies(
    two: tuple[Database, Database], caplog: pytest.LogCaptureFixture,
) -> None:
    """A holder the standby cannot check (another host, or an id it cannot read): taken
    over once its row has stayed unchanged for ttl seconds of the standby's clock."""
    caplog.set_level(logging.INFO, logger="engine.leadership")
    db_a, db_b = two
    ttl = 2.0
    # The holder took the lease and then died: nobody renews or releases it.
    acquired = await LeaseStore(db_a).acquire("A", ttl)
    assert acquired.acquired
    lost = Losses()
    standby = Leadership(LeaseStore(db_b), "B", ttl, on_lost=lost)
    status = await asyncio.wait_for(standby.wait_for_lease(), 3 * ttl)
    waited = time.time() - acquired.current.acquired_at
    print(f"standby took over {waited:.2f}s after the dead holder's last renewal (ttl {ttl}s)")
    assert ttl <= waited <= ttl + 1.0
    assert status is not None and status.previous is not None
    assert status.previous.holder == "A" and not status.previous.released
    assert any("took over from A, which stopped renewing it (no renewal seen for "
               in r.getMessage() for r in caplog.records)
    with pytest.raises(LeaseLost):  # had A been paused rather than dead: fenced
        db_a.fence_with("engine", "A")
        await BotState(db_a).set("k", "a")
    assert not lost.reasons
    assert await standby.release()


@pytest.mark.parametrize("alive", [False, True])
async def test_a_holder_on_this_host_is_taken_over_at_once_only_if_its_process_is_gone(
    two: tuple[Database, Database], caplog: pytest.LogCaptureFixture, alive: bool,
) -> None:
    """A crash and restart on one host need not wait: the holder's pid no longer exists,
    so nobody can renew its row. A live pid (a paused process, say) is waited for."""
    import socket

    caplog.set_level(logging.INFO, logger="engine.leadership")
    db_a, db_b = two
    ttl = 3.0
    if alive:
        pid = os.getpid()
    else:
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
        await child.wait()  # exited and reaped: its pid names no process now
        pid = child.pid
    dead = f"{socket.gethostname()}:{pid}:abcdef"
    assert (await LeaseStore(db_a).acquire(dead, ttl)).acquired  # then it died (or not)
    standby = Leadership(LeaseStore(db_b), "B", ttl, on_lost=Losses())
    t0 = time.monotonic()
    status = await asyncio.wait_for(standby.wait_for_lease(), 3 * ttl)
    took = time.monotonic() - t0
    print(f"holder's process {'alive' if alive else 'gone'}: taken over after {took:.2f}s "
          f"(ttl {ttl}s)")
    assert status is not None and status.previous is not None
    assert status.previous.holder == dead
    lines = [r.getMessage() for r in caplog.records if "took over from" in r.getMessage()]
    if alive:
        assert ttl <= took <= ttl + 1.0
        assert "no renewal seen for" in lines[0]
    else:
        assert took < 0.3  # the first read
        assert f"which stopped renewing it (its process {pid} on this host is gone)" in lines[0]
    assert await standby.release()


async def test_an_on_lost_that_raises_is_logged_and_the_loss_stands(
    two: tuple[Database, Database], caplog: pytest.LogCaptureFixture,
) -> None:
    db_a, db_b = two
    calls: list[str] = []

    def failing(reason: str) -> None:
        calls.append(reason)
        raise RuntimeError("the stopper broke")

    leader = Leadership(LeaseStore(db_a), "A", 1.5, on_lost=failing)
    assert await leader.wait_for_lease() is not None
    async with db_b.transaction() as conn:
        await conn.execute("UPDATE instance_lease SET holder = 'B'")
    for _ in range(300):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == ["instance B took the instance lease over"]
    assert leader.lost == calls[0] and not leader.holds()
    [record] = [r for r in caplog.records if "stopping after the loss" in r.getMessage()]
    assert record.exc_info is not None and "the stopper broke" in str(record.exc_info[1])
    assert not await leader.release()


def test_leadership_refuses_a_margin_that_leaves_no_renewal() -> None:
    store = LeaseStore.__new__(LeaseStore)
    with pytest.raises(ValueError, match="margin"):
        Leadership(store, "A", 3.0, on_lost=lambda reason: None, margin=2.0)
    with pytest.raises(ValueError, match="ttl"):
        Leadership(store, "A", 0.0, on_lost=lambda reason: None)
    leader = Leadership(store, "A", 10.0, on_lost=lambda reason: None)
    assert (leader.renew_interval, leader.margin, leader.check_interval) == (10 / 3, 2.0, 0.5)
