"""Each job's public status message: what it is, what it costs, and where it stands.

The StatusBoard keeps every unfinished job's message current without tripping Discord's
rate limits: a state change is shown at once (at most one edit a second per message),
while queue-position changes are batched to one edit per `min_interval` per message. Time
since a job started is a Discord timestamp, which clients keep current without edits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import discord

from discord_layer.buttons import queued_view
from discord_layer.owned_task import OwnedTask
from discord_layer.text import (
    NO_PINGS,
    credits_text,
    describe_settings,
    quote,
    stamp_embed,
    timestamp,
)
from money.prices import PriceTable
from storage.jobs import Job, JobState

log = logging.getLogger(__name__)

COLOURS = {
    JobState.QUEUED: discord.Colour.light_grey(),
    JobState.SUBMITTING: discord.Colour.blurple(),
    JobState.CHECKING: discord.Colour.gold(),
    JobState.RUNNING: discord.Colour.blurple(),
    JobState.DELIVERING: discord.Colour.blurple(),
    JobState.DELIVERED: discord.Colour.green(),
    JobState.FAILED: discord.Colour.red(),
    JobState.CANCELLED: discord.Colour.dark_grey(),
}


def state_line(job: Job, position: int | None, prices: PriceTable) -> str:
    cost = credits_text(job.price, prices.usd(job.price))
    if job.state is JobState.QUEUED:
        return f"⏳ Queued, position {position}" if position else "⏳ Queued"
    if job.state is JobState.SUBMITTING:
        return "📤 Sending to WaveSpeed"
    if job.state is JobState.CHECKING:
        return (f"🔎 Checking with WaveSpeed: its reply was lost, so the bot is looking for the "
                f"job in WaveSpeed's list; {cost} held, refunded if it is not there")
    if job.state is JobState.RUNNING:
        started = f", started {timestamp(job.submitted_at)}" if job.submitted_at else ""
        return f"🎬 Generating{started}"
    if job.state is JobState.DELIVERING:
        return "📦 Posting the clip"
    if job.state is JobState.DELIVERED:
        if job.delivery and job.delivery.get("withheld"):
            return f"🔒 Finished but not posted here; {cost} charged"
        return f"✅ Delivered; {cost} charged"
    verb = "Cancelled" if job.state is JobState.CANCELLED else "Failed"
    detail = f": {job.failure_detail}" if job.failure_detail else ""
    mark = "🚫" if job.state is JobState.CANCELLED else "❌"
    return f"{mark} {verb}{detail}; {cost} {job.refunded}"


def status_embed(job: Job, position: int | None, prices: PriceTable) -> discord.Embed:
    request = job.request
    embed = discord.Embed(title=f"Job #{job.id}", colour=COLOURS[job.state],
                          description=state_line(job, position, prices)[:4096])
    embed.add_field(name="Prompt", value=quote(request.prompt, 1024), inline=False)
    if request.negative_prompt:
        embed.add_field(name="Negative prompt", value=quote(request.negative_prompt, 1024),
                        inline=False)
    embed.add_field(name="Settings", value=describe_settings(request), inline=False)
    embed.add_field(name="Cost", value=credits_text(job.price, prices.usd(job.price)))
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>")  # embeds never ping
    if job.balance_after is not None and not job.state.is_terminal:
        embed.add_field(name="Balance after this job", value=f"{job.balance_after:,} credits")
    return embed


@dataclass
class _Tracked:
    job: Job
    rendered: str = ""          # the description last shown
    edited_at: float = 0.0      # monotonic
    state_shown: JobState | None = None


class StatusBoard:
    def __init__(
        self, client: discord.Client, prices: PriceTable,
        position_of: Callable[[int], int | None], *, min_interval: float = 10.0,
        tick: float = 1.0, monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prices = prices
        self._position_of = position_of
        self._min_interval = min_interval
        self._tick = tick
        self._monotonic = monotonic
        self._tracked: dict[int, _Tracked] = {}
        self._wake = asyncio.Event()
        self._task = OwnedTask("status-board", self._run)

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    def update(self, job: Job) -> None:
        """Show this version of the job (called on every transition, and at start-up)."""
        if not job.status_message_id:
            return  # its message was never posted; nothing to keep current
        tracked = self._tracked.get(job.id)
        if tracked is None:
            self._tracked[job.id] = _Tracked(job)
        else:
            tracked.job = job
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._refresh_due()
            except Exception:
                log.exception("status board refresh failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._tick)

    async def _refresh_due(self) -> None:
        now = self._monotonic()
        # State changes first, so a busy queue's position updates never hide them.
        due = sorted(self._tracked.values(),
                     key=lambda t: (t.state_shown is t.job.state, t.edited_at))
        for tracked in due:
            job = tracked.job
            position = self._position_of(job.id) if job.state is JobState.QUEUED else None
            line = state_line(job, position, self._prices)
            changed_state = tracked.state_shown is not job.state
            wait = 1.0 if changed_state else self._min_interval
            if line == tracked.rendered or now - tracked.edited_at < wait:
                continue
            tracked.edited_at = now
            if not await self._edit(job, position):
                continue  # shown again after min_interval
            tracked.rendered, tracked.state_shown = line, job.state
            if job.state.is_terminal:
                self._tracked.pop(job.id, None)

    def embed(self, job: Job, position: int | None) -> discord.Embed:
        """The job's status embed as this bot posts it (marked in simulate mode)."""
        return stamp_embed(status_embed(job, position, self._prices), self._client)

    async def _edit(self, job: Job, position: int | None) -> bool:
        """False when worth trying again later."""
        assert job.status_message_id is not None  # update() tracks no other job
        channel = self._client.get_partial_messageable(job.status_channel_id or job.channel_id)
        message = channel.get_partial_message(job.status_message_id)
        try:
            # Cancel only makes sense while queued; later edits drop the button.
            view = queued_view(job.id) if job.state is JobState.QUEUED else None
            await message.edit(embed=self.embed(job, position), view=view,
                               allowed_mentions=NO_PINGS)
        except discord.NotFound:
            log.info("job %d: its status message is gone; no longer updating it", job.id)
            self._tracked.pop(job.id, None)
        except discord.HTTPException as exc:
            log.warning("job %d: status edit failed (%s %s)", job.id, exc.status, exc.code)
            return False
        return True
