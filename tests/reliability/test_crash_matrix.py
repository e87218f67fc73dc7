"""The crash matrix (issue 13): the real `bot.py`, as a child process against the Discord
emulator and the fake WaveSpeed, is killed with SIGKILL at one point of a job's life, then
started again on the same database. Then, for every point and every WaveSpeed outcome:

- the member ends with exactly one clip and one charge, or no clip and a full refund (or,
  killed before anything was reserved, with nothing at all);
- the ledger adds up (`storage.credits.audit`), and the job's rows are exactly
  reserve+capture or reserve+release;
- no job's task is submitted twice; a task WaveSpeed created whose reply was lost (or whose
  id was not yet stored) is adopted from the history, not re-sent, and one that was never
  created is refunded after the history search (the adoption rules);
- a failure is told to the member in the job's thread or channel.

The kill points are `fault_hooks.POINTS` (the bot honours REF2VIDEO_TEST_CRASH_AT only in
tests), plus `uploading`: the emulator itself kills the bot the moment it has stored the clip's
message, before the bot reads Discord's reply - a post that happened but was never answered.
A seed picks the crash's delay after its point (0-40 ms: the loop runs on meanwhile), the
fake's timing, and whether a second member's job runs at the same time (odd seeds), so the
kill also lands while another job is elsewhere in its life and two lost submits can share a
window (then both are refunded and flagged: matching by time alone cannot tell them apart).
CI runs each (point, outcome) pair once, seed 0 or 1 in turn; `--soak` runs every pair over
20 seeds."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import fault_hooks
from discord_emulator.emulator import Channel, DiscordEmulator, Guild, Member, MessageRecord, Perm
from storage.credits import CreditStore, audit
from storage.database import Database
from storage.guild_settings import GuildSettingsStore
from tests.bot_world import BotProcess, ledger_kinds, world_settings
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import wait_for
from tests.media import make_mp4
from tests.reliability.scale import SOAK, record, size

START_CREDITS = 1000
PRICE = 100  # 720p, 5 s: the default price table
MP4 = make_mp4(seconds=2.5)

# Where each WaveSpeed outcome lets a job pass. ("uploading" is the emulator's kill.)
ON_THE_WAY = ("acknowledged", "reserved", "submitting")
OUTCOME_POINTS: dict[str, tuple[str, ...]] = {
    # The task completes: delivered once and charged once, whatever was killed.
    "completes": (*ON_THE_WAY, "submit_answered", "task_recorded", "polled", "completed",
                  "downloaded", "uploading", "posted", "captured"),
    # The task fails at WaveSpeed: refunded once, told once.
    "fails": (*ON_THE_WAY, "submit_answered", "task_recorded", "polled", "released"),
    # WaveSpeed creates the task but its reply is lost (a 502 from its gateway): the job
    # checks the history and adopts the task, then delivers it.
    "reply_lost": (*ON_THE_WAY, "checking", "task_recorded", "polled", "completed",
                   "downloaded", "uploading", "posted", "captured"),
}
# A job started by a Confirm press (the server asks members to confirm the price).
BUTTON_POINTS = ("confirm_acknowledged", "reserved", "task_recorded")
SEEDS = size(ci=1, soak=20)
COMMAND = "scripts/run-tests tests/reliability/test_crash_matrix.py"


@dataclass(frozen=True)
class Case:
    via: str      # "command" or "button"
    outcome: str  # a key of OUTCOME_POINTS
    point: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.via}-{self.outcome}-{self.point}-seed{self.seed}"


def cases() -> list[Case]:
    pairs = [("command", outcome, point) for outcome, points in OUTCOME_POINTS.items()
             for point in points]
    pairs += [("button", outcome, point) for outcome in ("completes", "fails")
              for point in BUTTON_POINTS]
    if SOAK:
        return [Case(*pair, seed) for pair in pairs for seed in range(SEEDS)]
    # One seed per pair; alternating, so CI sees both one and two jobs in flight.
    return [Case(*pair, n % 2) for n, pair in enumerate(pairs)]


@dataclass
class Tally:
    """What the matrix did, for the figures row."""

    runs: int = 0
    kills: int = 0
    delivered: int = 0
    refunded: int = 0
    nothing: int = 0
    adopted: int = 0
    ambiguous: int = 0
    two_jobs: int = 0


TALLY = Tally()
CASES = cases()


@dataclass
class World:
    emu: DiscordEmulator
    wavespeed: FakeWaveSpeed
    guild: Guild
    channel: Channel
    admin: Member
    members: list[Member]
    db_path: Path


async def _prepare(tmp_path: Path, emu: DiscordEmulator, ws: FakeWaveSpeed,
                   button: bool, jobs: int) -> World:
    guild = emu.add_guild("Clip Club")
    channel = guild.add_text_channel("clips")
    admin = guild.add_member(None, "mod", permissions=Perm.ALL)
    members = [guild.add_member(None, name) for name in ("alice", "bob")[:jobs]]
    path = tmp_path / "bot.sqlite3"
    db = await Database.open(path)
    try:  # set up before the bot starts: the crash run's only commands are those under test
        for member in members:
            await CreditStore(db).grant(guild.id, member.id, START_CREDITS, actor_id=admin.id)
        if button:
            await GuildSettingsStore(db).set_confirm_cost(guild.id, True, actor=admin.id)
    finally:
        await db.close()
    return World(emu, ws, guild, channel, admin, members, path)


async def _started(proc: BotProcess) -> None:
    async def probe() -> bool:
        return "engine started" in proc.log_text()

    await wait_for(probe, within=40.0)


def _kill_on_clip(emu: DiscordEmulator, proc: BotProcess) -> Callable[[], None]:
    """The `uploading` point: SIGKILL the bot from inside the emulator's request handler, the
    moment the clip's message is stored and before Discord's answer goes back."""

    def listener(what: str) -> None:
        if what != "MESSAGE_CREATE" or proc.proc is None or proc.proc.returncode is not None:
            return
        if emu.messages and emu.messages[-1].attachments:
            os.kill(proc.proc.pid, signal.SIGKILL)

    return emu.on_change(listener)


def _all_ended(rows: list[dict[str, Any]]) -> bool:
    return all(r["state"] in ("delivered", "failed", "cancelled") for r in rows)


async def _crashed(proc: BotProcess, path: Path) -> int:
    """The exit status of the crashed process. The crash point must be reached: every pair
    in the matrix is one a job passes, so jobs all ending with the process alive fail."""
    assert proc.proc is not None
    settled_since: float | None = None
    loop = asyncio.get_running_loop()
    while proc.proc.returncode is None:
        try:
            return await asyncio.wait_for(proc.proc.wait(), timeout=0.2)
        except TimeoutError:
            pass
        rows = await _job_rows(path)
        if rows and _all_ended(rows):
            settled_since = settled_since or loop.time()
            assert loop.time() - settled_since < 5.0, "the crash point was never reached"
        else:
            settled_since = None
    return proc.proc.returncode


def _prompt(member: Member) -> str:
    return f"a cat surfing, for {member.name}"


async def _start_job(w: World, case: Case, member: Member) -> None:
    """Run /ref2video (and press Confirm for a button case) without waiting for answers the
    crash may swallow."""
    video = w.emu.add_attachment("ref.mp4", MP4, "video/mp4")
    rec = await w.emu.invoke("ref2video", user=member, channel=w.channel,
                             options={"prompt": _prompt(member), "video": video})
    if case.via != "button":
        return
    offer = await rec.wait_response(within=30.0)
    [confirm] = [c["custom_id"] for row in offer.components for c in row["components"]
                 if c.get("custom_id", "").startswith("r2v:confirm:")]
    await w.emu.click(offer, confirm, user=member)


async def _job_rows(path: Path) -> list[dict[str, Any]]:
    db = await Database.open(path)
    try:
        async with db.reading() as conn, conn.execute(
                "SELECT id, user_id, state, failure_code, lost_outcome, task_id, "
                "needs_reconciliation FROM jobs") as cur:
            return [dict(zip(("id", "user_id", "state", "failure_code", "lost_outcome",
                              "task_id", "reconcile"), r, strict=True))
                    for r in await cur.fetchall()]
    finally:
        await db.close()


async def _settled(path: Path) -> list[dict[str, Any]]:
    """Every job's row once all are delivered or failed (and its money settled)."""
    async def probe() -> tuple[list[dict[str, Any]]] | None:
        rows = await _job_rows(path)  # (rows,): truthy even when there is no job
        return (rows,) if _all_ended(rows) else None

    settled: tuple[list[dict[str, Any]]] = await wait_for(probe, within=60.0)
    return settled[0]


def _clips(emu: DiscordEmulator) -> list[MessageRecord]:
    return [m for m in emu.messages if m.attachments and not m.deleted
            and not m.ephemeral and m.attachments[0].data[4:8] == b"ftyp"]


async def _check(w: World, case: Case, rows: list[dict[str, Any]]) -> list[str]:
    """Every promise of the matrix for one run; the end each member came to."""
    db = await Database.open(w.db_path)
    try:
        assert await audit(db) == []
        balances = {m.id: await CreditStore(db).balance(w.guild.id, m.id) for m in w.members}
        kinds = {r["id"]: await ledger_kinds(db, r["id"]) for r in rows}
    finally:
        await db.close()
    tasks: dict[int, list[str]] = {m.id: [] for m in w.members}  # the tasks each one created
    for sub in w.wavespeed.submissions:
        [member] = [m for m in w.members if sub.body.get("prompt") == _prompt(m)]
        tasks[member.id].append(sub.task_id)
    clips = _clips(w.emu)
    delivered = [r for r in rows if r["state"] == "delivered"]
    assert len(clips) == len(delivered), f"{len(clips)} clips for {len(delivered)} deliveries"
    ends = []
    for member in w.members:
        balance = balances[member.id]
        mine = [r for r in rows if r["user_id"] == member.id]
        assert len(tasks[member.id]) <= len(mine) <= 1, "a job's task was submitted twice"
        assert balance.held == 0
        if not mine:
            # Killed before this member's reservation committed (at an acknowledgement, or
            # while the other member's job passed its point): nothing held, nothing sent.
            assert case.point in ("acknowledged", "confirm_acknowledged") or len(
                w.members) == 2, case
            assert balance.available == START_CREDITS
            ends.append("nothing")
            continue
        [job] = mine
        if job["state"] == "delivered":
            assert kinds[job["id"]] == ["reserve", "capture"]
            assert balance.available == START_CREDITS - PRICE
            assert case.outcome != "fails"
            assert [job["task_id"]] == tasks[member.id]  # its own task, adopted or recorded
            ends.append("delivered")
            continue
        assert job["state"] == "failed", job
        assert kinds[job["id"]] == ["reserve", "release"]
        assert balance.available == START_CREDITS
        if job["failure_code"] == "generation_failed":
            assert case.outcome == "fails" and tasks[member.id] == [job["task_id"]], job
        else:
            # A lost submit refunded. Adoption rules: a task it did create is refunded only
            # when another lost submit's window also holds it (ambiguous), and flagged; with
            # no task at all, the history search found none (or only contested ones).
            assert job["failure_code"] == "submit_outcome_unknown", job
            assert job["reconcile"], job
            if tasks[member.id]:
                assert job["lost_outcome"] == "ambiguous" and len(w.members) == 2, job
                ends.append("ambiguous")
            else:
                assert job["lost_outcome"] in ("not_found", "ambiguous"), job
        # The failure notice: "<@member> job #N failed: ... were refunded." (It is posted
        # just after the refund commits.)
        notice = f"<@{member.id}> job #{job['id']} failed"
        await w.emu.wait_for(lambda n=notice: any(  # type: ignore[misc]
            n in str(m.content) for m in w.emu.messages), within=15.0)
        told = [m for m in w.emu.messages if not m.ephemeral and not m.deleted
                and notice in str(m.content)
                and "refunded" in str(m.content)]
        assert len(told) == 1, f"{member.name} was told of the refund {len(told)} times"
        ends.append("refunded")
    return ends


async def run_case(tmp_path: Path, case: Case) -> None:
    rnd = random.Random(case.name)
    delay_ms = rnd.choice((0, 0, rnd.randint(1, 40)))
    # A lost reply's task must still be running when the search adopts it (about 1 s
    # with fast timings), or the points after adoption are never passed.
    complete_after = rnd.uniform(0.3, 0.8) + (1.5 if case.outcome == "reply_lost" else 0)
    jobs = 1 if case.via == "button" else 1 + case.seed % 2
    async with DiscordEmulator() as emu, FakeWaveSpeed(
            processing_after=0.01, complete_after=complete_after) as ws:
        w = await _prepare(tmp_path, emu, ws, case.via == "button", jobs)
        if case.outcome == "fails":
            ws.queue_tasks(*[TaskBehaviour.fail("the model could not render this")] * jobs)
        elif case.outcome == "reply_lost":
            # One lost reply: with two jobs, the other's recorded task is ruled out by
            # elimination (two lost at once would both be refunded as ambiguous, and the
            # points after adoption never reached).
            ws.inject("submit", Fault.status_after_create(502))
        settings = world_settings(tmp_path, emu, ws)
        env = {fault_hooks.TIMING_ENV: "fast", "LOG_LEVEL": "INFO"}
        crash = {} if case.point == "uploading" else {  # that one the emulator does
            fault_hooks.CRASH_ENV: f"{case.point}:1:{delay_ms}"}
        first = BotProcess(settings, tmp_path, "first", extra_env={**env, **crash})
        second = BotProcess(settings, tmp_path, "second", extra_env=env)
        remove = _kill_on_clip(emu, first) if case.point == "uploading" else None
        try:
            await first.start()
            await _started(first)
            await asyncio.gather(*(_start_job(w, case, m) for m in w.members))
            code = await _crashed(first, w.db_path)
            assert code == -signal.SIGKILL, (code, first.log_text()[-3000:])
            if remove is not None:
                remove()
            await second.start()
            await _started(second)
            rows = await _settled(w.db_path)
            ends = await _check(w, case, rows)
        except BaseException as exc:
            # Also beside the logs: a long soak's summary comes only at its end.
            (tmp_path / "failure.txt").write_text(f"{case.name}: {exc!r}\n")
            print(f"crash matrix case {case.name} failed; logs in {tmp_path}")
            print("--- first ---\n" + first.log_text()[-4000:])
            print("--- second ---\n" + second.log_text()[-4000:])
            raise
        finally:
            await first.stop()
            await second.stop()
        assert emu.internal_errors == []
    TALLY.runs += 1
    TALLY.kills += 1
    TALLY.two_jobs += jobs == 2
    for end in ends:
        setattr(TALLY, end, getattr(TALLY, end) + 1)
    TALLY.adopted += sum(r["lost_outcome"] == "adopted" for r in rows)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_killed_and_restarted_the_money_and_the_clip_come_out_right(
        tmp_path: Path, case: Case) -> None:
    await asyncio.wait_for(run_case(tmp_path, case), timeout=180)


def test_the_matrix_figures() -> None:
    """Runs last in this file: one figures row for the cases this run ran (pytest runs a
    module's tests in order; a failed case fails the run, so every case counted passed)."""
    if TALLY.runs == 0:
        pytest.skip("no case of the matrix ran")
    record("crash matrix", f"bot.py SIGKILLed at {len({c.point for c in CASES})} points "
           f"x 3 WaveSpeed outcomes (+ Confirm presses) x {SEEDS} seed(s), restarted on the "
           "same database" + ("" if TALLY.runs == len(CASES) else
                              f" (a part: {TALLY.runs} of {len(CASES)} cases)"),
           TALLY.kills, 0,
           command=COMMAND + (" --soak" if SOAK else ""),
           detail=f"{TALLY.two_jobs} runs with two jobs in flight; jobs: {TALLY.delivered} "
                  f"delivered once and charged once, {TALLY.refunded} refunded in full "
                  f"({TALLY.ambiguous} of them ambiguous lost submits, flagged), "
                  f"{TALLY.nothing} killed before any reservation; {TALLY.adopted} lost "
                  "submits adopted")
