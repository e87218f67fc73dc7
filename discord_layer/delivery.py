"""The engine's Delivery, implemented with the bot's own channel messages.

Everything here posts with the bot token into the job's thread (or its channel when no
thread could be made), never through the interaction webhook: interaction tokens expire
after 15 minutes and a clip can take longer than that.

Each delivery or notice ends with a marker line (`-# ref2video job #N ...`), so after a
restart `find_delivery` can tell from the channel's history whether a clip was posted.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from discord_layer.audit import AuditLog
from discord_layer.buttons import result_view
from discord_layer.status import StatusBoard
from discord_layer.text import NO_PINGS, credits_text, job_link, only_pinging, quote
from engine.delivery import Clip, DeliveryError, DeliveryWithheld
from engine.policy import nsfw_action, nsfw_charged
from engine.pricing import PriceTable
from storage.guild_settings import GuildSettings, GuildSettingsStore
from storage.jobs import Job, JobState

log = logging.getLogger(__name__)

# Where a job's messages can go: the kinds of channel and thread a slash command can run in.
Postable = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel

MARKER = "-# ref2video job #{job_id} {what}"
HISTORY_LOOKBACK = 100  # messages searched for an earlier delivery after a restart


def marker(job_id: int, what: str) -> str:
    return MARKER.format(job_id=job_id, what=what)


class DiscordDelivery:
    def __init__(
        self, client: discord.Client, board: StatusBoard, prices: PriceTable, *,
        nsfw_charge: bool, guild_settings: GuildSettingsStore | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._client = client
        self._board = board
        self._prices = prices
        self._nsfw_charge = nsfw_charge
        self._guild_settings = guild_settings
        self._audit = audit

    # ---- the Delivery protocol ------------------------------------------------------------

    async def deliver(self, job: Job, clip: Clip) -> dict[str, Any]:
        target = await self._target(job)
        if clip.nsfw:  # only then does the channel the job was asked in matter
            origin = await self._channel(job.channel_id)
            await self._check_nsfw(job, target, _age_restricted(origin))
        limit = target.guild.filesize_limit
        head = f"<@{job.user_id}> your clip is ready."
        tail = f"\n{marker(job.id, 'delivered')}"
        if clip.path is not None and clip.size is not None and clip.size <= limit:
            body = f"\n{quote(job.request.prompt, 1500)}"
            file = discord.File(clip.path, filename=f"ref2video-{job.id}.mp4",
                                spoiler=clip.nsfw)
            try:
                message = await self._send(target, head + body + tail, job, file=file,
                                           view=result_view(job.id))
                return {"channel_id": target.id, "message_id": message.id, "attached": True}
            except _TooLarge:
                # The real limit can be below what discord.py derives from the boost tier.
                log.info("job %d: upload refused as too large; sending the link", job.id)
        size = f"{clip.size / 1024 / 1024:.1f} MB" if clip.size else "too large"
        note = (f"\nThe video ({size}) is over this server's {limit / 1024 / 1024:.0f} MB upload "
                f"limit, so here is WaveSpeed's link. It expires within a day: save it soon.\n"
                f"<{clip.url}>")
        message = await self._send(target, head + note + tail, job, view=result_view(job.id))
        return {"channel_id": target.id, "message_id": message.id, "attached": False}

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        target = await self._target(job)
        pattern = re.compile(re.escape(marker(job.id, "")) + r"(delivered|withheld)")
        after = discord.Object(int(job.context.get("status_message_id") or job.id))
        try:
            async for message in target.history(limit=HISTORY_LOOKBACK, after=after):
                if self._client.user and message.author.id != self._client.user.id:
                    continue
                found = pattern.search(message.content)
                if found:
                    receipt: dict[str, Any] = {"channel_id": target.id, "message_id": message.id,
                                               "attached": bool(message.attachments)}
                    if found.group(1) == "withheld":
                        receipt["withheld"] = "nsfw"
                    return receipt
        except discord.Forbidden:
            # Without Read Message History we cannot know; a second copy of a clip is
            # better than a paid clip never shown.
            log.warning("job %d: cannot read the history of channel %d; posting again",
                        job.id, target.id)
            return None
        except discord.HTTPException as exc:
            raise DeliveryError(f"could not read the channel history ({exc.status})") from None
        return None

    async def job_updated(self, job: Job) -> None:
        self._board.update(job)
        if job.state.is_terminal and self._audit is not None:
            await self._audit.job_finished(job, job_link(job))

    async def job_finished(self, job: Job) -> None:
        self._board.update(job)
        target = await self._target(job)
        refund = credits_text(job.price, self._prices.usd(job.price))
        if job.state is JobState.CANCELLED:
            text = f"<@{job.user_id}> job #{job.id} was cancelled. Your {refund} were refunded."
        else:
            text = (f"<@{job.user_id}> job #{job.id} failed: {job.failure_detail or 'no reason'}"
                    f"\nYour {refund} were refunded.")
        await self._send(target, f"{text}\n{marker(job.id, job.state.value)}", job)

    # ---- plumbing -------------------------------------------------------------------------

    async def _check_nsfw(self, job: Job, target: Postable, age_restricted: bool) -> None:
        """Return to post a flagged clip (as a spoiler); raise DeliveryWithheld otherwise."""
        settings = (await self._guild_settings.get(job.guild_id)
                    if self._guild_settings is not None else GuildSettings(job.guild_id))
        if nsfw_action(settings, age_restricted=age_restricted) == "spoiler":
            return
        reason = ("WaveSpeed flagged it as NSFW, and this channel is not age-restricted"
                  if not age_restricted else
                  "WaveSpeed flagged it as NSFW, and this server does not post flagged clips")
        if not nsfw_charged(settings, self._nsfw_charge):
            raise DeliveryWithheld(reason, charge=False)
        cost = credits_text(job.price, self._prices.usd(job.price))
        text = (f"<@{job.user_id}> job #{job.id} finished, but the clip was not posted: "
                f"{reason}. Under this server's rules the {cost} were charged.\n"
                f"{marker(job.id, 'withheld')}")
        message = await self._send(target, text, job)
        raise DeliveryWithheld(reason, charge=True,
                               receipt={"channel_id": target.id, "message_id": message.id})

    async def _send(
        self, target: Postable, content: str, job: Job, *,
        file: discord.File | None = None, view: discord.ui.View | None = None,
    ) -> discord.Message:
        extra: dict[str, Any] = {}
        if file is not None:
            extra["file"] = file
        if view is not None:
            extra["view"] = view
        try:
            return await target.send(content, allowed_mentions=only_pinging(job.user_id),
                                     **extra)
        except discord.Forbidden as exc:
            raise DeliveryError(f"the bot may not post there ({exc.code})", permanent=True
                                ) from None
        except discord.NotFound:
            raise DeliveryError("the channel no longer exists", permanent=True) from None
        except discord.HTTPException as exc:
            if exc.status == 413:
                raise _TooLarge from None
            # 4xx will not fix itself; 5xx might.
            permanent = exc.status < 500
            raise DeliveryError(f"Discord refused the message ({exc.status} {exc.code})",
                                permanent=permanent) from None

    async def _target(self, job: Job) -> Postable:
        thread_id = job.context.get("thread_id")
        if thread_id:
            try:
                return await self._channel(int(thread_id))
            except DeliveryError:
                log.warning("job %d: its thread is gone; posting in the channel", job.id)
        return await self._channel(job.channel_id)

    async def _channel(self, channel_id: int) -> Postable:
        channel = self._client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self._client.fetch_channel(channel_id)
            except (discord.NotFound, discord.Forbidden):
                raise DeliveryError("the channel no longer exists or is hidden from the bot",
                                    permanent=True) from None
            except discord.HTTPException as exc:
                raise DeliveryError(f"could not look up the channel ({exc.status})") from None
        if not isinstance(channel, Postable):
            raise DeliveryError("the job's channel is not one the bot can post in",
                                permanent=True)
        return channel


class _TooLarge(DeliveryError):
    def __init__(self) -> None:
        super().__init__("the file is over the upload limit", permanent=True)


def _age_restricted(channel: Any) -> bool:
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


__all__ = ["NO_PINGS", "DiscordDelivery", "marker"]
