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
from types import TracebackType
from typing import Any, Final

import aiohttp
from yarl import URL

from simulator.render_worker import RenderFailed, render_in_child
from simulator.timing import TIERS, RealisticPlanner
from simulator.wavespeed_api import RenderError, SimTask, SimulatedWaveSpeed
from wavespeed.errors import UnsafeOutputURLError
from wavespeed.models import resolution_of
from wavespeed.safe_download import DownloadPolicy, download_session

log = logging.getLogger(__name__)

# What WaveSpeed charges the operator per clip (the contract's list prices), in US$.
LIST_PRICES_USD: Final[dict[tuple[str, int], float]] = {
    ("720p", 5): 1.00, ("720p", 10): 1.50, ("1080p", 5): 1.50, ("1080p", 10): 2.25,
}
STARTING_BALANCE_USD: Final = 500.0  # and topped up by as much whenever it runs out
MAX_REFERENCE_BYTES: Final = 100 * 1024 * 1024  # the contract's video limit
FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=120, sock_connect=10)
OUTPUT_TTL_SECONDS: Final = 3600.0  # outputs are temporary at WaveSpeed too
_CHUNK: Final = 256 * 1024


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
        self._policy = DownloadPolicy()
        # Rendering is CPU work in a thread: one at a time keeps the bot's loop responsive.
        self._render_slot = asyncio.Semaphore(1)
        self._session: aiohttp.ClientSession | None = None

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
        # Its own media store (uploads) is trusted too; it has a port only now.
        self._policy = DownloadPolicy.build((*self._http_hosts, self.api.host), max_redirects=0)
        self._session = download_session(self._policy)
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
        # Downloads too wait for the slot: 300 tasks at once must not hold 300 x 200 MB.
        async with self._render_slot:
            references = [await self._fetch(index, str(url))
                          for index, url in enumerate(body["videos"], start=1)]
            try:
                return await render_in_child(
                    references, width=width, height=height,
                    seconds=float(body.get("duration", 5)), caption=str(body["prompt"]))
            except RenderFailed as exc:
                raise RenderError(f"the reference videos could not be used: {exc}") from None

    async def _fetch(self, index: int, url: str) -> bytes:
        """Reference `index`'s bytes, as WaveSpeed would download it: at most 100 MB."""
        assert self._session is not None
        try:
            self._policy.check_url(URL(url))
            async with self._session.get(url, allow_redirects=False,
                                         timeout=FETCH_TIMEOUT) as resp:
                if resp.status != 200:
                    raise RenderError(f"reference {index} could not be downloaded "
                                      f"(HTTP {resp.status})")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    data += chunk
                    if len(data) > MAX_REFERENCE_BYTES:
                        raise RenderError(f"reference {index} is larger than 100 MB")
                return bytes(data)
        except UnsafeOutputURLError:
            raise RenderError(f"reference {index} is at an address that is not downloaded "
                              "(plain http, or a private address)") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RenderError(f"reference {index} could not be downloaded "
                              f"({type(exc).__name__})") from None
