"""The simulated world around the engine: WaveSpeed, Discord (as the engine's Delivery) and
a database that fails on cue, all in-process and on the virtual clock.

Each fake keeps its "server side" apart from the caller: a task is created, a message is
stored, by a timer of its own (`loop.call_later`), so a caller cut off by a crash or a lost
reply does not undo what the server already did - exactly the case the engine must survive.
Every fault is drawn from the seed's fault stream, counted, and written to the trace.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from engine.delivery import Clip, DeliveryError, DeliveryWithheld
from storage.database import Database
from storage.jobs import Job
from wavespeed.client import WaveSpeedClient
from wavespeed.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionDroppedError,
    ConnectionFailedError,
    MalformedResponseError,
    NotFoundError,
    OutputTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    UnsafeOutputURLError,
    WaveSpeedError,
)
from wavespeed.models import MODEL_PATH, GenerationRequest, History, Prediction, TaskStatus

EPOCH = 1_750_000_000.0  # the wall clock at virtual time 0
SUBMIT_READ_TIMEOUT = 60.0  # the real client's default submit read timeout

# Base rates of each fault per call, scaled by the seed's intensity (0..1).
RATES: dict[str, float] = {
    "submit_429": 0.08, "submit_503": 0.04, "submit_conn_failed": 0.03, "submit_400": 0.01,
    "submit_401": 0.005, "submit_timeout": 0.05, "submit_dropped": 0.04, "submit_500": 0.03,
    "submit_malformed": 0.02,
    "poll_error": 0.04, "poll_unknown_status": 0.02,
    "history_error": 0.10, "history_incomplete": 0.05,
    "download_404": 0.02, "download_error": 0.03, "download_too_large": 0.03,
    "download_unsafe": 0.01,
    "deliver_error": 0.08, "deliver_lost_reply": 0.08, "deliver_permanent": 0.02,
    "find_error": 0.05, "update_error": 0.05, "notify_error": 0.10,
    "db_locked": 0.012, "db_commit_full": 0.008, "db_read_locked": 0.004,
}
# What a created task does (not scaled: these are WaveSpeed's own outcomes).
TASK_OUTCOMES: tuple[tuple[str, float], ...] = (
    ("completed", 0.78), ("nsfw", 0.04), ("failed", 0.07), ("cancelled", 0.02),
    ("timeout", 0.02), ("never", 0.04), ("deleted", 0.03),
)


class Faults:
    """The seed's fault stream. `healed` turns every fault off (the end of a run, so each
    job can finish); an outage fails every WaveSpeed call between two virtual times."""

    def __init__(self, rng: random.Random, intensity: float, db_faults: bool,
                 outage: tuple[float, float] | None) -> None:
        self.rng = rng
        self.intensity = intensity
        self.db_faults = db_faults
        self.outage = outage
        self.healed = False
        self.injected: Counter[str] = Counter()

    def roll(self, kind: str) -> bool:
        if self.healed or (kind.startswith("db_") and not self.db_faults):
            return False
        if self.rng.random() < RATES[kind] * self.intensity:
            self.injected[kind] += 1
            return True
        return False

    def in_outage(self, now: float) -> bool:
        if self.healed or self.outage is None:
            return False
        hit = self.outage[0] <= now < self.outage[1]
        if hit:
            self.injected["outage_call"] += 1
        return hit


@dataclass
class Trace:
    """What happened, in order, at which virtual time; its digest is what a replay must
    reproduce exactly."""

    loop: asyncio.AbstractEventLoop
    events: list[str] = field(default_factory=list)

    def __call__(self, what: str) -> None:
        self.events.append(f"{self.loop.time():.6f} {what}")

    def digest(self, extra: list[str]) -> str:
        return hashlib.sha256("\n".join([*self.events, *extra]).encode()).hexdigest()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# ---- WaveSpeed ---------------------------------------------------------------------------


@dataclass
class SimTask:
    id: str
    prompt: str
    created_at: float          # wall clock
    finish_at: float           # wall clock
    outcome: str
    download_fault: str | None


@dataclass
class SubmitRecord:
    """One submit POST as WaveSpeed saw it."""

    prompt: str
    at: float                  # wall clock when it arrived
    error: str | None          # the error the client raised, None if answered
    may_exist: bool            # what that error told the engine
    task_id: str | None        # the task it created (now or later), if any
    refused: bool = False      # the truth: refused before anything was processed


class SimWaveSpeed(WaveSpeedClient):
    """In-process WaveSpeed with the methods of WaveSpeedClient the engine calls, raising
    the same WaveSpeedError subclasses the real client raises once its own retries are
    spent. Not initialised as a real client: any other method fails loudly."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, faults: Faults,
                 trace: Trace) -> None:
        self._loop = loop
        self._rng = rng                # task behaviour and latencies
        self._faults = faults
        self._trace = trace
        self.tasks: dict[str, SimTask] = {}
        self.submits: list[SubmitRecord] = []
        self._next = 0

    def _now(self) -> float:
        return EPOCH + self._loop.time()

    def _create_later(self, record: SubmitRecord, delay: float) -> None:
        self._next += 1
        task_id = f"task{self._next:05d}"
        record.task_id = task_id

        def create() -> None:
            now = self._now()
            outcome = _pick(self._rng, TASK_OUTCOMES)
            download = None
            for kind in ("download_404", "download_error", "download_too_large",
                         "download_unsafe"):
                if self._faults.roll(kind):
                    download = kind
                    break
            self.tasks[task_id] = SimTask(task_id, record.prompt, now,
                                          now + self._rng.uniform(20.0, 400.0), outcome,
                                          download)
            self._trace(f"ws create {task_id} for {record.prompt!r}: {outcome} "
                        f"download={download}")

        self._loop.call_later(delay, create)

    async def submit(self, request: GenerationRequest) -> Prediction:
        record = SubmitRecord(request.prompt, self._now(), None, False, None)
        self.submits.append(record)
        f = self._faults
        refusal: WaveSpeedError | None = None
        if f.in_outage(self._loop.time()):
            refusal = ConnectionFailedError("cannot connect to WaveSpeed")
        elif f.roll("submit_429"):
            retry_after = self._rng.choice([None, 5.0, 30.0, 90.0])
            refusal = RateLimitedError("429", retry_after=retry_after)
        elif f.roll("submit_503"):
            refusal = ServerError("503", status=503)
        elif f.roll("submit_conn_failed"):
            refusal = ConnectionFailedError("connection refused")
        elif f.roll("submit_400"):
            refusal = BadRequestError("prompt rejected", status=400)
        elif f.roll("submit_401"):
            refusal = AuthenticationError("bad key", status=401)
        if refusal is not None:
            await asyncio.sleep(self._rng.uniform(0.05, 1.0))
            return self._refuse(record, refusal)
        lost: WaveSpeedError | None = None
        reply_after = self._rng.uniform(0.2, 4.0)
        if f.roll("submit_timeout"):
            lost, reply_after = RequestTimeoutError("no reply"), SUBMIT_READ_TIMEOUT
        elif f.roll("submit_dropped"):
            lost = ConnectionDroppedError("connection reset")
        elif f.roll("submit_500"):
            lost = ServerError("500", status=self._rng.choice([500, 502, 504]))
        elif f.roll("submit_malformed"):
            lost = MalformedResponseError("not JSON")
        if lost is None:
            self._create_later(record, self._rng.uniform(0.0, reply_after))
        elif self._rng.random() < 0.75:
            # Created during the POST, or (queued at WaveSpeed) up to 20 s after the reply
            # was lost: inside the window the engine searches (lost_window_after = 30 s).
            self._create_later(record, self._rng.uniform(0.0, reply_after + 20.0))
        self._trace(f"ws submit {request.prompt!r} -> {type(lost).__name__ if lost else 'ok'}"
                    f" task={record.task_id}")
        await asyncio.sleep(reply_after)
        if lost is not None:
            record.error, record.may_exist = type(lost).__name__, lost.task_may_exist
            raise lost
        assert record.task_id is not None
        return Prediction(id=record.task_id, status=TaskStatus.CREATED, model=MODEL_PATH,
                          created_at=iso(record.at))

    def _refuse(self, record: SubmitRecord, exc: WaveSpeedError) -> Prediction:
        record.error, record.may_exist = type(exc).__name__, exc.task_may_exist
        record.refused = True
        self._trace(f"ws submit {record.prompt!r} refused {type(exc).__name__}")
        raise exc

    def _view(self, task: SimTask) -> Prediction:
        now = self._now()
        created = iso(task.created_at)
        if now < task.finish_at or task.outcome == "never":
            status = (TaskStatus.CREATED if now < task.created_at + 3
                      else TaskStatus.PROCESSING)
            return Prediction(id=task.id, status=status, model=MODEL_PATH, created_at=created)
        if task.outcome in ("completed", "nsfw"):
            return Prediction(id=task.id, status=TaskStatus.COMPLETED,
                              outputs=(f"https://cdn.sim/out/{task.id}.mp4",),
                              has_nsfw_contents=(task.outcome == "nsfw",), model=MODEL_PATH,
                              created_at=created)
        status = {"failed": TaskStatus.FAILED, "cancelled": TaskStatus.CANCELLED,
                  "timeout": TaskStatus.TIMEOUT, "deleted": TaskStatus.DELETED}[task.outcome]
        return Prediction(id=task.id, status=status, error=f"task {task.outcome}",
                          model=MODEL_PATH, created_at=created)

    async def get_result(self, task_id: str) -> Prediction:
        await asyncio.sleep(self._rng.uniform(0.05, 0.5))
        f = self._faults
        if f.in_outage(self._loop.time()) or f.roll("poll_error"):
            exc = self._rng.choice([ServerError("500", status=500),
                                    RequestTimeoutError("no reply"),
                                    MalformedResponseError("not JSON")])
            self._trace(f"ws poll {task_id} -> {type(exc).__name__}")
            raise exc
        task = self.tasks.get(task_id)
        if task is None or (task.outcome == "deleted" and self._now() >= task.finish_at):
            self._trace(f"ws poll {task_id} -> 404")
            raise NotFoundError(f"no task {task_id}", status=404)
        view = self._view(task)
        if not view.is_terminal and f.roll("poll_unknown_status"):
            view = Prediction(id=view.id, status="pending", model=MODEL_PATH,
                              created_at=view.created_at)
        self._trace(f"ws poll {task_id} -> {view.status}")
        return view

    async def predictions(self, *, created_after: datetime, created_before: datetime,
                          model: str | None = MODEL_PATH, status: str | None = None,
                          page_size: int = 100, max_pages: int = 20) -> History:
        await asyncio.sleep(self._rng.uniform(0.1, 1.5))
        f = self._faults
        if f.in_outage(self._loop.time()) or f.roll("history_error"):
            self._trace("ws history -> ServerError")
            raise ServerError("502", status=502)
        low, high = created_after.timestamp(), created_before.timestamp()
        found = sorted((t for t in self.tasks.values() if low <= t.created_at < high),
                       key=lambda t: t.created_at, reverse=True)
        complete = True
        if found and f.roll("history_incomplete"):
            found, complete = found[1:], False  # an item that did not parse was skipped
        self._trace(f"ws history [{iso(low)}, {iso(high)}) -> "
                    f"{[t.id for t in found]} complete={complete}")
        return History(tuple(self._view(t) for t in found), complete)

    async def download_output(self, url: str, dest: Path, *, max_bytes: int) -> int:
        await asyncio.sleep(self._rng.uniform(0.1, 3.0))
        task_id = url.rsplit("/", 1)[-1].removesuffix(".mp4")
        task = self.tasks[task_id]
        fault = task.download_fault if not self._faults.healed else None
        self._trace(f"ws download {task_id} -> {fault or 'ok'}")
        if fault == "download_404":
            raise NotFoundError("output gone", status=404)
        if fault == "download_error" or self._faults.in_outage(self._loop.time()):
            raise ServerError("503", status=503)
        if fault == "download_too_large":
            raise OutputTooLargeError("too large", size_limit=max_bytes)
        if fault == "download_unsafe":
            raise UnsafeOutputURLError("redirect to a private address")
        data = f"MP4 {task_id}".encode()
        dest.write_bytes(data)  # noqa: ASYNC240 - a few bytes; a thread would cost determinism
        return len(data)


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    r, total = rng.random(), 0.0
    for name, weight in table:
        total += weight
        if r < total:
            return name
    return table[-1][0]


# ---- Discord, as the engine's Delivery --------------------------------------------------


@dataclass(frozen=True)
class Post:
    job_id: int
    url: str
    attached: bool
    late: bool
    receipt: dict[str, Any]


class SimDelivery:
    """Posts land in a history that outlives restarts, like a channel's messages. A post is
    stored by the server a moment after the request, whatever becomes of the caller; a
    "lost reply" is a post stored whose answer never arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random, faults: Faults,
                 trace: Trace, *, nsfw_charge: bool) -> None:
        self._loop = loop
        self._rng = rng
        self._faults = faults
        self._trace = trace
        self.nsfw_charge = nsfw_charge
        self.posts: list[Post] = []
        self.notices: list[int] = []   # jobs told about a withheld clip
        self.finished: list[int] = []  # failure / cancel notices delivered
        self._ids = 900_000

    async def deliver(self, job: Job, clip: Clip) -> dict[str, Any]:
        f = self._faults
        took = self._rng.uniform(0.2, 3.0)
        if f.roll("deliver_error"):
            await asyncio.sleep(took)
            self._trace(f"discord post job {job.id} -> 503, not stored")
            raise DeliveryError("Discord answered 503")
        if f.roll("deliver_permanent"):
            await asyncio.sleep(took)
            self._trace(f"discord post job {job.id} -> 403")
            raise DeliveryError("Missing Access (403)", permanent=True)
        if clip.nsfw:
            await asyncio.sleep(took)
            self.notices.append(job.id)
            self._trace(f"discord job {job.id} withheld nsfw charge={self.nsfw_charge}")
            raise DeliveryWithheld("flagged NSFW", charge=self.nsfw_charge,
                                   receipt={"notice": True})
        self._ids += 1
        receipt = {"message_id": self._ids, "attached": clip.path is not None}
        attached = clip.path is not None and clip.path.read_bytes().startswith(b"MP4 ")
        post = Post(job.id, clip.url, attached, clip.late, receipt)
        lost = f.roll("deliver_lost_reply")
        self._loop.call_later(took * self._rng.uniform(0.3, 1.0),
                              lambda: self._store(post))
        self._trace(f"discord post job {job.id} late={clip.late} lost_reply={lost}")
        await asyncio.sleep(took)
        if lost:
            raise DeliveryError("Discord answered 502 after storing the message")
        return receipt

    def _store(self, post: Post) -> None:
        self.posts.append(post)
        self._trace(f"discord stored post {post.receipt['message_id']} of job {post.job_id}")

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        await asyncio.sleep(self._rng.uniform(0.05, 0.5))
        if self._faults.roll("find_error"):
            self._trace(f"discord history for job {job.id} -> 500")
            raise DeliveryError("Discord answered 500")
        for post in self.posts:
            if post.job_id == job.id:
                return post.receipt
        return None

    async def job_updated(self, job: Job) -> None:
        await asyncio.sleep(0.01)
        if self._faults.roll("update_error"):
            raise DeliveryError("429 on the status edit")

    async def job_finished(self, job: Job) -> None:
        await asyncio.sleep(self._rng.uniform(0.05, 0.5))
        if self._faults.roll("notify_error"):
            raise DeliveryError("Discord answered 503")
        self.finished.append(job.id)
        self._trace(f"discord told owner of job {job.id}: {job.state}")


# ---- the database ------------------------------------------------------------------------


class SimDatabase(Database):
    """The real Database, whose transactions and reads fail now and then as SQLite's do:
    "database is locked" before anything ran (another process past the busy timeout), and
    "database or disk is full" at COMMIT, which rolls the whole transaction back."""

    faults: Faults | None = None

    @asynccontextmanager
    async def transaction(self, *, fenced: bool = True
                          ) -> AsyncIterator[aiosqlite.Connection]:
        if self.faults is not None and self.faults.roll("db_locked"):
            raise sqlite3.OperationalError("database is locked")
        async with super().transaction(fenced=fenced) as conn:
            yield conn
            if self.faults is not None and self.faults.roll("db_commit_full"):
                raise sqlite3.OperationalError("database or disk is full")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        if self.faults is not None and self.faults.roll("db_read_locked"):
            raise sqlite3.OperationalError("database is locked")
        async with super().reading() as conn:
            yield conn


async def open_sim_database(path: Path, faults: Faults | None) -> SimDatabase:
    db = await SimDatabase.open(path)
    assert isinstance(db, SimDatabase)
    db.faults = faults
    return db
