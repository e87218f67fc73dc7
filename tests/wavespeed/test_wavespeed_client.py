"""WaveSpeedClient against FakeWaveSpeed (a real server on 127.0.0.1): outcomes, not calls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.media import make_mp4
from wavespeed.client import RetryPolicy, WaveSpeedClient, parse_retry_after
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
    WaveSpeedError,
)
from wavespeed.models import GenerationRequest, Prediction, TaskStatus

SECRET = "ws-SECRET-KEY-0123456789abcdef"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
SUBMIT_PATH = "/api/v3/alibaba/wan-2.6/reference-to-video"
REQUEST = GenerationRequest(videos=("https://example.com/ref.mp4",), prompt="a cat surfs")


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(api_key=SECRET, processing_after=0.01, complete_after=0.05) as server:
        yield server


@pytest.fixture
async def client(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient.open(SECRET, fake.base_url, retry=FAST, request_timeout=2.0) as c:
        yield c


@asynccontextmanager
async def quick_client(base_url: str, **kw: Any) -> AsyncIterator[WaveSpeedClient]:
    kw.setdefault("retry", FAST)
    async with WaveSpeedClient.open(SECRET, base_url, **kw) as c:
        yield c


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A one-off loopback server answering every path with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A loopback TCP server that reads one request and answers `reply` bytes verbatim."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.decode().lower().splitlines():
            if line.startswith("content-length:"):
                await reader.readexactly(int(line.split(":")[1]))
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def assert_no_secret(error: BaseException) -> None:
    """Neither the error nor anything it chains to (cause or context) mentions the key."""
    chain: BaseException | None = error
    while chain is not None:
        assert SECRET not in str(chain) and SECRET not in repr(chain)
        assert SECRET not in repr(vars(chain))
        chain = chain.__cause__ or chain.__context__


def leftovers(directory: Path) -> list[str]:
    """File names in `directory` (sync helper: a tmp dir listing, not worth a thread)."""
    return sorted(p.name for p in directory.iterdir())


def submits(fake: FakeWaveSpeed) -> int:
    return len(fake.requests_to(SUBMIT_PATH, "POST"))


def results(fake: FakeWaveSpeed) -> int:
    return len(fake.requests_to("/result", "GET"))


async def completed(client: WaveSpeedClient, task_id: str) -> Prediction:
    for _ in range(200):
        prediction = await client.get_result(task_id)
        if prediction.is_terminal:
            return prediction
        await asyncio.sleep(0.01)
    raise AssertionError("task never finished")


# ---- happy paths -----------------------------------------------------------------------------


async def test_submit_poll_download_balance_upload(
    fake: FakeWaveSpeed, client: WaveSpeedClient, tmp_path: Path
) -> None:
    created = await client.submit(REQUEST)
    assert created.status is TaskStatus.CREATED and not created.outputs
    assert fake.submissions[0].body == REQUEST.to_json()

    done = await completed(client, created.id)
    assert done.succeeded and not done.output_is_nsfw and done.inference_ms == 50

    dest = tmp_path / "out.mp4"
    size = await client.download_output(done.outputs[0], dest, max_bytes=1_000_000)
    assert dest.read_bytes() == make_mp4() and size == len(make_mp4())
    assert leftovers(tmp_path) == ["out.mp4"]  # no .part file

    fake.balance_usd = 12.5
    assert await client.balance() == 12.5

    url = await client.upload_media(b"reference bytes", "ref.mp4", "video/mp4")
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert await resp.read() == b"reference bytes"

    api = [r for r in fake.requests if r.path.startswith("/api/")]
    assert api and all(r.authorized for r in api)
    outputs = fake.requests_to(".mp4")
    assert outputs and not any(r.had_auth_header for r in outputs)


async def test_failed_and_nsfw_tasks_are_reported(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    fake.queue_tasks(TaskBehaviour.fail("content policy violation"), TaskBehaviour.nsfw())
    failed = await completed(client, (await client.submit(REQUEST)).id)
    assert failed.status is TaskStatus.FAILED and failed.error == "content policy violation"
    nsfw = await completed(client, (await client.submit(REQUEST)).id)
    assert nsfw.succeeded and nsfw.output_is_nsfw


# ---- submit: sent once, errors typed, task_may_exist right ------------------------------------

SUBMIT_FAULTS = [
    (Fault.status(400, "videos[0] could not be fetched"), BadRequestError, False),
    (Fault.status(401, "invalid key"), AuthenticationError, False),
    (Fault.status(403, "forbidden"), AuthenticationError, False),
    (Fault.status(404, "no such model"), NotFoundError, False),
    (Fault.status(418, "teapot"), WaveSpeedError, False),
    (Fault.status(429, "slow down", retry_after=1), RateLimitedError, False),
    (Fault.status(500, "internal"), ServerError, True),
    (Fault.status(502, "bad gateway"), ServerError, True),
    (Fault.status(503, "overloaded"), ServerError, False),
    (Fault.status(504, "gateway timeout"), ServerError, True),
    (Fault.drop(), ConnectionDroppedError, True),
    (Fault.malformed(), MalformedResponseError, True),
    (Fault.delay(1.0), RequestTimeoutError, True),
]


@pytest.mark.parametrize(
    ("fault", "error", "may_exist"),
    SUBMIT_FAULTS,
    ids=[
        "400",
        "401",
        "403",
        "404",
        "418",
        "429",
        "500",
        "502",
        "503",
        "504",
        "drop",
        "malformed",
        "timeout",
    ],
)
async def test_submit_is_sent_once_and_raises_typed_error(
    fake: FakeWaveSpeed, fault: Fault, error: type[WaveSpeedError], may_exist: bool
) -> None:
    fake.inject("submit", fault)
    async with quick_client(fake.base_url, request_timeout=0.3, submit_timeout=0.3) as client:
        with pytest.raises(WaveSpeedError) as caught:
            await client.submit(REQUEST)
    assert type(caught.value) is error
    assert caught.value.task_may_exist is may_exist
    assert submits(fake) == 1
    # Status faults create nothing; drop/malformed/slow replies model a POST WaveSpeed processed.
    assert len(fake.tasks) == (0 if fault.code else 1)


async def test_submit_error_details(fake: FakeWaveSpeed, client: WaveSpeedClient) -> None:
    fake.inject(
        "submit",
        Fault.status(400, "videos[0] could not be fetched"),
        Fault.status(429, "slow down", retry_after=1),
        Fault.status(503, "overloaded", retry_after=2),
    )
    with pytest.raises(BadRequestError) as bad:
        await client.submit(REQUEST)
    assert bad.value.message == "videos[0] could not be fetched" and bad.value.status == 400
    with pytest.raises(RateLimitedError) as limited:
        await client.submit(REQUEST)
    assert limited.value.retry_after == 1.0 and limited.value.retryable
    with pytest.raises(ServerError) as busy:
        await client.submit(REQUEST)
    assert busy.value.status == 503 and busy.value.retry_after == 2.0


async def test_wrong_key_is_authentication_error(fake: FakeWaveSpeed) -> None:
    async with WaveSpeedClient.open("wrong-key", fake.base_url, retry=FAST) as client:
        with pytest.raises(AuthenticationError):
            await client.submit(REQUEST)
        with pytest.raises(AuthenticationError):
            await client.get_result("anything")
    assert [r.status for r in fake.requests] == [401, 401]  # 401 is not retried
    assert not fake.tasks


async def test_concurrency_limit_429_on_submit() -> None:
    async with FakeWaveSpeed(api_key=SECRET, max_concurrent=1) as fake:
        fake.queue_tasks(TaskBehaviour.never())
        async with quick_client(fake.base_url) as client:
            await client.submit(REQUEST)
            with pytest.raises(RateLimitedError) as caught:
                await client.submit(REQUEST)
        assert caught.value.retry_after == 1.0 and not caught.value.task_may_exist
        assert len(fake.tasks) == 1


async def test_connection_refused_is_connection_failed() -> None:
    fake = FakeWaveSpeed(api_key=SECRET)
    await fake.start()
    await fake.close()  # nothing listens on its port any more
    async with quick_client(fake.base_url) as client:
        with pytest.raises(ConnectionFailedError) as caught:
            await client.submit(REQUEST)
        assert caught.value.task_may_exist is False and caught.value.retryable
        with pytest.raises(ConnectionFailedError):
            await client.get_result("task-1")  # retried, then the last error raised


# ---- get_result: retried on transient failures ------------------------------------------------

RESULT_FAULTS = [
    Fault.status(429, "slow"),
    Fault.status(500, "x"),
    Fault.status(502, "x"),
    Fault.status(503, "x"),
    Fault.status(504, "x"),
    Fault.drop(),
    Fault.malformed(),
    Fault.delay(1.0),
]


@pytest.mark.parametrize(
    "fault", RESULT_FAULTS, ids=["429", "500", "502", "503", "504", "drop", "malformed", "timeout"]
)
async def test_get_result_retries_through_transient_faults(
    fake: FakeWaveSpeed, fault: Fault
) -> None:
    async with quick_client(fake.base_url, request_timeout=0.3) as client:
        task_id = (await client.submit(REQUEST)).id
        fake.inject("result", fault, fault)
        prediction = await client.get_result(task_id)
    assert prediction.id == task_id
    assert results(fake) == 3  # two faults consumed, then the answer


async def test_get_result_honours_retry_after(fake: FakeWaveSpeed, client: WaveSpeedClient) -> None:
    task_id = (await client.submit(REQUEST)).id
    fake.inject("result", Fault.status(429, "slow down", retry_after=1))
    started = time.monotonic()
    await client.get_result(task_id)
    assert time.monotonic() - started >= 1.0  # FAST.max_delay is 0.05: Retry-After won
    first, second = fake.requests_to("/result")
    assert second.at - first.at >= 1.0


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.status(500, "x"), ServerError),
        (Fault.status(429, "x"), RateLimitedError),
        (Fault.malformed(), MalformedResponseError),
    ],
    ids=["500", "429", "malformed"],
)
async def test_get_result_gives_up_after_the_last_attempt(
    fake: FakeWaveSpeed, client: WaveSpeedClient, fault: Fault, error: type[WaveSpeedError]
) -> None:
    fake.inject("result", *[fault] * FAST.attempts)
    with pytest.raises(error):
        await client.get_result("task-0001")
    assert results(fake) == FAST.attempts


async def test_dropped_get_is_resent_once_by_aiohttp_itself(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    """aiohttp transparently resends an idempotent request whose connection dropped (RFC 9112
    9.3.1), so each client attempt that ends in ConnectionDroppedError cost two requests.
    POSTs are never resent this way (see the submit test above: one request)."""
    fake.inject("result", *[Fault.drop()] * (2 * FAST.attempts))
    with pytest.raises(ConnectionDroppedError):
        await client.get_result("task-0001")
    assert results(fake) == 2 * FAST.attempts


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
    ],
)
async def test_get_result_does_not_retry_client_errors(
    fake: FakeWaveSpeed, client: WaveSpeedClient, code: int, error: type[WaveSpeedError]
) -> None:
    fake.inject("result", Fault.status(code, "no"))
    with pytest.raises(error):
        await client.get_result("task-0001")
    assert results(fake) == 1


async def test_unknown_task_is_not_found(fake: FakeWaveSpeed, client: WaveSpeedClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get_result("no-such-task")
    assert results(fake) == 1


async def test_retry_after_beyond_the_cap_is_raised_at_once(fake: FakeWaveSpeed) -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05, max_retry_after=5)
    fake.inject("result", Fault.status(429, "come back later", retry_after=60))
    async with quick_client(fake.base_url, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as caught:
            await client.get_result("task-0001")
    assert caught.value.retry_after == 60.0 and time.monotonic() - started < 1.0
    assert results(fake) == 1


# ---- envelopes that are HTTP 200 but not success ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"code": 500, "message": "boom", "data": None}, ServerError),
        ({"code": 400, "message": "bad seed", "data": None}, BadRequestError),
        ({"code": "weird", "message": "?", "data": None}, MalformedResponseError),
        ({"code": 201, "message": "?", "data": {"id": "t", "status": "created"}},
         MalformedResponseError),
        ({"code": 200, "message": "success", "data": {"id": ""}}, MalformedResponseError),
        ({"data": {"status": "created"}}, MalformedResponseError),
        ([1, 2, 3], MalformedResponseError),
    ],
    ids=["code500", "code400", "code-not-int", "code201", "no-id", "no-code-no-id", "not-object"],
)
async def test_http_200_without_valid_data(body: Any, error: type[WaveSpeedError]) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with serve(handler) as base_url, quick_client(base_url) as client:
        with pytest.raises(WaveSpeedError) as caught:
            await client.submit(REQUEST)
    assert type(caught.value) is error


# ---- statuses WaveSpeed may add, envelopes without a code, slow submits -----------------------


@pytest.mark.parametrize("waiting", ["pending", "queued", "Waiting", ""])
async def test_unknown_status_means_still_running_and_polling_goes_on(
    fake: FakeWaveSpeed, client: WaveSpeedClient, waiting: str
) -> None:
    fake.queue_tasks(TaskBehaviour.ok().waiting_as(waiting))
    created = await client.submit(REQUEST)
    assert not created.is_terminal and not created.succeeded
    assert created.status == (waiting.lower() or "unknown")
    done = await completed(client, created.id)
    assert done.status is TaskStatus.COMPLETED and done.succeeded
    assert results(fake) >= 2  # it polled through the unknown status to the end


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout", "deleted"])
async def test_terminal_failure_statuses_end_the_task(
    fake: FakeWaveSpeed, client: WaveSpeedClient, status: str
) -> None:
    fake.queue_tasks(TaskBehaviour.fail("gave up", status=status))
    done = await completed(client, (await client.submit(REQUEST)).id)
    assert done.is_terminal and not done.succeeded
    assert done.status is TaskStatus(status) and str(done.status) == status
    assert done.error == "gave up"


def test_prediction_statuses() -> None:
    for status in TaskStatus:
        parsed = Prediction.from_data({"id": "t", "status": status.value})
        assert parsed.status is status
        assert parsed.is_terminal is (status not in (TaskStatus.CREATED, TaskStatus.PROCESSING))
    for odd in ("pending", "queued", "starting", None, 7):
        parsed = Prediction.from_data({"id": "t", "status": odd})
        assert isinstance(parsed.status, str) and not parsed.is_terminal
    assert Prediction.from_data({"id": "t", "status": "COMPLETED"}).status is TaskStatus.COMPLETED


async def test_submit_reply_without_code_is_a_created_task(fake: FakeWaveSpeed) -> None:
    fake.send_success_code = False  # {"data": {...}} only, as the SDK accepts
    async with quick_client(fake.base_url) as client:
        created = await client.submit(REQUEST)
        assert created.id in fake.tasks and len(fake.tasks) == 1
        done = await completed(client, created.id)
    assert done.succeeded


@pytest.mark.parametrize(
    "body",
    [
        {"data": {"id": "t-1", "status": "created"}},
        {"code": None, "data": {"id": "t-1", "status": "created"}},
        {"code": 200, "message": "success", "data": {"id": "t-1", "status": "odd"}},
        # Only the id matters after a submit: broken extras must not refund a real task.
        {"code": 200, "data": {"id": "t-1", "status": "created", "outputs": "nope"}},
        {"code": 200, "data": {"id": "t-1", "has_nsfw_contents": 3}},
    ],
    ids=["no-code", "null-code", "odd-status", "bad-outputs", "bad-nsfw"],
)
async def test_http_200_with_a_task_id_is_a_created_task(body: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body)

    async with serve(handler) as base_url, quick_client(base_url) as client:
        created = await client.submit(REQUEST)
    assert created.id == "t-1" and not created.is_terminal


async def test_submit_waits_longer_than_gets(fake: FakeWaveSpeed) -> None:
    """The default submit read timeout (60 s, as WaveSpeed's API can be slow to accept a
    task) is not the GETs' request_timeout: a slow submit is a task, not an unknown outcome."""
    async with quick_client(fake.base_url, request_timeout=0.3) as client:
        fake.inject("submit", Fault.delay(0.8))
        created = await client.submit(REQUEST)
        assert created.id in fake.tasks
        fake.inject("result", *[Fault.delay(0.8)] * FAST.attempts)
        with pytest.raises(RequestTimeoutError):
            await client.get_result(created.id)


async def test_submit_timeout_is_configurable(fake: FakeWaveSpeed) -> None:
    async with quick_client(fake.base_url, request_timeout=5.0, submit_timeout=0.2) as client:
        fake.inject("submit", Fault.delay(1.0))
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as caught:
            await client.submit(REQUEST)
    assert caught.value.task_may_exist and time.monotonic() - started < 0.9
    with pytest.raises(ValueError, match="timeouts"):
        async with quick_client(fake.base_url, submit_timeout=0):
            pass


# ---- balance ----------------------------------------------------------------------------------


async def test_balance_is_retried(fake: FakeWaveSpeed, client: WaveSpeedClient) -> None:
    fake.inject("balance", Fault.malformed(), Fault.status(502, "x"))
    assert await client.balance() == 100.0
    assert len(fake.requests_to("/balance")) == 3


# ---- downloads --------------------------------------------------------------------------------


async def finished_output(
    fake: FakeWaveSpeed, client: WaveSpeedClient, behaviour: TaskBehaviour
) -> str:
    fake.queue_tasks(behaviour)
    done = await completed(client, (await client.submit(REQUEST)).id)
    assert done.outputs
    return done.outputs[0]


async def test_download_too_large_by_content_length_leaves_nothing(
    fake: FakeWaveSpeed, client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await finished_output(fake, client, TaskBehaviour.huge(5_000_000))
    with pytest.raises(OutputTooLargeError) as caught:
        await client.download_output(url, tmp_path / "out.mp4", max_bytes=1_000_000)
    assert caught.value.size_limit == 1_000_000 and not caught.value.retryable
    assert leftovers(tmp_path) == []
    assert len(fake.requests_to(".mp4")) == 1


async def test_download_at_exactly_the_limit_is_fine(
    fake: FakeWaveSpeed, client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await finished_output(fake, client, TaskBehaviour.huge(300_000))
    assert await client.download_output(url, tmp_path / "o.mp4", max_bytes=300_000) == 300_000
    assert (tmp_path / "o.mp4").stat().st_size == 300_000


async def test_download_too_large_while_streaming_leaves_nothing(tmp_path: Path) -> None:
    """No Content-Length (chunked): the cap is enforced on the bytes actually received."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(40):
            await resp.write(bytes(64 * 1024))
        await resp.write_eof()
        return resp

    async with serve(handler) as base_url, quick_client(base_url) as client:
        with pytest.raises(OutputTooLargeError):
            await client.download_output(f"{base_url}/x.mp4", tmp_path / "o.mp4", max_bytes=100_000)
    assert leftovers(tmp_path) == []


async def test_download_missing_output_is_not_found(
    fake: FakeWaveSpeed, client: WaveSpeedClient, tmp_path: Path
) -> None:
    url = await finished_output(fake, client, TaskBehaviour.output_missing())
    with pytest.raises(NotFoundError):
        await client.download_output(url, tmp_path / "o.mp4", max_bytes=1_000_000)
    assert len(fake.requests_to(".mp4")) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "fault",
    [Fault.status(502, "cdn"), Fault.drop(), Fault.delay(1.0)],
    ids=["502", "drop", "stall"],
)
async def test_download_is_retried_on_transient_faults(
    fake: FakeWaveSpeed, tmp_path: Path, fault: Fault
) -> None:
    async with quick_client(fake.base_url, request_timeout=0.3) as client:
        url = await finished_output(fake, client, TaskBehaviour.ok())
        fake.inject("output", fault, fault)
        size = await client.download_output(url, tmp_path / "o.mp4", max_bytes=1_000_000)
    assert size == len(make_mp4()) and (tmp_path / "o.mp4").read_bytes() == make_mp4()
    assert not any(r.had_auth_header for r in fake.requests_to(".mp4"))


# ---- the API key never leaks ------------------------------------------------------------------


async def test_api_key_never_in_errors_logs_or_repr(
    fake: FakeWaveSpeed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raised: list[BaseException] = []
    async with quick_client(fake.base_url, request_timeout=0.3, submit_timeout=0.3) as client:
        assert SECRET not in repr(client) and SECRET not in str(client)
        # WaveSpeed echoing the key back must not carry it into our messages either.
        fake.inject("submit", Fault.status(400, f"bad key {SECRET}"), Fault.status(401, SECRET))
        fake.inject("submit", Fault.drop(), Fault.malformed(), Fault.delay(1.0))
        fake.inject("submit", Fault.status(500, SECRET), Fault.status(429, SECRET, retry_after=1))
        for _ in range(7):
            try:
                await client.submit(REQUEST)
            except WaveSpeedError as exc:
                raised.append(exc)
        fake.inject("result", *[Fault.status(503, SECRET)] * FAST.attempts)
        try:
            await client.get_result("task-x")
        except WaveSpeedError as exc:
            raised.append(exc)
        try:
            await client.download_output(
                f"{fake.base_url}/outputs/no.mp4", tmp_path / "o", max_bytes=9
            )
        except WaveSpeedError as exc:
            raised.append(exc)
    async with quick_client(fake.base_url) as client:
        await fake.close()
        try:
            await client.balance()
        except WaveSpeedError as exc:
            raised.append(exc)

    assert len(raised) == 10
    for error in raised:
        assert_no_secret(error)
    assert caplog.records and SECRET not in caplog.text
    assert any(r.name == "wavespeed" and "retrying" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", MalformedResponseError),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", ConnectionDroppedError),
    ],
    ids=["garbage", "truncated"],
)
async def test_broken_http_replies(reply: bytes, error: type[WaveSpeedError]) -> None:
    """aiohttp's ClientResponseError for a garbage reply holds the request headers (and so
    the key) in its repr: the typed error must not keep it as cause or context."""
    async with raw_server(reply) as base_url, quick_client(base_url) as client:
        with pytest.raises(WaveSpeedError) as caught:
            await client.submit(REQUEST)
        assert type(caught.value) is error and caught.value.task_may_exist
        assert_no_secret(caught.value)
        with pytest.raises(error):
            await client.get_result("t")


async def test_session_with_default_authorization_is_refused() -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {SECRET}"}) as session:
        with pytest.raises(ValueError, match="Authorization") as caught:
            WaveSpeedClient(session, SECRET)
    assert SECRET not in str(caught.value)


# ---- retry policy -----------------------------------------------------------------------------


def test_backoff_is_jittered_capped_and_overridden_by_retry_after() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    for attempt in range(1, 10):
        for _ in range(50):
            assert 0 <= policy.delay(attempt) <= min(4.0, 0.5 * 2 ** (attempt - 1))
    assert policy.delay(1, retry_after=7.0) == 7.0  # at least Retry-After, even past max_delay
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert (
        parse_retry_after(format_datetime(now + timedelta(seconds=9), usegmt=True), now=now) == 9.0
    )
    assert (
        parse_retry_after(format_datetime(now - timedelta(seconds=9), usegmt=True), now=now) == 0.0
    )
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None
