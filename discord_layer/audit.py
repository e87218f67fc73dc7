"""The server's audit channel: every job, credit change, refund and refusal, posted for its
moderators with mentions disabled. Best effort: a missing channel or permission is logged,
never fatal, and never stops the action being audited."""

from __future__ import annotations

import logging

import discord

from discord_layer.text import NO_PINGS, credits_text, describe_settings, shorten, stamped
from money.prices import PriceTable
from storage.guild_settings import GuildSettingsStore
from storage.jobs import Job, JobState

log = logging.getLogger(__name__)


class AuditLog:
    def __init__(self, client: discord.Client, guild_settings: GuildSettingsStore,
                 prices: PriceTable) -> None:
        self._client = client
        self._settings = guild_settings
        self._prices = prices

    async def post(self, guild_id: int, text: str) -> None:
        settings = await self._settings.get(guild_id)
        if settings.audit_channel_id is None:
            return
        channel = self._client.get_partial_messageable(settings.audit_channel_id,
                                                       guild_id=guild_id)
        try:
            await channel.send(stamped(shorten(text, 2000), self._client),
                               allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("guild %d: audit post failed (%s %s)", guild_id, exc.status, exc.code)

    async def job_finished(self, job: Job, link: str) -> None:
        cost = credits_text(job.price, self._prices.usd(job.price))
        if job.state is JobState.DELIVERED:
            outcome = (f"delivered, {cost} charged" if not (job.delivery or {}).get("withheld")
                       else f"withheld ({job.delivery or {}}), {cost} charged")
        else:
            why = shorten(job.failure_detail or job.failure_code or "", 300)
            outcome = f"{job.state.value} ({why}), {cost} {job.refunded}"
        await self.post(job.guild_id, f"🎬 Job #{job.id} by <@{job.user_id}>: {outcome}\n"
                        f"{describe_settings(job.request)}\n{link}")

    async def credits_changed(self, guild_id: int, actor_id: int, user_id: int, what: str,
                              reason: str | None) -> None:
        why = f" · reason: {shorten(discord.utils.escape_markdown(reason), 200)}" if reason else ""
        await self.post(guild_id, f"💳 <@{actor_id}> {what} <@{user_id}>{why}")

    async def refused(self, guild_id: int, user_id: int, channel_id: int, reason: str,
                      detail: str | None) -> None:
        more = f" ({shorten(detail, 300)})" if detail else ""
        await self.post(guild_id, f"🚫 /ref2video by <@{user_id}> in <#{channel_id}> refused: "
                        f"{reason}{more}")
