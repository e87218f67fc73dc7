"""Attacks on the money path that once got through (issue 8), against the real engine, a real
SQLite file and the fake WaveSpeed; outcomes asserted on balances, the ledger, submits and
posts."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import storage.database
from engine.delivery import Clip, DeliveryError
from engine.engine import EngineLimits
from storage.credits import CreditStore, audit
from storage.database import Database
from storage.jobs import AlreadyStarted, Job, JobState, JobStore
from storage.offers import OfferClosed, OfferStore
from storage.usage import grant_allowance_once
from tests.fakes.delivery import RecordingDelivery
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import FAST_LIMITS, GUILD, Harness, fail_calls, request, wait_for

ALICE = 2001
WATCHING = dataclasses.replace(FAST_LIMITS, job_timeout=0.3, watch_interval=0.05)


@contextlib.asynccontextmanager
async def harness(tmp_path: Path, fake: FakeWaveSpeed,
                  limits: EngineLimits = FAST_LIMITS) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, fake, limits)
    await h.open()
    try:
        yield h
    finally:
        await h.close()


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction on the same file, held until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


async def set_submitted_at(h: Harness, job_id: int, ago: float) -> None:
    """As if the bot had been down for `ago` seconds since the submit."""
    async with h.db.transaction() as conn:
        await conn.execute("UPDATE jobs SET submitted_at = submitted_at - ? WHERE id = ?",
                           (ago, job_id))


# ---- 1. restarts after downtime, and tasks that finish after the timeout --------------------

async def test_a_clip_finished_during_downtime_is_delivered_not_refunded(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never())
        job = await h.create(ALICE)
        running = await h.wait_state(job.id, JobState.RUNNING)
    assert running.task_id is not None
    fake.finish_task(running.task_id)          # it completed while the bot was down...
    async with harness(tmp_path, fake) as h:    # ...for longer than JOB_TIMEOUT_SECONDS
        await set_submitted_at(h, job.id, 3 * 3600)
        await h.restart()
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED, done.failure_code
        assert await h.money_rows(job.id) == ["reserve", "capture"]
        assert [p.job_id for p in h.delivery.posts] == [job.id]
        assert await h.balance(ALICE) == (400, 0)
        await h.assert_books_balance()


async def timed_out(h: Harness) -> Job:
    """A job whose task is still running at WaveSpeed when the job times out."""
    await h.grant(ALICE, 500)
    h.fake.queue_tasks(TaskBehaviour.never())
    job = await h.create(ALICE)
    failed = await h.wait_finished(job.id)
    assert (failed.state, failed.failure_code) == (JobState.FAILED, "timeout")
    assert failed.task_id is not None
    return failed


async def test_a_timed_out_task_is_flagged_watched_and_delivered_free_if_it_finishes(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake, WATCHING) as h:
        failed = job = await timed_out(h)
        assert failed.needs_reconciliation and failed.watch_until is not None
        assert failed.failure_detail is not None and "free" in failed.failure_detail
        assert await h.balance(ALICE) == (500, 0)   # refunded at once
        assert [j.id for j in await h.jobs.needing_reconciliation()] == [job.id]
        assert h.delivery.posts == []
        await h.restart()                           # still watched after a restart
        assert failed.task_id is not None
        fake.finish_task(failed.task_id)
        late = await wait_for(lambda: _late(h, job.id), within=10)
        assert late.late_outcome == "delivered" and late.delivery["late"] is True
        [post] = h.delivery.posts
        assert (post.job_id, post.late) == (job.id, True) and post.data
        # Delivered late and not charged: the refund stands, and the books agree.
        assert await h.money_rows(job.id) == ["reserve", "release"]
        assert await h.balance(ALICE) == (500, 0)
        await asyncio.sleep(0.2)                    # more watch rounds post nothing more
        assert len(h.delivery.posts) == 1
        await h.assert_books_balance()


async def test_a_timed_out_task_that_fails_later_is_settled_without_the_operator(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake, WATCHING) as h:
        failed = job = await timed_out(h)
        assert failed.task_id is not None
        fake.tasks[failed.task_id].behaviour = TaskBehaviour.fail("late failure")
        fake.finish_task(failed.task_id)
        late = await wait_for(lambda: _late(h, job.id), within=10)
        assert late.late_outcome == "failed"
        assert late.reconciliation_note is not None and "refunds" in late.reconciliation_note
        assert await h.jobs.needing_reconciliation() == []
        assert h.delivery.posts == []


async def test_watching_ends_when_wavespeed_no_longer_keeps_the_task(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    limits = dataclasses.replace(WATCHING, watch_period=0.5)
    async with harness(tmp_path, fake, limits) as h:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never())
        job = await h.create(ALICE)
        late = await wait_for(lambda: _late(h, job.id), within=10)
        assert late.late_outcome == "expired"
        assert late.needs_reconciliation and late.reconciliation_note is None  # operator's
        assert await h.money_rows(job.id) == ["reserve", "release"]


async def _late(h: Harness, job_id: int) -> object:
    job = await h.job(job_id)
    return job if job.late_outcome else None


# ---- 4. a lost reply on the last delivery attempt ------------------------------------------

async def test_a_post_whose_last_reply_was_lost_is_found_not_refunded(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        attempts = h.limits.delivery_attempts
        h.delivery.failures = [_refused() for _ in range(attempts - 1)]  # nothing posted...
        h.delivery.lost_replies = 1                  # ...then posted, and the reply lost
        job = await h.create(ALICE)
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED, done.failure_code
        assert h.delivery.deliver_calls == attempts
        assert [p.job_id for p in h.delivery.posts] == [job.id]
        assert await h.money_rows(job.id) == ["reserve", "capture"]
        assert done.delivery_started_at is not None
        assert done.delivery_attempted_at is not None
        assert done.delivery_attempted_at >= done.delivery_started_at


def _refused() -> DeliveryError:
    return DeliveryError("Discord refused the message (502 0)")


# ---- 6 and 9. database errors around dispatch and the submit ---------------------------------

@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.database, "BUSY_TIMEOUT_MS", 50)


@pytest.mark.usefixtures("short_busy_timeout")
async def test_a_database_error_at_dispatch_leaves_the_job_queued(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        job = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                        request=request(), enqueue=False)
        with write_locked(h.db.path):
            h.engine.enqueue(job)
            await asyncio.sleep(0.4)       # the dispatcher tries and fails, several times
            assert (await _read_state(h.db.path, job.id)) == "queued"
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED, done.failure_code
        assert len(fake.submissions) == 1
        assert await h.money_rows(job.id) == ["reserve", "capture"]


@pytest.mark.usefixtures("short_busy_timeout")
async def test_a_database_error_after_the_submit_keeps_the_task(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        fake.inject("submit", Fault.delay(0.2))
        job = await h.create(ALICE)
        await h.wait_state(job.id, JobState.SUBMITTING)
        with write_locked(h.db.path):       # the reply arrives while the file is locked
            await wait_for(lambda: _submitted(fake), within=5)
            await asyncio.sleep(0.3)
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED, done.failure_code
        assert done.task_id == fake.submissions[0].task_id
        assert len(fake.submissions) == 1
        assert await h.money_rows(job.id) == ["reserve", "capture"]


async def _submitted(fake: FakeWaveSpeed) -> bool:
    return len(fake.submissions) == 1 and not fake.requests_to("reference-to-video")[0].status


async def _read_state(path: Path, job_id: int) -> str:
    def read() -> str:
        conn = sqlite3.connect(path)
        try:
            return str(conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,))
                       .fetchone()[0])
        finally:
            conn.close()

    return await asyncio.to_thread(read)


# ---- 9. telling an owner whose channel is gone ---------------------------------------------

async def test_a_notice_to_a_deleted_channel_is_given_up_at_once(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        h.delivery.notify_failures = 10_000
        h.delivery.notify_permanent = True
        fake.queue_tasks(TaskBehaviour.fail("boom"))
        job = await h.create(ALICE)
        await wait_for(lambda: _notified(h, job.id), within=5)
        assert h.delivery.notify_calls == 1
        assert await h.money_rows(job.id) == ["reserve", "release"]


async def test_a_notice_that_keeps_failing_is_given_up_after_a_bounded_time(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    limits = dataclasses.replace(FAST_LIMITS, notify_give_up=0.3)
    async with harness(tmp_path, fake, limits) as h:
        await h.grant(ALICE, 500)
        h.delivery.notify_failures = 10_000      # failing, but not known to be permanent
        fake.queue_tasks(TaskBehaviour.fail("boom"))
        job = await h.create(ALICE)
        await wait_for(lambda: _notified(h, job.id), within=5)
        calls = h.delivery.notify_calls
        assert calls > 1
        await asyncio.sleep(0.3)
        assert h.delivery.notify_calls == calls  # no more tries


async def _notified(h: Harness, job_id: int) -> bool:
    return (await h.job(job_id)).notified


# ---- 2. one job per start key, whatever the interleaving ------------------------------------

async def test_one_start_key_starts_one_job_across_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    first, second = await Database.open(path), await Database.open(path)
    try:
        await CreditStore(first).grant(GUILD, ALICE, 1_000, actor_id=1)
        stores = [JobStore(first), JobStore(second)] * 10

        async def press(store: JobStore) -> int:
            try:
                job = await store.create(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                         request=request(), price=100, max_active=50,
                                         start_key="offer:abc")
            except AlreadyStarted as started:
                return started.job.id
            return job.id

        ids = await asyncio.gather(*(press(s) for s in stores))
        assert len(set(ids)) == 1
        assert await CreditStore(first).balance(GUILD, ALICE) == _bal(900, 100)
        assert await audit(first) == []
    finally:
        await first.close()
        await second.close()


async def test_a_declined_or_expired_offer_starts_nothing(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        now = [1_000_000.0]
        offers = OfferStore(db, clock=lambda: now[0])
        jobs = JobStore(db, clock=lambda: now[0])
        await CreditStore(db).grant(GUILD, ALICE, 1_000, actor_id=1)

        async def make() -> str:
            offer = await offers.create(guild_id=GUILD, user_id=ALICE, channel_id=5,
                                        request=request(), price=100, lifetime=60)
            return offer.token

        async def accept(token: str) -> int:
            job = await jobs.create(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                    request=request(), price=100, max_active=50,
                                    offer_token=token)
            return job.id

        declined = await make()
        assert await offers.decline(declined)
        with pytest.raises(OfferClosed, match="declined"):
            await accept(declined)
        expired = await make()
        now[0] += 61
        with pytest.raises(OfferClosed, match="expired"):
            await accept(expired)
        accepted = await make()
        job_id = await accept(accepted)
        assert not await offers.decline(accepted)  # too late: it started a job
        with pytest.raises(AlreadyStarted):
            await accept(accepted)
        assert (await jobs.by_start_key(f"offer:{accepted}")).id == job_id  # type: ignore[union-attr]
        assert await CreditStore(db).balance(GUILD, ALICE) == _bal(900, 100)
    finally:
        await db.close()


# ---- 8. the allowance cap counts held credits -----------------------------------------------

async def test_the_allowance_cap_counts_credits_held_by_queued_jobs(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite3")
    try:
        jobs, credits = JobStore(db), CreditStore(db)
        day = 86_400

        async def allowance(period: int) -> int:
            return await grant_allowance_once(db, GUILD, ALICE, 100, period * day,
                                              period * day + 1, period="day",
                                              starting_credits=0, cap=100)

        assert await allowance(1) == 100
        await jobs.create(guild_id=GUILD, channel_id=5, user_id=ALICE, request=request(),
                          price=100, max_active=50)            # all of it held by a job
        assert await allowance(2) == 0
        assert await allowance(3) == 0
        assert await credits.balance(GUILD, ALICE) == _bal(0, 100)
    finally:
        await db.close()


# ---- 9. /credits set while credits are held -------------------------------------------------

async def test_a_set_balance_is_not_raised_by_a_later_refund(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never(), TaskBehaviour.never())
        refunded = await h.create(ALICE)
        charged = await h.create(ALICE, "second")
        await h.wait_state(refunded.id, JobState.RUNNING)
        running = await h.wait_state(charged.id, JobState.RUNNING)
        await h.credits.set_balance(GUILD, ALICE, 0, actor_id=1, reason="abuse")
        assert await h.balance(ALICE) == (0, 200)
        assert running.task_id is not None
        fake.finish_task(running.task_id)
        assert (await h.wait_finished(charged.id)).state is JobState.DELIVERED
        assert await h.balance(ALICE) == (0, 100)         # still paid from its hold
        await h.restart(job_timeout=0.01)                 # the other one now times out
        assert (await h.wait_finished(refunded.id)).state is JobState.FAILED
        assert await h.balance(ALICE) == (0, 0)           # and is not refunded on top of 0
        assert await h.money_rows(refunded.id) == ["reserve", "release"]
        assert await h.money_rows(charged.id) == ["reserve", "capture"]
        await h.assert_books_balance()
        await h.grant(ALICE, 100)
        later = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                          request=request(), enqueue=False)
        assert await h.engine.cancel(later.id) is not None
        assert await h.balance(ALICE) == (100, 0)         # a later hold refunds as usual


def _bal(available: int, held: int) -> object:
    from storage.credits import Balance

    return Balance(available, held)


# ---- 11. an output URL that points inside the network ---------------------------------------

@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:1/secret",
    "https://[::ffff:127.0.0.1]/x", "http://10.0.0.7/internal",
])
async def test_an_output_redirected_inside_the_network_is_not_fetched_or_posted(
        tmp_path: Path, fake: FakeWaveSpeed, location: str) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        fake.inject("output", Fault.redirect(location))
        job = await h.create(ALICE)
        done = await h.wait_finished(job.id)
        assert (done.state, done.failure_code) == (JobState.FAILED, "output_refused")
        assert h.delivery.posts == []
        assert await h.money_rows(job.id) == ["reserve", "release"]


# ---- found by review: jobs that could be stuck, starved or given away -----------------------

class GoneChannelDelivery(RecordingDelivery):
    """For jobs in `gone`, the job's channel was deleted: what DiscordDelivery raises then."""

    def __init__(self) -> None:
        super().__init__()
        self.gone: set[int] = set()

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        if job.id in self.gone:
            raise DeliveryError("the channel no longer exists", permanent=True)
        return await super().find_delivery(job)

    async def deliver(self, job: Job, clip: Clip) -> dict[str, Any]:
        if job.id in self.gone:
            self.deliver_calls += 1
            raise DeliveryError("the channel no longer exists", permanent=True)
        return await super().deliver(job, clip)


async def test_a_delivering_job_whose_channel_vanished_is_refunded_not_stuck(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    delivery = GoneChannelDelivery()
    async with harness(tmp_path, fake) as h:
        h.delivery = delivery
        await h.restart()
        await h.grant(ALICE, 500)
        delivery.failures = [_refused()]             # a 5xx, then the channel is deleted
        job = await h.create(ALICE)
        await wait_for(lambda: _called(delivery), within=5)
        delivery.gone.add(job.id)
        done = await h.wait_finished(job.id)
        assert (done.state, done.failure_code) == (JobState.FAILED, "delivery_failed")
        assert await h.money_rows(job.id) == ["reserve", "release"]


async def _called(delivery: RecordingDelivery) -> bool:
    return delivery.deliver_calls >= 1


async def test_one_late_job_in_a_deleted_channel_does_not_starve_the_others(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    delivery = GoneChannelDelivery()
    async with harness(tmp_path, fake, WATCHING) as h:
        h.delivery = delivery
        await h.restart()
        await h.grant(ALICE, 1000)
        fake.queue_tasks(TaskBehaviour.never(), TaskBehaviour.never())
        first, second = await h.create(ALICE, "first"), await h.create(ALICE, "second")
        a, b = await h.wait_finished(first.id), await h.wait_finished(second.id)
        assert a.task_id is not None and b.task_id is not None
        delivery.gone.add(a.id)
        async with h.db.transaction() as conn:  # as if a post of it had been tried
            await conn.execute("UPDATE jobs SET delivery_started_at = 1 WHERE id = ?", (a.id,))
        fake.finish_task(a.task_id)
        fake.finish_task(b.task_id)
        late_b = await wait_for(lambda: _late(h, b.id), within=10)
        late_a = await wait_for(lambda: _late(h, a.id), within=10)
        assert late_b.late_outcome == "delivered"
        assert late_a.late_outcome == "undeliverable"


async def test_a_task_learned_after_another_process_failed_its_job_is_kept(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    """Two engines on one file with no lease between them (the bot itself never runs two:
    see storage/lease.py): B starts while A's submit POST is in flight. B takes the job for
    a lost submit and finds A's task in the history; A's late reply changes nothing."""
    async with harness(tmp_path, fake, WATCHING) as a:
        await a.grant(ALICE, 500)
        fake.inject("submit", Fault.delay(0.5))
        job = await a.create(ALICE)
        await a.wait_state(job.id, JobState.SUBMITTING)
        async with harness(tmp_path, fake, WATCHING) as b:   # same file
            done = await b.wait_finished(job.id)
            assert done.state is JobState.DELIVERED, done.failure_code
            assert (done.task_id, done.lost_outcome) == (fake.submissions[0].task_id,
                                                         "adopted")
            assert len(a.delivery.posts) + len(b.delivery.posts) == 1
            assert await b.money_rows(job.id) == ["reserve", "capture"]
            assert len(fake.submissions) == 1


async def test_failed_polls_after_downtime_never_give_a_finished_clip_away(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake, WATCHING) as h:
        await h.grant(ALICE, 500)
        fake.queue_tasks(TaskBehaviour.never())
        job = await h.create(ALICE)
        running = await h.wait_state(job.id, JobState.RUNNING)
        await set_submitted_at(h, job.id, 3600)
    assert running.task_id is not None
    fake.finish_task(running.task_id)
    fake.inject("result", *[Fault.status(503) for _ in range(8)])  # two polls' worth
    async with harness(tmp_path, fake, WATCHING) as h:
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED, done.failure_code
        assert await h.money_rows(job.id) == ["reserve", "capture"]


async def test_a_restart_does_not_wait_for_an_owner_notice(
        tmp_path: Path, fake: FakeWaveSpeed) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        fake.inject("submit", Fault.delay(5.0))
        stuck = await h.create(ALICE, "in flight at the crash")
        await h.wait_state(stuck.id, JobState.SUBMITTING)
        other = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                          request=request(), enqueue=False)
        await h.close()                        # a crash: job 1 is left submitting
        fake.tasks.clear()                     # and its POST had created nothing
        h.delivery.notify_failures = 10_000    # and its owner cannot be told for now
        await h.open()
        # Neither the search for job 1's task nor its refund notice holds up the engine:
        # job 2 runs meanwhile.
        assert (await h.wait_finished(other.id)).state is JobState.DELIVERED
        refunded = await h.wait_finished(stuck.id)
        assert (refunded.failure_code, refunded.lost_outcome) == (
            "submit_outcome_unknown", "not_found")


async def test_database_errors_at_dispatch_in_a_row_still_keep_the_job(
        tmp_path: Path, fake: FakeWaveSpeed, monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(tmp_path, fake) as h:
        await h.grant(ALICE, 500)
        job = await h.engine.create_job(guild_id=GUILD, channel_id=5, user_id=ALICE,
                                        request=request(), enqueue=False)
        fail_calls(monkeypatch, h.jobs, "transition", times=3)  # no reread needed to keep it
        h.engine.enqueue(job)
        done = await h.wait_finished(job.id)
        assert done.state is JobState.DELIVERED
