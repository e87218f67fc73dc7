"""Close the engine and the database with a job in each persisted state, open new ones on
the same file, and check every job ends delivered-and-captured once or released once, with
no task submitted twice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.jobs import JobState
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import (
    FAST_LIMITS,
    Harness,
    assert_delivered_once,
    assert_refunded,
    submit_requests,
    wait_for,
)

ALICE, BOB = 2001, 2002


@pytest.fixture
async def h(tmp_path: Path, fake: FakeWaveSpeed) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, fake, dataclasses.replace(FAST_LIMITS, max_running=1))
    await harness.open()
    yield harness
    await harness.close()


async def test_restart_while_queued(h: Harness) -> None:
    await h.grant(ALICE, 500)
    await h.grant(BOB, 500)
    h.fake.queue_tasks(TaskBehaviour.never())
    blocker = await h.create(ALICE, "blocker")
    waiting = await h.create(BOB, "waiting")
    await h.wait_state(blocker.id, JobState.RUNNING)
    assert (await h.job(waiting.id)).state is JobState.QUEUED
    await h.restart()
    assert h.engine.queue_position(waiting.id) == 1
    h.fake.finish_task(h.fake.submissions[0].task_id)
    await assert_delivered_once(h, blocker.id)
    await assert_delivered_once(h, waiting.id)
    assert [s.body["prompt"] for s in h.fake.submissions] == ["blocker", "waiting"]


async def test_restart_while_refused_submit_waits_keeps_the_pause(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.status(429, "slow down", retry_after=2))
    job = await h.create(ALICE)
    await wait_for(lambda: _attempts(h, job.id), within=5)
    await h.restart()
    await assert_delivered_once(h, job.id)
    times = [r.at for r in h.fake.requests if r.path.endswith("reference-to-video")]
    assert len(times) == 2 and times[1] - times[0] >= 1.9


async def _attempts(h: Harness, job_id: int) -> bool:
    return (await h.job(job_id)).submit_attempts == 1


# A restart while submitting: the job's task is looked for in WaveSpeed's history
# (tests/engine/test_lost_submits.py, test_restart_mid_post_adopts_the_task_it_created).


async def test_a_clean_shutdown_lets_a_submit_in_flight_finish(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.inject("submit", Fault.delay(0.5))
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.SUBMITTING)
    await wait_for(lambda: _has_tasks(h.fake), within=5)
    h.engine.limits = dataclasses.replace(h.limits, shutdown_grace=5.0)
    await h.restart()
    await assert_delivered_once(h, job.id)
    assert not (await h.job(job.id)).needs_reconciliation
    assert submit_requests(h.fake) == 1


async def _has_tasks(fake: FakeWaveSpeed) -> bool:
    return len(fake.tasks) == 1


async def test_restart_while_running_polls_the_same_task(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.never())
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.RUNNING)
    task_id = (await h.job(job.id)).task_id
    await h.restart()
    assert h.engine.running_count == 1  # it still holds its WaveSpeed slot
    h.fake.finish_task(h.fake.submissions[0].task_id)
    await assert_delivered_once(h, job.id)
    assert (await h.job(job.id)).task_id == task_id
    assert submit_requests(h.fake) == 1
    assert await h.balance(ALICE) == (400, 0)


async def test_restart_while_delivering_before_the_post(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.delivery.hold_before_post = asyncio.Event()  # never set: the post hangs
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.DELIVERING)
    await wait_for(lambda: _delivery_started(h), within=5)
    h.delivery.hold_before_post = None
    await h.restart()
    await assert_delivered_once(h, job.id)
    assert submit_requests(h.fake) == 1
    assert await h.balance(ALICE) == (400, 0)


async def _delivery_started(h: Harness) -> bool:
    return h.delivery.deliver_calls >= 1


async def test_restart_after_the_post_but_before_the_capture(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.delivery.hold_after_post = asyncio.Event()  # posted, then the process "dies"
    job = await h.create(ALICE)
    await wait_for(lambda: _posted(h), within=5)
    assert (await h.job(job.id)).state is JobState.DELIVERING
    h.delivery.hold_after_post = None
    await h.restart()
    await assert_delivered_once(h, job.id)  # not posted a second time
    assert h.delivery.deliver_calls == 1
    assert await h.balance(ALICE) == (400, 0)


async def _posted(h: Harness) -> bool:
    return len(h.delivery.posts) == 1


async def test_restart_before_the_owner_was_told_of_a_failure(h: Harness) -> None:
    await h.grant(ALICE, 500)
    h.delivery.notify_failures = 10_000  # the channel is unreachable for now
    h.fake.queue_tasks(TaskBehaviour.fail("boom"))
    job = await h.create(ALICE)
    await assert_refunded(h, job.id, "generation_failed")
    assert not (await h.job(job.id)).notified
    h.delivery.notify_failures = 0
    await h.restart()
    await wait_for(lambda: _notified(h, job.id), within=5)
    assert [f[0] for f in h.delivery.finished] == [job.id]
    assert await h.money_rows(job.id) == ["reserve", "release"]


async def _notified(h: Harness, job_id: int) -> bool:
    return (await h.job(job_id)).notified


async def test_repeated_restarts_across_many_jobs(h: Harness) -> None:
    """Restart every 150 ms while 12 jobs from 3 users run; each ends exactly once."""
    for user in (ALICE, BOB, 2003):
        await h.grant(user, 10_000)
    h.fake.queue_tasks(*[TaskBehaviour.fail("x") if i % 4 == 0 else TaskBehaviour.ok()
                         for i in range(12)])
    created = [await h.create(user, f"{user}-{i}") for i in range(4) for user in
               (ALICE, BOB, 2003)]
    for _ in range(8):
        await asyncio.sleep(0.15)
        await h.restart()
    for job in created:
        finished = await h.wait_finished(job.id, within=20)
        rows = await h.money_rows(job.id)
        if finished.state is JobState.DELIVERED:
            assert rows == ["reserve", "capture"]
        else:
            assert rows == ["reserve", "release"]
    await h.assert_books_balance()
    task_ids = [s.task_id for s in h.fake.submissions]
    assert len(task_ids) == len(set(task_ids)) <= 12
    posted = [p.job_id for p in h.delivery.posts]
    assert len(posted) == len(set(posted))
