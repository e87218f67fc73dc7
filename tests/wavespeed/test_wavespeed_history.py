"""WaveSpeedClient.predictions (the prediction history) against FakeWaveSpeed on 127.0.0.1,
the fake's history route spoken to directly, and parse_timestamp."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour
from tests.harness import FAST_RETRY
from wavespeed.client import HISTORY_PATH, WaveSpeedClient
from wavespeed.errors import AuthenticationError, MalformedResponseError, ServerError
from wavespeed.models import MODEL_PATH, GenerationRequest, Prediction, TaskStatus, parse_timestamp

SECRET = "ws-SECRET-history-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SECRET}"}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the fake's wall clock, pinned
WEEK: dict[str, Any] = {
    "created_after": NOW - timedelta(days=7),
    "created_before": NOW + timedelta(seconds=1),
}
OTHER_MODEL = "google/veo3.1/reference-to-video"
REQUEST = GenerationRequest(videos=("https://example.com/ref.mp4",), prompt="a cat surfs")


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(api_key=SECRET, processing_after=0.01, complete_after=0.05) as server:
        server.clock = NOW.timestamp
        yield server


@pytest.fixture
async def client(fake: FakeWaveSpeed) -> AsyncIterator[WaveSpeedClient]:
    async with WaveSpeedClient.open(
        SECRET, fake.base_url, retry=FAST_RETRY, request_timeout=2.0
    ) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def plant(fake: FakeWaveSpeed, count: int, *, model: str = MODEL_PATH) -> list[str]:
    """`count` foreign tasks one second apart, the newest at NOW; their ids newest first."""
    return [
        fake.add_foreign_task(model=model, created_at=(NOW - timedelta(seconds=age)).timestamp())
        for age in range(count)
    ]


def ids(predictions: tuple[Prediction, ...]) -> list[str]:
    return [p.id for p in predictions]


def history_calls(fake: FakeWaveSpeed) -> list[int]:
    """Statuses of the history requests that reached the fake, in order."""
    return [r.status for r in fake.requests_to(HISTORY_PATH, "POST")]


# ---- paging ----------------------------------------------------------------------------------


async def test_walks_three_pages_newest_first_each_task_once(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    planted = plant(fake, 250)
    history = await client.predictions(**WEEK)
    assert history.complete
    assert ids(history.items) == planted
    assert [q["page"] for q in fake.history_queries] == [1, 2, 3]
    assert {q["page_size"] for q in fake.history_queries} == {100}
    first = fake.history_queries[0]
    assert first["created_after"] == "2026-02-22T12:00:00Z"
    assert first["created_before"] == "2026-03-01T12:00:01Z"
    assert first["model"] == MODEL_PATH and "status" not in first
    assert history.items[0].created == NOW
    assert history.items[-1].created == NOW - timedelta(seconds=249)


async def test_stops_when_total_is_reached_or_nothing_is_listed(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    empty = await client.predictions(**WEEK)
    assert empty.items == () and empty.complete
    assert len(fake.history_queries) == 1
    planted = plant(fake, 200)
    history = await client.predictions(**WEEK)
    assert ids(history.items) == planted and history.complete
    # Two full pages make the total: no third request for an empty page.
    assert [q["page"] for q in fake.history_queries[1:]] == [1, 2]


async def test_max_pages_cut_is_incomplete_but_an_exact_fit_is_not(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    planted = plant(fake, 250)
    cut = await client.predictions(**WEEK, max_pages=2)
    assert ids(cut.items) == planted[:200]
    assert not cut.complete
    assert len(fake.history_queries) == 2
    fits = await client.predictions(**WEEK, page_size=50, max_pages=5)
    assert ids(fits.items) == planted and fits.complete


async def test_a_rate_limited_or_failing_page_is_retried_and_the_walk_completes(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    planted = plant(fake, 250)
    # delay(0) lets page 1 through untouched; page 2 then meets a 429 and a 500.
    fake.inject("history", Fault.delay(0), Fault.status(429, retry_after=0), Fault.status(500))
    history = await client.predictions(**WEEK)
    assert ids(history.items) == planted and history.complete
    assert history_calls(fake) == [200, 429, 500, 200, 200]
    assert [q["page"] for q in fake.history_queries] == [1, 2, 3]


async def test_malformed_replies_raise_after_the_retries(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    plant(fake, 3)
    fake.inject("history", *[Fault.malformed()] * FAST_RETRY.attempts)
    with pytest.raises(MalformedResponseError) as caught:
        await client.predictions(**WEEK)
    assert history_calls(fake) == [200] * FAST_RETRY.attempts
    assert SECRET not in str(caught.value)


# ---- filters ---------------------------------------------------------------------------------


async def test_window_includes_created_after_and_excludes_created_before(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    planted = plant(fake, 11)  # planted[k] was created k seconds before NOW
    after, before = NOW - timedelta(seconds=8), NOW - timedelta(seconds=3)
    just_inside = fake.add_foreign_task(created_at=after.timestamp() + 0.000001)
    just_outside = fake.add_foreign_task(created_at=after.timestamp() - 0.000001)
    history = await client.predictions(created_after=after, created_before=before)
    assert ids(history.items) == [planted[4], planted[5], planted[6], planted[7], just_inside,
                                  planted[8]]
    assert just_outside not in ids(history.items) and planted[3] not in ids(history.items)
    # Any offset means the same instant; it is sent as UTC.
    plus_two = timezone(timedelta(hours=2))
    again = await client.predictions(created_after=after.astimezone(plus_two),
                                     created_before=before.astimezone(plus_two))
    assert again.items == history.items
    assert fake.history_queries[-1]["created_after"] == "2026-03-01T11:59:52Z"


async def test_model_filter_excludes_another_models_task(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    veo = fake.add_foreign_task(model=OTHER_MODEL)
    website = fake.add_foreign_task()
    ours = (await client.submit(REQUEST)).id
    assert [s.task_id for s in fake.submissions] == [ours]  # planted tasks are not submissions

    default = await client.predictions(**WEEK)
    assert ids(default.items) == [ours, website]
    everything = await client.predictions(**WEEK, model=None)
    assert set(ids(everything.items)) == {ours, website, veo}
    assert "model" not in fake.history_queries[-1]
    only_veo = await client.predictions(**WEEK, model=OTHER_MODEL)
    assert ids(only_veo.items) == [veo] and only_veo.items[0].model == OTHER_MODEL


async def test_seven_day_window_hides_an_old_task_that_still_answers(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    old = fake.add_foreign_task(created_at=(NOW - timedelta(days=8)).timestamp())
    edge = fake.add_foreign_task(created_at=(NOW - timedelta(days=7)).timestamp())
    recent = fake.add_foreign_task(created_at=(NOW - timedelta(days=6)).timestamp())
    history = await client.predictions(created_after=NOW - timedelta(days=30),
                                       created_before=NOW)
    assert ids(history.items) == [recent, edge]
    result = await client.get_result(old)
    assert result.status is TaskStatus.COMPLETED  # eight days old: long finished
    fake.clock = lambda: (NOW + timedelta(seconds=1)).timestamp()  # edge is now 7 days + 1 s
    later = await client.predictions(created_after=NOW - timedelta(days=30), created_before=NOW)
    assert ids(later.items) == [recent]


async def test_status_filter_sent_and_matched(
    fake: FakeWaveSpeed, client: WaveSpeedClient
) -> None:
    running = fake.add_foreign_task(behaviour=TaskBehaviour.never())
    failed = fake.add_foreign_task(behaviour=TaskBehaviour.fail(complete_after=0))
    done = fake.add_foreign_task(behaviour=TaskBehaviour.ok(complete_after=0))
    seen = {}
    for status in ("processing", "failed", "completed"):
        history = await client.predictions(**WEEK, status=status)
        assert fake.history_queries[-1]["status"] == status
        seen[status] = ids(history.items)
    assert seen == {"processing": [running], "failed": [failed], "completed": [done]}


# ---- what the client does with a server that does not keep its promises ----------------------


def item(task_id: str, created_at: Any, *, model: Any = MODEL_PATH,
         status: str = "completed") -> dict[str, Any]:
    return {"id": task_id, "model": model, "status": status, "outputs": [],
            "urls": {"get": f"https://example.invalid/{task_id}"}, "has_nsfw_contents": [],
            "created_at": created_at, "error": "", "executionTime": 0,
            "timings": {"inference": 0}}


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                ) -> AsyncIterator[str]:
    """A one-off loopback server answering the history path with `handler`; its base URL."""
    app = web.Application()
    app.router.add_post(HISTORY_PATH, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def lax_server(pages: list[list[dict[str, Any]]],
                     total: int | None = None) -> AsyncIterator[tuple[str, list[Any]]]:
    """A server that answers history page n with pages[n - 1], whatever the filters say.
    Yields its base URL and the bodies it received."""
    bodies: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        bodies.append(body)
        page = body["page"]
        items = pages[page - 1] if page <= len(pages) else []
        data: dict[str, Any] = {"page": page, "items": items}
        if total is not None:
            data["total"] = total
        return web.json_response({"code": 200, "message": "success", "data": data})

    async with serve(handler) as url:
        yield url, bodies


async def test_client_refilters_what_a_lax_server_returns_and_flags_bad_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    after, before = NOW - timedelta(hours=1), NOW
    page = [
        item("too-new", "2026-03-01T12:00:00.000000000Z"),  # == created_before: excluded
        item("newest", "2026-03-01T11:59:59.999999999Z"),
        item("veo", "2026-03-01T11:30:00Z", model=OTHER_MODEL),
        item("no-time", "yesterday"),
        item("no-model", "2026-03-01T11:20:00Z", model=None),
        item("running", "2026-03-01T11:10:00Z", status="processing"),
        {"model": MODEL_PATH, "created_at": "2026-03-01T11:05:00Z"},  # no id
        item("oldest", "2026-03-01T11:00:00.000000001+00:00"),
        item("too-old", "2026-03-01T10:59:59.999999999Z"),
    ]
    async with lax_server([page]) as (url, bodies), WaveSpeedClient.open(
        SECRET, url, retry=FAST_RETRY
    ) as client:
        with caplog.at_level(logging.WARNING, logger="wavespeed"):
            history = await client.predictions(created_after=after, created_before=before)
            completed = await client.predictions(created_after=after, created_before=before,
                                                 status="completed")
    assert ids(history.items) == ["newest", "running", "oldest"]
    assert not history.complete  # three items could not be checked
    assert ids(completed.items) == ["newest", "oldest"]
    assert len(bodies) == 2  # a short page ends each walk
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 6 and all("page 1" in m for m in skipped)
    assert SECRET not in caplog.text


async def test_shifting_pages_give_each_task_once_in_order() -> None:
    a, b, c, d = (item(x, f"2026-03-01T11:0{9 - i}:00Z") for i, x in enumerate("abcd"))
    # A task created during the walk pushed b from page 1 onto page 2.
    async with lax_server([[a, b], [b, c], [d]]) as (url, bodies), WaveSpeedClient.open(
        SECRET, url, retry=FAST_RETRY
    ) as client:
        history = await client.predictions(**WEEK, page_size=2)
    assert ids(history.items) == ["a", "b", "c", "d"] and history.complete
    assert [body["page"] for body in bodies] == [1, 2, 3]


async def test_a_reply_without_items_is_malformed() -> None:
    calls = 0

    async def no_items(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return web.json_response({"code": 200, "message": "success", "data": {"page": 1}})

    async with serve(no_items) as url, WaveSpeedClient.open(
        SECRET, url, retry=FAST_RETRY
    ) as client:
        with pytest.raises(MalformedResponseError, match=r"data\.items"):
            await client.predictions(**WEEK)
    assert calls == FAST_RETRY.attempts  # retried like any malformed read


# ---- arguments, auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": True}, "page_size"),
        ({"max_pages": 0}, "max_pages"),
        ({"status": "queued"}, "status"),
        ({"model": ""}, "model"),
        ({"created_after": datetime(2026, 3, 1)}, "created_after"),
        ({"created_before": datetime(2026, 3, 1)}, "created_before"),
        ({"created_after": NOW, "created_before": NOW - timedelta(seconds=1)}, "later"),
    ],
)
async def test_bad_arguments_raise_before_any_request(
    fake: FakeWaveSpeed, client: WaveSpeedClient, change: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        await client.predictions(**(WEEK | change))
    assert not fake.requests


async def test_an_empty_window_is_allowed(fake: FakeWaveSpeed, client: WaveSpeedClient) -> None:
    plant(fake, 1)
    history = await client.predictions(created_after=NOW, created_before=NOW)
    assert history.items == () and history.complete


async def test_history_requires_the_key(fake: FakeWaveSpeed,
                                        http: aiohttp.ClientSession) -> None:
    plant(fake, 1)
    for headers in (None, {"Authorization": "Bearer wrong"}):
        async with http.post(fake.base_url + HISTORY_PATH, headers=headers,
                             json={"page": 1, "page_size": 10}) as resp:
            assert resp.status == 401
            assert (await resp.json())["data"] is None
    async with WaveSpeedClient.open("wrong-key", fake.base_url, retry=FAST_RETRY) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.predictions(**WEEK)
    assert caught.value.status == 401
    assert history_calls(fake) == [401, 401, 401]  # 401 is not retried
    assert not fake.history_queries


# ---- the fake's history route, spoken to directly ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"page": 1, "page_size": 0}, "page_size"),
        ({"page": 1, "page_size": 101}, "page_size"),
        ({"page": 1}, "page_size"),
        ({"page_size": 10}, "page"),
        ({"page": "1", "page_size": 10}, "page"),
        ({"page": True, "page_size": 10}, "page"),
        ({"page": 0, "page_size": 10}, "page"),
        ({"page": 1, "page_size": 10.0}, "page_size"),
        ({"page": 1, "page_size": 10, "created_after": "yesterday"}, "created_after"),
        ({"page": 1, "page_size": 10, "created_before": "2023-13-01T00:00:00Z"},
         "created_before"),
        ({"page": 1, "page_size": 10, "created_after": 1700000000}, "created_after"),
        ({"page": 1, "page_size": 10, "status": "queued"}, "status"),
        ({"page": 1, "page_size": 10, "model": 7}, "model"),
        ([1, 10], "body"),
    ],
)
async def test_fake_refuses_bad_history_bodies_naming_the_field(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession, body: Any, field: str
) -> None:
    async with http.post(fake.base_url + HISTORY_PATH, headers=AUTH, json=body) as resp:
        assert resp.status == 400
        reply = await resp.json()
    assert reply["code"] == 400 and reply["message"].startswith(field)
    assert not fake.history_queries


async def test_fake_history_envelope_and_paging(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    planted = plant(fake, 5)
    async with http.post(fake.base_url + HISTORY_PATH, headers=AUTH,
                         json={"page": 2, "page_size": 2, "model": None,
                               "created_after": "2026-03-01T11:00:00+00:00"}) as resp:
        assert resp.status == 200
        reply = await resp.json()
    assert reply["code"] == 200 and reply["message"] == "success"
    data = reply["data"]
    assert (data["page"], data["total"]) == (2, 5)
    assert [i["id"] for i in data["items"]] == planted[2:4]
    assert data["items"][0]["created_at"] == "2026-03-01T11:59:58.000000000Z"
    assert "body" not in data["items"][0] and "input" not in data["items"][0]

    # created_after is "at or after", created_before strictly before (checked by the fake
    # itself here: the client would drop the boundary item on its own anyway).
    async with http.post(fake.base_url + HISTORY_PATH, headers=AUTH,
                         json={"page": 1, "page_size": 10,
                               "created_after": "2026-03-01T11:59:57Z",
                               "created_before": "2026-03-01T13:59:59.000000000+02:00"}) as resp:
        window = (await resp.json())["data"]
    assert [i["id"] for i in window["items"]] == planted[2:4] and window["total"] == 2


async def test_fake_status_processing_covers_created(
    fake: FakeWaveSpeed, http: aiohttp.ClientSession
) -> None:
    fake.processing_after = 60.0  # both stay "created"
    plain = fake.add_foreign_task(behaviour=TaskBehaviour.never())
    queued = fake.add_foreign_task(behaviour=TaskBehaviour.never().waiting_as("queued"))
    async with http.post(fake.base_url + HISTORY_PATH, headers=AUTH,
                         json={"page": 1, "page_size": 10, "status": "processing"}) as resp:
        items = (await resp.json())["data"]["items"]
    # "queued" is reported, so the reported status decides: only the "created" one matches.
    assert [(i["id"], i["status"]) for i in items] == [(plain, "created")]
    assert queued in fake.tasks


# ---- a submit whose reply is lost after the task was created ---------------------------------


@pytest.mark.parametrize("code", [502, 504])
async def test_status_after_create_makes_a_task_the_client_is_told_may_exist(
    fake: FakeWaveSpeed, client: WaveSpeedClient, code: int
) -> None:
    fake.inject("submit", Fault.status_after_create(code, message="upstream gone"))
    with pytest.raises(ServerError) as caught:
        await client.submit(REQUEST)
    error = caught.value
    assert error.status == code and error.task_may_exist
    assert "upstream gone" in str(error)
    assert [r.status for r in fake.requests_to(f"/api/v3/{MODEL_PATH}", "POST")] == [code]
    assert len(fake.submissions) == 1 and len(fake.tasks) == 1
    assert fake.submissions[0].body == REQUEST.to_json()
    # The history is how such a task is found again.
    history = await client.predictions(**WEEK)
    assert ids(history.items) == [fake.submissions[0].task_id]


# ---- parse_timestamp ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-05-19T06:09:15.948268264Z", datetime(2025, 5, 19, 6, 9, 15, 948268, UTC)),
        ("2025-05-19T06:09:15.999999999Z", datetime(2025, 5, 19, 6, 9, 15, 999999, UTC)),
        ("2025-05-19T06:09:15Z", datetime(2025, 5, 19, 6, 9, 15, tzinfo=UTC)),
        ("2025-05-19T06:09:15.9z", datetime(2025, 5, 19, 6, 9, 15, 900000, UTC)),
        ("2025-05-19T06:09:15.1234567+02:00", datetime(2025, 5, 19, 4, 9, 15, 123456, UTC)),
        ("2025-05-19T06:09:15-0530", datetime(2025, 5, 19, 11, 39, 15, tzinfo=UTC)),
        ("2025-05-19 06:09:15.5", datetime(2025, 5, 19, 6, 9, 15, 500000, UTC)),  # no zone: UTC
        ("  2025-05-19T06:09:15Z\n", datetime(2025, 5, 19, 6, 9, 15, tzinfo=UTC)),
        ("2025-05-19", None),
        ("2025-13-01T00:00:00Z", None),
        ("2025-05-19T25:00:00Z", None),
        ("2025-05-19T06:09:15.Z", None),
        ("0001-01-01T00:00:00+01:00", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1747634955, None),
    ],
)
def test_parse_timestamp(text: Any, expected: datetime | None) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


def test_prediction_created_reads_created_at() -> None:
    data = item("t", "2025-05-19T06:09:15.948268264Z")
    assert Prediction.from_data(data).created == datetime(2025, 5, 19, 6, 9, 15, 948268, UTC)
    assert Prediction.from_data(data | {"created_at": "soon"}).created is None
    assert Prediction(id="t", status=TaskStatus.CREATED).created is None
