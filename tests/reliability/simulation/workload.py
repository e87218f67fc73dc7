"""One seeded run: a workload plan, the bot's parts on the virtual clock, faults, restarts,
and the checks of the money and clip promises at checkpoints and at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from engine.engine import EngineLimits, JobEngine
from money.prices import PriceTable
from storage.credits import CreditStore, InsufficientCreditsError, audit
from storage.database import Database
from storage.jobs import AlreadyStarted, Job, JobLimitError, JobState, JobStore
from tests.reliability.simulation import loop as vloop
from tests.reliability.simulation.world import (
    EPOCH,
    Faults,
    SimDatabase,
    SimDelivery,
    SimWaveSpeed,
    Trace,
    open_sim_database,
)
from wavespeed.models import GenerationRequest

GUILD = 1000
CHANNEL = 5
HEAL_DEADLINE = 8 * 3600.0   # virtual seconds after healing by which every job must end
CHECK_EVERY = 5              # workload actions between checkpoints
RESTARTS = ("crash", "stop", "lease_lost")
CLOSE_BOUND = 600.0          # virtual seconds a clean close may take (it needs ~15)

LIMITS = EngineLimits(
    max_running=2, submits_per_window=2, submit_window_seconds=60.0, user_max_active_jobs=3,
    poll_interval=5.0, job_timeout=1200.0, output_max_bytes=10_000, max_submit_attempts=4,
    requeue_delay=10.0, delivery_attempts=3, retry_delay=2.0, resume_delay=5.0,
    shutdown_grace=10.0, watch_interval=600.0, watch_scan=15.0, watch_period=3 * 3600.0,
    notify_give_up=3600.0, store_retry_max=30.0, submit_max_seconds=71.0,
    lost_give_up=3600.0,
)


# ---- the plan: a pure function of the seed ------------------------------------------------


@dataclass(frozen=True)
class Action:
    at: float          # virtual seconds since the start
    kind: str          # grant, revoke, create, duplicate, cancel, or one of RESTARTS
    user: int = 0
    amount: int = 0
    pick: int = 0      # which earlier press a duplicate or cancel refers to
    size: str = "1280*720"
    duration: int = 5
    downtime: float = 0.0


@dataclass(frozen=True)
class Plan:
    seed: int
    users: tuple[int, ...]
    intensity: float
    db_faults: bool
    outage: tuple[float, float] | None
    nsfw_charge: bool
    actions: tuple[Action, ...]

    def summary(self) -> str:
        kinds = Counter(a.kind for a in self.actions)
        return (f"{len(self.users)} users, {len(self.actions)} actions {dict(kinds)}, fault "
                f"intensity {self.intensity:.2f}, db faults {self.db_faults}, outage "
                f"{self.outage}, nsfw charged {self.nsfw_charge}")


def make_plan(seed: int) -> Plan:
    rng = random.Random(f"plan:{seed}")
    users = tuple(2000 + i for i in range(rng.randint(1, 5)))
    intensity = rng.choice([0.0, 0.5, 1.0, 1.0, 2.0, 3.0])
    outage = None
    if rng.random() < 0.3:
        begin = rng.uniform(0.0, 1800.0)
        outage = (begin, begin + rng.uniform(30.0, 900.0))
    actions: list[Action] = [Action(0.0, "grant", user=u, amount=rng.randint(100, 700))
                             for u in users]
    at = 1.0
    for _ in range(rng.randint(8, 30)):
        at += rng.expovariate(1 / 45.0)
        r = rng.random()
        user = rng.choice(users)
        if r < 0.55:
            actions.append(Action(at, "create", user=user,
                                  size=rng.choice(["1280*720", "1920*1080"]),
                                  duration=rng.choice([5, 10])))
        elif r < 0.65:
            actions.append(Action(at, "grant", user=user, amount=rng.randint(50, 500)))
        elif r < 0.70:
            actions.append(Action(at, "revoke", user=user, amount=rng.randint(10, 300)))
        elif r < 0.78:
            actions.append(Action(at, "cancel", pick=rng.randint(0, 1_000)))
        elif r < 0.83:
            actions.append(Action(at, "duplicate", pick=rng.randint(0, 1_000)))
        elif r < 0.92:
            actions.append(Action(at, "crash", downtime=rng.uniform(5.0, 300.0)))
        elif r < 0.97:
            actions.append(Action(at, "stop", downtime=rng.uniform(5.0, 300.0)))
        else:  # the instance lease lost: close(urgent=True), another process takes over
            actions.append(Action(at, "lease_lost", downtime=rng.uniform(5.0, 60.0)))
    return Plan(seed, users, intensity, rng.random() < 0.6, outage, rng.random() < 0.5,
                tuple(actions))


# ---- the bot's parts ------------------------------------------------------------------------


class Bot:
    """One "process": a database connection, the stores and the engine on one file."""

    def __init__(self, path: Path, workdir: Path, client: SimWaveSpeed, delivery: SimDelivery,
                 faults: Faults) -> None:
        self.path = path
        self.workdir = workdir
        self.client = client
        self.delivery = delivery
        self.faults = faults
        self.db: SimDatabase
        self.jobs: JobStore
        self.credits: CreditStore
        self.engine: JobEngine

    @staticmethod
    def clock() -> float:
        return EPOCH + asyncio.get_running_loop().time()

    @staticmethod
    def monotonic() -> float:
        return asyncio.get_running_loop().time()

    async def open(self, trace: Trace) -> None:
        """Start like a process would, crash-looping through database errors at start."""
        while True:
            self.db = await open_sim_database(self.path, self.faults)
            self.jobs = JobStore(self.db, clock=self.clock)
            self.credits = CreditStore(self.db, clock=self.clock)
            self.engine = JobEngine(self.jobs, self.client, self.delivery, PriceTable(),
                                    LIMITS, self.workdir, clock=self.clock,
                                    monotonic=self.monotonic)
            try:
                await self.engine.start()
                return
            except (sqlite3.Error, OSError) as exc:
                trace(f"bot start failed ({exc}); starting again in 5s")
                await self.crash()
                await asyncio.sleep(5.0)

    async def crash(self) -> None:
        """Kill the process: every task of the bot is cancelled where it stands (in
        creation order, for a deterministic trace), nothing more runs, the file is closed.
        An open transaction is rolled back, as SQLite does for a dead process."""
        me = asyncio.current_task()
        while True:
            victims = sorted((t for t in asyncio.all_tasks() if t is not me and not t.done()),
                             key=lambda t: t.seq if isinstance(t, vloop.SeqTask) else 0)
            if not victims:
                break
            for task in victims:
                task.cancel()
            # Again until all are gone: on Python 3.11 asyncio.wait_for swallows a cancel
            # that arrives as its inner wait completes, and the task runs on. A dead
            # process runs on for nobody.
            await asyncio.wait(victims, timeout=1.0)
        await self.engine.close(urgent=True)  # only forgets the (finished) tasks
        await self.db.close()

    async def stop(self, *, urgent: bool = False) -> str | None:
        """A clean stop (a deploy), or with `urgent` the stop after losing the instance
        lease: the engine's own close, then the file. Returns a problem if close() hung
        (then the process is killed, as an operator would)."""
        try:
            await asyncio.wait_for(self.engine.close(urgent=urgent), CLOSE_BOUND)
        except TimeoutError:
            await self.crash()
            return (f"engine.close(urgent={urgent}) did not return within {CLOSE_BOUND:.0f}s"
                    " (virtual)")
        await self.db.close()
        return None


# ---- one run ------------------------------------------------------------------------------


@dataclass
class Outcome:
    seed: int
    plan: Plan
    digest: str = ""
    jobs: int = 0
    restarts: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    virtual_seconds: float = 0.0
    thread_waits: int = 0
    endings: Counter[str] = field(default_factory=Counter)  # how the jobs ended
    problems: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        tail = "\n".join(self.trace[-60:])
        return (f"simulation seed {self.seed} FAILED: {self.plan.summary()}\n"
                + "\n".join(f"  - {p}" for p in self.problems[:30])
                + f"\nreplay: .venv/bin/python -m tests.reliability.simulation --seed "
                  f"{self.seed} --trace\n(or SIM_SEED={self.seed} pytest "
                  f"tests/reliability/test_simulation.py)\nlast trace events:\n{tail}")


@dataclass
class Model:
    """What the workload knows it did, from the answers it got."""

    granted: Counter[int] = field(default_factory=Counter)
    revoked: Counter[int] = field(default_factory=Counter)
    presses: dict[str, int] = field(default_factory=dict)   # start key -> job id
    refused_keys: set[str] = field(default_factory=set)


class Simulation:
    def __init__(self, plan: Plan, directory: Path) -> None:
        self.plan = plan
        self.directory = directory
        loop = asyncio.get_running_loop()
        self.trace = Trace(loop)
        self.faults = Faults(random.Random(f"faults:{plan.seed}"), plan.intensity,
                             plan.db_faults, plan.outage)
        self.client = SimWaveSpeed(loop, random.Random(f"wavespeed:{plan.seed}"),
                                   self.faults, self.trace)
        self.delivery = SimDelivery(loop, random.Random(f"discord:{plan.seed}"), self.faults,
                                    self.trace, nsfw_charge=plan.nsfw_charge)
        self.bot = Bot(directory / "bot.sqlite3", directory / "work", self.client,
                       self.delivery, self.faults)
        self.model = Model()
        self.outcome = Outcome(plan.seed, plan)
        self.checker: Database

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        await self.bot.open(self.trace)
        # The auditor's own connection: never faulted, outlives the bot's restarts.
        self.checker = await Database.open(self.bot.path, migrate=False)
        try:
            for number, action in enumerate(self.plan.actions, start=1):
                await asyncio.sleep(max(0.0, action.at - loop.time()))
                await self.act(action, number)
                if action.kind in RESTARTS or number % CHECK_EVERY == 0:
                    await self.checkpoint(final=False)
            self.faults.healed = True
            self.trace("healed: no more faults")
            await self.settle_down(loop.time() + HEAL_DEADLINE)
            await self.checkpoint(final=True)
            hung = await self.bot.stop()
            if hung:
                self.problem(hung)
            self.outcome.digest = await self.digest()
        finally:
            await self.checker.close()
        self.outcome.faults = self.faults.injected
        self.outcome.jobs = len(self.model.presses)
        self.outcome.virtual_seconds = loop.time()
        self.outcome.trace = self.trace.events
        return self.outcome

    async def act(self, action: Action, number: int) -> None:
        bot, model, trace = self.bot, self.model, self.trace
        key = f"press-{number}"
        presses = list(model.presses)
        try:
            if action.kind == "grant":
                await bot.credits.grant(GUILD, action.user, action.amount, actor_id=1)
                model.granted[action.user] += action.amount
            elif action.kind == "revoke":
                try:
                    await bot.credits.revoke(GUILD, action.user, action.amount, actor_id=1)
                    model.revoked[action.user] += action.amount
                except InsufficientCreditsError:
                    trace(f"revoke {action.amount} from {action.user}: too little")
                    return
            elif action.kind == "create":
                request = GenerationRequest(
                    videos=("https://cdn.sim/ref.mp4",), prompt=f"sim job {number}",
                    size=action.size, duration=action.duration)
                try:
                    job = await bot.engine.create_job(
                        guild_id=GUILD, channel_id=CHANNEL, user_id=action.user,
                        request=request, start_key=key)
                except (InsufficientCreditsError, JobLimitError) as exc:
                    model.refused_keys.add(key)
                    trace(f"create {key} for {action.user} refused: {type(exc).__name__}")
                    return
                model.presses[key] = job.id
                trace(f"create {key} -> job {job.id} price {job.price}")
            elif action.kind == "duplicate" and presses:
                again = presses[action.pick % len(presses)]
                try:
                    job = await bot.engine.create_job(
                        guild_id=GUILD, channel_id=CHANNEL, user_id=self.plan.users[0],
                        request=GenerationRequest(videos=("https://cdn.sim/ref.mp4",),
                                                  prompt="a retried interaction"),
                        start_key=again)
                except AlreadyStarted as started:
                    if started.job.id != model.presses[again]:
                        self.problem(f"{again} pressed again named job {started.job.id}, "
                                     f"not {model.presses[again]}")
                    return
                except (InsufficientCreditsError, JobLimitError):
                    self.problem(f"{again} pressed again was judged as a new job")
                    return
                self.problem(f"{again} pressed again started a second job {job.id}")
            elif action.kind == "cancel" and presses:
                job_id = model.presses[presses[action.pick % len(presses)]]
                cancelled = await bot.engine.cancel(job_id)
                trace(f"cancel job {job_id} -> {'cancelled' if cancelled else 'too late'}")
            elif action.kind in RESTARTS:
                trace(f"{action.kind}; down for {action.downtime:.1f}s")
                if action.kind == "crash":
                    await bot.crash()
                else:
                    hung = await bot.stop(urgent=action.kind == "lease_lost")
                    if hung:
                        self.problem(hung)
                self.outcome.restarts += 1
                await asyncio.sleep(action.downtime)
                await bot.open(trace)
                trace("bot started again")
        except sqlite3.Error as exc:
            # The command failed as a whole; the checkpoints prove nothing of it stayed.
            trace(f"{action.kind} {key} failed: {exc}")

    def problem(self, text: str) -> None:
        self.outcome.problems.append(f"t={asyncio.get_running_loop().time():.1f}: {text}")
        self.trace(f"PROBLEM {text}")

    async def settle_down(self, deadline: float) -> None:
        """After healing: wait (virtually) until every job has ended and every owner of a
        failed or cancelled job has been told."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            jobs = await self.all_jobs()
            told = set(self.delivery.finished)
            if all(j.state.is_terminal for j in jobs) and all(
                    j.id in told for j in jobs if j.state is not JobState.DELIVERED):
                return
            await asyncio.sleep(60.0)

    # ---- checks ---------------------------------------------------------------------------

    async def all_jobs(self) -> list[Job]:
        store = JobStore(self.checker)
        async with self.checker.reading() as conn, conn.execute(
                "SELECT id FROM jobs ORDER BY id") as cur:
            ids = [row[0] for row in await cur.fetchall()]
        jobs = [await store.get(i) for i in ids]
        return [j for j in jobs if j is not None]

    async def checkpoint(self, *, final: bool) -> None:
        db, problem = self.checker, self.problem
        for issue in await audit(db):
            problem(f"audit: {issue}")
        async with db.reading() as conn:
            async with conn.execute("SELECT user_id, balance, held FROM accounts") as cur:
                accounts = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
            async with conn.execute(
                    "SELECT job_id, kind FROM ledger WHERE job_id IS NOT NULL ORDER BY id"
            ) as cur:
                ledger: dict[int, list[str]] = {}
                for job_id, kind in await cur.fetchall():
                    ledger.setdefault(job_id, []).append(kind)
            async with conn.execute(
                    "SELECT job_id, COUNT(*) FROM reservations GROUP BY job_id") as cur:
                reservations = {r[0]: r[1] for r in await cur.fetchall()}
        jobs = await self.all_jobs()
        by_id = {j.id: j for j in jobs}

        # Every job is one the workload was told it started; nothing of a refused or failed
        # command stayed behind.
        if sorted(by_id) != sorted(self.model.presses.values()):
            problem(f"jobs in the database {sorted(by_id)} != jobs started "
                    f"{sorted(self.model.presses.values())}")
        for job in jobs:
            if job.start_key not in self.model.presses:
                problem(f"job {job.id} has start key {job.start_key} the workload never saw "
                        "succeed")

        # Money: no negative balance; balance = grants - revokes - captured - held.
        for user in self.plan.users:
            balance, held = accounts.get(user, (0, 0))
            if balance < 0 or held < 0:
                problem(f"user {user} balance {balance} held {held}")
            mine = [j for j in jobs if j.user_id == user]
            open_hold = sum(j.price for j in mine if not j.state.is_terminal)
            spent = sum(j.price for j in mine if j.state is JobState.DELIVERED)
            expected = self.model.granted[user] - self.model.revoked[user] - spent - open_hold
            if (balance, held) != (expected, open_hold):
                problem(f"user {user}: balance/held {(balance, held)}, expected "
                        f"{(expected, open_hold)}")

        posts: dict[int, list[bool]] = {}
        for post in self.delivery.posts:
            posts.setdefault(post.job_id, []).append(post.late)
        for job in jobs:
            kinds = ledger.get(job.id, [])
            if reservations.get(job.id, 0) != 1:
                problem(f"job {job.id} has {reservations.get(job.id, 0)} reservations")
            want = (["reserve", "capture"] if job.state is JobState.DELIVERED
                    else ["reserve", "release"] if job.state.is_terminal else ["reserve"])
            if kinds != want:
                problem(f"job {job.id} ({job.state}, {job.failure_code}): ledger {kinds}")
            lates = posts.get(job.id, [])
            if len(lates) > 1:
                problem(f"job {job.id}: its clip was posted {len(lates)} times")
            if job.state is JobState.DELIVERED:
                withheld = bool(job.delivery and "withheld" in job.delivery)
                if withheld == bool(lates) or any(lates):
                    problem(f"job {job.id} delivered (withheld={withheld}) with posts "
                            f"(late?) {lates}")
                for post in self.delivery.posts:
                    if post.job_id == job.id and post.url != f"https://cdn.sim/out/"\
                            f"{job.task_id}.mp4":
                        problem(f"job {job.id} (task {job.task_id}) posted {post.url}")
            elif job.state.is_terminal and not all(lates):
                problem(f"job {job.id} ({job.state}, {job.failure_code}) was refunded but "
                        "its clip was posted (not as a late, free clip)")
        self.check_submits(by_id, final=final)
        if final:
            for job in jobs:
                self.outcome.endings[f"{job.state}:{job.failure_code or '-'}"] += 1
                for extra in (job.lost_outcome, job.late_outcome):
                    if extra:
                        self.outcome.endings[extra] += 1
                if not job.state.is_terminal:
                    problem(f"job {job.id} still {job.state} {HEAL_DEADLINE:.0f}s after the "
                            "faults stopped")
                elif job.state is not JobState.DELIVERED and job.id not in \
                        self.delivery.finished:
                    problem(f"job {job.id} {job.state} ({job.failure_code}): owner never told")
        self.trace(f"checkpoint final={final}: {len(jobs)} jobs, "
                   f"{len(self.outcome.problems)} problems")

    def check_submits(self, jobs: dict[int, Job], *, final: bool) -> None:
        by_prompt = {j.request.prompt: j for j in jobs.values()}
        sent: dict[str, list[int]] = {}
        for index, record in enumerate(self.client.submits):
            sent.setdefault(record.prompt, []).append(index)
        for prompt, indexes in sent.items():
            job = by_prompt.get(prompt)
            if job is None:
                self.problem(f"WaveSpeed got a submit for {prompt!r}, which no job has")
                continue
            records = [self.client.submits[i] for i in indexes]
            # Only a POST WaveSpeed refused unprocessed may be followed by another (judged
            # by what the fake did, not by what its error claimed).
            for earlier in records[:-1]:
                if not earlier.refused:
                    self.problem(f"job {job.id} was submitted again after a submit that was "
                                 f"processed ({earlier.error or 'answered'}, task "
                                 f"{earlier.task_id})")
            if job.task_id is not None:
                task = self.client.tasks.get(job.task_id)
                if task is None or task.prompt != prompt:
                    self.problem(f"job {job.id} ({prompt!r}) holds task {job.task_id} made "
                                 f"for {task.prompt if task else 'nothing'!r}")
            if final:
                for record in records:
                    if record.task_id is not None and record.task_id in self.client.tasks \
                            and job.task_id != record.task_id and not job.needs_reconciliation:
                        self.problem(f"job {job.id} ({job.state}, {job.failure_code}) "
                                     f"created task {record.task_id} but neither holds it "
                                     "nor is flagged for reconciliation")

    async def digest(self) -> str:
        """The trace plus the final rows, so a replay must match in outcome and timing."""
        rows: list[str] = []
        async with self.checker.reading() as conn:
            for table in ("jobs", "ledger", "job_events"):
                async with conn.execute(f"SELECT * FROM {table} ORDER BY id") as cur:  # noqa: S608
                    rows.extend(f"{table} {tuple(row)}" for row in await cur.fetchall())
        return self.trace.digest(rows)


async def _simulate(plan: Plan, directory: Path) -> Outcome:
    sim = Simulation(plan, directory)
    loop = asyncio.get_running_loop()
    assert isinstance(loop, vloop.VirtualTimeLoop)
    try:
        outcome = await sim.run()
    except (Exception, asyncio.CancelledError) as exc:
        # A crash of the simulation itself, or a deadlock (the loop cancels this task), is
        # a failure of the seed.
        if loop.stuck:
            sim.outcome.problems.append("deadlock: nothing could ever run again; tasks:\n"
                                        + "\n".join(f"      {t}" for t in loop.stuck))
        else:
            sim.outcome.problems.append(f"the run raised {type(exc).__name__}: "
                                        f"{traceback.format_exc()}")
        sim.outcome.trace = sim.trace.events
        # aiosqlite's worker threads are not daemons: close every connection or the
        # interpreter cannot exit.
        with contextlib.suppress(Exception):
            await sim.bot.crash()
        outcome = sim.outcome
    outcome.thread_waits = loop.thread_waits
    return outcome


def _scratch() -> str | None:
    """Where the runs' SQLite files go: SIM_TMPDIR, else /dev/shm when it is a writable
    directory (a real file system in memory: a third faster, but fsync is then free, so
    durability on a power cut is not what this measures), else the system's temp dir."""
    chosen = os.environ.get("SIM_TMPDIR")
    if chosen:
        return chosen
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def run_seed(seed: int, directory: Path | None = None, *, keep: bool = False) -> Outcome:
    """Run one seed on a fresh virtual-time loop and SQLite file; the file is removed
    afterwards unless `keep` (or the run failed)."""
    plan = make_plan(seed)
    where = directory or Path(tempfile.mkdtemp(prefix=f"sim-{seed}-", dir=_scratch()))
    where.mkdir(parents=True, exist_ok=True)
    outcome: Outcome = vloop.run(_simulate(plan, where))
    if outcome.ok and not keep:
        shutil.rmtree(where, ignore_errors=True)
    return outcome
