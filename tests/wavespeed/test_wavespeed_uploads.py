"""upload_media against FakeWaveSpeed: the SDK's direct upload (ticket + PUT) first, the
multipart binary endpoint as the fallback, and which failures fall back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.wavespeed import FakeWaveSpeed, Fault
from tests.media import make_mp4
from wavespeed.client import RetryPolicy, WaveSpeedClient
from wavespeed.errors import AuthenticationError, ServerError, WaveSpeedError

SECRET = "ws-SECRET-KEY-uploads-0123456789"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
TICKET = "/api/v3/media/uploads"
BINARY = "/api/v3/media/upload/binary"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(api_key=SECRET) as server:
        yield server


@pytest.fixture
async def client(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient.open(SECRET, fake.base_url, retry=FAST, request_timeout=2.0) as c:
        yield c


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


def count(fake: FakeWaveSpeed, suffix: str, method: str = "POST") -> int:
    return len(fake.requests_to(suffix, method))


def puts(fake: FakeWaveSpeed) -> list[Any]:
    return [r for r in fake.requests if r.method == "PUT"]


async def test_direct_upload_is_the_primary_path(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    url = await client.upload_media(make_mp4(), "ref clip.mp4", "video/mp4")
    assert await fetch(url) == make_mp4()
    [ticket] = fake.upload_tickets.values()
    assert ticket.put and ticket.size == len(make_mp4()) and ticket.content_type == "video/mp4"
    assert ticket.filename == "ref clip.mp4"
    [ticket_request] = fake.requests_to(TICKET)
    assert ticket_request.authorized
    [put] = puts(fake)
    assert put.status == 200 and not put.had_auth_header  # the key never goes to storage
    assert count(fake, BINARY) == 0


async def test_old_api_without_direct_uploads_falls_back_to_binary(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    fake.direct_uploads = False
    url = await client.upload_media(b"reference bytes", "ref.mp4", "video/mp4")
    assert await fetch(url) == b"reference bytes"
    assert [r.status for r in fake.requests_to(TICKET)] == [404]  # not retried: it is gone
    assert count(fake, BINARY) == 1 and not puts(fake)


@pytest.mark.parametrize("code", [400, 403, 404, 405, 413, 415])
async def test_ticket_refusals_fall_back_to_binary(
    fake: FakeWaveSpeed, client: WaveSpeedClient, code: int
) -> None:
    fake.inject("upload_ticket", Fault.status(code, "not for this file"))
    url = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert await fetch(url) == make_mp4()
    assert count(fake, TICKET) == 1 and count(fake, BINARY) == 1


async def test_bad_key_on_the_ticket_does_not_fall_back(fake: FakeWaveSpeed) -> None:
    async with WaveSpeedClient.open("wrong-key", fake.base_url, retry=FAST) as client:
        with pytest.raises(AuthenticationError):
            await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert count(fake, TICKET) == 1 and count(fake, BINARY) == 0


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503, "busy"), Fault.status(429, "slow"), Fault.drop(), Fault.malformed()],
    ids=["503", "429", "drop", "malformed"],
)
async def test_transient_ticket_failures_are_retried_on_the_direct_path(
    fake: FakeWaveSpeed, client: WaveSpeedClient, fault: Fault
) -> None:
    fake.inject("upload_ticket", fault)
    url = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert await fetch(url) == make_mp4()
    assert count(fake, TICKET) == 2 and count(fake, BINARY) == 0


async def test_transient_failures_that_outlast_the_retries_are_raised(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    fake.inject("upload_ticket", *[Fault.status(502, "bad gateway")] * FAST.attempts)
    with pytest.raises(ServerError) as caught:
        await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert caught.value.status == 502 and caught.value.retryable
    assert count(fake, TICKET) == FAST.attempts and count(fake, BINARY) == 0


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413])
async def test_put_refusals_fall_back_to_binary(
    fake: FakeWaveSpeed, client: WaveSpeedClient, code: int
) -> None:
    fake.inject("upload_put", Fault.status(code, "storage says no"))
    url = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert await fetch(url) == make_mp4()
    assert [r.status for r in puts(fake)] == [code] and count(fake, BINARY) == 1


@pytest.mark.parametrize(
    ("fault", "tickets"),
    # A dropped PUT is resent by aiohttp itself (PUT is idempotent, RFC 9112 9.3.1), on the
    # same ticket; a 500 makes the client start over with a fresh ticket.
    [(Fault.status(500, "storage hiccup"), 2), (Fault.drop(), 1)],
    ids=["500", "drop"],
)
async def test_transient_put_failures_are_retried_on_the_direct_path(
    fake: FakeWaveSpeed, client: WaveSpeedClient, fault: Fault, tickets: int
) -> None:
    fake.inject("upload_put", fault)
    url = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    assert await fetch(url) == make_mp4()
    assert count(fake, TICKET) == tickets and count(fake, BINARY) == 0
    assert len(puts(fake)) == 2


async def test_put_errors_never_show_the_presigned_query(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    fake.inject("upload_put", *[Fault.status(503, "slow down")] * FAST.attempts)
    with pytest.raises(ServerError) as caught:
        await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    signatures = [t.signature for t in fake.upload_tickets.values()]
    assert signatures and not any(sig in str(caught.value) for sig in signatures)
    assert "/storage/" in str(caught.value) and SECRET not in repr(caught.value)


@asynccontextmanager
async def api_with_ticket(ticket: Any) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback API whose ticket endpoint answers `ticket` and whose binary endpoint works."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        if request.path == TICKET:
            return web.json_response({"code": 200, "data": ticket})
        if request.path == BINARY:
            await request.post()
            return web.json_response({"code": 200, "data": {"download_url": "https://x/ok.mp4"}})
        return web.json_response({"code": 404}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "ticket",
    [
        {"download_url": "https://x/a.mp4"},
        {"download_url": "https://x/a.mp4", "upload": {"method": "POST", "url": "https://s/u"}},
        {"upload": {"method": "PUT", "url": "https://s/u"}},
        {"download_url": "https://x/a.mp4", "upload": {"method": "PUT", "url": ""}},
        # The guard refuses a PUT target on the cloud-metadata address.
        {"download_url": "https://x/a.mp4",
         "upload": {"method": "PUT", "url": "http://169.254.169.254/latest/"}},
    ],
    ids=["no-upload", "not-put", "no-download-url", "empty-url", "metadata-target"],
)
async def test_unusable_tickets_fall_back_to_binary(ticket: dict[str, Any]) -> None:
    async with api_with_ticket(ticket) as (base_url, seen), WaveSpeedClient.open(
        SECRET, base_url, retry=FAST
    ) as client:
        assert await client.upload_media(b"x", "a.mp4", "video/mp4") == "https://x/ok.mp4"
    assert seen == [f"POST {TICKET}", f"POST {BINARY}"]  # no PUT was attempted


async def test_uploads_refused_by_both_paths_raise_the_binary_error(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    fake.inject("upload_ticket", Fault.status(400, "size: larger than 100 MB"))
    fake.inject("upload", Fault.status(400, "file: larger than 100 MB"))
    with pytest.raises(WaveSpeedError) as caught:
        await client.upload_media(b"too big, pretend", "ref.mp4", "video/mp4")
    assert caught.value.message == "file: larger than 100 MB"
