"""Sanity checks of FakeWaveSpeed itself, spoken to with a bare aiohttp session."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest
import yarl

from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.media import make_mp4

SUBMIT = "/api/v3/alibaba/wan-2.6/reference-to-video"
AUTH = {"Authorization": "Bearer test-key"}
BODY = {"videos": ["https://example.com/a.mp4"], "prompt": "a cat surfs"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed() as server:
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
    data = make_mp4(path)
    assert path.read_bytes() == data
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 64)
        assert len(list(container.decode(video=0))) == 5
    assert make_mp4() is data  # cached, not re-encoded


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
    async with FakeWaveSpeed(max_concurrent=2) as fake:
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
    assert await put(http, upload, b"ref video", Authorization="Bearer test-key") == 400
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
