"""The job engine: queue locally, submit within WaveSpeed's quota, follow each task to the
end, deliver, and settle the credits exactly once.

Every state is written before the side effect it permits (see storage.jobs.JobState), so
after a crash or restart `start()` picks each unfinished job up from its last state:

- queued:      back in the queue.
- submitting:  the POST may have created a paid task and we cannot know its id. It is never
               sent again: the job becomes `checking`, like any submit whose reply was lost.
- checking:    the credits stay held while WaveSpeed's history is searched for the task
               (engine/lost_submits.py): one candidate beyond doubt is adopted and the job
               goes on as `running`; none (or several) at the last search: refunded and
               flagged `needs_reconciliation` for the operator (`python -m ops reconcile`).
- running:     polled again with the stored task id, at once: a task that finished while
               the bot was down is delivered, whatever the time. Only a poll that says
               "still working" can lead to the timeout.
- delivering:  the delivery is asked whether the clip was already posted; if not, posted.

A task given up on by the timeout may still finish at WaveSpeed (and bill the operator):
the job is refunded, flagged for reconciliation and watched at a slow rate for as long as
WaveSpeed keeps predictions; a clip that arrives late is posted, free of charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fault_hooks
from engine import lost_submits
from engine.delivery import Clip, Delivery, DeliveryError, DeliveryWithheld
from engine.failures import describe
from engine.fair_queue import FairQueue
from engine.rate_limit import SlidingWindowLimiter
from money.prices import PriceTable
from storage.database import LeaseLost
from storage.jobs import Job, JobState, JobStore
from storage.media import MediaStore
from wavespeed.client import WaveSpeedClient
from wavespeed.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OutputTooLargeError,
    RateLimitedError,
    ServerError,
    UnsafeOutputURLError,
    WaveSpeedError,
)
from wavespeed.models import GenerationRequest, TaskStatus

log = logging.getLogger(__name__)

PRE_POST_ANNOUNCE_BOUND = 1.0  # seconds; part of EngineLimits.submit_max_seconds
# A task fetches its references when it starts; a copy expiring sooner than this is gone.
REFERENCE_FETCH_MARGIN = 600.0


@dataclass(frozen=True)
class EngineLimits:
    max_running: int = 2                    # tasks at WaveSpeed at once (submitting + running)
    submits_per_window: int = 2
    submit_window_seconds: float = 60.0
    user_max_active_jobs: int = 3
    poll_interval: float = 5.0
    job_timeout: float = 30 * 60.0          # from submit to a terminal WaveSpeed status
    output_max_bytes: int = 100 * 1024 * 1024
    max_submit_attempts: int = 5            # POSTs refused unprocessed (429, 503, no connection)
    requeue_delay: float = 10.0             # first wait after such a refusal without Retry-After
    delivery_attempts: int = 3
    retry_delay: float = 2.0                # first wait before re-posting or re-notifying
    resume_delay: float = 5.0               # after an unexpected error in a job's task
    shutdown_grace: float = 10.0            # close() waits this long for submit POSTs in flight
    watch_interval: float = 600.0           # polls of a timed-out task, slow
    watch_scan: float = 15.0                # how often the database is read for new ones
    watch_period: float = 7 * 86_400.0      # how long WaveSpeed keeps predictions
    notify_give_up: float = 86_400.0        # stop trying to tell an owner after this long
    store_retry_max: float = 30.0           # longest wait between tries to record a task id
    # A lost submit's searches of WaveSpeed's history, in seconds after its POST ended; the
    # last one decides a refund. Its window: the POST's start minus lost_window_before (clock
    # skew) to its end plus lost_window_after (a request WaveSpeed queued before creating it).
    lost_check_delays: tuple[float, ...] = (35.0, 75.0, 120.0)
    lost_window_before: float = 5.0
    lost_window_after: float = 30.0
    lost_claim_margin: float = 60.0         # skew allowed when another job's claim is weighed
    submit_max_seconds: float = 71.0        # announce bound + the client's connect + read
    lost_give_up: float = 3600.0            # history unreadable this long: refund, flag


class JobEngine:
    def __init__(
        self, store: JobStore, client: WaveSpeedClient, delivery: Delivery, prices: PriceTable,
        limits: EngineLimits, workdir: Path, *,
        clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
        media: MediaStore | None = None,
    ) -> None:
        self.store = store
        self._media = media  # which reference copies WaveSpeed still keeps
        self.prices = prices
        self.limits = limits
        self._client = client
        self._delivery = delivery
        self._workdir = workdir
        self._clock = clock
        self._monotonic = monotonic
        self._queue = FairQueue()
        self._in_flight: set[int] = set()   # job ids holding a WaveSpeed slot
        self._limiter = SlidingWindowLimiter(
            limits.submits_per_window, limits.submit_window_seconds, monotonic)
        self._paused_until = 0.0            # monotonic; set by 429 / Retry-After
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._posting = 0                   # submit POSTs awaiting their reply
        self._none_posting = asyncio.Event()
        self._none_posting.set()
        self._watcher: asyncio.Task[None] | None = None
        self._watch_wake = asyncio.Event()
        self._stopping = False
        self._resumes: dict[int, int] = {}  # job id -> unexpected errors in a row

    # ---- the front end's view -------------------------------------------------------------

    async def create_job(
        self, *, guild_id: int, channel_id: int, user_id: int, request: GenerationRequest,
        enqueue: bool = True,
        max_active: int | None = None, start_key: str | None = None,
        offer_token: str | None = None, price: int | None = None,
    ) -> Job:
        """Reserve the price (`price`: the one the member was shown, else today's) and
        queue the job. Raises InsufficientCreditsError,
        JobLimitError, AlreadyStarted (this `start_key` or offer already started a job) or
        OfferClosed, in which case nothing was charged or queued.

        With `enqueue=False` the job is saved (queued, credits held) but not dispatched
        until `enqueue(job)`, so the caller can first post the message the job's
        updates will edit. A restart queues it anyway."""
        if price is None:
            price = self.prices.credits_for(request.size, request.duration)
        job = await self.store.create(
            guild_id=guild_id, channel_id=channel_id, user_id=user_id, request=request,
            price=price, max_active=max_active or self.limits.user_max_active_jobs,
            start_key=start_key, offer_token=offer_token)
        log.info("job %d created for user %d (price %d)", job.id, user_id, price)
        fault_hooks.reached("reserved")
        if enqueue:
            self._queue.push(job.user_key, job.id)
            self._wake.set()
        return job

    def enqueue(self, job: Job) -> None:
        """Queue a job made with `create_job(enqueue=False)`."""
        self._queue.push(job.user_key, job.id)
        self._wake.set()

    async def cancel(
        self, job_id: int, *, reason: str = "cancelled by its owner", notify: bool = True
    ) -> Job | None:
        """Cancel a queued job and refund it; None if it is no longer queued. `notify=False`
        when the caller tells the owner itself (e.g. the command that made it failed)."""
        job = await self.store.transition(
            job_id, [JobState.QUEUED], JobState.CANCELLED, detail=reason, settle_as="released",
            failure_code="cancelled", failure_detail=reason, notified=not notify)
        if job is None:
            return None
        self._queue.remove(job_id)
        log.info("job %d cancelled and refunded", job_id)
        if notify:
            await self._announce(job)
            self._spawn(self._notify(job), f"notify-{job.id}")
        return job

    def queue_position(self, job_id: int) -> int | None:
        return self._queue.position(job_id)

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    @property
    def running_count(self) -> int:
        return len(self._in_flight)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every unfinished job from its saved state, then start dispatching."""
        self._stopping = False
        self._workdir.mkdir(parents=True, exist_ok=True)
        now = self._clock()
        window = self.limits.submit_window_seconds
        self._limiter.seed(now - t for t in await self.store.submitted_since(now - window))
        for job in await self.store.active():
            await self._resume(job)
        for job in await self.store.unnotified():
            self._spawn(self._notify(job), f"notify-{job.id}")
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="job-dispatcher")
        self._watcher = asyncio.create_task(self._watch_loop(), name="late-watcher")

    async def close(self, *, urgent: bool = False) -> None:
        """Stop all work. Jobs keep their saved state and resume at the next start().

        A submit POST cut off mid-flight leaves its job a lost submit (searched for in
        WaveSpeed's history), so first stop dispatching and give POSTs already sent
        `shutdown_grace` seconds to be answered. `urgent` (the instance lease was lost:
        another process acts now) cancels everything at once instead."""
        if urgent:
            self._stopping = True
        elif self._dispatcher is not None:
            # Let it finish the step it is in: cancelled between the queued -> submitting
            # commit and spawning the POST, a job would be searched for as a lost submit at
            # the next start although nothing was sent.
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._dispatcher), 5.0)
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if self._posting and self.limits.shutdown_grace > 0 and not urgent:
            log.info("waiting up to %.0fs for %d submit(s) in flight",
                     self.limits.shutdown_grace, self._posting)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none_posting.wait(), self.limits.shutdown_grace)
        tasks = [*self._tasks, *(t for t in (self._dispatcher, self._watcher) if t)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._dispatcher = self._watcher = None

    async def _resume(self, job: Job) -> None:
        if job.state is JobState.QUEUED:
            self._queue.push(job.user_key, job.id)
            if job.not_before:
                delay = job.not_before - self._clock()
                self._paused_until = max(self._paused_until, self._monotonic() + delay)
        elif job.state is JobState.SUBMITTING:
            log.warning("job %d was being submitted when the bot stopped; its outcome is "
                        "unknown: looking for its task in WaveSpeed's history", job.id)
            await self._lose(job, "the bot stopped mid-POST", None)
        elif job.state is JobState.CHECKING:
            self._in_flight.add(job.id)
            self._spawn_job(job.id, self._find_lost(job))
        elif job.state is JobState.RUNNING:
            self._in_flight.add(job.id)
            self._spawn_job(job.id, self._follow(job, resumed=True))
        elif job.state is JobState.DELIVERING:
            self._spawn_job(job.id, self._deliver(job, resumed=True))
        self._wake.set()

    # ---- dispatching ----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self._dispatch_ready()
            except LeaseLost:
                log.warning("dispatcher stopped: this process no longer holds the instance "
                            "lease")
                return
            except Exception:
                log.exception("dispatcher error; retrying shortly")
                delay = self.limits.resume_delay
            if delay is None:
                await self._wake.wait()
            else:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
                # meets the wake-up, and the loop would run on after close().
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _dispatch_ready(self) -> float | None:
        """Start as many queued jobs as the limits allow; the seconds until more may start."""
        while len(self._queue) and len(self._in_flight) < self.limits.max_running:
            if self._stopping:
                return None
            wait = max(self._paused_until - self._monotonic(), self._limiter.wait_time())
            if wait > 0:
                return wait
            item = self._queue.pop_item()
            assert item is not None
            user, job_id = item
            try:
                if await self._references_gone(job_id):
                    continue
                # Read with submitted_at: a busy loop or a slow write may delay the submit
                # task, and the POST's end must not be measured from its start.
                began = self._monotonic()
                job = await self.store.transition(
                    job_id, [JobState.QUEUED], JobState.SUBMITTING,
                    submitted_at=self._clock(), not_before=None)
            except BaseException:
                # Most likely still queued in the database: keep it queued here too, at the
                # front, or it would sit held until a restart. (If it did move after all, the
                # next transition from queued finds nothing and skips it.)
                self._queue.push(user, job_id, front=True)
                raise
            if job is None:
                continue  # cancelled while it waited
            self._limiter.record()
            self._in_flight.add(job.id)
            self._spawn_job(job.id, self._submit(job, began))
        return None

    async def _submit(self, job: Job, began: float) -> None:
        """Send the POST once. Its outcome decides everything; it is never simply re-sent.
        `began`: monotonic time when submitted_at was read; the POST's end is submitted_at
        plus the time since (no clock steps)."""
        fault_hooks.reached("submitting")
        # Bounded: a bot killed mid-POST searches up to submitted_at + submit_max_seconds,
        # so the POST must start soon after submitted_at. (The board edits later anyway.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PRE_POST_ANNOUNCE_BOUND):
                await self._announce(job)
        self._posting += 1
        self._none_posting.clear()
        try:
            try:
                prediction = await self._client.submit(job.request)
            except WaveSpeedError as exc:
                await self._submit_refused(job, exc, self._monotonic() - began)
                return
            except Exception:
                log.exception("job %d: unexpected error around the submit POST", job.id)
                await self._lose(job, "unexpected error", self._monotonic() - began)
                return
            # Logged before anything else can fail: a paid task exists from here on, and
            # this line is the operator's record of it if recording it below never works.
            log.info("job %d: WaveSpeed created task %s", job.id, prediction.id)
            fault_hooks.reached("submit_answered")
            running = await self._record_task(job, prediction.id)
        finally:
            self._posting -= 1
            if not self._posting:
                self._none_posting.set()
        if running is not None:
            fault_hooks.reached("task_recorded")
        if running is None:
            if await self.store.owned([prediction.id]):
                return  # given to another job meanwhile: _record_task flagged both
            # Failed meanwhile as an unknown outcome (another process resumed it, say): it
            # was refunded, but the task is real. Keep its id and watch it like a timed-out
            # one, so the clip is still posted (free) and the operator sees the task.
            submitted = job.submitted_at or self._clock()
            if await self.store.keep_late_task(job.id, prediction.id,
                                               submitted + self.limits.watch_period):
                log.warning("job %d was failed while its submit was in flight; task %s is "
                            "watched and its clip will be posted free", job.id, prediction.id)
                self._watch_wake.set()
            return
        await self._announce(running)
        await self._follow(running, resumed=False)

    async def _references_gone(self, job_id: int) -> bool:
        """Whether a queued job's stored reference copies expire before WaveSpeed could
        fetch them; if so it is failed and refunded from `queued`, never submitted (a task
        whose files are gone fails at WaveSpeed, and is billed). Asked before the job is
        marked `submitting`, so a stop meanwhile leaves it simply queued. Unknown URLs (jobs
        from before copies were kept) are not judged here."""
        if self._media is None:
            return False
        job = await self.store.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return False
        request = job.request
        urls = [*request.videos, *([request.audio] if request.audio else [])]
        expiry = await self._media.expiry(urls)
        if expiry is None or expiry >= self._clock() + REFERENCE_FETCH_MARGIN:
            return False
        await self._fail(job, [JobState.QUEUED], "references_expired")
        return True

    async def _record_task(self, job: Job, task_id: str) -> Job | None:
        """Store the task id, retrying through database errors: giving up here would leave
        the job `submitting`, which a restart must treat as an unknown (refunded) outcome."""
        delay = self.limits.retry_delay
        while True:
            try:
                return await self.store.transition(
                    job.id, [JobState.SUBMITTING], JobState.RUNNING, task_id=task_id,
                    detail=f"task {task_id}")
            except LeaseLost:
                raise  # another process acts now: it finds this task in the history
            except sqlite3.IntegrityError as exc:
                if "task_id" not in str(exc):
                    raise
                # Its own reply names a task another job was given meanwhile (adopted from
                # the history past a clock skew, or by hand). Retrying cannot succeed.
                log.error("job %d: WaveSpeed named task %s as its own, but another job "
                          "holds it; refunding and flagging both", job.id, task_id)
                await self._fail(job, [JobState.SUBMITTING], "task_conflict", reconcile=True,
                                 lost_candidates=[task_id])
                await self.store.flag_owner(task_id, f"job {job.id}'s submit reply named it")
                return None
            except Exception:
                log.exception("job %d: could not record task %s yet; retrying in %.1fs",
                              job.id, task_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.limits.store_retry_max)

    async def _submit_refused(self, job: Job, exc: WaveSpeedError, took: float) -> None:
        kind = type(exc).__name__
        if exc.task_may_exist:
            await self._lose(job, kind, took)
            return
        attempts = job.submit_attempts + 1
        if exc.retryable and attempts < self.limits.max_submit_attempts:
            retry_after = getattr(exc, "retry_after", None)
            delay = retry_after or self.limits.requeue_delay * 2 ** (attempts - 1)
            requeued = await self.store.transition(
                job.id, [JobState.SUBMITTING], JobState.QUEUED, submit_attempts=attempts,
                not_before=self._clock() + delay, detail=f"{kind}; again in {delay:.1f}s")
            self._in_flight.discard(job.id)
            if requeued is not None:
                self._queue.push(job.user_key, job.id, front=True)
                # A refusal speaks for the whole account, so every submit waits, not just this.
                self._paused_until = max(self._paused_until, self._monotonic() + delay)
                log.info("job %d: submit refused (%s), requeued for %.1fs", job.id, kind, delay)
                await self._announce(requeued)
            self._wake.set()
            return
        if isinstance(exc, BadRequestError):
            await self._fail(job, [JobState.SUBMITTING], "rejected_input", detail=exc.message)
        elif isinstance(exc, AuthenticationError):
            log.error("WaveSpeed rejected the API key: check WAVESPEED_API_KEY")
            await self._fail(job, [JobState.SUBMITTING], "service_auth")
        elif isinstance(exc, RateLimitedError | ServerError) or exc.retryable:
            await self._fail(job, [JobState.SUBMITTING], "service_unavailable", detail=kind)
        else:
            await self._fail(job, [JobState.SUBMITTING], "submit_refused", detail=exc.message)

    # ---- lost submits ---------------------------------------------------------------------

    async def _lose(self, job: Job, why: str, took: float | None) -> None:
        """The submit's outcome is unknown: keep the hold (and the WaveSpeed slot: the task
        may be running) and search WaveSpeed's history for it, in a task of its own, so a
        submit's caller (and close(), which waits for POSTs) is not held up by the search.
        `took`: how long the POST ran (monotonic), None if the bot stopped during it."""
        ended = None
        if took is not None:
            ended = (job.submitted_at if job.submitted_at is not None else self._clock()) + took
        checking = await self.store.transition(
            job.id, [JobState.SUBMITTING], JobState.CHECKING, submit_ended_at=ended,
            detail=f"submit outcome unknown ({why}); searching WaveSpeed's history")
        if checking is None:
            return
        log.warning("job %d: submit outcome unknown (%s); credits held while WaveSpeed's "
                    "history is searched for its task", job.id, why)
        self._in_flight.add(job.id)
        fault_hooks.reached("checking")
        await self._announce(checking)
        self._spawn_job(job.id, self._find_lost(checking))

    async def _find_lost(self, job: Job) -> None:
        """Search at each of `lost_check_delays` after the POST ended (at once for times
        already past, after a restart). Adopt as soon as one candidate is beyond doubt; only
        a search at the last time may refund. A failed search of the last time is repeated
        with backoff until `lost_give_up`; an earlier one just waits for the next time."""
        limits = self.limits
        ended = lost_submits.post_ended(job, limits)
        low, high = lost_submits.window(job, limits)
        give_up = ended + limits.lost_give_up
        delays = limits.lost_check_delays or (0.0,)
        for number, delay in enumerate(delays, start=1):
            final = number == len(delays)
            at, backoff = ended + delay, limits.retry_delay
            if final:
                at = max(at, high)  # never decide a refund before the window has closed
            while True:
                # Waits in steps of watch_scan, reading the job each time: the operator may
                # adopt its task by hand (ops reconcile --task) from another process.
                await asyncio.sleep(max(0.0, min(at - self._clock(), limits.watch_scan)))
                current = await self.store.get(job.id)
                if current is None or current.state is not JobState.CHECKING:
                    if current is not None and current.state is JobState.RUNNING:
                        log.info("job %d: task %s adopted by hand", job.id, current.task_id)
                        self._in_flight.add(job.id)  # a refund racing it let the slot go
                        await self._announce(current)
                        await self._follow(current, resumed=True)
                    return
                if self._clock() < at:
                    continue
                try:
                    verdict = await self._search(current, low, high)
                except Exception as exc:  # any failure must still reach the give-up
                    if isinstance(exc, WaveSpeedError):
                        log.warning("job %d: could not read WaveSpeed's history (%s)", job.id,
                                    type(exc).__name__)
                    else:
                        log.exception("job %d: searching WaveSpeed's history failed", job.id)
                    if not final:
                        break
                    if self._clock() >= give_up:
                        await self._fail(current, [JobState.CHECKING], "submit_outcome_unknown",
                                         reconcile=True, lost_outcome="unchecked")
                        continue  # read it again: adopted by hand meanwhile, it goes on
                    at, backoff = self._clock() + backoff, min(backoff * 2, 300.0)
                    continue
                if verdict.adopt is not None:
                    running = await self.store.adopt(job.id, verdict.adopt)
                    if running is not None:
                        log.info("job %d: adopted task %s from WaveSpeed's history", job.id,
                                 verdict.adopt)
                        fault_hooks.reached("task_recorded")
                        await self._announce(running)
                        await self._follow(running, resumed=True)
                        return
                    at = self._clock()  # taken meanwhile, or adopted by hand: look again
                    continue
                log.info("job %d: search %d of %d: %d candidate(s), %d contested", job.id,
                         number, len(delays), len(verdict.candidates),
                         len(verdict.contested))
                if final:
                    outcome = ("ambiguous" if verdict.candidates
                               else "not_found" if verdict.complete else "unchecked")
                    log.warning("job %d: %s; refunding, flagged for reconciliation", job.id, {
                        "ambiguous": "its candidates could be other jobs' tasks",
                        "not_found": "no task found in WaveSpeed's history",
                        "unchecked": "WaveSpeed's history could not be read in full"}[outcome])
                    await self._fail(current, [JobState.CHECKING], "submit_outcome_unknown",
                                     reconcile=True, lost_outcome=outcome,
                                     lost_candidates=list(verdict.candidates))
                    continue  # read it again, as above
                await self.store.update_fields(job.id,
                                               lost_candidates=list(verdict.candidates))
                break

    async def _search(self, job: Job, low: float, high: float) -> lost_submits.Verdict:
        read_at = self._clock()
        history = await self._client.predictions(  # created_before is exclusive
            created_after=lost_submits.as_datetime(low),
            created_before=lost_submits.as_datetime(high + 0.001))
        doubtful = await self.store.in_doubt(job.id, since=read_at - self.limits.watch_period)
        owned = await self.store.owned(p.id for p in history.items)
        return lost_submits.choose(job, history, owned=owned, doubtful=doubtful,
                                   limits=self.limits, read_at=read_at)

    # ---- following a task -----------------------------------------------------------------

    async def _follow(self, job: Job, *, resumed: bool) -> None:
        """Poll until the task ends. The timeout is decided only after a poll that says the
        task is still going: never on the clock alone, nor on a failed poll, so a task that
        finished while the bot was down is delivered, not refunded unseen."""
        assert job.task_id is not None
        submitted = job.submitted_at or self._clock()
        deadline = submitted + self.limits.job_timeout
        wait = 0.0 if resumed else self.limits.poll_interval
        while True:
            await asyncio.sleep(wait)
            wait = max(0.0, min(self.limits.poll_interval, deadline - self._clock()))
            try:
                prediction = await self._client.get_result(job.task_id)
            except NotFoundError:
                await self._fail(job, [JobState.RUNNING], "task_missing")
                return
            except WaveSpeedError as exc:
                # Polling is safe to repeat. A failed poll says nothing about the task, so it
                # never leads to the timeout (the clip may be done): poll again, until
                # WaveSpeed would have dropped the task anyway.
                log.warning("job %d: polling task %s failed (%s); will poll again",
                            job.id, job.task_id, type(exc).__name__)
                if self._clock() >= submitted + self.limits.watch_period:
                    await self._fail(job, [JobState.RUNNING], "task_missing", reconcile=True)
                    return
                wait = self.limits.poll_interval
                continue
            if not prediction.is_terminal:
                fault_hooks.reached("polled")
                if self._clock() >= deadline:
                    await self._time_out(job, submitted)
                    return
                continue
            self._in_flight.discard(job.id)  # WaveSpeed's slot is free again
            self._wake.set()
            if prediction.succeeded:
                delivering = await self.store.transition(
                    job.id, [JobState.RUNNING], JobState.DELIVERING,
                    output_url=prediction.outputs[0], output_nsfw=prediction.output_is_nsfw)
                if delivering is not None:
                    fault_hooks.reached("completed")
                    await self._announce(delivering)
                    await self._deliver(delivering, resumed=False)
            else:
                await self._fail(job, [JobState.RUNNING], "generation_failed",
                                 detail=prediction.error or str(prediction.status))
            return

    async def _time_out(self, job: Job, submitted: float) -> None:
        """Give up on the user's behalf (refund), but not on the task: WaveSpeed may still
        finish and bill it, so flag it and keep watching it slowly (see _watch_loop)."""
        minutes = f"{self.limits.job_timeout / 60:g}"
        log.warning("job %d: task %s not finished after %s min; refunding, flagging it and "
                    "watching it until WaveSpeed drops it", job.id, job.task_id, minutes)
        await self._fail(job, [JobState.RUNNING], "timeout", detail=minutes, reconcile=True,
                         watch_until=submitted + self.limits.watch_period)
        self._watch_wake.set()

    # ---- delivering -----------------------------------------------------------------------

    async def _deliver(self, job: Job, *, resumed: bool) -> None:
        try:
            await self._deliver_once(job, resumed=resumed)
        except DeliveryError as exc:
            # Raised by the lookup for an earlier post. Permanent: the job's channel is gone
            # (or hidden), so no one can see a clip there and none can be posted: refund.
            # Otherwise Discord may be failing for now: _guarded tries again, backing off.
            if not exc.permanent:
                raise
            log.warning("job %d: cannot look for its post (%s); refunding", job.id, exc)
            await self._fail(job, [JobState.DELIVERING], "delivery_failed", detail=str(exc))

    async def _deliver_once(self, job: Job, *, resumed: bool) -> None:
        assert job.output_url is not None
        if resumed and await self._already_delivered(job):
            return
        path = self._workdir / f"job-{job.id}.mp4"
        try:
            try:
                clip = await self._fetch_clip(job.output_url, path, nsfw=bool(job.output_nsfw))
            except NotFoundError:
                await self._fail(job, [JobState.DELIVERING], "output_missing")
                return
            except UnsafeOutputURLError as exc:
                log.warning("job %d: %s", job.id, exc)
                await self._fail(job, [JobState.DELIVERING], "output_refused")
                return
            except WaveSpeedError as exc:
                await self._fail(job, [JobState.DELIVERING], "download_failed",
                                 detail=type(exc).__name__)
                return
            fault_hooks.reached("downloaded")
            for attempt in range(self.limits.delivery_attempts):
                if attempt and await self._already_delivered(job):
                    return  # an earlier attempt did post, its reply was just lost
                job = await self._mark_attempt(job)
                try:
                    receipt = await self._delivery.deliver(job, clip)
                except DeliveryWithheld as withheld:
                    log.info("job %d: clip withheld (%s); %s", job.id, withheld.reason,
                             "charged" if withheld.charge else "refunding")
                    if withheld.charge:
                        await self._finish_delivered(
                            job, {**withheld.receipt, "withheld": withheld.reason})
                    else:
                        await self._fail(job, [JobState.DELIVERING], "withheld",
                                         detail=withheld.reason)
                    return
                except DeliveryError as exc:
                    last = attempt + 1 == self.limits.delivery_attempts
                    log.warning("job %d: delivery failed (%s)%s", job.id, exc,
                                "" if last or exc.permanent else "; retrying")
                    if exc.permanent or last:
                        # A 5xx may come after Discord stored the message: look before
                        # refunding a clip that may be on the screen. (A permanent refusal,
                        # 4xx, stored nothing.)
                        if not exc.permanent and await self._already_delivered(job):
                            return
                        await self._fail(job, [JobState.DELIVERING], "delivery_failed",
                                         detail=str(exc))
                        return
                    await asyncio.sleep(self.limits.retry_delay * 2 ** attempt)
                    continue
                fault_hooks.reached("posted")
                await self._finish_delivered(job, receipt)
                return
        finally:
            path.unlink(missing_ok=True)

    async def _fetch_clip(self, url: str, path: Path, *, nsfw: bool, late: bool = False
                          ) -> Clip:
        """Download an output to `path`; over OUTPUT_MAX_BYTES, only its link is kept.
        Raises the client's WaveSpeedError for the caller to settle."""
        try:
            size = await self._client.download_output(url, path,
                                                      max_bytes=self.limits.output_max_bytes)
        except OutputTooLargeError:
            return Clip(url=url, path=None, size=None, nsfw=nsfw, late=late)
        return Clip(url=url, path=path, size=size, nsfw=nsfw, late=late)

    async def _mark_attempt(self, job: Job) -> Job:
        """Record when this post is tried, before trying it: after a crash or a lost reply,
        `find_delivery` looks for the post in exactly that window of time."""
        now = self._clock()
        started = job.delivery_started_at or now
        await self.store.update_fields(job.id, delivery_started_at=started,
                                       delivery_attempted_at=now)
        return dataclasses.replace(job, delivery_started_at=started, delivery_attempted_at=now)

    async def _already_delivered(self, job: Job) -> bool:
        receipt = await self._delivery.find_delivery(job)
        if receipt is None:
            return False
        await self._finish_delivered(job, receipt)
        return True

    async def _finish_delivered(self, job: Job, receipt: dict[str, Any]) -> None:
        done = await self.store.transition(job.id, [JobState.DELIVERING], JobState.DELIVERED,
                                           delivery=receipt, notified=True,
                                           settle_as="captured", detail="delivered")
        if done is not None:
            log.info("job %d delivered; %d credits captured", job.id, job.price)
            fault_hooks.reached("captured")
            await self._announce(done)

    # ---- failing and telling --------------------------------------------------------------

    async def _fail(
        self, job: Job, from_states: list[JobState], code: str, *, detail: str | None = None,
        reconcile: bool = False, **fields: Any,
    ) -> None:
        failed = await self.store.transition(
            job.id, from_states, JobState.FAILED, settle_as="released", detail=code,
            failure_code=code, failure_detail=describe(code, detail),
            needs_reconciliation=reconcile, **fields)
        self._in_flight.discard(job.id)
        self._wake.set()
        if failed is None:
            return
        log.info("job %d failed (%s); %d credits released", job.id, code, job.price)
        fault_hooks.reached("released")
        await self._announce(failed)
        # Its own task: telling the owner may be retried for a long time, and must hold up
        # neither the caller (start(), a cancel button's answer) nor anything else.
        self._spawn(self._notify(failed), f"notify-{failed.id}")

    async def _notify(self, job: Job) -> None:
        """Tell the owner about a failure or cancel. Retried with backoff while it might
        work; given up (and logged once) when the place to tell them is gone for good or
        after `notify_give_up` seconds, so a deleted channel is not retried forever."""
        delay = self.limits.retry_delay
        give_up_at = self._monotonic() + self.limits.notify_give_up
        failures = 0
        while True:
            try:
                await self._delivery.job_finished(job)
            except Exception as exc:  # noqa: BLE001 - the front end's errors must not stop us
                failures += 1
                permanent = isinstance(exc, DeliveryError) and exc.permanent
                if permanent or self._monotonic() + delay > give_up_at:
                    log.warning("job %d: giving up telling its owner after %d tries (%s: %s); "
                                "the refund stands", job.id, failures, type(exc).__name__,
                                exc)
                    break
                (log.warning if failures == 1 else log.debug)(
                    "job %d: could not notify its owner (%s); retrying", job.id,
                    type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)
                continue
            break
        await self.store.update_fields(job.id, notified=True)

    async def _announce(self, job: Job) -> None:
        try:
            await self._delivery.job_updated(job)
        except Exception as exc:  # noqa: BLE001 - status updates are best effort
            log.warning("job %d: status update failed (%s)", job.id, type(exc).__name__)

    # ---- watching timed-out tasks ---------------------------------------------------------

    async def _watch_loop(self) -> None:
        """Each watched task is polled every `watch_interval`; the database is read every
        `watch_scan`, so a task adopted by hand (`ops reconcile --task`, another process)
        is polled soon after, not a whole interval later."""
        due: dict[int, float] = {}  # job id -> monotonic time of its next poll
        while True:
            self._watch_wake.clear()
            try:
                watched = await self.store.watched()
            except Exception:
                log.exception("late watcher: could not read the watched jobs; next round")
                watched = []
            now = self._monotonic()
            due = {job.id: due.get(job.id, now) for job in watched}
            for job in watched:
                if due[job.id] > now:
                    continue
                due[job.id] = now + self.limits.watch_interval
                try:  # one job's trouble must not keep the others from being watched
                    await self._watch_once(job)
                except LeaseLost:
                    log.warning("late watcher stopped: this process no longer holds the "
                                "instance lease")
                    return
                except DeliveryError as exc:
                    if exc.permanent:
                        log.warning("job %d: late clip cannot be posted (%s)", job.id, exc)
                        await self.store.set_late_outcome(job.id, "undeliverable")
                    else:
                        log.info("job %d: late delivery failed (%s); next round", job.id, exc)
                except Exception:
                    log.exception("job %d: late watcher error; next round", job.id)
            # Woken when a job here times out: it is new, so it is polled at once.
            pause = min(self.limits.watch_interval, self.limits.watch_scan)
            with contextlib.suppress(TimeoutError):  # not wait_for: see _dispatch_loop
                async with asyncio.timeout(pause):
                    await self._watch_wake.wait()

    async def _watch_once(self, job: Job) -> None:
        """One slow poll of a timed-out job's task; a clip that arrives late is posted free
        (the job was refunded when it timed out, and stays so)."""
        assert job.task_id is not None and job.watch_until is not None
        if self._clock() >= job.watch_until:
            log.info("job %d: task %s never finished; no longer watched", job.id, job.task_id)
            await self.store.set_late_outcome(job.id, "expired")
            return
        try:
            prediction = await self._client.get_result(job.task_id)
        except NotFoundError:
            await self.store.set_late_outcome(job.id, "missing")
            return
        except WaveSpeedError as exc:
            log.info("job %d: late poll failed (%s); next round", job.id, type(exc).__name__)
            return
        if not prediction.is_terminal:
            return
        if prediction.status is TaskStatus.COMPLETED and not prediction.outputs:
            await self.store.set_late_outcome(job.id, "missing")  # billed, and nothing to post
            return
        if not prediction.succeeded:
            # WaveSpeed refunds failed tasks itself: nothing for the operator to settle.
            if await self.store.set_late_outcome(job.id, "failed"):
                await self.store.mark_reconciled(
                    job.id, f"task {job.task_id} ended {prediction.status} at WaveSpeed after "
                    "the timeout; WaveSpeed refunds failed tasks")
            return
        await self._deliver_late(job, prediction.outputs[0], prediction.output_is_nsfw)

    async def _deliver_late(self, job: Job, url: str, nsfw: bool) -> None:
        # Posted before? Only possible if a post was ever tried (its time is recorded first).
        found = (await self._delivery.find_delivery(job)
                 if job.delivery_started_at is not None else None)
        if found is not None:
            await self._late_delivered(job, found)
            return
        path = self._workdir / f"job-{job.id}-late.mp4"
        try:
            try:
                clip = await self._fetch_clip(url, path, nsfw=nsfw, late=True)
            except NotFoundError:
                await self.store.set_late_outcome(job.id, "missing")
                return
            except UnsafeOutputURLError as exc:
                log.warning("job %d: %s", job.id, exc)
                await self.store.set_late_outcome(job.id, "undeliverable")
                return
            except WaveSpeedError as exc:
                log.info("job %d: late download failed (%s); next round", job.id,
                         type(exc).__name__)
                return
            job = await self._mark_attempt(job)
            try:  # a DeliveryError is settled by _watch_loop, like one from find_delivery
                receipt = await self._delivery.deliver(job, clip)
            except DeliveryWithheld as withheld:
                await self.store.set_late_outcome(job.id, "withheld",
                                                  delivery={"withheld": withheld.reason})
                return
            await self._late_delivered(job, receipt)
        finally:
            path.unlink(missing_ok=True)

    async def _late_delivered(self, job: Job, receipt: dict[str, Any]) -> None:
        if await self.store.set_late_outcome(job.id, "delivered",
                                             delivery={**receipt, "late": True}):
            log.info("job %d: task %s finished late; clip posted, not charged", job.id,
                     job.task_id)

    # ---- task ownership -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s crashed", task.get_name(), exc_info=task.exception())

    def _spawn_job(self, job_id: int, coro: Coroutine[Any, Any, None]) -> None:
        self._spawn(self._guarded(job_id, coro), f"job-{job_id}")

    async def _guarded(self, job_id: int, coro: Coroutine[Any, Any, None]) -> None:
        """An unexpected error (a bug, the database briefly locked) must not strand a job:
        pick it up again from its saved state."""
        try:
            await coro
        except LeaseLost:
            # Not an error to retry: another process holds the lease and resumes the job.
            log.warning("job %d: left to the instance that now holds the lease", job_id)
            self._in_flight.discard(job_id)
        except Exception:
            errors = self._resumes.get(job_id, 0) + 1
            self._resumes[job_id] = errors
            # Backing off: an error that keeps coming (Discord down for an hour) must not
            # become a hot loop of tracebacks.
            delay = min(self.limits.resume_delay * 2 ** (errors - 1), 300.0)
            log.exception("job %d: unexpected error (%d in a row); resuming from its saved "
                          "state in %.0fs", job_id, errors, delay)
            self._in_flight.discard(job_id)
            while True:
                await asyncio.sleep(delay)
                # Retried: if the resume fails too (the database still locked), this is
                # the job's last task, and ending it would strand the job until a restart.
                try:
                    job = await self.store.get(job_id)
                    if job is not None and not job.state.is_terminal:
                        await self._resume(job)
                    return
                except LeaseLost:
                    log.warning("job %d: left to the instance that now holds the lease",
                                job_id)
                    return
                except Exception:
                    delay = min(delay * 2, 300.0)
                    log.exception("job %d: resuming it failed; trying again in %.0fs",
                                  job_id, delay)
        else:
            self._resumes.pop(job_id, None)
