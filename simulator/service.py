"""Simulate mode's WaveSpeed: the simulated API started inside the bot's own process.

`bot.py` starts a `SimulatedService` on 127.0.0.1 (a free port) when WAVESPEED_MODE is
SIMULATE and points the ordinary WaveSpeed client at it, so submit, poll, history, balance
and output download all go over HTTP exactly as against the paid API. Tasks follow
`RealisticPlanner`'s timing and the chosen tier's limits; each output is a real MP4 made
from the task's reference videos (simulator/clip.py), downloaded the way WaveSpeed would
(from the URLs in the request, with a byte cap and a time limit). Nothing is paid: the
balance is play money, charged at submit and given back for failed tasks.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp

from simulator.render_worker import RenderFailed, reference_path, render_in_child
from simulator.timing import TIERS, RealisticPlanner
from simulator.wavespeed_api import (
    MAX_UPLOAD_BYTES,
    RenderError,
    SimTask,
    SimulatedWaveSpeed,
)
from wavespeed.client import RetryPolicy, WaveSpeedClient
from wavespeed.errors import OutputTooLargeError, UnsafeOutputURLError, WaveSpeedError
from wavespeed.models import resolution_of

log = logging.getLogger(__name__)

# What WaveSpeed charges the operator per clip (the contract's list prices), in US$.
LIST_PRICES_USD: Final[dict[tuple[str, int], float]] = {
    ("720p", 5): 1.00, ("720p", 10): 1.50, ("1080p", 5): 1.50, ("1080p", 10): 2.25,
}
STARTING_BALANCE_USD: Final = 500.0  # and topped up by as much whenever it runs out
FETCH_SECONDS: Final = 120.0  # the most one reference's download may take
OUTPUT_TTL_SECONDS: Final = 3600.0  # outputs are temporary at WaveSpeed too


def list_price_usd(body: dict[str, Any]) -> float:
    size = str(body.get("size", "1280*720"))
    duration = int(body.get("duration", 5))
    return LIST_PRICES_USD[(resolution_of(size), duration)]


class SimulatedService:
    """The simulated WaveSpeed of one bot process. Use as `async with`; `api_key`,
    `base_url` and `host` are what the client needs, valid once started."""

    def __init__(self, *, speedup: float = 1.0, tier: str = "BRONZE",
                 failure_rate: float = 0.0, seed: int | None = None,
                 http_hosts: tuple[str, ...] = ()) -> None:
        """`http_hosts`: where references may be downloaded from over plain http and on
        private addresses (a local Discord); otherwise only https from public addresses,
        with no redirects, as the bot downloads outputs (wavespeed/safe_download.py)."""
        submits_per_minute, max_concurrent = TIERS[tier]
        self.tier = tier
        self.api = SimulatedWaveSpeed(
            api_key=secrets.token_urlsafe(24),  # fresh each run: only this process knows it
            max_concurrent=max_concurrent,
            submits_per_minute=submits_per_minute,
            planner=RealisticPlanner(speedup=speedup, failure_rate=failure_rate, seed=seed),
            renderer=self._render,
            prices_usd=list_price_usd,
            output_ttl=OUTPUT_TTL_SECONDS,
            record_requests=False,
        )
        self.api.balance_usd = STARTING_BALANCE_USD
        self.api.top_up_usd = STARTING_BALANCE_USD  # play money never runs out
        self._http_hosts = http_hosts
        # Rendering is CPU work (in a child process): one at a time leaves the bot's cores.
        self._render_slot = asyncio.Semaphore(1)
        self._session: aiohttp.ClientSession | None = None
        self._downloader: WaveSpeedClient | None = None  # references, as outputs are fetched

    @property
    def api_key(self) -> str:
        return self.api.api_key

    @property
    def base_url(self) -> str:
        return self.api.base_url

    @property
    def host(self) -> str:
        return self.api.host

    async def __aenter__(self) -> SimulatedService:
        await self.api.start()
        # The client's guarded download, once a try, no redirects. Its own media store
        # (uploads) is trusted as the client's http base URL; it has a port only now.
        self._session = aiohttp.ClientSession()
        self._downloader = WaveSpeedClient(
            self._session, self.api_key, self.base_url, retry=RetryPolicy(attempts=1),
            download_timeout=FETCH_SECONDS, output_http_hosts=self._http_hosts,
            max_redirects=0)
        log.info("simulate mode: a simulated WaveSpeed (%s tier) serves %s; nothing is paid",
                 self.tier, self.base_url)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            await self.api.close()
        finally:
            if self._session is not None:
                await self._session.close()

    async def _render(self, task: SimTask) -> bytes:
        body = task.body
        width, height = (int(part) for part in str(body.get("size", "1280*720")).split("*"))
        videos = [str(url) for url in body["videos"]]
        # Downloads too wait for the slot: 300 tasks at once must not hold 300 x 200 MB.
        # They go straight to the child's directory, never into memory.
        async with self._render_slot:
            with tempfile.TemporaryDirectory(prefix="r2v-render-") as name:
                directory = Path(name)
                for index, url in enumerate(videos, start=1):
                    await self._fetch(index, url, reference_path(directory, index))
                try:
                    return await render_in_child(
                        directory, len(videos), width=width, height=height,
                        seconds=float(body.get("duration", 5)), caption=str(body["prompt"]))
                except RenderFailed as exc:
                    raise RenderError(
                        f"the reference videos could not be used: {exc}") from None

    async def _fetch(self, index: int, url: str, dest: Path) -> None:
        """Reference `index`, downloaded to `dest` as WaveSpeed would: at most 100 MB, by the
        client's guarded download (public https, or the trusted hosts; no redirects)."""
        assert self._downloader is not None
        try:
            await self._downloader.download_output(url, dest, max_bytes=MAX_UPLOAD_BYTES)
        except UnsafeOutputURLError:
            raise RenderError(f"reference {index} is at an address that is not downloaded "
                              "(plain http, or a private address)") from None
        except OutputTooLargeError:
            raise RenderError(f"reference {index} is larger than 100 MB") from None
        except WaveSpeedError as exc:
            why = f"HTTP {exc.status}" if exc.status is not None else type(exc).__name__
            raise RenderError(f"reference {index} could not be downloaded ({why})") from None
