"""A whole core on real parts: a SQLite file, the fake WaveSpeed on 127.0.0.1, the real
client, the real engine, and a recording delivery. `restart()` closes the engine and the
database and opens new ones on the same file, as a process restart would."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import FAST_RETRY as FAST_RETRY  # re-exported: the tests import it from here
from engine.engine import EngineLimits, JobEngine
from money.prices import PriceTable
from storage.credits import CreditStore, audit
from storage.database import Database
from storage.jobs import Job, JobState, JobStore
from tests.fakes.delivery import RecordingDelivery
from tests.fakes.wavespeed import FakeWaveSpeed
from wavespeed.client import WaveSpeedClient
from wavespeed.models import GenerationRequest

GUILD = 1000
FAST_LIMITS = EngineLimits(
    max_running=2, submits_per_window=1000, submit_window_seconds=60.0,
    user_max_active_jobs=100, poll_interval=0.02, job_timeout=10.0,
    output_max_bytes=1_000_000, max_submit_attempts=3, requeue_delay=0.05,
    delivery_attempts=3, retry_delay=0.02, resume_delay=0.05,
    shutdown_grace=0.0,  # restart() then behaves like a crash; see the grace test
    watch_scan=0.05, lost_check_delays=(0.05, 0.35, 0.5), lost_window_before=0.5,
    lost_window_after=0.3, lost_claim_margin=0.5,
    submit_max_seconds=2.5,  # the harness client's 2 s timeouts
)


def request(prompt: str = "a cat surfing a wave", **kw: Any) -> GenerationRequest:
    return GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt=prompt, **kw)


class Harness:
    def __init__(self, tmp_path: Path, fake: FakeWaveSpeed, limits: EngineLimits) -> None:
        self.tmp_path = tmp_path
        self.fake = fake
        self.limits = limits
        self.prices = PriceTable()
        self.delivery = RecordingDelivery()
        self.request_timeout = 2.0
        self.db: Database
        self.jobs: JobStore
        self.credits: CreditStore
        self.engine: JobEngine
        self._session: aiohttp.ClientSession | None = None

    async def open(self, *, start: bool = True) -> None:
        self.db = await Database.open(self.tmp_path / "bot.sqlite3")
        self.jobs = JobStore(self.db)
        self.credits = CreditStore(self.db)
        self._session = aiohttp.ClientSession()
        client = WaveSpeedClient(self._session, self.fake.api_key, self.fake.base_url,
                                 retry=FAST_RETRY, request_timeout=self.request_timeout,
                                 submit_timeout=self.request_timeout,
                                 output_http_hosts=[self.fake.host])
        self.engine = JobEngine(self.jobs, client, self.delivery, self.prices, self.limits,
                                self.tmp_path / "work")
        if start:
            await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()
        if self._session is not None:
            await self._session.close()
        await self.db.close()

    async def restart(self, **limit_changes: Any) -> None:
        await self.close()
        if limit_changes:
            self.limits = dataclasses.replace(self.limits, **limit_changes)
        await self.open()

    async def grant(self, user: int, amount: int) -> None:
        await self.credits.grant(GUILD, user, amount, actor_id=1, reason="test")

    async def create(self, user: int, prompt: str = "a cat surfing a wave", **kw: Any) -> Job:
        return await self.engine.create_job(guild_id=GUILD, channel_id=5, user_id=user,
                                            request=request(prompt, **kw))

    async def job(self, job_id: int) -> Job:
        job = await self.jobs.get(job_id)
        assert job is not None
        return job

    async def wait_state(self, job_id: int, *states: JobState, within: float = 10.0) -> Job:
        """Poll the database (the truth) until the job is in one of `states`."""
        job: Job = await wait_for(lambda: self._in_state(job_id, states), within)
        return job

    async def _in_state(self, job_id: int, states: tuple[JobState, ...]) -> Job | None:
        job = await self.job(job_id)
        return job if job.state in states else None

    async def wait_finished(self, job_id: int, within: float = 10.0) -> Job:
        return await self.wait_state(job_id, JobState.DELIVERED, JobState.FAILED,
                                     JobState.CANCELLED, within=within)

    async def balance(self, user: int) -> tuple[int, int]:
        b = await self.credits.balance(GUILD, user)
        return b.available, b.held

    async def money_rows(self, job_id: int) -> list[str]:
        """The ledger kinds written for one job, oldest first."""
        async with self.db.reading() as conn, conn.execute(
            "SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,)
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    async def assert_books_balance(self) -> None:
        assert await audit(self.db) == []


def fail_calls(monkeypatch: pytest.MonkeyPatch, obj: object, name: str, *,
               times: int = 1) -> None:
    """Make the next `times` calls of the coroutine method `obj.name` raise what SQLite raises
    when another process holds the file ("database is locked"), then behave again."""
    real = getattr(obj, name)
    left = [times]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)


async def wait_for(probe: Callable[[], Any], within: float) -> Any:
    """Await `probe()` until it returns something truthy; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(0.01)


def submit_requests(fake: FakeWaveSpeed) -> int:
    return sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith(
        "reference-to-video"))


async def assert_delivered_once(h: Harness, job_id: int) -> Job:
    """Until the job ends; it must be delivered once, captured once, the books balanced."""
    job = await h.wait_finished(job_id)
    assert job.state is JobState.DELIVERED, (job.failure_code, job.failure_detail)
    assert await h.money_rows(job_id) == ["reserve", "capture"]
    assert [p.job_id for p in h.delivery.posts].count(job_id) == 1
    await h.assert_books_balance()
    return job


async def assert_refunded(h: Harness, job_id: int, code: str) -> None:
    job = await h.wait_finished(job_id)
    assert (job.state, job.failure_code) == (JobState.FAILED, code), job.failure_detail
    assert await h.money_rows(job_id) == ["reserve", "release"]
    assert job_id not in [p.job_id for p in h.delivery.posts]
    await h.assert_books_balance()
