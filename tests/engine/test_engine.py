"""The job engine against the fake WaveSpeed: outcomes asserted on balances and the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from engine.delivery import DeliveryError
from storage.credits import InsufficientCreditsError
from storage.jobs import JobLimitError, JobState
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import (
    FAST_LIMITS,
    GUILD,
    Harness,
    assert_delivered_once,
    assert_refunded,
    request,
    submit_requests,
    wait_for,
)

ALICE, BOB = 2001, 2002
PRICE = 100  # 720p, 5 s


async def test_happy_path_submits_exactly_the_request_and_captures(h: Harness) -> None:
    await h.grant(ALICE, 500)
    req = request("two dancers", size="1920*1080", duration=10, negative_prompt="blur",
                  shot_type="multi", enable_prompt_expansion=True, seed=42)
    job = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE, request=req)
    assert job.price == 225 and await h.balance(ALICE) == (275, 225)
    await assert_delivered_once(h, job.id)
    assert await h.balance(ALICE) == (275, 0)
    assert [s.body for s in h.fake.submissions] == [req.to_json()]
    post = h.delivery.posts[0]
    assert post.data is not None and post.data[4:8] == b"ftyp"  # a real MP4 was attached
    states = [state for job_id, state in h.delivery.updates if job_id == job.id]
    assert states == [JobState.SUBMITTING, JobState.RUNNING, JobState.DELIVERING,
                      JobState.DELIVERED]
    assert not any((h.tmp_path / "work").iterdir())  # the download was cleaned up


async def test_no_credits_no_job(h: Harness) -> None:
    await h.grant(ALICE, 99)
    with pytest.raises(InsufficientCreditsError):
        await h.create(ALICE)
    assert await h.balance(ALICE) == (99, 0)
    assert await h.jobs.for_user(GUILD, ALICE) == []
    await asyncio.sleep(0.1)
    assert h.fake.submissions == []


async def test_active_job_cap(tmp_path: Path, fake: FakeWaveSpeed) -> None:
    import dataclasses
    h = Harness(tmp_path, fake, dataclasses.replace(FAST_LIMITS, user_max_active_jobs=2))
    await h.open()
    try:
        await h.grant(ALICE, 1000)
        fake.queue_tasks(TaskBehaviour.never(), TaskBehaviour.never())
        await h.create(ALICE)
        await h.create(ALICE)
        with pytest.raises(JobLimitError):
            await h.create(ALICE)
        assert await h.balance(ALICE) == (800, 200)
    finally:
        await h.close()


# ---- faults on the submit POST -------------------------------------------------------------

@pytest.mark.parametrize("fault", [
    Fault.status(429, "too many requests", retry_after=1),
    Fault.status(503, "overloaded"),
])
async def test_submit_refused_unprocessed_is_requeued_then_delivered(
    h: Harness, fault: Fault
) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", fault)
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    assert submit_requests(h.fake) == 2 and len(h.fake.submissions) == 1
    assert (await h.job(job.id)).submit_attempts == 1
    assert await h.balance(ALICE) == (400, 0)


async def test_429_retry_after_is_honoured(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.status(429, "slow down", retry_after=1))
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    times = [r.at for r in h.fake.requests if r.path.endswith("reference-to-video")]
    assert times[1] - times[0] >= 0.95


# A lost reply after which the task exists (dropped, malformed, timed out) is adopted from
# WaveSpeed's history: tests/engine/test_lost_submits.py.
@pytest.mark.parametrize("fault", [
    Fault.status(500, "internal"), Fault.status(502, "bad gateway"),
    Fault.status(504, "gateway timeout"),
], ids=["500", "502", "504"])
async def test_submit_with_unknown_outcome_and_no_task_is_refunded_flagged_never_resent(
    h: Harness, fault: Fault
) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", fault)
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "submit_outcome_unknown")
    assert (await h.job(job.id)).lost_outcome == "not_found"
    await asyncio.sleep(0.3)
    assert submit_requests(h.fake) == 1
    assert await h.balance(ALICE) == (500, 0)
    flagged = await h.jobs.needing_reconciliation()
    assert [j.id for j in flagged] == [job.id]
    assert h.delivery.finished == [(job.id, JobState.FAILED, flagged[0].failure_detail)]
    assert await h.jobs.mark_reconciled(job.id, "found task in dashboard; absorbed")
    assert await h.jobs.needing_reconciliation() == []


@pytest.mark.parametrize(("fault", "code", "words"), [
    (Fault.status(400, "videos[0] could not be fetched"), "rejected_input",
     "videos[0] could not be fetched"),
    (Fault.status(401, "invalid key"), "service_auth", "WaveSpeed account"),
])
async def test_submit_rejected_fails_and_refunds(
    h: Harness, fault: Fault, code: str, words: str
) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", fault)
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, code)
    failed = await h.job(job.id)
    assert failed.failure_detail is not None and words in failed.failure_detail
    assert h.fake.api_key not in failed.failure_detail
    assert not failed.needs_reconciliation
    assert submit_requests(h.fake) == 1


async def test_submit_refused_too_often_gives_up_and_refunds(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", *[Fault.status(503, "overloaded")] * FAST_LIMITS.max_submit_attempts)
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "service_unavailable")
    assert submit_requests(h.fake) == FAST_LIMITS.max_submit_attempts
    assert h.fake.submissions == []


async def test_unreachable_wavespeed_is_retried_as_not_sent(tmp_path: Path) -> None:
    """A closed port: the POST never left, so it is safe to try again, and then to refund."""
    fake = FakeWaveSpeed()
    await fake.start()
    await fake.close()  # its port is now closed
    h = Harness(tmp_path, fake, FAST_LIMITS)
    await h.open()
    try:
        await h.grant(ALICE, 500)
        job = await h.create(ALICE)
        await assert_refunded(h, job.id, "service_unavailable")
        assert (await h.job(job.id)).submit_attempts == FAST_LIMITS.max_submit_attempts - 1
        assert not (await h.job(job.id)).needs_reconciliation
    finally:
        await h.close()


# ---- faults while following the task -------------------------------------------------------

@pytest.mark.parametrize("fault", [
    Fault.status(429, "slow", retry_after=1), Fault.status(500, "x"), Fault.status(502, "x"),
    Fault.status(503, "x"), Fault.status(504, "x"), Fault.drop(), Fault.malformed(),
    Fault.delay(3.0),
], ids=["429", "500", "502", "503", "504", "drop", "malformed", "timeout"])
async def test_result_faults_are_retried_and_the_job_delivered(h: Harness, fault: Fault) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("result", fault, fault)
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    assert len(h.fake.submissions) == 1
    assert await h.balance(ALICE) == (400, 0)


async def test_failed_task_is_refunded_with_wavespeed_reason(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.fail("content policy violation"))
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "generation_failed")
    detail = (await h.job(job.id)).failure_detail
    assert detail is not None and "content policy violation" in detail
    assert h.delivery.finished and h.delivery.finished[0][0] == job.id


async def test_task_that_never_finishes_times_out_and_refunds(tmp_path: Path,
                                                            fake: FakeWaveSpeed) -> None:
    import dataclasses
    h = Harness(tmp_path, fake, dataclasses.replace(FAST_LIMITS, job_timeout=0.5))
    await h.open()
    try:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never())
        job = await h.create(ALICE)
        await assert_refunded(h, job.id, "timeout")
        assert h.engine.running_count == 0  # its slot was given back
    finally:
        await h.close()


async def test_output_that_404s_is_refunded(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.output_missing())
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "output_missing")


async def test_output_download_5xx_is_retried(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("output", Fault.status(502, "cdn hiccup"))
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    assert h.delivery.posts[0].data is not None


async def test_huge_output_is_delivered_as_a_link_and_charged_once(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.huge(FAST_LIMITS.output_max_bytes * 3))
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    post = h.delivery.posts[0]
    assert post.data is None and post.url.endswith(".mp4")
    assert await h.balance(ALICE) == (400, 0)
    assert not any((h.tmp_path / "work").iterdir())


async def test_nsfw_flag_reaches_the_delivery(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.nsfw())
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    assert h.delivery.posts[0].nsfw is True


@pytest.mark.parametrize("charge", [True, False])
async def test_withheld_nsfw_clip_is_charged_only_if_the_operator_says_so(
    h: Harness, charge: bool
) -> None:
    await h.grant(ALICE, 500)
    h.delivery.withhold_nsfw = charge
    h.fake.queue_tasks(TaskBehaviour.nsfw())
    job = await h.create(ALICE)
    done = await h.wait_finished(job.id)
    assert h.delivery.posts == []
    if charge:
        assert done.state is JobState.DELIVERED
        assert done.delivery == {"notice": True, "withheld": "flagged NSFW"}
        assert await h.money_rows(job.id) == ["reserve", "capture"]
        assert await h.balance(ALICE) == (400, 0)
    else:
        assert (done.state, done.failure_code) == (JobState.FAILED, "withheld")
        assert await h.money_rows(job.id) == ["reserve", "release"]
        assert await h.balance(ALICE) == (500, 0)
        assert h.delivery.finished == [(job.id, JobState.FAILED, done.failure_detail)]
    await h.assert_books_balance()


async def test_a_job_created_unqueued_waits_for_enqueue(h: Harness) -> None:
    await h.grant(ALICE, 500)
    job = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                    request=request(), enqueue=False)
    await asyncio.sleep(0.2)
    assert h.fake.submissions == [] and h.engine.queue_position(job.id) is None
    assert await h.balance(ALICE) == (400, 100)  # held all the same
    h.engine.enqueue(job)
    await assert_delivered_once(h, job.id)


async def test_transient_delivery_failure_is_retried_once_posted(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.delivery.failures.append(DeliveryError("discord 503"))
    job = await h.create(ALICE)
    await assert_delivered_once(h, job.id)
    assert h.delivery.deliver_calls == 2


async def test_permanent_delivery_failure_is_refunded(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.delivery.failures.append(DeliveryError("missing access", permanent=True))
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "delivery_failed")


# ---- cancel --------------------------------------------------------------------------------

async def test_cancel_queued_job_refunds_but_not_a_running_one(tmp_path: Path,
                                                               fake: FakeWaveSpeed) -> None:
    import dataclasses
    h = Harness(tmp_path, fake, dataclasses.replace(FAST_LIMITS, max_running=1))
    await h.open()
    try:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never())
        running = await h.create(ALICE, "first")
        queued = await h.create(ALICE, "second")
        await h.wait_state(running.id, JobState.RUNNING)
        assert h.engine.queue_position(queued.id) == 1
        assert await h.engine.cancel(running.id) is None
        cancelled = await h.engine.cancel(queued.id)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        assert await h.engine.cancel(queued.id) is None  # twice changes nothing
        assert await h.money_rows(queued.id) == ["reserve", "release"]
        assert await h.balance(ALICE) == (400, 100)
        assert h.engine.queue_position(queued.id) is None
        fake.finish_task(fake.submissions[0].task_id)
        await assert_delivered_once(h, running.id)
        assert len(fake.submissions) == 1  # the cancelled job never reached WaveSpeed
    finally:
        await h.close()


# ---- the queue -----------------------------------------------------------------------------

async def test_fair_queue_and_concurrency_limit(tmp_path: Path) -> None:
    async with FakeWaveSpeed(processing_after=0.0, max_concurrent=2) as fake:
        # Tasks run until the test finishes them, so no slot frees up before all 11 jobs
        # exist: what gets submitted third is decided by the queue alone, not by timing.
        fake.queue_tasks(*[TaskBehaviour.never() for _ in range(11)])
        h = Harness(tmp_path, fake, FAST_LIMITS)  # max_running=2
        await h.open()
        try:
            await h.grant(ALICE, 10_000)
            await h.grant(BOB, 10_000)
            a_jobs = [await h.create(ALICE, f"alice {i}") for i in range(10)]
            b_job = await h.create(BOB, "bob 0")
            jobs = [*a_jobs, b_job]

            async def all_done() -> bool:
                for task in fake.tasks.values():
                    if task.running:
                        fake.finish_task(task.id)
                states = [(await h.job(j.id)).state for j in jobs]
                return all(s is JobState.DELIVERED for s in states)

            await wait_for(all_done, within=20.0)
            for job in jobs:
                await assert_delivered_once(h, job.id)
            order = [s.body["prompt"] for s in fake.submissions]
            assert "bob 0" in order[:3], order
            assert [p for p in order if p.startswith("alice")] == [f"alice {i}" for i in range(10)]
            assert fake.max_running_seen <= 2
            assert submit_requests(fake) == 11  # no 429 from the fake: we never exceeded it
        finally:
            await h.close()


async def test_queue_positions_interleave_users(tmp_path: Path, fake: FakeWaveSpeed) -> None:
    h = Harness(tmp_path, fake, FAST_LIMITS)
    await h.open(start=False)  # nothing is dispatched: we read positions only
    try:
        await h.grant(ALICE, 10_000)
        await h.grant(BOB, 10_000)
        a = [await h.create(ALICE, f"a{i}") for i in range(3)]
        b = await h.create(BOB, "b0")
        positions = [h.engine.queue_position(j.id) for j in (*a, b)]
        assert positions == [1, 3, 4, 2]
        assert h.engine.queue_length == 4
    finally:
        await h.close()


async def test_submits_per_window_is_respected(tmp_path: Path, fake: FakeWaveSpeed) -> None:
    limits = dataclasses.replace(FAST_LIMITS, submits_per_window=2, submit_window_seconds=1.0,
                                 max_running=5)
    h = Harness(tmp_path, fake, limits)
    await h.open()
    try:
        await h.grant(ALICE, 10_000)
        created = [await h.create(ALICE, f"j{i}") for i in range(5)]
        for job in created:
            await assert_delivered_once(h, job.id)
        times = sorted(s.at for s in fake.submissions)
        gaps = [later - earlier for earlier, later in zip(times, times[2:], strict=False)]
        assert min(gaps) >= 0.95, gaps  # never 3 submits within one window
    finally:
        await h.close()


async def test_many_users_many_jobs_books_balance(tmp_path: Path) -> None:
    async with FakeWaveSpeed(processing_after=0.0, complete_after=0.02) as fake:
        h = Harness(tmp_path, fake, dataclasses.replace(FAST_LIMITS, max_running=4))
        await h.open(start=False)  # all jobs exist before any finishes and refunds credits
        try:
            users = range(3000, 3010)
            for user in users:
                await h.grant(user, 350)
            fake.queue_tasks(*[TaskBehaviour.fail("nope") if i % 3 == 0 else TaskBehaviour.ok()
                               for i in range(40)])
            created = []
            for _ in range(4):
                for user in users:
                    with contextlib.suppress(InsufficientCreditsError):
                        created.append(await h.create(user))
            assert len(created) == 30  # 350 credits buy each user three
            await h.engine.start()
            for job in created:
                await h.wait_finished(job.id)
            await h.assert_books_balance()
            delivered = sum(1 for p in h.delivery.posts)
            spent = 0
            for user in users:
                available, held = await h.balance(user)
                assert held == 0
                spent += 350 - available
            assert spent == delivered * PRICE
        finally:
            await h.close()
