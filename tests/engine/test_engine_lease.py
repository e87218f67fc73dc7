"""The engine once this process has lost the instance lease (storage/lease.py): every write
raises LeaseLost, and the engine must stop working the jobs - not retry them - because
another process now holds the lease and resumes them. And an urgent close does not wait."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from storage.database import LeaseLost
from storage.jobs import JobState
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import FAST_LIMITS, Harness

ALICE = 2001


def lose_the_lease(monkeypatch: pytest.MonkeyPatch, h: Harness) -> list[str]:
    """From now on every job write is refused as the fence refuses it; returns the list of
    refused writes, which grows with every attempt."""
    refusals: list[str] = []

    def refuse(name: str) -> Any:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            refusals.append(name)
            raise LeaseLost("instance lease 'engine' is no longer held by us")
        return refused

    for name in ("transition", "update_fields", "adopt", "set_late_outcome"):
        monkeypatch.setattr(h.jobs, name, refuse(name))
    return refusals


async def test_a_lost_lease_ends_the_jobs_work_instead_of_retrying_it(
    h: Harness, fake: FakeWaveSpeed, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await h.grant(ALICE, 500)
    fake.queue_tasks(TaskBehaviour.never())
    job = await h.create(ALICE)
    running = await h.wait_state(job.id, JobState.RUNNING)
    assert running.task_id is not None
    lose_the_lease(monkeypatch, h)
    fake.finish_task(running.task_id)           # done: delivering it would need a write
    await asyncio.sleep(0.5)
    polls = len(fake.requests_to(f"{running.task_id}/result"))
    await asyncio.sleep(0.5)
    assert len(fake.requests_to(f"{running.task_id}/result")) == polls  # stopped, not retried
    assert h.delivery.posts == []                                     # nothing posted
    assert (await h.job(job.id)).state is JobState.RUNNING            # left to the holder
    assert h.engine.running_count == 0


async def test_a_lost_lease_stops_the_dispatcher(
    h: Harness, fake: FakeWaveSpeed, monkeypatch: pytest.MonkeyPatch,
) -> None:
    await h.grant(ALICE, 500)
    refusals = lose_the_lease(monkeypatch, h)
    job = await h.create(ALICE)  # (a fenced create would fail too; here it is let through)
    await asyncio.sleep(0.5)
    assert refusals == ["transition"]                   # tried once, not every 50 ms
    assert fake.submissions == []                       # nothing sent without the lease
    assert (await h.job(job.id)).state is JobState.QUEUED


async def test_an_urgent_close_does_not_wait_for_submits_in_flight(
    h: Harness, fake: FakeWaveSpeed,
) -> None:
    h.engine.limits = dataclasses.replace(FAST_LIMITS, shutdown_grace=30.0)
    await h.grant(ALICE, 500)
    fake.inject("submit", Fault.delay(20.0))
    job = await h.create(ALICE)
    await h.wait_state(job.id, JobState.SUBMITTING)
    started = time.monotonic()
    await h.engine.close(urgent=True)
    assert time.monotonic() - started < 5.0  # the 30 s grace was not waited for
    assert (await h.job(job.id)).state is JobState.SUBMITTING  # the next holder searches
