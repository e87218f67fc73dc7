"""SimulatedWaveSpeed: a real aiohttp server on 127.0.0.1 speaking the WAN 2.6 contract.

It is the bot's simulate mode (WAVESPEED_MODE=simulate; simulator/service.py starts it inside
the bot's process) and, with fast timing and tiny outputs, the tests' fake WaveSpeed
(tests/fakes/wavespeed.py). The bot's real client talks to it over HTTP, so everything the
client does is exercised as against the paid API.

Task state is derived from time.monotonic() elapsed since creation. A `planner` decides how
a new task behaves (timing, outcome) from its request; a `renderer` makes its output video
while it runs (a task is completed only once its output exists, and fails if rendering
does); without one, `static_output` is served. Tier limits: `max_concurrent` running tasks
and `submits_per_minute` (429 with Retry-After beyond them). Faults are injected per route
and consumed one per request, FIFO.

Uploads speak both protocols: the SDK's direct upload (`POST /api/v3/media/uploads` for a
ticket, then a `PUT` of the bytes to a presigned-style `/storage/{token}?signature=...` URL,
which like real object storage refuses an Authorization header, a wrong Content-Type, a
size other than the declared one and anything over 100 MB) and the older multipart
`POST /api/v3/media/upload/binary`. `direct_uploads = False` models a deployment without
the former.

History: `POST /api/v3/predictions` lists the tasks newest first, only those created in the
last 7 days by `SimulatedWaveSpeed.clock` (the wall clock, time.time unless a test replaces it),
with WaveSpeed's filters and paging. `add_foreign_task` plants tasks that were not made through
submit (website tasks, other models' tasks, old ones): listed and pollable, not in
`submissions`.

Faults that lose a reply after creating the task (a submit is processed and recorded in
`submissions`, but the client cannot know): `Fault.drop` (socket closed, no reply),
`Fault.malformed` (200 with broken JSON), `Fault.status_after_create` (an error status, as from
a gateway whose upstream did the work), and `Fault.delay` when the client stops waiting first.
`Fault.status` and `Fault.redirect` answer before the request is processed: no task.
`outage(seconds)` makes chosen routes answer 503 for a while, the same way. A task with
`TaskBehaviour.gone` is deleted at its end: its result GET is a 404 and history drops it.

Pricing: `POST /api/v3/model/pricing` (`{"model_id", "inputs"}`) answers `data.unit_price`, the
USD price of one task with those inputs, from `quote_usd` (default `contract_price_usd`, the
contract's table; replaceable at any time). The same function is what a submit costs: with
`charge_at_submit` (set by passing `prices_usd`, as simulate mode does) the play-money balance
is charged that price at submit and given back when the task fails; without it (the tests'
default) the balance never moves, but the quote is still served. A task remembers what it
was charged, so a quote changed later does not change its refund.

Media rules, as WaveSpeed documents them: uploads over 100 MB are refused (413 on the binary
upload, 400 on a ticket declaring more, 413 on a PUT sending more), as are files that are not
video, audio or an image by extension or content type (400 "unsupported file type"; see
`SUPPORTED_EXTENSIONS`). Uploads are kept `media_ttl` seconds (default 7 days) by `clock`
from their arrival (`upload_times`); after that `GET /media/...` is a 404 and the bytes are
dropped. A token put into `uploads` by hand, with no upload time, never expires.

References into this server's own media store (`{base_url}/media/...`) are checked at submit
as WaveSpeed would fetch them: an unknown or expired one still creates (and bills) the task,
which then fails with "reference N could not be downloaded (HTTP 404)" (or "the reference
audio ..."); with a `reference_check` hook (tests: a PyAV decode), a reference whose bytes
it finds unusable fails the task with "reference N could not be decoded: <why>". References
on other hosts are not checked here (simulate mode's renderer downloads and decodes them).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self, TypeGuard
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from wavespeed.models import (
    DURATIONS,
    HISTORY_STATUSES,
    MAX_VIDEOS,
    MODEL_PATH,
    SEED_MAX,
    SEED_MIN,
    SHOT_TYPES,
    SIZES,
)

# "upload" is the multipart binary upload; "upload_ticket" and "upload_put" the direct one;
# "history" is POST /api/v3/predictions; "pricing" is POST /api/v3/model/pricing.
ROUTES = frozenset(
    {"submit", "result", "upload", "upload_ticket", "upload_put", "balance", "output", "history",
     "pricing"}
)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # the contract's 100 MB video limit
_MULTIPART_SLACK = 1024 * 1024  # framing around the file in a binary upload
MEDIA_TTL_SECONDS: Final = 7 * 86_400  # uploads are kept 7 days (docs)
# The contract's price table, in USD per task, by (size, duration).
CONTRACT_PRICES_USD: Final[dict[tuple[str, int], float]] = {
    ("1280*720", 5): 1.00, ("720*1280", 5): 1.00, ("1280*720", 10): 1.50, ("720*1280", 10): 1.50,
    ("1920*1080", 5): 1.50, ("1080*1920", 5): 1.50,
    ("1920*1080", 10): 2.25, ("1080*1920", 10): 2.25,
}
# What the media store takes: by extension, and the content types that go with them.
SUPPORTED_EXTENSIONS: Final[dict[str, str]] = {
    ".mp4": "video", ".mov": "video", ".m4v": "video", ".webm": "video", ".mkv": "video",
    ".mp3": "audio", ".wav": "audio", ".m4a": "audio", ".aac": "audio", ".ogg": "audio",
    ".flac": "audio",
    ".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".gif": "image",
}
SUPPORTED_CONTENT_TYPES: Final[dict[str, str]] = {
    "video/mp4": "video", "video/quicktime": "video", "video/x-m4v": "video",
    "video/webm": "video", "video/x-matroska": "video", "video/mkv": "video",
    "audio/mpeg": "audio", "audio/mp3": "audio", "audio/wav": "audio", "audio/x-wav": "audio",
    "audio/wave": "audio", "audio/vnd.wave": "audio", "audio/mp4": "audio",
    "audio/x-m4a": "audio", "audio/m4a": "audio", "audio/aac": "audio", "audio/x-aac": "audio",
    "audio/ogg": "audio", "audio/flac": "audio", "audio/x-flac": "audio",
    "image/png": "image", "image/jpeg": "image", "image/jpg": "image", "image/webp": "image",
    "image/gif": "image",
}
_UNTYPED = ("", "application/octet-stream", "binary/octet-stream")  # says nothing of the type
MAX_PAGE_SIZE = 100
MAX_KEPT_OUTPUT_BYTES = 256 * 1024 * 1024  # with output_ttl: rendered outputs in memory
MAX_KEPT_UPLOAD_BYTES = 512 * 1024 * 1024  # uploaded media in memory, newest kept
HISTORY_DAYS = 7  # WaveSpeed lists only the past 7 days
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 64 * 1024
_DROPPED = web.RequestKey("dropped", bool)  # marks a request answered by Fault.drop

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# How a new task behaves, from its submit body (when no behaviour was queued for it).
Planner = Callable[[dict[str, Any]], "TaskBehaviour"]
# Makes a task's output video (raises RenderError when it cannot).
Renderer = Callable[["SimTask"], Awaitable[bytes]]
# The USD price of one task with these submit inputs.
Quote = Callable[[dict[str, Any]], float]
# Whether a stored reference's bytes are usable as `kind` ("video" or "audio"): None if so,
# else a short reason ("no video stream").
ReferenceCheck = Callable[[bytes, str], Awaitable[str | None]]


def contract_price_usd(inputs: dict[str, Any]) -> float:
    """The contract's price of one task with these (valid) inputs: 720p $1.00 (5 s) or $1.50
    (10 s), 1080p $1.50 or $2.25; size 1280*720 and 5 s when left out."""
    return CONTRACT_PRICES_USD[(inputs.get("size", SIZES[0]), inputs.get("duration", 5))]


class RenderError(Exception):
    """A task's output cannot be made (say, a reference does not decode): the task fails
    with str() as its error, as the real model fails on an unusable reference."""


class _FaultKind(Enum):
    STATUS = "status"
    DELAY = "delay"
    DROP = "drop"
    MALFORMED = "malformed"
    REDIRECT = "redirect"
    STATUS_AFTER_CREATE = "status_after_create"


@dataclass(frozen=True)
class Fault:
    kind: _FaultKind
    code: int = 0
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0
    location: str = ""

    @classmethod
    def status(
        cls, code: int, message: str = "injected fault", retry_after: float | None = None
    ) -> Fault:
        """Reply `code` with the error envelope. On submit, no task is created."""
        return cls(_FaultKind.STATUS, code=code, message=message, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Process normally (a submit creates its task), but reply only after `seconds`."""
        return cls(_FaultKind.DELAY, seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Process normally (a submit creates its task), then close the socket with no reply."""
        return cls(_FaultKind.DROP)

    @classmethod
    def malformed(cls) -> Fault:
        """Process normally (a submit creates its task), then answer 200 with broken JSON."""
        return cls(_FaultKind.MALFORMED)

    @classmethod
    def status_after_create(cls, code: int, message: str = "upstream timed out") -> Fault:
        """Process normally (a submit creates its task and is recorded in `submissions`), then
        answer `code` with the error envelope: a gateway (502/504) whose upstream did the work."""
        return cls(_FaultKind.STATUS_AFTER_CREATE, code=code, message=message)

    @classmethod
    def redirect(cls, location: str, code: int = 302) -> Fault:
        """Answer `code` with `Location: location` instead of processing the request."""
        return cls(_FaultKind.REDIRECT, code=code, location=location)


class _Outcome(Enum):
    OK = "ok"
    FAIL = "fail"
    NEVER = "never"
    NSFW = "nsfw"
    HUGE = "huge"
    OUTPUT_MISSING = "output_missing"
    GONE = "gone"


@dataclass(frozen=True)
class TaskBehaviour:
    outcome: _Outcome
    complete_after: float | None = None
    message: str = ""
    processing_after: float | None = None  # None: the server's
    size_bytes: int = 0
    waiting_status: str | None = None  # reported instead of created/processing
    failed_status: str = "failed"  # reported when the outcome is FAIL

    @classmethod
    def ok(cls, *, complete_after: float | None = None,
           processing_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.OK, complete_after, processing_after=processing_after)

    @classmethod
    def fail(
        cls,
        message: str = "generation failed",
        *,
        complete_after: float | None = None,
        status: str = "failed",
        processing_after: float | None = None,
    ) -> TaskBehaviour:
        """Ends reporting `status`: failed, or cancelled/timeout/deleted as WaveSpeed may."""
        return cls(_Outcome.FAIL, complete_after, message=message, failed_status=status,
                   processing_after=processing_after)

    def waiting_as(self, status: str) -> TaskBehaviour:
        """The same behaviour, reporting `status` (e.g. pending, queued) until it ends."""
        return dataclasses.replace(self, waiting_status=status)

    @classmethod
    def never(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        """Stays processing until SimulatedWaveSpeed.finish_task (complete_after is ignored)."""
        return cls(_Outcome.NEVER, complete_after)

    @classmethod
    def nsfw(cls, *, complete_after: float | None = None,
             processing_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.NSFW, complete_after, processing_after=processing_after)

    @classmethod
    def huge(cls, size_bytes: int, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.HUGE, complete_after, size_bytes=size_bytes)

    @classmethod
    def output_missing(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.OUTPUT_MISSING, complete_after)

    @classmethod
    def gone(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        """Runs, then is deleted at WaveSpeed: once it would have ended, its result GET is a
        404 ("prediction not found") and history no longer lists it."""
        return cls(_Outcome.GONE, complete_after, failed_status="deleted")


@dataclass
class SimTask:
    id: str
    body: dict[str, Any]
    behaviour: TaskBehaviour
    created: float  # time.monotonic()
    created_at: str  # ISO timestamp as WaveSpeed reports it
    processing_after: float
    complete_after: float
    finished_at: float | None = None  # set by finish_task
    model: str = MODEL_PATH
    wall_ns: int = 0  # creation on SimulatedWaveSpeed.clock, in ns since the epoch (for history)
    # With a renderer: the output once made, or why it could not be (the task then fails).
    # Also set while its own-media references are being checked (reference_check).
    rendering: bool = False
    output: bytes | None = None
    render_error: str | None = None
    charged_usd: float = 0.0  # taken from the balance at submit (given back if it fails)

    def end_time(self) -> float:
        """Monotonic time the task leaves created/processing (inf while it never ends)."""
        if self.finished_at is not None:
            return self.finished_at
        if self.behaviour.outcome is _Outcome.NEVER:
            return math.inf
        return self.created + self.complete_after

    def status(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if now >= self.end_time():
            if (self.behaviour.outcome in (_Outcome.FAIL, _Outcome.GONE)
                    or self.render_error is not None):
                return "failed"
            if self.rendering:
                return "processing"  # as WaveSpeed: completed only once the output exists
            return "completed"
        if now - self.created >= self.processing_after:
            return "processing"
        return "created"

    @property
    def running(self) -> bool:
        return self.status() in ("created", "processing")

    @property
    def deleted(self) -> bool:
        """A TaskBehaviour.gone task past its end: WaveSpeed no longer knows it."""
        return self.behaviour.outcome is _Outcome.GONE and time.monotonic() >= self.end_time()

    def to_data(self, base_url: str) -> dict[str, Any]:
        status = self.status()
        done = status == "completed"
        reported = status
        if status == "failed":
            reported = self.behaviour.failed_status
        elif not done and self.behaviour.waiting_status is not None:
            reported = self.behaviour.waiting_status
        return {
            "id": self.id,
            "model": self.model,
            "status": reported,
            "outputs": [f"{base_url}/outputs/{self.id}.mp4"] if done else [],
            "urls": {"get": f"{base_url}/api/v3/predictions/{self.id}/result"},
            "has_nsfw_contents": [self.behaviour.outcome is _Outcome.NSFW] if done else [],
            "created_at": self.created_at,
            "error": (self.render_error or self.behaviour.message) if status == "failed" else "",
            "timings": {"inference": round(self.complete_after * 1000) if done else 0},
        }


@dataclass
class SimUpload:
    """A direct upload the fake handed out: the PUT must match what was declared."""

    token: str
    filename: str
    size: int
    content_type: str | None
    signature: str  # the presigned URL's query token
    put: bool = False  # the bytes arrived


@dataclass(frozen=True)
class Submission:
    task_id: str
    body: dict[str, Any]
    at: float  # time.monotonic()


@dataclass
class RecordedRequest:
    method: str
    path: str
    status: int  # 0 = no reply: dropped, or still being answered
    authorized: bool  # a correct "Bearer <api_key>" header was present
    had_auth_header: bool
    at: float = field(default_factory=time.monotonic)  # arrival, time.monotonic()


def _envelope(code: int, message: str, data: Any = None, **headers: str) -> web.Response:
    body = {"code": code, "message": message, "data": data}
    return web.json_response(body, status=code, headers=headers or None)


class SimulatedWaveSpeed:
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        processing_after: float = 0.02,
        complete_after: float = 0.1,
        max_concurrent: int | None = None,
        submits_per_minute: int | None = None,
        planner: Planner | None = None,
        renderer: Renderer | None = None,
        prices_usd: Quote | None = None,
        quote_usd: Quote | None = None,
        output_ttl: float | None = None,
        media_ttl: float | None = MEDIA_TTL_SECONDS,
        reference_check: ReferenceCheck | None = None,
        record_requests: bool = True,
    ) -> None:
        """`prices_usd`: charge the balance at submit, this price (refunded when the task
        fails); it is then also the quote. `quote_usd`: what `POST /api/v3/model/pricing`
        answers (and a charged submit costs), default `prices_usd`, else the contract's
        table. `media_ttl`: seconds an upload is kept, by `clock` (None: forever).
        `reference_check`: checks the bytes of each own-media reference of a submit."""
        self.api_key = api_key
        self.processing_after = processing_after
        self.complete_after = complete_after
        self.max_concurrent = max_concurrent
        self.submits_per_minute = submits_per_minute
        self.planner = planner
        self.renderer = renderer
        # One price source: quoted by the pricing route and, with charge_at_submit, taken at
        # submit and refunded when the task fails, as WaveSpeed does (it refunds failed tasks
        # later). Without charge_at_submit the balance never moves. Both replaceable.
        self.quote_usd: Quote = quote_usd or prices_usd or contract_price_usd
        self.charge_at_submit = prices_usd is not None
        self.media_ttl = media_ttl
        self.reference_check = reference_check
        self.output_ttl = output_ttl  # seconds a finished task's output is kept; None: forever
        self.record_requests = record_requests  # False: a long-running simulation keeps no log
        self.static_output = b""  # served for a completed task without a rendered output
        self.top_up_usd = 0.0  # added to the balance when a submit would exceed it
        self.base_url = ""
        self.balance_usd = 100.0
        self.submissions: list[Submission] = []
        self.tasks: dict[str, SimTask] = {}
        self.requests: list[RecordedRequest] = []
        self.uploads: dict[str, bytes] = {}  # download token -> stored bytes
        self.upload_times: dict[str, float] = {}  # download token -> arrival, on `clock`
        self.max_kept_upload_bytes = MAX_KEPT_UPLOAD_BYTES
        self.upload_tickets: dict[str, SimUpload] = {}  # token -> direct upload
        self.direct_uploads = True  # False: POST /api/v3/media/uploads is a 404, as on old APIs
        # False: success replies leave out the envelope's "code" and "message" (data only).
        self.send_success_code = True
        self.max_running_seen = 0
        # Wall clock (unix seconds) for created_at and the 7-day history window; replaceable.
        self.clock: Callable[[], float] = time.time
        self.history_queries: list[dict[str, Any]] = []  # bodies of accepted history requests
        self._faults: dict[str, collections.deque[Fault]] = {r: collections.deque() for r in ROUTES}
        # (route, fault, target: "" for a route-wide fault), in the order they were used.
        self.faults_served: list[tuple[str, Fault, str]] = []
        # inject_for(): faults for the requests of one task or prompt, by (route, target).
        self._targeted: dict[tuple[str, str], collections.deque[Fault]] = {}
        # outage(): until this time.monotonic(), these routes answer this status.
        self._outage_until = 0.0
        self._outage_routes: frozenset[str] = frozenset()
        self._outage_code = 503
        self._behaviours: collections.deque[TaskBehaviour] = collections.deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._submit_times: collections.deque[float] = collections.deque()  # tier window
        self._renders: set[asyncio.Task[None]] = set()
        self._refunded: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # Default client_max_size is 1 MB; uploads may be up to 100 MB (+ multipart framing).
        app = web.Application(
            middlewares=[self._record], client_max_size=MAX_UPLOAD_BYTES + _MULTIPART_SLACK
        )
        api = "/api/v3"
        app.router.add_post(f"{api}/{MODEL_PATH}", self._faulty("submit", self._submit))
        app.router.add_get(
            f"{api}/predictions/{{task_id}}/result", self._faulty("result", self._result)
        )
        app.router.add_post(f"{api}/media/upload/binary", self._faulty("upload", self._upload))
        app.router.add_post(
            f"{api}/media/uploads", self._faulty("upload_ticket", self._upload_ticket)
        )
        app.router.add_post(f"{api}/predictions", self._faulty("history", self._history))
        app.router.add_put("/storage/{token}", self._faulty("upload_put", self._upload_put))
        app.router.add_get(f"{api}/balance", self._faulty("balance", self._balance))
        app.router.add_post(f"{api}/model/pricing", self._faulty("pricing", self._pricing))
        app.router.add_get("/outputs/{task_id}.mp4", self._faulty("output", self._output))
        app.router.add_get("/media/{token}/{filename}", self._media)
        app.router.add_route("*", f"{api}/{{tail:.*}}", self._unknown)  # JSON 401/404, not text
        # Short shutdown_timeout: a handler sleeping in Fault.delay must not hold up close().
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]  # port 0 -> the OS picked a free one
        self.base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        for render in list(self._renders):
            render.cancel()
        await asyncio.gather(*self._renders, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- test controls ---------------------------------------------------------------------

    def inject(self, route: str, *faults: Fault) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {sorted(ROUTES)}, not {route!r}")
        self._faults[route].extend(faults)

    def inject_for(self, route: str, target: str, *faults: Fault) -> None:
        """Like inject, but only for requests on `route` that name `target`: a task id in the
        path (result, output) or text in a submit's prompt. Served before route-wide faults,
        so tests running several jobs at once can give each its own."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {sorted(ROUTES)}, not {route!r}")
        if not target:
            raise ValueError("target must not be empty")
        self._targeted.setdefault((route, target), collections.deque()).extend(faults)

    def queue_tasks(self, *behaviours: TaskBehaviour) -> None:
        self._behaviours.extend(behaviours)

    def outage(self, seconds: float, *, routes: Iterable[str] = ROUTES, code: int = 503) -> None:
        """For the next `seconds`, every request to `routes` answers `code` before it is
        processed (like Fault.status: a submit creates no task), and injected faults wait
        their turn; `outage(0)` ends it early."""
        routes = frozenset(routes)
        if not routes <= ROUTES:
            raise ValueError(f"routes must be among {sorted(ROUTES)}")
        self._outage_until = time.monotonic() + seconds
        self._outage_routes = routes
        self._outage_code = code

    @property
    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def add_foreign_task(
        self,
        *,
        model: str = MODEL_PATH,
        created_at: float | None = None,
        behaviour: TaskBehaviour | None = None,
    ) -> str:
        """Plant a task not made through submit (a website task, another model's, an old one):
        listed in history and answering result GETs, but not in `submissions`. `created_at` is
        unix seconds on `clock` (default now); an older task is as far along as its age says."""
        task = self._create_task({}, behaviour or TaskBehaviour.ok(), model, created_at)
        return task.id

    @property
    def prices_usd(self) -> Quote | None:
        """What a submit is charged (the quote), or None when submits charge nothing.
        Setting it sets both `quote_usd` and `charge_at_submit` (None: stop charging)."""
        return self.quote_usd if self.charge_at_submit else None

    @prices_usd.setter
    def prices_usd(self, price: Quote | None) -> None:
        self.charge_at_submit = price is not None
        if price is not None:
            self.quote_usd = price

    def media_expired(self, token: str) -> bool:
        """Whether the upload `token` is past `media_ttl` on `clock` (False if unknown, or
        put into `uploads` by hand with no upload time)."""
        stored = self.upload_times.get(token)
        return (stored is not None and self.media_ttl is not None
                and self.clock() - stored >= self.media_ttl)

    def finish_task(self, task_id: str) -> None:
        """End a task now with its behaviour's outcome ('never' tasks complete normally)."""
        self.tasks[task_id].finished_at = time.monotonic()

    @property
    def host(self) -> str:
        """"127.0.0.1:<port>": the OUTPUT_HTTP_HOSTS entry that lets clients download from it."""
        return self.base_url.split("://", 1)[1]

    @property
    def running_count(self) -> int:
        return sum(1 for task in self.tasks.values() if task.running)

    def requests_to(self, path_suffix: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path ends with `path_suffix` (and method, if given)."""
        return [
            r
            for r in self.requests
            if r.path.endswith(path_suffix) and (method is None or r.method == method)
        ]

    # -- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            status=0,
            authorized=auth == f"Bearer {self.api_key}",
            had_auth_header=auth is not None,
        )
        if self.record_requests:
            self.requests.append(record)  # appended on arrival, so order is arrival order
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        if not request.get(_DROPPED, False):
            record.status = response.status
        return response

    def _faulty(self, route: str, handler: Handler) -> Handler:
        """Wrap a route handler so the route's next injected fault (if any) applies to it.

        A status fault answers before auth is checked: it models a gateway in front of the API.
        """

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if route in self._outage_routes and self.in_outage:
                return _envelope(self._outage_code, "service unavailable")
            targeted = await self._targeted_fault(route, request)
            fault: Fault | None
            if targeted is not None:
                fault, target = targeted
            else:
                queue = self._faults[route]
                fault, target = (queue.popleft() if queue else None), ""
            if fault is not None:
                self.faults_served.append((route, fault, target))
            if fault is not None and fault.kind is _FaultKind.STATUS:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(math.ceil(fault.retry_after))
                return _envelope(fault.code, fault.message, **headers)
            if fault is not None and fault.kind is _FaultKind.REDIRECT:
                return web.Response(status=fault.code, headers={"Location": fault.location})
            # Delay, drop, malformed and status_after_create all model a request the server
            # fully processed.
            response = await handler(request)
            if fault is None:
                return response
            if fault.kind is _FaultKind.STATUS_AFTER_CREATE:
                return _envelope(fault.code, fault.message)
            if fault.kind is _FaultKind.DELAY:
                await asyncio.sleep(fault.seconds)
                return response
            if fault.kind is _FaultKind.DROP:
                request[_DROPPED] = True
                if request.transport is not None:
                    request.transport.abort()
                return response  # never reaches the client: the socket is gone
            return web.Response(
                status=200, text='{"code": 200, "data": {"id": ', content_type="application/json"
            )

        return wrapped

    async def _targeted_fault(self, route: str, request: web.Request
                              ) -> tuple[Fault, str] | None:
        """The next inject_for fault this request names, with its target."""
        wanted = [(target, queue) for (r, target), queue in self._targeted.items()
                  if r == route and queue]
        if not wanted:
            return None
        prompt = ""
        if route == "submit":
            try:  # aiohttp keeps the body read, so the handler can read it again
                body = await request.json()
            except ValueError:
                body = None
            prompt = str(body.get("prompt", "")) if isinstance(body, dict) else ""
        for target, queue in wanted:
            if target in request.path or (prompt and target in prompt):
                return queue.popleft(), target
        return None

    def _ok(self, data: Any) -> web.Response:
        if not self.send_success_code:
            return web.json_response({"data": data})
        return web.json_response({"code": 200, "message": "success", "data": data})

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _envelope(401, "Unauthorized: invalid or missing API key")
        return None

    async def _json_call(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The JSON body of an authorized API call, or the error reply the API gives."""
        if (denied := self._unauthorized(request)) is not None:
            return None, denied
        try:
            return await request.json(), None
        except ValueError:
            return None, _envelope(400, "request body is not valid JSON")

    # -- routes ----------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._json_call(request)
        if refused is not None:
            return refused
        if (problem := _validate(body)) is not None:
            return _envelope(400, problem)
        if self.max_concurrent is not None and self.running_count >= self.max_concurrent:
            return _envelope(429, "too many running tasks", **{"Retry-After": "1"})
        if (wait := self._rate_limited()) is not None:
            return _envelope(429, "rate limit: too many submissions this minute",
                             **{"Retry-After": str(math.ceil(wait))})
        price = float(self.quote_usd(body)) if self.charge_at_submit else 0.0
        if price > self.balance_usd and self.top_up_usd:
            self.balance_usd = round(self.balance_usd + self.top_up_usd, 2)
        if price > self.balance_usd:
            return _envelope(400, "insufficient balance: top up your WaveSpeed account")
        if self._behaviours:
            behaviour = self._behaviours.popleft()
        elif self.planner is not None:
            behaviour = self.planner(body)
        else:
            behaviour = TaskBehaviour.ok()
        checks: list[tuple[str, str, bytes]] = []
        if behaviour.outcome is not _Outcome.FAIL:
            fetched = self._fetch_own_references(body)
            if isinstance(fetched, str):  # WaveSpeed could not download one: the task fails
                behaviour = TaskBehaviour.fail(
                    fetched, complete_after=behaviour.complete_after,
                    processing_after=behaviour.processing_after)
            else:
                checks = fetched if self.reference_check is not None else []
        task = self._create_task(body, behaviour, MODEL_PATH, None)
        task.charged_usd = price
        self.balance_usd = round(self.balance_usd - price, 2)
        self._submit_times.append(task.created)
        self.submissions.append(Submission(task_id=task.id, body=body, at=task.created))
        render = self.renderer is not None and behaviour.outcome in (_Outcome.OK, _Outcome.NSFW)
        if render or checks:
            self._start_render(task, checks, render=render)
        self._forget_old(task.created)
        # Overlap only grows when a task starts, so sampling here gives the exact maximum.
        self.max_running_seen = max(self.max_running_seen, self.running_count)
        return self._ok(task.to_data(self.base_url))

    def _rate_limited(self) -> float | None:
        """Seconds until the tier's per-minute window admits another submit, or None."""
        if self.submits_per_minute is None:
            return None
        now = time.monotonic()
        while self._submit_times and self._submit_times[0] <= now - 60.0:
            self._submit_times.popleft()
        if len(self._submit_times) < self.submits_per_minute:
            return None
        return max(0.001, self._submit_times[0] + 60.0 - now)

    def _fetch_own_references(self, body: dict[str, Any]) -> list[tuple[str, str, bytes]] | str:
        """The submit's references that point into this server's media store, as
        (label, kind, bytes), or why one cannot be downloaded (unknown or expired: 404)."""
        references = [(f"reference {n}", "video", url)
                      for n, url in enumerate(body.get("videos") or [], start=1)]
        if isinstance(body.get("audio"), str) and body["audio"]:
            references.append(("the reference audio", "audio", body["audio"]))
        fetched = []
        for label, kind, url in references:
            token = self._own_media_token(url)
            if token is None:
                continue  # another host: not checked here
            data = self._stored_media(token)
            if data is None:
                return f"{label} could not be downloaded (HTTP 404)"
            fetched.append((label, kind, data))
        return fetched

    def _own_media_token(self, url: str) -> str | None:
        """For a URL into this server's media store, its token ("" when the path is not one
        the store serves); None for a URL elsewhere."""
        try:
            target, base = URL(url), URL(self.base_url)
        except (ValueError, TypeError):
            return None
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            return None
        parts = target.path.split("/")
        if len(parts) < 2 or parts[1] != "media":
            return None
        return parts[2] if len(parts) == 4 and parts[2] and parts[3] else ""

    def _stored_media(self, token: str) -> bytes | None:
        """An upload's bytes, or None when unknown or expired (expired ones are dropped)."""
        self._forget_expired_media()
        return self.uploads.get(token)

    def _forget_expired_media(self) -> None:
        for token in [t for t in self.upload_times if self.media_expired(t)]:
            self.uploads.pop(token, None)
            self.upload_times.pop(token, None)
            self.upload_tickets.pop(token, None)

    def _store_media(self, token: str, data: bytes) -> None:
        self._forget_expired_media()
        self.uploads[token] = data
        self.upload_times[token] = self.clock()
        # In memory: past the budget the oldest go first (their URLs 404, like expired ones),
        # so a long-running simulation taking 100 MB references cannot grow without bound.
        kept = sum(len(b) for b in self.uploads.values())
        for oldest in sorted(self.upload_times, key=self.upload_times.__getitem__):
            if kept <= self.max_kept_upload_bytes or oldest == token:
                break
            kept -= len(self.uploads.pop(oldest, b""))
            self.upload_times.pop(oldest, None)
            self.upload_tickets.pop(oldest, None)

    def _start_render(self, task: SimTask, checks: list[tuple[str, str, bytes]], *,
                      render: bool) -> None:
        """Check the task's own-media references, then (if `render`) make its output; the
        task stays processing meanwhile and fails if either says no."""
        task.rendering = True
        job = asyncio.create_task(self._render(task, checks, render), name=f"render-{task.id}")
        self._renders.add(job)
        job.add_done_callback(self._renders.discard)

    async def _render(self, task: SimTask, checks: list[tuple[str, str, bytes]],
                      render: bool) -> None:
        try:
            task.render_error = await self._check_references(checks)
            if task.render_error is None and render and self.renderer is not None:
                task.output = await self.renderer(task)
        except RenderError as exc:
            task.render_error = str(exc) or "the output could not be made"
        except Exception as exc:  # noqa: BLE001 - a bug in rendering fails the task, not the server
            task.render_error = f"internal error while rendering ({type(exc).__name__})"
        finally:
            task.rendering = False
        self._forget_old(time.monotonic())  # within the byte budget as each output lands

    async def _check_references(self, checks: list[tuple[str, str, bytes]]) -> str | None:
        """Why the first unusable reference cannot be used, or None."""
        check = self.reference_check
        if check is None:
            return None
        for label, kind, data in checks:
            if (problem := await check(data, kind)) is not None:
                return f"{label} could not be decoded: {problem}"
        return None

    def refund_failed(self) -> None:
        """Give back the price of every task that failed (WaveSpeed does so within hours)."""
        for task in self.tasks.values():
            if task.charged_usd and task.id not in self._refunded and task.status() == "failed":
                self._refunded.add(task.id)
                self.balance_usd = round(self.balance_usd + task.charged_usd, 2)

    def _forget_old(self, now: float) -> None:
        """Drop outputs older than `output_ttl` (they are temporary at WaveSpeed too) and
        tasks past the 7-day history, so a simulation running for weeks stays small."""
        if self.output_ttl is None:
            return
        horizon = now - HISTORY_DAYS * 86_400
        kept = 0
        for task in reversed(list(self.tasks.values())):  # newest first
            if task.output is not None:
                kept += len(task.output)
                if now - task.end_time() > self.output_ttl or kept > MAX_KEPT_OUTPUT_BYTES:
                    task.output = None
            if task.created < horizon:
                del self.tasks[task.id]
        self.submissions = [s for s in self.submissions if s.at >= horizon]

    def _create_task(
        self, body: dict[str, Any], behaviour: TaskBehaviour, model: str, wall: float | None
    ) -> SimTask:
        task_id = f"task-{next(self._ids):04d}-{uuid.uuid4().hex[:8]}"
        clock_now = self.clock()
        wall = clock_now if wall is None else wall
        wall_ns = _to_ns(wall)
        task = SimTask(
            id=task_id,
            body=body,
            behaviour=behaviour,
            created=time.monotonic() - max(0.0, clock_now - wall),  # an old task is further on
            created_at=_wavespeed_time(wall_ns),
            processing_after=(
                behaviour.processing_after
                if behaviour.processing_after is not None
                else self.processing_after
            ),
            complete_after=(
                behaviour.complete_after
                if behaviour.complete_after is not None
                else self.complete_after
            ),
            model=model,
            wall_ns=wall_ns,
        )
        self.tasks[task_id] = task
        return task

    async def _history(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._json_call(request)
        if refused is not None:
            return refused
        query = _HistoryQuery.parse(body)
        if isinstance(query, str):
            return _envelope(400, query)
        self.history_queries.append(body)
        horizon = _to_ns(self.clock()) - HISTORY_DAYS * 86_400 * _NS
        tasks = list(self.tasks.values())
        # Newest first; of equal timestamps, the one created later first.
        order = sorted(range(len(tasks)), key=lambda i: (tasks[i].wall_ns, i), reverse=True)
        listed = []
        for task in (tasks[i] for i in order):
            if task.wall_ns < horizon or task.deleted or not query.admits(task):
                continue
            data = task.to_data(self.base_url)  # status read once: filter and item agree
            if query.status_admits(data["status"]):
                listed.append(data)
        start = (query.page - 1) * query.page_size
        return self._ok({"page": query.page, "total": len(listed),
                         "items": listed[start:start + query.page_size]})

    async def _result(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or task.deleted:
            return _envelope(404, "prediction not found")
        return self._ok(task.to_data(self.base_url))

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if not request.content_type.startswith("multipart/"):
            return _envelope(400, "file: expected a multipart/form-data upload")
        length = request.content_length
        if length is not None and length > MAX_UPLOAD_BYTES + _MULTIPART_SLACK:
            return _envelope(413, "file: larger than 100 MB")  # refused before reading it
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:  # chunked, past client_max_size
            return _envelope(413, "file: larger than 100 MB")
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _envelope(400, "file: multipart field 'file' is required")
        data = upload.file.read()
        if len(data) > MAX_UPLOAD_BYTES:
            return _envelope(413, "file: larger than 100 MB")
        name = upload.filename or "upload.bin"
        if (wrong := _file_type_problem(name, upload.content_type)) is not None:
            return _envelope(400, f"file: {wrong[1]}")
        token = uuid.uuid4().hex
        self._store_media(token, data)
        return self._ok({"download_url": f"{self.base_url}/media/{token}/{quote(name)}"})

    async def _upload_ticket(self, request: web.Request) -> web.StreamResponse:
        if not self.direct_uploads:
            return await self._unknown(request)
        body, refused = await self._json_call(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return _envelope(400, "body must be a JSON object")
        filename, size, content_type = (body.get(k) for k in ("filename", "size", "content_type"))
        if not isinstance(filename, str) or not filename.strip():
            return _envelope(400, "filename: is required")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            return _envelope(400, "size: must be a whole number of bytes, at least 1")
        if size > MAX_UPLOAD_BYTES:
            return _envelope(400, "size: larger than 100 MB")
        if content_type is not None and not isinstance(content_type, str):
            return _envelope(400, "content_type: must be a string")
        if (wrong := _file_type_problem(filename, content_type)) is not None:
            what, problem = wrong
            return _envelope(400, f"{'filename' if what == 'name' else what}: {problem}")
        token = uuid.uuid4().hex
        ticket = SimUpload(token, filename, size, content_type, secrets.token_hex(8))
        self.upload_tickets[token] = ticket
        headers = {"Content-Type": content_type} if content_type else {}
        kind = _media_kind(filename, content_type)
        return self._ok({
            "type": kind,
            "filename": filename,
            "size": size,
            "download_url": f"{self.base_url}/media/{token}/{quote(filename)}",
            "upload": {
                "method": "PUT",
                "url": f"{self.base_url}/storage/{token}?signature={ticket.signature}",
                "headers": headers,
            },
        })

    async def _upload_put(self, request: web.Request) -> web.StreamResponse:
        # Object storage, not the API: it answers like S3 would to a presigned PUT.
        ticket = self.upload_tickets.get(request.match_info["token"])
        if ticket is None or request.query.get("signature") != ticket.signature:
            return _envelope(403, "signature does not match")
        if "Authorization" in request.headers:
            return _envelope(400, "only one auth mechanism allowed: presigned URL or header")
        if ticket.content_type and request.headers.get("Content-Type") != ticket.content_type:
            return _envelope(403, "signature does not match: Content-Type differs")
        length = request.content_length
        if length is None:
            return _envelope(411, "Content-Length is required")
        if length > MAX_UPLOAD_BYTES:
            return _envelope(413, "larger than 100 MB")
        if length != ticket.size:
            return _envelope(400, f"{length} bytes sent, {ticket.size} declared")
        data = await request.read()
        self._store_media(ticket.token, data)
        ticket.put = True
        return web.Response(status=200)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        self.refund_failed()
        return self._ok({"balance": self.balance_usd})

    async def _pricing(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._json_call(request)
        if refused is not None:
            return refused
        if not isinstance(body, dict):
            return _envelope(400, "body must be a JSON object")
        model_id = body.get("model_id")
        if not isinstance(model_id, str) or not model_id.strip():
            return _envelope(400, "model_id: is required")
        if model_id != MODEL_PATH:
            return _envelope(400, f"model_id: unknown model {model_id[:200]!r}")
        inputs = body.get("inputs")
        if not isinstance(inputs, dict):
            return _envelope(400, "inputs: is required and must be an object")
        if (problem := _validate_size_duration(inputs)) is not None:
            return _envelope(400, f"inputs.{problem}")
        price = float(self.quote_usd(inputs))
        return self._ok({"model_id": MODEL_PATH, "unit_price": price, "currency": "USD"})

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return _envelope(404, f"no route {request.method} {request.path}")

    async def _output(self, request: web.Request) -> web.StreamResponse:
        # No auth check: output URLs model a CDN on another host.
        task = self.tasks.get(request.match_info["task_id"])
        if task is None or task.status() != "completed":
            return _envelope(404, "no such output")
        outcome = task.behaviour.outcome
        if outcome is _Outcome.OUTPUT_MISSING:
            return _envelope(404, "output expired")
        if outcome is _Outcome.HUGE:
            size = task.behaviour.size_bytes
            # An async-iterable body is streamed chunk by chunk; the explicit Content-Length
            # replaces chunked encoding so clients can refuse before reading anything.
            return web.Response(
                body=_zeros(size),
                content_type="video/mp4",
                headers={"Content-Length": str(size)},
            )
        if self.renderer is None:
            return web.Response(body=self.static_output, content_type="video/mp4")
        if task.output is None:
            return _envelope(404, "output expired")
        return web.Response(body=task.output, content_type="video/mp4")

    async def _media(self, request: web.Request) -> web.StreamResponse:
        data = self._stored_media(request.match_info["token"])
        if data is None:
            return _envelope(404, "no such media")
        return web.Response(body=data, content_type="application/octet-stream")


async def _zeros(size: int) -> AsyncIterator[bytes]:
    chunk = bytes(_CHUNK)
    remaining = size
    while remaining > 0:
        take = min(remaining, _CHUNK)
        yield chunk if take == _CHUNK else chunk[:take]
        remaining -= take


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _to_ns(wall: float) -> int:
    """Unix seconds as integer nanoseconds (whole seconds stay exact, unlike wall * 1e9)."""
    seconds = math.floor(wall)
    return seconds * _NS + round((wall - seconds) * _NS)


def _wavespeed_time(wall_ns: int) -> str:
    """As WaveSpeed writes created_at: UTC, 9 fractional digits, Z."""
    seconds, nanos = divmod(wall_ns, _NS)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


@dataclass(frozen=True)
class _HistoryQuery:
    page: int
    page_size: int
    model: str | None
    status: str | None
    after_ns: int | None  # created at or after
    before_ns: int | None  # created before

    @classmethod
    def parse(cls, body: Any) -> _HistoryQuery | str:
        """The history body, or a message naming the bad field."""
        if not isinstance(body, dict):
            return "body must be a JSON object"
        page, page_size = body.get("page"), body.get("page_size")
        if not _is_int(page) or page < 1:
            return "page: is required and must be an integer of at least 1"
        if not _is_int(page_size) or not 1 <= page_size <= MAX_PAGE_SIZE:
            return f"page_size: is required and must be an integer from 1 to {MAX_PAGE_SIZE}"
        model, status = body.get("model"), body.get("status")
        if model is not None and not isinstance(model, str):
            return "model: must be a string"
        if status is not None and status not in HISTORY_STATUSES:
            return f"status: must be one of {', '.join(HISTORY_STATUSES)}"
        bounds: list[int | None] = []
        for name in ("created_after", "created_before"):
            value = body.get(name)
            moment = _iso_ns(value) if isinstance(value, str) else None
            if value is not None and moment is None:
                return f"{name}: must be an ISO 8601 date-time such as 2023-10-01T00:00:00Z"
            bounds.append(moment)
        return cls(page, page_size, model, status, bounds[0], bounds[1])

    def admits(self, task: SimTask) -> bool:
        return (
            (self.model is None or task.model == self.model)
            and (self.after_ns is None or task.wall_ns >= self.after_ns)
            and (self.before_ns is None or task.wall_ns < self.before_ns)
        )

    def status_admits(self, reported: str) -> bool:
        if self.status == "processing":
            return reported in ("created", "processing")
        return self.status is None or reported == self.status


def _iso_ns(text: str) -> int | None:
    """An ISO 8601 date-time as ns since the epoch (no offset: UTC); None if unparsable.
    Deliberately not wavespeed.models.parse_timestamp: the fake must not share the client's
    bugs. Python 3.11's fromisoformat takes Z and truncates fractions past 6 digits."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _content_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _extension(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""


def _file_type_problem(filename: str, content_type: str | None) -> tuple[str, str] | None:
    """Why the media store will not take this file, as (what is wrong: "name" or
    "content_type", message), or None. A known extension, or (with none) a known content
    type, says what it is; a content type other than the generic octet-stream must be a
    known one too."""
    extension, kind = _extension(filename), _content_type(content_type)
    if extension and extension not in SUPPORTED_EXTENSIONS:
        return "name", f"unsupported file type {extension[:20]!r}"
    if kind not in _UNTYPED and kind not in SUPPORTED_CONTENT_TYPES:
        return "content_type", f"unsupported file type {kind[:100]!r}"
    if not extension and kind not in SUPPORTED_CONTENT_TYPES:
        return "name", "unsupported file type: no extension and no media content type"
    return None


def _media_kind(filename: str, content_type: str | None) -> str:
    """"video", "audio" or "image" for a file _file_type_problem accepts."""
    return (SUPPORTED_EXTENSIONS.get(_extension(filename))
            or SUPPORTED_CONTENT_TYPES.get(_content_type(content_type), "video"))


def _validate_size_duration(inputs: dict[str, Any]) -> str | None:
    """The contract's size and duration rules (both optional); a message or None."""
    if inputs.get("size", SIZES[0]) not in SIZES:
        return f"size: must be one of {', '.join(SIZES)}"
    duration = inputs.get("duration", 5)
    if not _is_int(duration) or duration not in DURATIONS:
        return "duration: must be 5 or 10"
    return None


def _validate(body: Any) -> str | None:
    """The contract's submit rules; returns a message naming the bad field, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    videos = body.get("videos")
    if not isinstance(videos, list) or not 1 <= len(videos) <= MAX_VIDEOS:
        return f"videos: must be an array of 1 to {MAX_VIDEOS} URLs"
    if not all(isinstance(v, str) and v.startswith(("http://", "https://")) for v in videos):
        return "videos: every item must be an http(s) URL string"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt: is required and must not be empty"
    for name in ("negative_prompt", "audio"):
        if name in body and not isinstance(body[name], str):
            return f"{name}: must be a string"
    if (problem := _validate_size_duration(body)) is not None:
        return problem
    if body.get("shot_type", "single") not in SHOT_TYPES:
        return "shot_type: must be single or multi"
    if not isinstance(body.get("enable_prompt_expansion", False), bool):
        return "enable_prompt_expansion: must be a boolean"
    seed = body.get("seed", -1)
    if not _is_int(seed) or not SEED_MIN <= seed <= SEED_MAX:
        return f"seed: must be an integer from {SEED_MIN} to {SEED_MAX}"
    return None


__all__ = [
    "CONTRACT_PRICES_USD",
    "MEDIA_TTL_SECONDS",
    "SUPPORTED_CONTENT_TYPES",
    "SUPPORTED_EXTENSIONS",
    "Fault",
    "Planner",
    "Quote",
    "RecordedRequest",
    "ReferenceCheck",
    "RenderError",
    "Renderer",
    "SimTask",
    "SimUpload",
    "SimulatedWaveSpeed",
    "Submission",
    "TaskBehaviour",
    "contract_price_usd",
]
