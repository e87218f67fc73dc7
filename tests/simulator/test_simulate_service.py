"""Simulate mode's WaveSpeed on its own: the planner's timing and failures, the tier limits,
rendering before completion, play-money charges and refunds, and forgetting old outputs.
Spoken to through the bot's real WaveSpeed client where that is the point."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import pytest

from simulator.service import STARTING_BALANCE_USD, SimulatedService, list_price_usd
from simulator.timing import FAILURE_MESSAGE, RealisticPlanner, generation_seconds
from simulator.wavespeed_api import RenderError, SimTask, SimulatedWaveSpeed, TaskBehaviour
from tests.harness import FAST_RETRY, wait_for
from tests.media import make_mp4
from wavespeed.client import WaveSpeedClient
from wavespeed.errors import RateLimitedError
from wavespeed.models import GenerationRequest

SUBMIT = "/api/v3/alibaba/wan-2.6/reference-to-video"


def body(size: str = "1280*720", duration: int = 5) -> dict[str, Any]:
    return {"videos": ["https://example.com/a.mp4"], "prompt": "p", "size": size,
            "duration": duration}


def test_the_planner_scales_with_size_and_duration_and_speedup() -> None:
    assert generation_seconds("1920*1080", 10) > generation_seconds("1280*720", 10) > (
        generation_seconds("720*1280", 5))
    slow = RealisticPlanner(seed=1)(body("1920*1080", 10))
    fast = RealisticPlanner(speedup=100.0, seed=1)(body("1920*1080", 10))
    assert slow.complete_after is not None and fast.complete_after is not None
    assert slow.complete_after == pytest.approx(fast.complete_after * 100)
    assert slow.processing_after is not None and 2.0 <= slow.processing_after <= 6.0
    # Jitter stays within 25% of the model.
    planner = RealisticPlanner(seed=3)
    for _ in range(50):
        plan = planner(body())
        assert plan.complete_after is not None and plan.processing_after is not None
        generating = plan.complete_after - plan.processing_after
        assert 0.75 * generation_seconds("1280*720", 5) <= generating <= (
            1.25 * generation_seconds("1280*720", 5))
    # The same seed plans the same run.
    one, other = RealisticPlanner(seed=9), RealisticPlanner(seed=9)
    assert [one(body()) for _ in range(3)] == [other(body()) for _ in range(3)]


def test_the_failure_rate_is_the_share_of_failed_tasks() -> None:
    def failed(rate: float) -> int:
        planner = RealisticPlanner(failure_rate=rate, seed=5)
        return sum(planner(body()).message == FAILURE_MESSAGE for _ in range(400))

    assert failed(0.0) == 0 and failed(1.0) == 400
    assert 60 <= failed(0.25) <= 140
    for speedup, rate in ((0.5, 0.0), (1.0, 1.5), (1.0, -0.1)):
        with pytest.raises(ValueError):
            RealisticPlanner(speedup=speedup, failure_rate=rate)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_tier_limits_submissions_per_minute(http: aiohttp.ClientSession) -> None:
    async with SimulatedWaveSpeed(submits_per_minute=2) as api:
        client = WaveSpeedClient(http, api.api_key, api.base_url, retry=FAST_RETRY)
        request = GenerationRequest(videos=("https://example.com/a.mp4",), prompt="p")
        await client.submit(request)
        await client.submit(request)
        with pytest.raises(RateLimitedError) as refused:
            await client.submit(request)
        assert refused.value.retry_after is not None and 55 <= refused.value.retry_after <= 60
        assert len(api.submissions) == 2  # the refused one created no task


async def test_the_tier_limits_running_tasks(http: aiohttp.ClientSession) -> None:
    async with SimulatedWaveSpeed(max_concurrent=1, complete_after=60.0) as api:
        client = WaveSpeedClient(http, api.api_key, api.base_url, retry=FAST_RETRY)
        request = GenerationRequest(videos=("https://example.com/a.mp4",), prompt="p")
        await client.submit(request)
        with pytest.raises(RateLimitedError):
            await client.submit(request)


async def test_a_task_completes_only_once_its_output_is_rendered(
        http: aiohttp.ClientSession) -> None:
    release = asyncio.Event()
    clip = make_mp4()

    async def slow_render(task: SimTask) -> bytes:
        await release.wait()
        return clip

    async with SimulatedWaveSpeed(renderer=slow_render, complete_after=0.01) as api:
        client = WaveSpeedClient(http, api.api_key, api.base_url, retry=FAST_RETRY,
                                 output_http_hosts=[api.host])
        task_id = (await client.submit(GenerationRequest(
            videos=("https://example.com/a.mp4",), prompt="p"))).id
        await asyncio.sleep(0.1)
        assert (await client.get_result(task_id)).status == "processing"  # planned end is past
        release.set()

        async def done() -> Any:
            prediction = await client.get_result(task_id)
            return prediction if prediction.status == "completed" else None

        prediction = await wait_for(done, 5.0)
        async with http.get(prediction.outputs[0]) as resp:
            assert await resp.read() == clip


async def test_a_render_error_fails_the_task_with_its_reason(
        http: aiohttp.ClientSession) -> None:
    async def refuse(task: SimTask) -> bytes:
        raise RenderError("reference 1 has no video stream")

    async with SimulatedWaveSpeed(renderer=refuse, complete_after=0.01,
                                  prices_usd=list_price_usd) as api:
        client = WaveSpeedClient(http, api.api_key, api.base_url, retry=FAST_RETRY)
        task_id = (await client.submit(GenerationRequest(
            videos=("https://example.com/a.mp4",), prompt="p", size="1920*1080",
            duration=10))).id
        assert api.balance_usd == 100.0 - 2.25  # charged at submit, like WaveSpeed

        async def ended() -> Any:
            prediction = await client.get_result(task_id)
            return prediction if prediction.status == "failed" else None

        assert (await wait_for(ended, 5.0)).error == "reference 1 has no video stream"
        assert await client.balance() == 100.0  # a failed task is given back


async def test_old_outputs_are_forgotten(http: aiohttp.ClientSession) -> None:
    async def render(task: SimTask) -> bytes:
        return b"clip"

    async with SimulatedWaveSpeed(renderer=render, complete_after=0.0,
                                  output_ttl=0.05) as api:
        client = WaveSpeedClient(http, api.api_key, api.base_url, retry=FAST_RETRY)
        request = GenerationRequest(videos=("https://example.com/a.mp4",), prompt="p")
        first = (await client.submit(request)).id
        await wait_for(lambda: asyncio.sleep(0, api.tasks[first].output), 2.0)
        await asyncio.sleep(0.1)
        await client.submit(request)  # each submit prunes
        assert api.tasks[first].output is None
        async with http.get(f"{api.base_url}/outputs/{first}.mp4") as resp:
            assert resp.status == 404


async def test_the_service_renders_the_references_it_downloads(
        http: aiohttp.ClientSession) -> None:
    async with SimulatedService(speedup=1000.0, tier="GOLD", seed=2) as sim:
        # References served by the simulated API's own media store, as uploads would be.
        sim.api.uploads["ref"] = make_mp4(seconds=1.0, width=64, height=48)
        client = WaveSpeedClient(http, sim.api_key, sim.base_url, retry=FAST_RETRY,
                                 output_http_hosts=[sim.host])
        task_id = (await client.submit(GenerationRequest(
            videos=(f"{sim.base_url}/media/ref/a.mp4",), prompt="p", size="1280*720"))).id

        async def done() -> Any:
            prediction = await client.get_result(task_id)
            return prediction if prediction.status in ("completed", "failed") else None

        prediction = await wait_for(done, 30.0)
        assert prediction.status == "completed", prediction.error
        async with http.get(prediction.outputs[0]) as resp:
            data = await resp.read()
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
        assert sim.api.balance_usd == STARTING_BALANCE_USD - 1.00
        assert sim.api.requests == []  # a long-running simulation keeps no request log


async def test_the_service_fails_a_reference_it_cannot_download(
        http: aiohttp.ClientSession) -> None:
    async with SimulatedService(speedup=1000.0, tier="GOLD") as sim:
        client = WaveSpeedClient(http, sim.api_key, sim.base_url, retry=FAST_RETRY)
        task_id = (await client.submit(GenerationRequest(
            videos=(f"{sim.base_url}/media/missing/a.mp4",), prompt="p"))).id

        async def ended() -> Any:
            prediction = await client.get_result(task_id)
            return prediction if prediction.status == "failed" else None

        error = (await wait_for(ended, 10.0)).error
        assert error == "reference 1 could not be downloaded (HTTP 404)"


def test_a_prompt_saying_nsfw_is_flagged() -> None:
    planner = RealisticPlanner(seed=1)
    flagged = TaskBehaviour.nsfw().outcome
    assert planner({**body(), "prompt": "an NSFW scene"}).outcome is flagged
    assert planner({**body(), "prompt": "unsafe words"}).outcome is not flagged


def test_simulated_behaviours_keep_their_own_timing() -> None:
    plan = TaskBehaviour.ok(processing_after=1.0, complete_after=2.0)
    assert (plan.processing_after, plan.complete_after) == (1.0, 2.0)


async def test_references_are_downloaded_like_outputs(http: aiohttp.ClientSession) -> None:
    """Plain http only from trusted hosts, never a redirect: no way in to internal services."""
    async with SimulatedWaveSpeed() as other, SimulatedService(speedup=1000.0,
                                                               tier="GOLD") as sim:
        other.uploads["ref"] = make_mp4()
        client = WaveSpeedClient(http, sim.api_key, sim.base_url, retry=FAST_RETRY)
        untrusted = f"{other.base_url}/media/ref/a.mp4"  # 127.0.0.1, another port
        task_id = (await client.submit(GenerationRequest(videos=(untrusted,), prompt="p"))).id

        async def ended() -> Any:
            prediction = await client.get_result(task_id)
            return prediction if prediction.status == "failed" else None

        error = (await wait_for(ended, 10.0)).error
        assert error == ("reference 1 is at an address that is not downloaded (plain http, "
                         "or a private address)")
        assert other.requests_to("/media/ref/a.mp4") == []  # never even asked
