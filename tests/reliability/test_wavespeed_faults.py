"""The WaveSpeed fault matrix (issue 13): the whole bot (tests/e2e/scene.py: the real bot in
the test's loop, the Discord emulator, the fake WaveSpeed on 127.0.0.1, a SQLite file) runs
one /ref2video job while WaveSpeed misbehaves - 401 and 400 on submit, 429 storms with and
without Retry-After, 5xx bursts before and after the task was created and on result polls,
an outage longer than every retry budget, timeouts, dropped connections, malformed JSON,
unknown statuses, failed/cancelled/timeout/deleted tasks, a task deleted outright, one that
never finishes, an output that 404s, one far over every upload limit, and an output URL that
redirects into the private network - and each row must end as the code documents it
(engine/engine.py, engine/failures.py, wavespeed/client.py, discord_layer/discord_delivery.py):

- the job ends in the row's state with the row's failure_code (or delivered), and every
  fault the row injected was in fact served by the fake;
- the member is told: one clip post (a file, or WaveSpeed's link when it is too large) or
  one failure notice in the job's thread, naming what happened in plain words and saying
  "refunded", and the status message shows the same end;
- the money is right: the job's ledger is exactly reserve+capture or reserve+release,
  `storage.credits.audit` is clean, the balance is the grant less what was captured, and
  the fake recorded the number of submissions the row allows - never two tasks for a job.

Rows whose fault is the whole account's (an outage, a Retry-After pause) or whose outcome
depends on what else WaveSpeed made meanwhile (a lost submit searches the history) get a
scene each; all others run at once in one scene, each with its own member and job and its
faults aimed at its own requests (SimulatedWaveSpeed.inject_for).

In CI each row runs once (seed 0); `pytest --soak` runs each 10 times, the task's timing and
the fault's onset and details drawn from `random.Random(f"{row}:{seed}")`: a failure names
the seed that replays it (WAVESPEED_FAULTS_SEED=<seed> runs just that one).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import Member, MessageRecord
from simulator.wavespeed_api import ROUTES, Submission
from storage.credits import audit
from storage.jobs import Job
from tests.e2e.scene import Scene, open_scene
from tests.fakes.wavespeed import Fault, TaskBehaviour
from tests.harness import FAST_RETRY, wait_for
from tests.reliability import scale

SUITE = "WaveSpeed faults"
COMMAND = "scripts/run-tests tests/reliability/test_wavespeed_faults.py --soak"
GRANT = 500
PRICE = 100  # 720p, 5 s: the default price table
WITHIN = 30.0  # generous: two shared cores, other suites running
# The bot's fast test timing divides the engine's waits by 200 (a refused submit is requeued
# after 0.05 s, not 10 s; 5 attempts: 0.75 s of budget, 150 s live). So 3 s here is a
# 10-minute outage at production timing, four times the submit budget; and a 9 s job timeout
# here is the production 30 minutes.
OUTAGE = 3.0
SCALED_JOB_TIMEOUT = 9.0
# Private addresses an output may be redirected to: cloud metadata, RFC 1918, loopback (a
# port of 127.0.0.1 that is not the fake's), and loopback as an IPv4-mapped IPv6 address.
PRIVATE = ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/internal",
           "http://127.0.0.1:1/secret", "https://[::ffff:127.0.0.1]/x")
LATE = 2.3  # seconds: past the world's client timeouts (2 s), as short as that allows
UPLOAD_ROUTES = frozenset({"upload", "upload_ticket", "upload_put"})


@dataclass
class Run:
    """One run of a row: the scene, its seeded random generator, the member whose job it is,
    and what the row injected."""

    s: Scene
    rng: random.Random
    member: Member
    prompt: str
    job_id: int = 0
    thread_id: int = 0
    injected: int = 0
    targets: set[str] = field(default_factory=set)

    def inject(self, route: str, target: str, *faults: Fault) -> None:
        """Faults for this job's requests only: `target` is its prompt (submit) or its task
        id (result, output), so rows sharing a scene cannot take each other's faults."""
        self.s.wavespeed.inject_for(route, target, *faults)
        self.injected += len(faults)
        self.targets.add(target)

    def served(self) -> int:
        return sum(1 for _, _, t in self.s.wavespeed.faults_served if t in self.targets)

    async def job(self) -> Job:
        job = await self.s.world.services.jobs.get(self.job_id)
        assert job is not None
        return job

    async def task(self) -> str:
        """The id of this job's task, once the job is running."""
        job = await self.s.world.wait_job_state(self.job_id, "running", within=WITHIN)
        assert job.task_id is not None
        return str(job.task_id)

    async def pause(self, most: float = 0.3) -> None:
        """A seeded onset: how far into the job's run the fault begins."""
        await asyncio.sleep(self.rng.uniform(0.0, most))

    def answered(self, suffix: str, status: int) -> int:
        return sum(1 for r in self.s.wavespeed.requests_to(suffix) if r.status == status)

    def thread_messages(self) -> list[MessageRecord]:
        """What the bot posted in this job's thread."""
        return self.s.emu.channel_messages(self.thread_id)

    def submissions(self) -> list[Submission]:
        return [x for x in self.s.wavespeed.submissions if x.body.get("prompt") == self.prompt]


Hook = Callable[[Run], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    id: str
    what: str                         # the fault, as the figures table names it
    outcome: str                      # "delivered", or the job's failure_code
    told: tuple[str, ...] = ()        # words the member reads in the notice (or clip post)
    tasks: int = 1                    # submissions the fake records: 0 or 1, never 2
    behaviour: Callable[[random.Random], TaskBehaviour] | None = None  # default: ok, seeded
    before: Hook | None = None        # before /ref2video
    during: Hook | None = None        # once the job exists
    check: Hook | None = None         # the row's own outcome checks, after the common ones
    settings: Mapping[str, Any] = field(default_factory=dict)
    attached: bool = True             # delivered as a file, else as WaveSpeed's link
    lost_outcome: str | None = None   # what the search for a lost submit found, if one was

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


def ok(rng: random.Random) -> TaskBehaviour:
    return TaskBehaviour.ok(complete_after=rng.uniform(0.05, 0.4))


def held(rng: random.Random) -> TaskBehaviour:
    """A task that runs until the row finishes it (SimulatedWaveSpeed.finish_task), so a
    fault injected meanwhile must be served before the bot can see the task complete."""
    return TaskBehaviour.never()


def on_submit(*faults: Fault) -> Hook:
    async def hook(run: Run) -> None:
        run.inject("submit", run.prompt, *faults)
    return hook


def while_running(route: str, make: Callable[[random.Random], list[Fault]]) -> Hook:
    """Inject `make(rng)` on `route` at a seeded point of a held task's run, then let the
    task finish at another: the poll (or download) after it must get through the faults."""
    async def hook(run: Run) -> None:
        task_id = await run.task()
        await run.pause()
        run.inject(route, task_id, *make(run.rng))
        await run.pause()
        run.s.wavespeed.finish_task(task_id)
    return hook


def requeued(times: int) -> Hook:
    """Refused unprocessed (400, 401, 429, 503): requeued `times` (the refusal that ends the
    job is not counted), never treated as a lost submit. Each refusal was one POST: with
    the faults served and one task at most, no further POST was sent."""
    async def check(run: Run) -> None:
        job = await run.job()
        assert (job.lost_outcome, job.submit_attempts) == (None, times)
    return check


def storm(run: Run, ci: int, soak: tuple[int, int]) -> int:
    """How many faults in a row: `ci` in CI (each Retry-After storm costs whole seconds),
    seeded within `soak` in the soak run."""
    return run.rng.randint(*soak) if scale.SOAK else ci


async def submit_429s_with_retry_after(run: Run) -> None:
    run.inject("submit", run.prompt, *[Fault.status(429, "rate limited", retry_after=1.0)]
               * storm(run, 2, (2, 4)))


async def retry_after_honoured(run: Run) -> None:
    """Each retry came no sooner than the Retry-After: 1 of the 429 before it."""
    times = [r.at for r in run.s.wavespeed.requests_to("/reference-to-video")]
    assert len(times) == run.injected + 1 and run.answered("/reference-to-video", 429) == (
        run.injected)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.95, gaps  # a lower bound: load can only make it longer
    await requeued(run.injected)(run)


async def flagged(run: Run) -> None:
    assert (await run.job()).needs_reconciliation  # for the operator: a task may exist


# ---- the outage ------------------------------------------------------------------------------

async def outage_at_submit(run: Run) -> None:
    """Declared for a real 10 minutes (everything but uploads, so the command gets its job
    made); the job must end, refunded, inside it. Ended by `outage_ends` below."""
    run.s.wavespeed.outage(600.0, routes=ROUTES - UPLOAD_ROUTES)


async def outage_ends(run: Run) -> None:
    run.s.wavespeed.outage(0)
    assert run.answered("/reference-to-video", 503) == 5  # max_submit_attempts, then refunded


async def outage_while_running(run: Run) -> None:
    task_id = await run.task()
    await run.pause()
    run.s.wavespeed.outage(OUTAGE)  # every route, the output host too; ends by itself
    await run.pause(OUTAGE)
    run.s.wavespeed.finish_task(task_id)  # done at WaveSpeed while the bot cannot see it


async def polled_through_outage(run: Run) -> None:
    # More failed polls than the client's retries allow in one go: the engine itself kept
    # polling, and no failed poll led to a refund or a timeout.
    assert run.answered("/result", 503) > FAST_RETRY.attempts


# ---- a task that never finishes --------------------------------------------------------------

async def late_clip_posted_free(run: Run) -> None:
    """The documented end of a timeout: refunded, flagged, watched; when the task does finish
    later its clip is posted in the thread, free (the money checks run after this)."""
    await flagged(run)
    job = await run.job()
    assert job.task_id is not None and job.watch_until is not None
    run.s.wavespeed.finish_task(job.task_id)
    late = await run.s.emu.wait_for(lambda: [
        m for m in run.thread_messages() if "finished after all" in m.content], within=WITHIN)
    assert len(late) == 1 and "free of charge" in late[0].content
    assert late[0].attachments and late[0].attachments[0].data == run.s.wavespeed.static_output
    done = await wait_for(lambda: _late_outcome(run), WITHIN)
    assert done == "delivered"


async def _late_outcome(run: Run) -> str | None:
    return (await run.job()).late_outcome


async def unknown_status_seen(run: Run) -> None:
    task_id = await run.task()
    # Polled several times while the task reported a status the contract does not name.
    await run.s.emu.wait_for(lambda: len(run.s.wavespeed.requests_to(f"/{task_id}/result"))
                             >= 3, within=WITHIN)
    await run.pause()
    run.s.wavespeed.finish_task(task_id)


def waiting_as_unknown(rng: random.Random) -> TaskBehaviour:
    return TaskBehaviour.never().waiting_as(rng.choice(
        ["queued", "pending", "paused", "waiting_for_gpu", "PROCESSING_V2"]))


ROWS: tuple[Row, ...] = (
    # -- the submit POST ------------------------------------------------------------------
    Row("submit-401", "401 on submit (the API key refused)", "service_auth",
        told=("account is not working",), tasks=0,
        before=on_submit(Fault.status(401, "Unauthorized: invalid API key")),
        check=requeued(0)),
    Row("submit-400", "400 on submit (input refused, with WaveSpeed's message)",
        "rejected_input", told=("WaveSpeed refused the request", "prompt: flagged by the "
                                "content moderation system"), tasks=0,
        before=on_submit(Fault.status(400, "prompt: flagged by the content moderation system")),
        check=requeued(0)),
    Row("submit-429-retry-after", "429 storm on submit with Retry-After: 1 (2 in a row; "
        "2-4 in the soak)", "delivered", before=submit_429s_with_retry_after,
        check=retry_after_honoured),
    Row("submit-429", "429 storm on submit without Retry-After, within the requeue budget "
        "(4 in a row)", "delivered",
        before=on_submit(*[Fault.status(429, "rate limited")] * 4),
        check=requeued(4)),
    Row("submit-429-outlasting", "429 storm on submit outlasting the requeue budget "
        "(5 in a row)", "service_unavailable", told=("stayed busy or unreachable",), tasks=0,
        before=on_submit(*[Fault.status(429, "rate limited")] * 5),
        check=requeued(4)),
    Row("submit-503", "503 burst on submit, refused unprocessed (3 in a row)", "delivered",
        before=on_submit(*[Fault.status(503, "service unavailable")] * 3),
        check=requeued(3)),
    Row("submit-5xx-no-task", "5xx on submit before any task was made (500/502/504: the task "
        "may exist): history searched, none found", "submit_outcome_unknown",
        told=("could not be found in WaveSpeed's list of tasks",), tasks=0,
        lost_outcome="not_found",
        before=lambda run: on_submit(Fault.status(run.rng.choice((500, 502, 504))))(run),
        check=flagged),
    Row("submit-5xx-after-create", "5xx on submit after the task was made (500/502/504): the "
        "task adopted from history", "delivered", lost_outcome="adopted",
        before=lambda run: on_submit(
            Fault.status_after_create(run.rng.choice((500, 502, 504))))(run)),
    Row("submit-timeout", "submit reply later than the client's timeout (task made)",
        "delivered", lost_outcome="adopted", before=on_submit(Fault.delay(LATE))),
    Row("submit-dropped", "connection dropped after the submit was processed", "delivered",
        lost_outcome="adopted", before=on_submit(Fault.drop())),
    Row("submit-malformed", "malformed JSON in the submit reply (task made)", "delivered",
        lost_outcome="adopted", before=on_submit(Fault.malformed())),
    # -- polling the result ---------------------------------------------------------------
    Row("result-5xx", "5xx on result polls, transient (3, within the client's retries)",
        "delivered", behaviour=held, during=while_running("result", lambda rng: [
            Fault.status(rng.choice((500, 502, 504))) for _ in range(3)])),
    Row("result-503-burst", "503 burst on result polls past the client's retries (12)",
        "delivered", behaviour=held,
        during=while_running("result", lambda rng: [Fault.status(503)] * 12)),
    Row("result-429-retry-after", "429 on result polls with Retry-After: 1 (1; 1-3 in the "
        "soak)", "delivered", behaviour=held, during=while_running("result", lambda rng: [
            Fault.status(429, "rate limited", retry_after=1.0)] * (
                rng.randint(1, 3) if scale.SOAK else 1))),
    Row("result-429", "429 storm on result polls without Retry-After (8)", "delivered",
        behaviour=held,
        during=while_running("result", lambda rng: [Fault.status(429, "rate limited")] * 8)),
    Row("result-timeout", "result poll answered later than the client's timeout", "delivered",
        behaviour=held, during=while_running("result", lambda rng: [Fault.delay(LATE)])),
    Row("result-dropped", "connections dropped on result polls (2)", "delivered",
        behaviour=held, during=while_running("result", lambda rng: [Fault.drop()] * 2)),
    Row("result-malformed", "malformed JSON in result replies (2)", "delivered",
        behaviour=held, during=while_running("result", lambda rng: [Fault.malformed()] * 2)),
    Row("result-unknown-status", "unknown task status while running (queued, pending, ...), "
        "then completed", "delivered", behaviour=waiting_as_unknown,
        during=unknown_status_seen),
    # -- an outage ------------------------------------------------------------------------
    Row("outage-at-submit", "10-minute outage while the job is submitted (it ends inside it)",
        "service_unavailable", told=("stayed busy or unreachable",), tasks=0,
        before=outage_at_submit, check=outage_ends),
    Row("outage-while-running", "10-minute outage (scaled) while the task runs; it finishes "
        "during the outage", "delivered", behaviour=held, during=outage_while_running,
        check=polled_through_outage, settings={"job_timeout_seconds": SCALED_JOB_TIMEOUT}),
    # -- how tasks end --------------------------------------------------------------------
    Row("task-failed", "task failed, with WaveSpeed's error", "generation_failed",
        told=("could not generate the clip", "the model ran out of GPU memory"),
        behaviour=lambda rng: TaskBehaviour.fail("the model ran out of GPU memory",
                                                 complete_after=rng.uniform(0.05, 0.4))),
    *(Row(f"task-{status}", f"task ended '{status}' (no error text)", "generation_failed",
          told=(f"could not generate the clip: {status}",),
          behaviour=lambda rng, status=status: TaskBehaviour.fail(  # type: ignore[misc]
              "", status=status, complete_after=rng.uniform(0.05, 0.4)))
      for status in ("cancelled", "timeout", "deleted")),
    Row("task-gone", "task deleted at WaveSpeed (its result a 404)", "task_missing",
        told=("lost track of the job",),
        behaviour=lambda rng: TaskBehaviour.gone(complete_after=rng.uniform(0.05, 0.4))),
    Row("task-never-finishes", "task never finishes: the job timeout (1 s here), then it "
        "finishes late", "timeout", told=("was not ready within", "posted here, free"),
        behaviour=held, settings={"job_timeout_seconds": 1.0}, check=late_clip_posted_free),
    # -- the output -----------------------------------------------------------------------
    Row("output-404", "output URL answers 404", "output_missing",
        told=("could no longer be downloaded",),
        behaviour=lambda rng: TaskBehaviour.output_missing(
            complete_after=rng.uniform(0.05, 0.4))),
    # Two: aiohttp itself resends an idempotent GET once when its connection drops, so only
    # the second drop reaches the client's own retries.
    Row("output-dropped", "output download dropped twice (retried)", "delivered",
        behaviour=held, during=while_running("output", lambda rng: [Fault.drop()] * 2)),
    Row("output-over-discord", "output of 11 MiB, over Discord's 10 MiB upload limit",
        "delivered", told=("upload limit", "here is WaveSpeed's link"), attached=False,
        behaviour=lambda rng: TaskBehaviour.huge(11 * 1024 * 1024)),
    Row("output-far-too-large", "output of 4 GiB, over OUTPUT_MAX_BYTES and every upload "
        "limit (refused by its Content-Length)", "delivered",
        told=("upload limit", "here is WaveSpeed's link"), attached=False,
        behaviour=lambda rng: TaskBehaviour.huge(4 * 1024 ** 3)),
    Row("output-private-redirect", "output URL redirecting to a private address (metadata, "
        "10/8, loopback, mapped loopback)", "output_refused", told=("a private address",),
        behaviour=held, during=while_running("output", lambda rng: [
            Fault.redirect(rng.choice(PRIVATE), code=rng.choice((301, 302, 307)))])),
)


async def ask(s: Scene, member: Member, prompt: str, turns: asyncio.Semaphore) -> MessageRecord:
    """/ref2video as `member`; its private answer. Scene.generate with this suite's generous
    wait, and a few at a time: the bot checks references three at a time, and rows sharing
    a scene ask at once. (How fast it acknowledges is the concurrency suite's subject.)"""
    async with turns:
        rec = await s.emu.invoke("ref2video", user=member, channel=s.channel,
                                 options={"prompt": prompt, "video": s.video()})
        return await rec.wait_response(within=WITHIN)


async def run_row(row: Row, s: Scene, seed: int, member: Member,
                  plans: dict[str, TaskBehaviour], turns: asyncio.Semaphore) -> None:
    """One row, as `member`; the fake's planner gives its task the row's behaviour (by the
    prompt, so rows sharing a scene cannot swap tasks)."""
    prompt = f"a fox on a skateboard [{row.id}]"  # bracketed: no row's is in another's
    run = Run(s, random.Random(f"{row.id}:{seed}"), member, prompt)
    await s.grant(member, GRANT)
    plans[prompt] = (row.behaviour or ok)(run.rng)
    if row.before is not None:
        await row.before(run)
    reply = await ask(s, member, prompt, turns)
    queued = re.search(r"Job #(\d+) is queued", reply.content)
    assert queued is not None, reply.content
    run.job_id = int(queued[1])
    run.thread_id = (await run.job()).thread_id or 0
    assert run.thread_id, "no thread for the job"
    if row.during is not None:
        await row.during(run)
    job = await s.world.wait_job_state(run.job_id, "delivered", "failed", "cancelled",
                                       within=WITHIN)
    assert (job.state.value, job.failure_code) == (
        ("delivered", None) if row.delivered else ("failed", row.outcome))
    assert job.lost_outcome == row.lost_outcome
    assert run.served() == run.injected  # every fault it injected was in fact served
    if row.delivered:
        await told_delivered(row, run, job)
    else:
        await told_failed(row, run, job)
    if row.check is not None:
        await row.check(run)
    await money_right(row, run)


async def told_delivered(row: Row, run: Run, job: Job) -> None:
    posts = await run.s.emu.wait_for(lambda: [m for m in run.thread_messages()
                                              if "your clip is ready" in m.content],
                                     within=WITHIN)
    assert len(posts) == 1, [m.content for m in posts]
    [post] = posts
    if row.attached:
        assert [a.data for a in post.attachments] == [run.s.wavespeed.static_output]
    else:
        assert post.attachments == []
        assert f"/outputs/{job.task_id}.mp4>" in post.content
    for words in row.told:
        assert words in post.content, post.content
    assert not [m for m in run.thread_messages() if f"job #{job.id} failed" in m.content]
    await status_says(run, "Delivered", f"{PRICE} credits", "charged")


async def told_failed(row: Row, run: Run, job: Job) -> None:
    await wait_for(lambda: _notified(run), WITHIN)  # the notice was sent (and only then)
    notices = [m for m in run.thread_messages() if f"job #{job.id} failed" in m.content]
    assert len(notices) == 1, [m.content for m in run.thread_messages()]
    [notice] = notices
    for words in (*row.told, "were refunded"):
        assert words in notice.content, notice.content
    assert run.s.wavespeed.api_key not in notice.content
    assert not [m for m in run.thread_messages() if "your clip is ready" in m.content]
    await status_says(run, "Failed", *row.told, "refunded")


async def _notified(run: Run) -> bool:
    return (await run.job()).notified


async def status_says(run: Run, *words: str) -> None:
    """The job's status message (its thread's starter) ends up showing the job's end."""
    s = run.s
    [thread] = [t for t in s.emu.threads if t.id == run.thread_id]
    status: MessageRecord = s.emu.message(thread.starter_message_id or 0)

    def shown() -> str:
        return str(status.embeds[0].get("description", "")) if status.embeds else ""

    try:
        await s.emu.wait_for(lambda: all(w in shown() for w in words), within=WITHIN)
    except TimeoutError:
        raise AssertionError(f"status message shows {shown()!r}, not {words}") from None


async def money_right(row: Row, run: Run) -> None:
    s = run.s
    end = "capture" if row.delivered else "release"
    assert await s.world.ledger_kinds(run.job_id) == ["reserve", end]
    assert await member_ledger(run) == ["grant", "reserve", end]  # nothing else moved
    assert await audit(s.world.db) == []
    spent = PRICE if row.delivered else 0
    assert await s.world.balance(s.guild.id, run.member.id) == (GRANT - spent, 0)
    submissions = run.submissions()
    assert len(submissions) == row.tasks, [x.task_id for x in submissions]
    if row.tasks:
        assert (await run.job()).task_id == submissions[0].task_id


async def member_ledger(run: Run) -> list[str]:
    async with run.s.world.db.reading() as conn, conn.execute(
        "SELECT kind FROM ledger WHERE guild_id = ? AND user_id = ? ORDER BY id",
        (run.s.guild.id, run.member.id),
    ) as cur:
        return [str(r[0]) for r in await cur.fetchall()]


def planned(plans: dict[str, TaskBehaviour]) -> Callable[[dict[str, Any]], TaskBehaviour]:
    """The fake's planner: each task behaves as the row whose prompt it carries says."""
    def plan(body: dict[str, Any]) -> TaskBehaviour:
        return plans[str(body.get("prompt"))]
    return plan


def seeds() -> list[int]:
    chosen = os.environ.get("WAVESPEED_FAULTS_SEED")
    return [int(chosen)] if chosen else list(range(scale.size(ci=1, soak=10)))


def selector(row: Row) -> str:
    """The pytest -k that runs this row (with the rows it shares a scene with)."""
    return (f"-k 'ends_right[{row.id}]'" if row in ALONE
            else "-k faults_on_one_jobs_requests")


def replay(exc: BaseException, row: Row, seed: int) -> None:
    exc.add_note(f"row {row.id}, seed {seed}: replay with WAVESPEED_FAULTS_SEED={seed} "
                 f"pytest tests/reliability/test_wavespeed_faults.py {selector(row)}")


# Rows that need a scene of their own; every other row runs at once with the rest, each its
# own member, job and targeted faults.
ALONE_BECAUSE = {
    # Its check times the account-wide pause a Retry-After sets, which others would share.
    "submit-429-retry-after": "times the whole account's submits",
    # A lost submit is found by searching WaveSpeed's history for tasks made around its POST:
    # other jobs' tasks made then would be candidates too, and make it ambiguous (refunded).
    **dict.fromkeys(("submit-5xx-no-task", "submit-5xx-after-create", "submit-timeout",
                     "submit-dropped", "submit-malformed"), "searches the history"),
    # An outage is the whole API's.
    **dict.fromkeys(("outage-at-submit", "outage-while-running"), "the whole API"),
}
ALONE = tuple(r for r in ROWS if r.id in ALONE_BECAUSE or r.settings)
SHARED = tuple(r for r in ROWS if r not in ALONE)


@pytest.mark.parametrize("row", ALONE, ids=[r.id for r in ALONE])
async def test_wavespeed_fault_ends_right(row: Row, tmp_path: Path) -> None:
    """The rows in ALONE_BECAUSE, and those with settings of their own: a scene each."""
    runs = seeds()
    for seed in runs:
        try:
            async with open_scene(tmp_path / f"seed-{seed}", **row.settings) as s:
                plans: dict[str, TaskBehaviour] = {}
                s.wavespeed.planner = planned(plans)
                await run_row(row, s, seed, s.alice, plans, asyncio.Semaphore(1))
        except BaseException as exc:
            replay(exc, row, seed)
            raise
    record(row, len(runs))


async def test_faults_on_one_jobs_requests_end_right(tmp_path: Path) -> None:
    """Every other row at once in one scene: one member and one job each, its faults aimed at
    its own requests (its prompt, its task id) and its task's behaviour chosen by its prompt,
    so the rows cannot take each other's faults or tasks."""
    assert all(not r.settings for r in SHARED)
    runs = seeds()
    for seed in runs:
        async with open_scene(tmp_path / f"seed-{seed}",
                              wavespeed_max_concurrent=len(SHARED)) as s:
            plans: dict[str, TaskBehaviour] = {}
            s.wavespeed.planner = planned(plans)
            members = [s.guild.add_member(None, f"member-{n}") for n in range(len(SHARED))]
            turns = asyncio.Semaphore(3)
            results = await asyncio.gather(
                *(run_row(row, s, seed, m, plans, turns)
                  for row, m in zip(SHARED, members, strict=True)),
                return_exceptions=True)
            failed = [(row, r) for row, r in zip(SHARED, results, strict=True)
                      if isinstance(r, BaseException)]
            for row, exc in failed:
                replay(exc, row, seed)
            if failed:
                raise failed[0][1]
            assert all(target for _, _, target in s.wavespeed.faults_served)  # none strayed
            assert len(s.wavespeed.submissions) == sum(r.tasks for r in SHARED)
    for row in SHARED:
        record(row, len(runs))


async def test_an_outage_at_the_reference_upload_starts_nothing(tmp_path: Path) -> None:
    """The outage reaching the command itself: the reference cannot be kept at WaveSpeed, so
    no job is made, nothing is charged, and the member is told to try again."""
    runs = seeds()
    for seed in runs:
        async with open_scene(tmp_path / f"seed-{seed}") as s:
            await s.grant(s.alice, GRANT)
            s.wavespeed.outage(600.0)
            reply = await s.generate(s.alice, "a fox on a skateboard")
            s.wavespeed.outage(0)
            for words in ("could not be stored at WaveSpeed", "HTTP 503",
                          "nothing was started or charged", "try again"):
                assert words in reply.content, reply.content
            assert await s.world.services.jobs.get(1) is None
            assert s.emu.threads == []
            assert s.wavespeed.submissions == []
            assert await s.world.ledger_count() == 1  # the grant alone
            assert await audit(s.world.db) == []
            assert await s.world.balance(s.guild.id, s.alice.id) == (GRANT, 0)
    scale.record(SUITE, "10-minute outage reaching the reference upload: /ref2video refused, "
                 "no job, nothing charged", len(runs), 0, command=f"{COMMAND} -k reference_upload",
                 detail="told to try again")


def record(row: Row, times: int) -> None:
    if row.delivered:
        end = ("delivered as WaveSpeed's link, charged once" if not row.attached
               else "delivered, charged once")
    else:
        end = f"failed ({row.outcome}), refunded, member told"
    scale.record(SUITE, f"{row.what} -> {end}", times, 0,
                 command=f"{COMMAND} {selector(row)}",
                 detail=f"{row.tasks} task(s) submitted" + (
                     f"; lost submit {row.lost_outcome}" if row.lost_outcome else ""))
