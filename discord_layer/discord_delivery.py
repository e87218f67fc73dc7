"""The engine's Delivery, implemented with the bot's own channel messages.

Everything here posts with the bot token into the job's thread (or its channel when no
thread could be made), never through the interaction webhook: interaction tokens expire
after 15 minutes and a clip can take longer than that.

Whether a clip was already posted (after a crash, or a post whose reply was lost) is read
from the channel's history, in exactly the window of time the engine recorded for its post
attempts, and recognised by the post's buttons: their custom_ids (`r2v:reroll:<job>`,
`r2v:withheld:<job>`) are set by the bot alone. Message text is never trusted for this: the
bot echoes prompts, so any text can be made to appear in its messages.

Every post carries a nonce fixed per job and kind, which discord.py sends with
`enforce_nonce`: Discord then answers a retried post with the message already made instead
of a second copy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import discord

from admission.server_rules import nsfw_action, nsfw_charged
from discord_layer.audit import AuditLog
from discord_layer.buttons import RESULT_ID, WITHHELD_ID, result_view, withheld_view
from discord_layer.status import StatusBoard
from discord_layer.text import NO_PINGS, credits_text, job_link, only_pinging, quote, stamped
from engine.delivery import Clip, DeliveryError, DeliveryWithheld
from money.prices import PriceTable
from storage.guild_settings import GuildSettings, GuildSettingsStore
from storage.jobs import Job, JobState

log = logging.getLogger(__name__)

# Where a job's messages can go: the kinds of channel and thread a slash command can run in.
Postable = discord.TextChannel | discord.Thread | discord.VoiceChannel | discord.StageChannel

# The window searched for an earlier post: from a little before the first attempt (our
# clock and Discord's may disagree) to well after the last one (a post in flight when the
# bot died lands within discord.py's own retries, seconds; five minutes is generous).
CLOCK_SKEW = 60.0
LANDING_WINDOW = 300.0
# At most this many messages are read: only a channel with more than this many messages in
# that window could hide the post, and then the clip is posted again (a second copy, never
# a lost clip). Threads, where clips go, are far quieter.
MAX_SCANNED = 10_000


def nonce(job_id: int, kind: str) -> str:
    """Discord's nonce: at most 25 characters, the same for every try of one post."""
    return f"r2v{job_id}{kind}"


class DiscordDelivery:
    def __init__(
        self, client: discord.Client, board: StatusBoard, prices: PriceTable, *,
        nsfw_charge: bool, guild_settings: GuildSettingsStore | None = None,
        audit: AuditLog | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._clock = clock
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
            await self._check_nsfw(job, clip, target, _age_restricted(origin))
        limit = target.guild.filesize_limit
        if clip.late:
            head = (f"<@{job.user_id}> the clip of job #{job.id} finished after all, after the "
                    "job had timed out and been refunded. Here it is, free of charge.")
        else:
            head = f"<@{job.user_id}> your clip is ready."
        kind = "l" if clip.late else "d"
        if clip.path is not None and clip.size is not None and clip.size <= limit:
            body = f"\n{quote(job.request.prompt, 1500)}"
            file = discord.File(clip.path, filename=f"ref2video-{job.id}.mp4",
                                spoiler=clip.nsfw)
            try:
                message = await self._send(target, head + body, job, file=file,
                                           view=result_view(job.id), kind=kind)
                return {"channel_id": target.id, "message_id": message.id, "attached": True}
            except _TooLarge:
                # The real limit can be below what discord.py derives from the boost tier.
                log.info("job %d: upload refused as too large; sending the link", job.id)
        size = f"{clip.size / 1024 / 1024:.1f} MB" if clip.size else "too large"
        note = (f"\nThe video ({size}) is over this server's {limit / 1024 / 1024:.0f} MB upload "
                f"limit, so here is WaveSpeed's link. It expires within a day: save it soon.\n"
                f"<{clip.url}>")
        message = await self._send(target, head + note, job, view=result_view(job.id),
                                   kind=kind + "u")
        return {"channel_id": target.id, "message_id": message.id, "attached": False}

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        """The bot's own post for this job in the window of its recorded attempts, known by
        its buttons (set by the bot only), never by text a member could have echoed."""
        target = await self._target(job)
        first = job.delivery_started_at
        last = job.delivery_attempted_at or first
        if first is None or last is None:
            # Attempts not recorded (a job from before they were): since its creation.
            first, last = job.created_at, self._clock()
        after = discord.Object(_snowflake(first - CLOCK_SKEW))
        before = discord.Object(_snowflake(last + LANDING_WINDOW))
        me = self._client.user.id if self._client.user else None
        delivered, withheld = RESULT_ID.format(job_id=job.id), WITHHELD_ID.format(job_id=job.id)
        scanned = 0
        try:
            async for message in target.history(limit=MAX_SCANNED, after=after, before=before,
                                                oldest_first=True):
                scanned += 1
                if message.author.id != me:
                    continue
                ids = _custom_ids(message)
                if delivered in ids or withheld in ids:
                    receipt: dict[str, Any] = {"channel_id": target.id, "message_id": message.id,
                                               "attached": bool(message.attachments)}
                    if withheld in ids:
                        receipt["withheld"] = "nsfw"
                    return receipt
        except discord.Forbidden:
            # Without Read Message History we cannot know; a second copy of a clip is
            # better than a paid clip never shown.
            log.warning("job %d: cannot read the history of channel %d; posting again",
                        job.id, target.id)
            return None
        except discord.NotFound:
            raise DeliveryError("the channel no longer exists", permanent=True) from None
        except discord.HTTPException as exc:
            raise DeliveryError(f"could not read the channel history ({exc.status})") from None
        if scanned >= MAX_SCANNED:
            log.warning("job %d: over %d messages in channel %d around its post; not sure it "
                        "was posted, so posting again", job.id, MAX_SCANNED, target.id)
        return None

    async def job_updated(self, job: Job) -> None:
        self._board.update(job)
        if job.state.is_terminal and self._audit is not None:
            await self._audit.job_finished(job, job_link(job))

    async def job_finished(self, job: Job) -> None:
        self._board.update(job)
        target = await self._target(job)
        refund = f"Your {credits_text(job.price, self._prices.usd(job.price))} were refunded."
        if job.refund_forfeited:
            refund = ("Its credits were not refunded: a moderator set your balance after it "
                      "started.")
        if job.state is JobState.CANCELLED:
            text = f"<@{job.user_id}> job #{job.id} was cancelled. {refund}"
        else:
            text = (f"<@{job.user_id}> job #{job.id} failed: {job.failure_detail or 'no reason'}"
                    f"\n{refund}")
        await self._send(target, text, job, kind="f")

    # ---- plumbing -------------------------------------------------------------------------

    async def _check_nsfw(self, job: Job, clip: Clip, target: Postable,
                          age_restricted: bool) -> None:
        """Return to post a flagged clip (as a spoiler); raise DeliveryWithheld otherwise."""
        settings = (await self._guild_settings.get(job.guild_id)
                    if self._guild_settings is not None else GuildSettings(job.guild_id))
        if nsfw_action(settings, age_restricted=age_restricted) == "spoiler":
            return
        reason = ("WaveSpeed flagged it as NSFW, and this channel is not age-restricted"
                  if not age_restricted else
                  "WaveSpeed flagged it as NSFW, and this server does not post flagged clips")
        if clip.late:  # refunded already when it timed out: tell them, charge nothing
            await self._send(target, f"<@{job.user_id}> the clip of job #{job.id} finished "
                             f"late, but it was not posted: {reason}. Nothing was charged.",
                             job, kind="lw")
            raise DeliveryWithheld(reason, charge=False)
        if not nsfw_charged(settings, self._nsfw_charge):
            raise DeliveryWithheld(reason, charge=False)
        cost = credits_text(job.price, self._prices.usd(job.price))
        text = (f"<@{job.user_id}> job #{job.id} finished, but the clip was not posted: "
                f"{reason}. Under this server's rules the {cost} were charged.")
        message = await self._send(target, text, job, view=withheld_view(job.id), kind="w")
        raise DeliveryWithheld(reason, charge=True,
                               receipt={"channel_id": target.id, "message_id": message.id})

    async def _send(
        self, target: Postable, content: str, job: Job, *, kind: str,
        file: discord.File | None = None, view: discord.ui.View | None = None,
    ) -> discord.Message:
        extra: dict[str, Any] = {}
        if file is not None:
            extra["file"] = file
        if view is not None:
            extra["view"] = view
        try:
            return await target.send(stamped(content, self._client),
                                     allowed_mentions=only_pinging(job.user_id),
                                     nonce=nonce(job.id, kind), **extra)
        except discord.Forbidden as exc:
            raise DeliveryError(f"the bot may not post there ({exc.code})", permanent=True
                                ) from None
        except discord.NotFound:
            raise DeliveryError("the channel no longer exists", permanent=True) from None
        except discord.HTTPException as exc:
            if exc.status == 413:
                raise _TooLarge from None
            # 4xx will not fix itself; 5xx might, and so does a 429 that outlasted
            # discord.py's own retries (Discord said "later", not "never").
            permanent = exc.status < 500 and exc.status != 429
            raise DeliveryError(f"Discord refused the message ({exc.status} {exc.code})",
                                permanent=permanent) from None

    async def _target(self, job: Job) -> Postable:
        if job.thread_id:
            try:
                return await self._channel(job.thread_id)
            except DeliveryError as exc:
                if not exc.permanent:
                    raise  # a passing error: the thread is still where the clip belongs
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


def _snowflake(unix: float) -> int:
    earliest = discord.utils.DISCORD_EPOCH / 1000  # no snowflake is older
    return discord.utils.time_snowflake(datetime.fromtimestamp(max(unix, earliest), UTC))


def _custom_ids(message: discord.Message) -> set[str]:
    ids: set[str] = set()
    for row in message.components:
        for item in getattr(row, "children", ()):
            custom_id = getattr(item, "custom_id", None)
            if isinstance(custom_id, str):
                ids.add(custom_id)
    return ids


def _age_restricted(channel: Any) -> bool:
    if isinstance(channel, discord.Thread):
        channel = channel.parent
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


__all__ = ["NO_PINGS", "DiscordDelivery", "nonce"]
