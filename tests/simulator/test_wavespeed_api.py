"""Sanity checks of FakeWaveSpeed itself, spoken to with a bare aiohttp session."""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
import yarl

from simulator import wavespeed_api
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour, contract_price_usd
from tests.media import make_mp4
from wavespeed.client import RetryPolicy, WaveSpeedClient
from wavespeed.errors import ServerError
from wavespeed.models import GenerationRequest

SUBMIT = "/api/v3/alibaba/wan-2.6/reference-to-video"
KEY = "simulator-test-key-0123456789"  # long: the suite watches it (tests/secret_canaries.py)
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY = {"videos": ["https://example.com/a.mp4"], "prompt": "a cat surfs"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(api_key=KEY) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> tuple[int, Any]:
    async with http.request(method, url, headers=headers, json=json) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


def test_make_mp4_is_a_real_video(tmp_path: Any) -> None:
    path = tmp_path / "clip.mp4"
    data = make_mp4(path, seconds=0.5)
    assert path.read_bytes() == data
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 64)
        assert len(list(container.decode(video=0))) == 5  # 0.5 s at 10 fps
    assert make_mp4(seconds=0.5) is data  # cached, not re-encoded


async def test_api_routes_require_the_bearer_key(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    for headers in (None, {"Authorization": "Bearer wrong"}):
        status, body = await call(http, "POST", fake.base_url + SUBMIT, headers=headers, json=BODY)
        assert status == 401
        assert body["code"] == 401 and body["data"] is None
    status, _ = await call(http, "GET", fake.base_url + "/api/v3/balance")
    assert status == 401
    status, _ = await call(http, "GET", fake.base_url + "/api/v3/nowhere")
    assert status == 401
    status, _ = await call(http, "GET", fake.base_url + "/api/v3/nowhere", headers=AUTH)
    assert status == 404
    assert not fake.tasks
    assert [(r.status, r.authorized, r.had_auth_header) for r in fake.requests] == [
        (401, False, False),
        (401, False, True),
        (401, False, False),
        (401, False, False),
        (404, True, True),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"videos": []}, "videos"),
        ({"videos": ["https://a/1.mp4", "https://a/2.mp4", "https://a/3.mp4"]}, "videos"),
        ({"videos": [7]}, "videos"),
        ({"prompt": "   "}, "prompt"),
        ({"size": "640*480"}, "size"),
        ({"duration": 7}, "duration"),
        ({"shot_type": "wide"}, "shot_type"),
        ({"seed": 2**31}, "seed"),
        ({"seed": True}, "seed"),
    ],
)
async def test_invalid_submit_is_400_naming_the_field(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    status, body = await call(
        http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY | change
    )
    assert status == 400
    assert body["message"].startswith(field)
    assert not fake.tasks and not fake.submissions


async def test_task_lifecycle_to_completed_and_output_served(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    assert status == 200 and body["code"] == 200
    task_id = body["data"]["id"]
    assert body["data"]["status"] == "created"
    assert fake.submissions[0].body == BODY

    seen = []
    result_url = body["data"]["urls"]["get"]
    for _ in range(100):
        _, body = await call(http, "GET", result_url, headers=AUTH)
        seen.append(body["data"]["status"])
        if seen[-1] == "completed":
            break
        await asyncio.sleep(0.01)
    assert seen[-1] == "completed" and "processing" in seen
    data = body["data"]
    assert data["outputs"] == [f"{fake.base_url}/outputs/{task_id}.mp4"]
    assert data["has_nsfw_contents"] == [False]

    async with http.get(data["outputs"][0]) as resp:  # CDN: no auth needed
        assert resp.status == 200
        assert await resp.read() == make_mp4()
    status, _ = await call(
        http, "GET", fake.base_url + "/api/v3/predictions/nope/result", headers=AUTH
    )
    assert status == 404


async def test_never_task_runs_until_finished(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake.queue_tasks(TaskBehaviour.never())
    _, body = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    task = fake.tasks[body["data"]["id"]]
    await asyncio.sleep(0.15)
    assert task.status() == "processing" and fake.running_count == 1
    fake.finish_task(task.id)
    assert task.status() == "completed" and fake.running_count == 0


async def test_concurrency_limit_answers_429_and_creates_nothing(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeWaveSpeed(api_key=KEY, max_concurrent=2) as fake:
        fake.queue_tasks(TaskBehaviour.never(), TaskBehaviour.never())
        for _ in range(2):
            status, _ = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
            assert status == 200
        async with http.post(fake.base_url + SUBMIT, headers=AUTH, json=BODY) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
        assert len(fake.tasks) == 2 and fake.max_running_seen == 2
        fake.finish_task(next(iter(fake.tasks)))
        status, _ = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
        assert status == 200
        assert fake.max_running_seen == 2


async def test_status_fault_creates_no_task_but_drop_does(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake.inject("submit", Fault.status(503, retry_after=0.2), Fault.drop())
    async with http.post(fake.base_url + SUBMIT, headers=AUTH, json=BODY) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"  # ceil'd
    assert not fake.tasks
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(fake.base_url + SUBMIT, headers=AUTH, json=BODY):
            pass
    assert len(fake.tasks) == 1
    assert [r.status for r in fake.requests] == [503, 0]


async def test_upload_is_served_back(fake: FakeWaveSpeed, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"ref video", filename="ref.mp4", content_type="video/mp4")
    async with http.post(
        fake.base_url + "/api/v3/media/upload/binary", headers=AUTH, data=form
    ) as resp:
        body = await resp.json()
    async with http.get(body["data"]["download_url"]) as resp:
        assert await resp.read() == b"ref video"


async def ticket(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, **body: Any
) -> tuple[int, Any]:
    return await call(http, "POST", fake.base_url + "/api/v3/media/uploads", headers=AUTH,
                      json={"filename": "ref.mp4", "size": 9, "content_type": "video/mp4"} | body)


async def put(
    http: aiohttp.ClientSession, upload: dict[str, Any], data: bytes, **headers: str
) -> int:
    async with http.put(upload["url"], data=data, headers=upload["headers"] | headers) as resp:
        return resp.status


async def test_direct_upload_ticket_then_put_then_served(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    status, body = await ticket(fake, http)
    assert status == 200 and body["code"] == 200
    data = body["data"]
    assert data["upload"]["method"] == "PUT" and data["upload"]["headers"] == {
        "Content-Type": "video/mp4"
    }
    async with http.get(data["download_url"]) as resp:
        assert resp.status == 404  # nothing to serve before the PUT
    assert await put(http, data["upload"], b"ref video") == 200
    async with http.get(data["download_url"]) as resp:
        assert await resp.read() == b"ref video"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"filename": ""}, "filename"),
        ({"size": 0}, "size"),
        ({"size": "9"}, "size"),
        ({"size": 100 * 1024 * 1024 + 1}, "size"),
        ({"content_type": 5}, "content_type"),
    ],
)
async def test_bad_upload_ticket_is_400_naming_the_field(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    status, body = await ticket(fake, http, **change)
    assert status == 400 and body["message"].startswith(field)
    assert not fake.upload_tickets


async def test_put_is_refused_like_object_storage_would(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    _, body = await ticket(fake, http)
    upload = body["data"]["upload"]
    assert await put(http, upload, b"ref video", Authorization=f"Bearer {KEY}") == 400
    assert await put(http, upload, b"ref video", **{"Content-Type": "video/webm"}) == 403
    assert await put(http, upload, b"ref vide") == 400  # 8 bytes, 9 declared
    assert await put(http, upload | {"url": upload["url"].split("?")[0]}, b"ref video") == 403
    assert not fake.uploads
    fake.direct_uploads = False
    status, _ = await ticket(fake, http)
    assert status == 404


async def test_put_over_100_mb_is_413_before_any_body(fake: FakeWaveSpeed,
                                                      http: aiohttp.ClientSession) -> None:
    _, body = await ticket(fake, http, size=100 * 1024 * 1024)
    target = yarl.URL(body["data"]["upload"]["url"])
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        f"PUT {target.raw_path_qs} HTTP/1.1\r\nHost: {target.host}\r\n"
        "Content-Type: video/mp4\r\nContent-Length: 104857601\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413"


async def test_redirect_fault_and_reported_statuses(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake.send_success_code = False
    fake.queue_tasks(TaskBehaviour.ok(complete_after=5).waiting_as("queued"),
                     TaskBehaviour.fail("stopped", complete_after=0, status="cancelled"))
    _, first = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    _, second = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    assert "code" not in first and first["data"]["status"] == "queued"
    _, body = await call(http, "GET", second["data"]["urls"]["get"], headers=AUTH)
    assert body["data"]["status"] == "cancelled" and body["data"]["error"] == "stopped"

    fake.inject("output", Fault.redirect("https://169.254.169.254/x", code=307))
    async with http.get(fake.base_url + "/outputs/any.mp4", allow_redirects=False) as resp:
        assert resp.status == 307 and resp.headers["Location"] == "https://169.254.169.254/x"


async def test_foreign_tasks_and_status_after_create(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake.clock = lambda: 1_700_000_000.25
    old = fake.add_foreign_task(model="vidu/reference-to-video-q2", created_at=1_699_999_000.0)
    _, body = await call(http, "GET", f"{fake.base_url}/api/v3/predictions/{old}/result",
                         headers=AUTH)
    data = body["data"]
    assert data["model"] == "vidu/reference-to-video-q2"
    assert data["created_at"] == "2023-11-14T21:56:40.000000000Z"
    assert data["status"] == "completed"  # 1000 s old: long done
    assert not fake.submissions

    fake.inject("submit", Fault.status_after_create(504))
    status, body = await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    assert status == 504 and body["code"] == 504 and body["data"] is None
    assert [s.body for s in fake.submissions] == [BODY]
    created = fake.tasks[fake.submissions[0].task_id]
    assert created.created_at == "2023-11-14T22:13:20.250000000Z"  # on fake.clock
    assert [r.status for r in fake.requests_to(SUBMIT)] == [504]


# -- pricing ---------------------------------------------------------------------------------

PRICING = "/api/v3/model/pricing"
MODEL = "alibaba/wan-2.6/reference-to-video"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


async def pricing(fake: FakeWaveSpeed, http: aiohttp.ClientSession, body: Any,
                  headers: dict[str, str] | None = AUTH) -> tuple[int, Any]:
    return await call(http, "POST", fake.base_url + PRICING, headers=headers, json=body)


@pytest.mark.parametrize(("size", "duration", "usd"), [
    ("1280*720", 5, 1.00), ("720*1280", 5, 1.00), ("1280*720", 10, 1.50), ("720*1280", 10, 1.50),
    ("1920*1080", 5, 1.50), ("1080*1920", 5, 1.50),
    ("1920*1080", 10, 2.25), ("1080*1920", 10, 2.25),
])
async def test_pricing_quotes_the_contract_table(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, size: str, duration: int, usd: float
) -> None:
    inputs = BODY | {"size": size, "duration": duration}
    status, body = await pricing(fake, http, {"model_id": MODEL, "inputs": inputs})
    assert status == 200
    assert body == {"code": 200, "message": "success",
                    "data": {"model_id": MODEL, "unit_price": usd, "currency": "USD"}}
    async with WaveSpeedClient.open(KEY, fake.base_url, retry=FAST) as client:
        assert await client.price(inputs) == usd  # the bot's client reads it the same
    assert not fake.tasks and not fake.submissions  # a quote creates nothing


async def test_pricing_defaults_to_720p_5s_and_follows_a_changed_quote(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    _, body = await pricing(fake, http, {"model_id": MODEL, "inputs": {}})
    assert body["data"]["unit_price"] == 1.00
    seen: list[dict[str, Any]] = []

    def doubled(inputs: dict[str, Any]) -> float:
        seen.append(inputs)
        return 2 * contract_price_usd(inputs)

    fake.quote_usd = doubled
    _, body = await pricing(fake, http, {"model_id": MODEL, "inputs": {"duration": 10}})
    assert body["data"]["unit_price"] == 3.00 and seen == [{"duration": 10}]
    fake.quote_usd = lambda inputs: 0.35
    _, body = await pricing(fake, http, {"model_id": MODEL, "inputs": BODY})
    assert body["data"]["unit_price"] == 0.35
    # Without charge_at_submit (the tests' default) a submit still costs nothing.
    assert fake.prices_usd is None
    await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
    assert fake.balance_usd == 100.0


async def test_a_charged_submit_costs_the_quote_and_a_refund_gives_back_what_was_charged(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeWaveSpeed(api_key=KEY, prices_usd=contract_price_usd,
                             complete_after=0.01) as fake:
        assert fake.charge_at_submit and fake.quote_usd is contract_price_usd
        fake.quote_usd = lambda inputs: 4.0
        fake.queue_tasks(TaskBehaviour.fail("no", complete_after=0.0))
        _, quoted = await pricing(fake, http, {"model_id": MODEL, "inputs": BODY})
        assert quoted["data"]["unit_price"] == 4.0
        await call(http, "POST", fake.base_url + SUBMIT, headers=AUTH, json=BODY)
        assert fake.balance_usd == 96.0  # charged what was quoted
        fake.quote_usd = lambda inputs: 9.0  # a later price change does not alter the refund
        _, balance = await call(http, "GET", fake.base_url + "/api/v3/balance", headers=AUTH)
        assert balance["data"]["balance"] == 100.0


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"inputs": {}}, "model_id"),
    ({"model_id": "", "inputs": {}}, "model_id"),
    ({"model_id": "vidu/reference-to-video-q2", "inputs": {}}, "model_id"),
    ({"model_id": MODEL}, "inputs"),
    ({"model_id": MODEL, "inputs": ["1280*720"]}, "inputs"),
    ({"model_id": MODEL, "inputs": {"size": "640*480"}}, "inputs.size"),
    ({"model_id": MODEL, "inputs": {"duration": 7}}, "inputs.duration"),
    ({"model_id": MODEL, "inputs": {"duration": "5"}}, "inputs.duration"),
    ({"model_id": MODEL, "inputs": {"duration": True}}, "inputs.duration"),
])
async def test_bad_pricing_requests_are_400_naming_the_field(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, body: Any, field: str
) -> None:
    status, reply = await pricing(fake, http, body)
    assert status == 400 and reply["code"] == 400 and reply["data"] is None
    assert reply["message"].startswith(field)
    async with http.post(fake.base_url + PRICING, headers=AUTH, data=b"{not json") as resp:
        assert resp.status == 400


async def test_pricing_needs_the_key_and_takes_faults(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    good = {"model_id": MODEL, "inputs": BODY}
    for headers in (None, {"Authorization": "Bearer wrong"}):
        status, body = await pricing(fake, http, good, headers)
        assert status == 401 and body["data"] is None
    fake.inject("pricing", Fault.status(503, retry_after=1), Fault.malformed())
    async with http.post(fake.base_url + PRICING, headers=AUTH, json=good) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    async with http.post(fake.base_url + PRICING, headers=AUTH, json=good) as resp:
        assert resp.status == 200
        with pytest.raises(ValueError):
            await resp.json()
    status, body = await pricing(fake, http, good)
    assert status == 200 and body["data"]["unit_price"] == 1.00
    assert [(r.status, r.authorized) for r in fake.requests_to(PRICING)] == [
        (401, False), (401, False), (503, True), (200, True), (200, True)]
    fake.inject("pricing", *[Fault.status(502)] * FAST.attempts)
    async with WaveSpeedClient.open(KEY, fake.base_url, retry=FAST) as client:
        with pytest.raises(ServerError):
            await client.price(BODY)


# -- media rules -----------------------------------------------------------------------------

BINARY = "/api/v3/media/upload/binary"


async def binary(fake: FakeWaveSpeed, http: aiohttp.ClientSession, data: bytes, filename: str,
                 content_type: str | None) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type=content_type)
    async with http.post(fake.base_url + BINARY, headers=AUTH, data=form) as resp:
        return resp.status, await resp.json()


async def test_binary_upload_over_100_mb_is_413(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Declared too large: refused from the headers, before any of the body is read.
    target = yarl.URL(fake.base_url + BINARY)
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        f"POST {BINARY} HTTP/1.1\r\nHost: {target.host}\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {102 * 1024 * 1024}\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413"
    # A file found to be too large once read (the limit made small to keep the test light).
    monkeypatch.setattr(wavespeed_api, "MAX_UPLOAD_BYTES", 1000)
    status, body = await binary(fake, http, bytes(1001), "ref.mp4", "video/mp4")
    assert status == 413 and body["message"] == "file: larger than 100 MB"
    status, _ = await binary(fake, http, bytes(1000), "ref.mp4", "video/mp4")
    assert status == 200
    assert len(fake.uploads) == 1


@pytest.mark.parametrize(("filename", "content_type"), [
    ("a.mp4", "video/mp4"), ("a.MOV", "video/quicktime"), ("a.m4v", None), ("a.webm", None),
    ("a.mkv", "video/x-matroska"), ("a.mp3", "audio/mpeg"), ("a.wav", "audio/wav"),
    ("a.m4a", "audio/mp4"), ("a.aac", "audio/aac"), ("a.ogg", "audio/ogg"),
    ("a.flac", "audio/flac"), ("a.png", "image/png"), ("a.jpg", "image/jpeg"),
    ("a.jpeg", "image/jpeg"), ("a.webp", "image/webp"), ("a.gif", "image/gif"),
    ("a.mp4", "application/octet-stream"), ("clip", "video/mp4"),
    ("clip", "video/mp4; codecs=avc1"),
])
async def test_media_types_the_store_takes(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, filename: str, content_type: str | None
) -> None:
    status, body = await binary(fake, http, b"bytes", filename, content_type)
    assert status == 200, body
    status, body = await ticket(fake, http, filename=filename, size=5, content_type=content_type)
    assert status == 200, body


@pytest.mark.parametrize(("filename", "content_type", "ticket_field"), [
    ("notes.txt", "text/plain", "filename"),
    ("setup.exe", "video/mp4", "filename"),  # the extension says what it is
    ("ref.mp4", "application/zip", "content_type"),
    ("page.html", None, "filename"),
    ("clip", "application/octet-stream", "filename"),  # nothing says it is media
    ("clip", None, "filename"),
])
async def test_unsupported_file_types_are_400(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, filename: str, content_type: str | None,
    ticket_field: str,
) -> None:
    status, body = await binary(fake, http, b"bytes", filename, content_type)
    assert status == 400 and body["message"].startswith("file: unsupported file type")
    status, body = await ticket(fake, http, filename=filename, size=5, content_type=content_type)
    assert status == 400
    assert body["message"].startswith(f"{ticket_field}: unsupported file type")
    assert not fake.uploads and not fake.upload_tickets


# -- retention and references checked at submit ------------------------------------------------

DAY = 86_400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def ended(client: WaveSpeedClient, task_id: str) -> Any:
    for _ in range(500):
        prediction = await client.get_result(task_id)
        if prediction.is_terminal:
            return prediction
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task_id} never ended")


@pytest.fixture
async def client(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient.open(KEY, fake.base_url, retry=FAST) as c:
        yield c


async def test_uploads_are_kept_seven_days_then_404_and_dropped(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, client: WaveSpeedClient
) -> None:
    clock = fake.clock = Clock()
    direct = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    fake.direct_uploads = False
    clock.now += 3600
    multipart = await client.upload_media(make_mp4(), "late.mp4", "video/mp4")
    assert sorted(fake.upload_times.values()) == [1_700_000_000.0, 1_700_003_600.0]
    clock.now = 1_700_000_000.0 + 7 * DAY - 1
    for url in (direct, multipart):
        async with http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == make_mp4()
    clock.now += 1  # the direct upload is exactly 7 days old
    async with http.get(direct) as resp:
        assert resp.status == 404
    assert len(fake.uploads) == 1 and len(fake.upload_times) == 1  # its bytes are gone
    async with http.get(multipart) as resp:
        assert resp.status == 200
    clock.now += 3600
    async with http.get(multipart) as resp:
        assert resp.status == 404
    assert not fake.uploads and not fake.upload_times


async def test_uploads_past_the_memory_budget_drop_the_oldest_first(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, client: WaveSpeedClient
) -> None:
    clock = fake.clock = Clock()
    size = len(make_mp4())
    fake.max_kept_upload_bytes = 2 * size  # two files fit
    urls = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        urls.append(await client.upload_media(make_mp4(), name, "video/mp4"))
        clock.now += 1
    statuses = []
    for url in urls:
        async with http.get(url) as resp:
            statuses.append(resp.status)
    assert statuses == [404, 200, 200]
    assert sum(len(b) for b in fake.uploads.values()) == 2 * size


async def test_a_reference_to_expired_media_is_billed_and_fails(
    http: aiohttp.ClientSession,
) -> None:
    async with FakeWaveSpeed(api_key=KEY, prices_usd=contract_price_usd,
                             complete_after=0.02) as fake, \
            WaveSpeedClient.open(KEY, fake.base_url, retry=FAST) as client:
        clock = fake.clock = Clock()
        url = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
        clock.now += 7 * DAY + 1
        fake.queue_tasks(TaskBehaviour.ok())  # the queued outcome cannot save it
        task = await client.submit(GenerationRequest(
            videos=("https://example.com/a.mp4", url), prompt="p", duration=10))
        assert [s.task_id for s in fake.submissions] == [task.id]  # created, as WaveSpeed does
        assert fake.balance_usd == 98.50  # and billed
        prediction = await ended(client, task.id)
        assert prediction.status == "failed"
        assert prediction.error == "reference 2 could not be downloaded (HTTP 404)"
        assert await client.balance() == 100.0  # failed tasks are given back
        unknown = f"{fake.base_url}/media/{'0' * 32}/ref.mp4"
        task = await client.submit(GenerationRequest(videos=("https://example.com/a.mp4",),
                                                     prompt="p", audio=unknown))
        prediction = await ended(client, task.id)
        assert prediction.error == "the reference audio could not be downloaded (HTTP 404)"


def wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(1600))
    return buffer.getvalue()


async def test_own_media_references_that_decode_complete(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, client: WaveSpeedClient
) -> None:
    video = await client.upload_media(make_mp4(), "ref.mp4", "video/mp4")
    audio = await client.upload_media(wav(), "song.wav", "audio/wav")
    task = await client.submit(GenerationRequest(videos=(video, video), prompt="p", audio=audio))
    prediction = await ended(client, task.id)
    assert prediction.status == "completed", prediction.error
    async with http.get(prediction.outputs[0]) as resp:
        assert await resp.read() == make_mp4()


@pytest.mark.parametrize(("uploads", "error"), [
    ({"video": b"this is not a video"},
     "reference 1 could not be decoded: not a readable video file (InvalidDataError)"),
    ({"video": "wav"}, "reference 1 could not be decoded: no video stream"),
    ({"audio": "mp4"}, "the reference audio could not be decoded: no audio stream"),
    ({"audio": b"ID3" + bytes(500)},
     "the reference audio could not be decoded: not a readable audio file (InvalidDataError)"),
])
async def test_an_own_media_reference_that_does_not_decode_fails_the_task(
    fake: FakeWaveSpeed, client: WaveSpeedClient, uploads: dict[str, Any], error: str
) -> None:
    files = {"mp4": make_mp4(), "wav": wav()}
    video, audio = make_mp4(), None
    if "video" in uploads:
        video = files.get(uploads["video"], uploads["video"])
    if "audio" in uploads:
        audio = files.get(uploads["audio"], uploads["audio"])
    video_url = await client.upload_media(video, "ref.mp4", "video/mp4")
    audio_url = await client.upload_media(audio, "song.mp3", "audio/mpeg") if audio else None
    task = await client.submit(GenerationRequest(
        videos=("https://example.com/fine.mp4", video_url)[::-1], prompt="p", audio=audio_url))
    prediction = await ended(client, task.id)
    assert prediction.status == "failed" and prediction.error == error


async def test_a_slow_reference_check_holds_the_task_processing(
    http: aiohttp.ClientSession,
) -> None:
    release = asyncio.Event()
    checked: list[tuple[bytes, str]] = []

    async def check(data: bytes, kind: str) -> str | None:
        checked.append((data, kind))
        await release.wait()
        return "no video stream"

    async with FakeWaveSpeed(api_key=KEY, reference_check=check, complete_after=0.0) as fake, \
            WaveSpeedClient.open(KEY, fake.base_url, retry=FAST) as client:
        fake.uploads["planted"] = b"bytes"  # put in by hand: no upload time, never expires
        fake.clock = lambda: time.time() + 30 * DAY
        task = await client.submit(GenerationRequest(
            videos=(f"{fake.base_url}/media/planted/a.mp4",), prompt="p"))
        await asyncio.sleep(0.05)
        assert (await client.get_result(task.id)).status == "processing"  # past its end
        assert checked == [(b"bytes", "video")]
        release.set()
        prediction = await ended(client, task.id)
        assert prediction.error == "reference 1 could not be decoded: no video stream"
