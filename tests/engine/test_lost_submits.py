"""A submit whose reply was lost: the task is looked up in WaveSpeed's history and adopted,
or the job is refunded and flagged - never blindly, never two jobs on one task.

The engine runs against the fake WaveSpeed, whose history endpoint lists what it really
created; outcomes are asserted on the ledger, the posts and the jobs' rows."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine import lost_submits
from engine.engine import EngineLimits
from storage.jobs import Job, JobState
from tests.fakes.wavespeed import FakeWaveSpeed, Fault
from tests.harness import FAST_LIMITS, Harness, assert_delivered_once, wait_for
from wavespeed.models import MODEL_PATH, GenerationRequest, History, Prediction

ALICE, BOB = 2001, 2002
ROOT = Path(__file__).resolve().parents[2]


def submits(fake: FakeWaveSpeed) -> int:
    return len(fake.requests_to("reference-to-video", "POST"))


def searches(fake: FakeWaveSpeed) -> int:
    return len(fake.requests_to("/api/v3/predictions", "POST"))


async def states_seen(h: Harness, job_id: int) -> list[str]:
    return [state for state, _ in await h.jobs.events(job_id)]


async def assert_refunded_and_flagged(h: Harness, job: Job, outcome: str) -> Job:
    done = await h.wait_finished(job.id)
    assert (done.state, done.failure_code) == (JobState.FAILED, "submit_outcome_unknown")
    assert done.lost_outcome == outcome
    assert await h.money_rows(job.id) == ["reserve", "release"]
    assert job.id in [j.id for j in await h.jobs.needing_reconciliation()]
    assert job.id not in [p.job_id for p in h.delivery.posts]
    await h.assert_books_balance()
    return done


# ---- the engine --------------------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    Fault.drop(), Fault.malformed(), Fault.delay(4.0), Fault.status_after_create(502),
], ids=["dropped", "malformed", "timed-out", "502-after-create"])
async def test_lost_reply_with_a_task_is_adopted_delivered_and_charged_once(
    h: Harness, fault: Fault
) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", fault)
    job = await h.create(ALICE)
    done = await assert_delivered_once(h, job.id)
    [task] = h.fake.submissions
    assert (done.task_id, done.lost_outcome) == (task.task_id, "adopted")
    assert "checking" in await states_seen(h, job.id)  # held while it was looked for
    assert (JobState.CHECKING in [s for j, s in h.delivery.updates if j == job.id])
    assert submits(h.fake) == 1  # never sent again
    assert await h.balance(ALICE) == (400, 0)
    assert await h.jobs.needing_reconciliation() == []


async def test_lost_reply_without_a_task_is_refunded_after_the_search(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.status(502))  # a gateway that never passed it on
    job = await h.create(ALICE)
    checking = await h.wait_state(job.id, JobState.CHECKING)
    assert await h.balance(ALICE) == (400, 100)  # still held while it is looked for
    assert checking.submit_ended_at is not None
    await assert_refunded_and_flagged(h, job, "not_found")
    assert searches(h.fake) == len(FAST_LIMITS.lost_check_delays)  # one per planned search
    assert await h.balance(ALICE) == (500, 0)
    assert h.fake.submissions == [] and submits(h.fake) == 1
    [(job_id, state, detail)] = h.delivery.finished
    assert (job_id, state) == (job.id, JobState.FAILED) and "refunded" in (detail or "")


async def test_a_website_task_of_another_model_or_outside_the_window_is_not_adopted(
    h: Harness,
) -> None:
    await h.grant(ALICE, 500)
    h.fake.add_foreign_task(model="wavespeed-ai/flux-dev")           # another model, now
    h.fake.add_foreign_task(created_at=time.time() - 3600)          # this model, an hour ago
    h.fake.inject("submit", Fault.status(504))
    job = await h.create(ALICE)
    done = await assert_refunded_and_flagged(h, job, "not_found")
    assert done.task_id is None and done.lost_candidates == ()


async def test_two_lost_submits_in_the_same_second_never_share_a_task(h: Harness) -> None:
    """Both POSTs created a task and lost the reply at once: each window holds both tasks,
    so no search may pick one blindly. Both are refunded and flagged, naming the two."""
    await h.grant(ALICE, 500)
    await h.grant(BOB, 500)
    h.fake.inject("submit", Fault.drop(), Fault.drop())
    first = await h.create(ALICE)
    second = await h.create(BOB)
    a = await assert_refunded_and_flagged(h, first, "ambiguous")
    b = await assert_refunded_and_flagged(h, second, "ambiguous")
    tasks = {s.task_id for s in h.fake.submissions}
    assert len(tasks) == 2
    assert set(a.lost_candidates) == set(b.lost_candidates) == tasks
    assert a.task_id is None and b.task_id is None
    assert await h.balance(ALICE) == (500, 0) and await h.balance(BOB) == (500, 0)


async def test_a_task_whose_own_reply_is_still_coming_is_not_taken(h: Harness) -> None:
    """Job A's POST never reached WaveSpeed; job B's did and its reply is slow. While B is
    still submitting, B's task is the only one in A's window: A must not take it. B then
    records it, and A, finding nothing of its own, is refunded."""
    h.limits = dataclasses.replace(FAST_LIMITS, lost_check_delays=(0.05, 0.5, 0.8))
    await h.restart()
    await h.grant(ALICE, 500)
    await h.grant(BOB, 500)
    h.fake.inject("submit", Fault.status(502), Fault.delay(0.4))
    lost = await h.create(ALICE)
    await h.wait_state(lost.id, JobState.CHECKING)
    slow = await h.create(BOB)
    a = await assert_refunded_and_flagged(h, lost, "not_found")
    b = await assert_delivered_once(h, slow.id)
    [task] = h.fake.submissions
    assert b.task_id == task.task_id and a.task_id is None
    assert b.lost_outcome is None  # B learned its id from its own reply


async def test_elimination_adopts_once_the_other_job_has_its_id(h: Harness) -> None:
    """A's reply is lost after its task was made; B's POST (made just after) is slow.
    At first both tasks are in A's window and B's is contested; once B records its id,
    A's one remaining candidate is adopted."""
    h.limits = dataclasses.replace(FAST_LIMITS, lost_check_delays=(0.05, 0.6, 1.0))
    await h.restart()
    await h.grant(ALICE, 500)
    await h.grant(BOB, 500)
    h.fake.inject("submit", Fault.drop())
    lost = await h.create(ALICE)
    await h.wait_state(lost.id, JobState.CHECKING)
    h.fake.inject("submit", Fault.delay(0.4))
    slow = await h.create(BOB)
    a = await assert_delivered_once(h, lost.id)
    b = await assert_delivered_once(h, slow.id)
    assert a.lost_outcome == "adopted" and a.task_id != b.task_id
    assert {a.task_id, b.task_id} == {s.task_id for s in h.fake.submissions}
    assert searches(h.fake) >= 2  # not adopted at the first search, while B was in flight


async def test_unreadable_history_refunds_as_unchecked_after_the_give_up(h: Harness) -> None:
    h.limits = dataclasses.replace(FAST_LIMITS, lost_give_up=0.6)
    await h.restart()
    await h.grant(ALICE, 500)
    h.fake.inject("history", *[Fault.status(500)] * 400)
    h.fake.inject("submit", Fault.drop())
    job = await h.create(ALICE)
    await assert_refunded_and_flagged(h, job, "unchecked")


async def test_history_that_fails_for_a_while_still_finds_the_task(h: Harness) -> None:
    await h.grant(ALICE, 500)
    # The client retries each page 4 times: 8 failures spoil the first two searches.
    h.fake.inject("history", *[Fault.status(503)] * 8)
    h.fake.inject("submit", Fault.drop())
    job = await h.create(ALICE)
    done = await assert_delivered_once(h, job.id)
    assert done.lost_outcome == "adopted"


async def test_restart_mid_post_adopts_the_task_it_created(h: Harness) -> None:
    """Killed while the POST was on the wire: on the next start the job is looked for, not
    refunded unseen, and its clip arrives once, charged once."""
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.delay(3.0))
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.SUBMITTING)
    await asyncio.sleep(0.2)
    assert len(h.fake.submissions) == 1
    await h.restart()  # shutdown_grace 0: like a crash mid-POST
    done = await assert_delivered_once(h, job.id)
    assert done.lost_outcome == "adopted" and done.submit_ended_at is None
    assert submits(h.fake) == 1
    assert await h.balance(ALICE) == (400, 0)


async def test_restart_while_checking_goes_on_searching(h: Harness) -> None:
    h.limits = dataclasses.replace(FAST_LIMITS, lost_check_delays=(5.0, 6.0))
    await h.restart()
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.drop())
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.CHECKING)
    await h.restart(lost_check_delays=(0.05, 0.1))  # the last one waits for the window
    done = await assert_delivered_once(h, job.id)
    assert done.lost_outcome == "adopted"


# ---- by hand -----------------------------------------------------------------------------

async def test_adopting_by_hand_a_refunded_job_posts_the_clip_free(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.status(502))
    job = await h.create(ALICE)
    await assert_refunded_and_flagged(h, job, "not_found")
    task = h.fake.add_foreign_task()  # say the operator found it in the dashboard
    await _finished(h, task)  # by the time they look
    said = await h.jobs.adopt_by_hand(job.id, task, watch_period=3600)
    assert "free" in said
    await _posted(h, job.id)
    [post] = [p for p in h.delivery.posts if p.job_id == job.id]
    assert post.late
    done = await h.job(job.id)
    assert (done.state, done.late_outcome, done.lost_outcome) == (
        JobState.FAILED, "delivered", "adopted_by_hand")
    assert await h.money_rows(job.id) == ["reserve", "release"]  # the refund stands
    assert await h.balance(ALICE) == (500, 0)
    with pytest.raises(ValueError, match="already has task"):
        await h.jobs.adopt_by_hand(job.id, "task-x", watch_period=3600)


async def test_adopting_by_hand_a_checking_job_goes_on_and_charges(h: Harness) -> None:
    h.limits = dataclasses.replace(FAST_LIMITS, lost_check_delays=(30.0,))
    await h.restart()
    await h.grant(ALICE, 500)
    await h.grant(BOB, 500)
    h.fake.inject("submit", Fault.status(502))
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.CHECKING)
    other = await h.create(BOB)
    other_done = await assert_delivered_once(h, other.id)
    assert other_done.task_id is not None
    with pytest.raises(ValueError, match="already belongs to job"):
        await h.jobs.adopt_by_hand(job.id, other_done.task_id, watch_period=3600)
    task = h.fake.add_foreign_task()
    listed = await _ops(h, "reconcile")
    assert "1 job(s) checking with WaveSpeed now" in listed.stdout
    assert f"job {job.id}  checking" in listed.stdout
    await h.jobs.adopt_by_hand(job.id, f" {task}\n", watch_period=3600)  # as pasted
    done = await assert_delivered_once(h, job.id)
    assert (done.task_id, done.lost_outcome) == (task, "adopted_by_hand")


async def _finished(h: Harness, task_id: str) -> None:
    async def done() -> bool:
        return not h.fake.tasks[task_id].running

    await wait_for(done, within=5)


async def _posted(h: Harness, job_id: int) -> None:
    async def posted() -> bool:
        return job_id in [p.job_id for p in h.delivery.posts]

    await wait_for(posted, within=10)


async def test_ops_reconcile_shows_and_settles_lost_submits(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.drop())
    adopted = await assert_delivered_once(h, (await h.create(ALICE)).id)
    h.fake.inject("submit", Fault.status(502))
    refunded = await assert_refunded_and_flagged(h, await h.create(ALICE), "not_found")
    task = h.fake.add_foreign_task()
    await _finished(h, task)

    listed = await _ops(h, "reconcile")
    assert listed.returncode == 0, listed.stderr
    assert "2 lost submit(s)" in listed.stdout
    assert f"job {adopted.id}  delivered" in listed.stdout and "lost submit: adopted" in (
        listed.stdout)
    assert f"job {refunded.id}  refunded (submit_outcome_unknown)" in listed.stdout
    assert "lost submit: not found" in listed.stdout and "1 job(s) to reconcile" in listed.stdout

    wrong = await _ops(h, "reconcile", str(refunded.id), "--task", adopted.task_id or "")
    assert wrong.returncode == 1 and f"belongs to job {adopted.id}" in wrong.stderr
    done = await _ops(h, "reconcile", str(refunded.id), "--task", task)
    assert done.returncode == 0, done.stderr
    assert "posts the clip free" in done.stdout
    await _posted(h, refunded.id)  # the running engine picked it up
    assert "0 job(s) to reconcile" in (await _ops(h, "reconcile")).stdout
    assert await h.balance(ALICE) == (400, 0)  # one charge (the adopted one), one refund


async def _ops(h: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ops` on the harness's database. Awaited, not run blocking: a blocked loop
    could hold the engine's write transaction open until ops gave up on a locked database."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "--db", str(h.db.path), *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(list(args), proc.returncode, out.decode(), err.decode())


# ---- the choice alone --------------------------------------------------------------------

LIMITS = EngineLimits(lost_window_before=5.0, lost_window_after=30.0, submit_max_seconds=70.0)
T0 = 1_800_000_000.0
REQUEST = GenerationRequest(videos=("https://cdn.example/a.mp4",), prompt="p")


def _job(job_id: int, state: JobState, started: float, ended: float | None) -> Job:
    return Job(id=job_id, guild_id=1, channel_id=2, user_id=3, state=state, request=REQUEST,
               price=100, reservation_id=job_id, task_id=None, output_url=None,
               output_nsfw=None, submit_attempts=0, not_before=None, failure_code=None,
               failure_detail=None, needs_reconciliation=False, reconciliation_note=None,
               delivery=None, created_at=started - 1, submitted_at=started,
               submit_ended_at=ended)


def _task(task_id: str, at: float) -> Prediction:
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return Prediction(id=task_id, status="completed", model=MODEL_PATH, created_at=stamp)


def _choose(job: Job, *tasks: Prediction, owned: set[str] | None = None,
            doubtful: list[Job] | None = None, complete: bool = True,
            read_at: float = T0 + 100) -> lost_submits.Verdict:
    return lost_submits.choose(job, History(tasks, complete), owned=owned or set(),
                               doubtful=doubtful or [], limits=LIMITS, read_at=read_at)


def test_window_runs_from_the_post_to_a_while_after_its_end() -> None:
    ended = _job(1, JobState.CHECKING, T0, T0 + 2)
    assert lost_submits.window(ended, LIMITS) == (T0 - 5, T0 + 32)
    cut_off = _job(1, JobState.CHECKING, T0, None)  # the bot stopped mid-POST
    assert lost_submits.window(cut_off, LIMITS) == (T0 - 5, T0 + 100)


def test_one_candidate_beyond_doubt_is_adopted_and_nothing_else() -> None:
    job = _job(1, JobState.CHECKING, T0, T0 + 2)
    assert _choose(job, _task("mine", T0 + 1)).adopt == "mine"
    assert _choose(job, _task("early", T0 - 6)).candidates == ()      # before the window
    assert _choose(job, _task("late", T0 + 33)).candidates == ()      # after it
    assert _choose(job, _task("t", T0 + 1), owned={"t"}).candidates == ()
    two = _choose(job, _task("a", T0 + 1), _task("b", T0 + 1.5))
    assert (two.adopt, two.candidates, two.ambiguous) == (None, ("a", "b"), True)
    assert _choose(job, _task("mine", T0 + 1), complete=False).adopt is None  # unseen pages
    # Before the window closes a later task of ours may still appear: record, do not adopt.
    early = _choose(job, _task("mine", T0 + 1), read_at=T0 + 31)
    assert (early.adopt, early.candidates) == (None, ("mine",))
    assert _choose(job, _task("mine", T0 + 1), read_at=T0 + 32).adopt == "mine"


def test_a_candidate_another_job_could_claim_is_contested() -> None:
    job = _job(1, JobState.CHECKING, T0, T0 + 2)
    in_flight = _job(2, JobState.SUBMITTING, T0 + 1, None)
    verdict = _choose(job, _task("theirs", T0 + 1.5), doubtful=[in_flight])
    assert (verdict.adopt, verdict.contested) == (None, ("theirs",))
    # A POST that started after the task was made (beyond the skew margin) cannot have made
    # it; within the margin it could, if WaveSpeed's clock is behind ours.
    skewed = _job(2, JobState.SUBMITTING, T0 + 50, None)
    assert _choose(job, _task("mine", T0 + 1.5), doubtful=[skewed]).adopt is None
    later = _job(2, JobState.SUBMITTING, T0 + 62, None)
    assert _choose(job, _task("mine", T0 + 1.5), doubtful=[later]).adopt == "mine"
    other_lost = _job(3, JobState.CHECKING, T0 + 0.5, T0 + 1)
    assert _choose(job, _task("x", T0 + 1), doubtful=[other_lost]).adopt is None
    refunded = dataclasses.replace(other_lost, state=JobState.FAILED, lost_outcome="unchecked")
    assert _choose(job, _task("x", T0 + 1), doubtful=[refunded]).adopt is None
