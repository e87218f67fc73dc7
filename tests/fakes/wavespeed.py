"""FakeWaveSpeed: a real aiohttp server on 127.0.0.1 speaking the WAN 2.6 contract.

Task state is derived from time.monotonic() elapsed since creation, so the server needs no
background tasks. Faults are injected per route and consumed one per request, FIFO.

Uploads speak both protocols: the SDK's direct upload (`POST /api/v3/media/uploads` for a
ticket, then a `PUT` of the bytes to a presigned-style `/storage/{token}?signature=...` URL,
which like real object storage refuses an Authorization header, a wrong Content-Type, a
size other than the declared one and anything over 100 MB) and the older multipart
`POST /api/v3/media/upload/binary`. `direct_uploads = False` models a deployment without
the former.
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.media import make_mp4
from wavespeed.models import (
    DURATIONS,
    MAX_VIDEOS,
    MODEL_PATH,
    SEED_MAX,
    SEED_MIN,
    SHOT_TYPES,
    SIZES,
)

# "upload" is the multipart binary upload; "upload_ticket" and "upload_put" the direct one.
ROUTES = frozenset(
    {"submit", "result", "upload", "upload_ticket", "upload_put", "balance", "output"}
)
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # the contract's 100 MB video limit
_CHUNK = 64 * 1024
_DROPPED = web.RequestKey("dropped", bool)  # marks a request answered by Fault.drop

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _FaultKind(Enum):
    STATUS = "status"
    DELAY = "delay"
    DROP = "drop"
    MALFORMED = "malformed"
    REDIRECT = "redirect"


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


@dataclass(frozen=True)
class TaskBehaviour:
    outcome: _Outcome
    complete_after: float | None = None
    message: str = ""
    size_bytes: int = 0
    waiting_status: str | None = None  # reported instead of created/processing
    failed_status: str = "failed"  # reported when the outcome is FAIL

    @classmethod
    def ok(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.OK, complete_after)

    @classmethod
    def fail(
        cls,
        message: str = "generation failed",
        *,
        complete_after: float | None = None,
        status: str = "failed",
    ) -> TaskBehaviour:
        """Ends reporting `status`: failed, or cancelled/timeout/deleted as WaveSpeed may."""
        return cls(_Outcome.FAIL, complete_after, message=message, failed_status=status)

    def waiting_as(self, status: str) -> TaskBehaviour:
        """The same behaviour, reporting `status` (e.g. pending, queued) until it ends."""
        return dataclasses.replace(self, waiting_status=status)

    @classmethod
    def never(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        """Stays processing until FakeWaveSpeed.finish_task (complete_after is ignored)."""
        return cls(_Outcome.NEVER, complete_after)

    @classmethod
    def nsfw(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.NSFW, complete_after)

    @classmethod
    def huge(cls, size_bytes: int, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.HUGE, complete_after, size_bytes=size_bytes)

    @classmethod
    def output_missing(cls, *, complete_after: float | None = None) -> TaskBehaviour:
        return cls(_Outcome.OUTPUT_MISSING, complete_after)


@dataclass
class FakeTask:
    id: str
    body: dict[str, Any]
    behaviour: TaskBehaviour
    created: float  # time.monotonic()
    created_at: str  # ISO timestamp as WaveSpeed reports it
    processing_after: float
    complete_after: float
    finished_at: float | None = None  # set by finish_task

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
            return "failed" if self.behaviour.outcome is _Outcome.FAIL else "completed"
        if now - self.created >= self.processing_after:
            return "processing"
        return "created"

    @property
    def running(self) -> bool:
        return self.status() in ("created", "processing")

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
            "model": MODEL_PATH,
            "status": reported,
            "outputs": [f"{base_url}/outputs/{self.id}.mp4"] if done else [],
            "urls": {"get": f"{base_url}/api/v3/predictions/{self.id}/result"},
            "has_nsfw_contents": [self.behaviour.outcome is _Outcome.NSFW] if done else [],
            "created_at": self.created_at,
            "error": self.behaviour.message if status == "failed" else "",
            "timings": {"inference": round(self.complete_after * 1000) if done else 0},
        }


@dataclass
class FakeUpload:
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


class FakeWaveSpeed:
    def __init__(
        self,
        *,
        api_key: str = "test-key",
        processing_after: float = 0.02,
        complete_after: float = 0.1,
        max_concurrent: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.processing_after = processing_after
        self.complete_after = complete_after
        self.max_concurrent = max_concurrent
        self.base_url = ""
        self.balance_usd = 100.0
        self.submissions: list[Submission] = []
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[RecordedRequest] = []
        self.uploads: dict[str, bytes] = {}  # download token -> stored bytes
        self.upload_tickets: dict[str, FakeUpload] = {}  # token -> direct upload
        self.direct_uploads = True  # False: POST /api/v3/media/uploads is a 404, as on old APIs
        # False: success replies leave out the envelope's "code" and "message" (data only).
        self.send_success_code = True
        self.max_running_seen = 0
        self._faults: dict[str, collections.deque[Fault]] = {r: collections.deque() for r in ROUTES}
        self._behaviours: collections.deque[TaskBehaviour] = collections.deque()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # Default client_max_size is 1 MB; uploads may be up to 100 MB (+ multipart framing).
        app = web.Application(
            middlewares=[self._record], client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024
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
        app.router.add_put("/storage/{token}", self._faulty("upload_put", self._upload_put))
        app.router.add_get(f"{api}/balance", self._faulty("balance", self._balance))
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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeWaveSpeed:
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

    def queue_tasks(self, *behaviours: TaskBehaviour) -> None:
        self._behaviours.extend(behaviours)

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
            queue = self._faults[route]
            fault = queue.popleft() if queue else None
            if fault is not None and fault.kind is _FaultKind.STATUS:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(math.ceil(fault.retry_after))
                return _envelope(fault.code, fault.message, **headers)
            if fault is not None and fault.kind is _FaultKind.REDIRECT:
                return web.Response(status=fault.code, headers={"Location": fault.location})
            # Delay, drop and malformed all model a request the server fully processed.
            response = await handler(request)
            if fault is None:
                return response
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

    def _ok(self, data: Any) -> web.Response:
        if not self.send_success_code:
            return web.json_response({"data": data})
        return web.json_response({"code": 200, "message": "success", "data": data})

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _envelope(401, "Unauthorized: invalid or missing API key")
        return None

    # -- routes ----------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _envelope(400, "request body is not valid JSON")
        if (problem := _validate(body)) is not None:
            return _envelope(400, problem)
        if self.max_concurrent is not None and self.running_count >= self.max_concurrent:
            return _envelope(429, "too many running tasks", **{"Retry-After": "1"})
        behaviour = self._behaviours.popleft() if self._behaviours else TaskBehaviour.ok()
        task_id = f"task-{next(self._ids):04d}-{uuid.uuid4().hex[:8]}"
        now = time.monotonic()
        task = FakeTask(
            id=task_id,
            body=body,
            behaviour=behaviour,
            created=now,
            created_at=datetime.now(UTC).isoformat(),
            processing_after=self.processing_after,
            complete_after=(
                behaviour.complete_after
                if behaviour.complete_after is not None
                else self.complete_after
            ),
        )
        self.tasks[task_id] = task
        self.submissions.append(Submission(task_id=task_id, body=body, at=now))
        # Overlap only grows when a task starts, so sampling here gives the exact maximum.
        self.max_running_seen = max(self.max_running_seen, self.running_count)
        return self._ok(task.to_data(self.base_url))

    async def _result(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return _envelope(404, "prediction not found")
        return self._ok(task.to_data(self.base_url))

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if not request.content_type.startswith("multipart/"):
            return _envelope(400, "file: expected a multipart/form-data upload")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _envelope(400, "file: multipart field 'file' is required")
        data = upload.file.read()
        if len(data) > MAX_UPLOAD_BYTES:
            return _envelope(400, "file: larger than 100 MB")
        token = uuid.uuid4().hex
        self.uploads[token] = data
        name = upload.filename or "upload.bin"
        return self._ok({"download_url": f"{self.base_url}/media/{token}/{quote(name)}"})

    async def _upload_ticket(self, request: web.Request) -> web.StreamResponse:
        if not self.direct_uploads:
            return await self._unknown(request)
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _envelope(400, "request body is not valid JSON")
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
        token = uuid.uuid4().hex
        ticket = FakeUpload(token, filename, size, content_type, secrets.token_hex(8))
        self.upload_tickets[token] = ticket
        headers = {"Content-Type": content_type} if content_type else {}
        kind = (content_type or "application/octet-stream").split("/", 1)[0]
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
        self.uploads[ticket.token] = data
        ticket.put = True
        return web.Response(status=200)

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        return self._ok({"balance": self.balance_usd})

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
        return web.Response(body=make_mp4(), content_type="video/mp4")

    async def _media(self, request: web.Request) -> web.StreamResponse:
        data = self.uploads.get(request.match_info["token"])
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    if body.get("size", SIZES[0]) not in SIZES:
        return f"size: must be one of {', '.join(SIZES)}"
    duration = body.get("duration", 5)
    if not _is_int(duration) or duration not in DURATIONS:
        return "duration: must be 5 or 10"
    if body.get("shot_type", "single") not in SHOT_TYPES:
        return "shot_type: must be single or multi"
    if not isinstance(body.get("enable_prompt_expansion", False), bool):
        return "enable_prompt_expansion: must be a boolean"
    seed = body.get("seed", -1)
    if not _is_int(seed) or not SEED_MIN <= seed <= SEED_MAX:
        return f"seed: must be an integer from {SEED_MIN} to {SEED_MAX}"
    return None


__all__ = [
    "FakeTask",
    "FakeUpload",
    "FakeWaveSpeed",
    "Fault",
    "RecordedRequest",
    "Submission",
    "TaskBehaviour",
]
