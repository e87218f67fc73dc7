"""/ref2video: check the request, reserve its price, post its status message and thread,
and hand it to the engine. Nothing is charged until every check has passed."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import discord
from discord import app_commands
from discord.ext import commands

from discord_layer.buttons import CONFIRM_SECONDS, ConfirmStart, queued_view
from discord_layer.replies import reply_private
from discord_layer.services import Services, services_of
from discord_layer.status import status_embed
from discord_layer.text import NO_PINGS, SIZE_LABELS, credits_text, job_link, thread_name
from engine.admission import Refused, Requester
from engine.input_rules import InputError, check_media, check_text
from storage.credits import InsufficientCreditsError
from storage.jobs import Job
from wavespeed.models import SEED_MAX, SEED_MIN, GenerationRequest

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440  # a day; posting again reopens it
SIZE_CHOICES: list[app_commands.Choice[str]] = [
    app_commands.Choice(name=label, value=value) for value, label in SIZE_LABELS.items()]


class GenerateCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        self._no_thread_logged: set[int] = set()

    @app_commands.command(
        name="ref2video", description="Make a new clip from 1-2 reference videos and a prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What the new clip should show",
        video="Reference video (mp4, mov, webm, m4v or mkv)",
        video2="Optional second reference video",
        negative_prompt="Optional: what the clip should avoid",
        audio="Optional soundtrack the motion loosely follows (mp3, wav, m4a, aac, ogg, flac)",
        size="Resolution and orientation (1080p costs more)",
        duration="Length of the clip in seconds (10 s costs more)",
        shot_type="One continuous shot, or several (multi needs prompt expansion on)",
        prompt_expansion="Let WaveSpeed rewrite a short prompt into a richer script",
        seed="Random seed for a repeatable result; -1 picks one at random",
    )
    @app_commands.choices(size=SIZE_CHOICES, shot_type=[
        app_commands.Choice(name="single", value="single"),
        app_commands.Choice(name="multi", value="multi")])
    @app_commands.choices(duration=[app_commands.Choice(name="5 seconds", value=5),
                                    app_commands.Choice(name="10 seconds", value=10)])
    async def ref2video(
        self, interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        video: discord.Attachment,
        video2: discord.Attachment | None = None,
        negative_prompt: app_commands.Range[str, 1, 6000] | None = None,
        audio: discord.Attachment | None = None,
        size: str = "1280*720",
        duration: int = 5,
        shot_type: str = "single",
        prompt_expansion: bool = False,
        seed: app_commands.Range[int, SEED_MIN, SEED_MAX] = -1,
    ) -> None:
        # Acknowledge first: Discord allows 3 s, and the checks below touch the database.
        await interaction.response.defer(ephemeral=True, thinking=True)
        s = self.services
        limits = s.input_limits
        check_text("prompt", prompt, limits.max_prompt_chars, required=True)
        check_text("negative_prompt", negative_prompt, limits.max_prompt_chars, required=False)
        check_media("video", "video", video.filename, video.content_type, video.size,
                    limits.max_video_bytes)
        if video2 is not None:
            check_media("video2", "video", video2.filename, video2.content_type, video2.size,
                        limits.max_video_bytes)
        if audio is not None:
            check_media("audio", "audio", audio.filename, audio.content_type, audio.size,
                        limits.max_audio_bytes)
        request = GenerationRequest(
            videos=tuple(a.url for a in (video, video2) if a is not None),
            prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip() or None,
            audio=audio.url if audio else None, size=size, duration=duration,
            shot_type=shot_type, enable_prompt_expansion=prompt_expansion, seed=seed)
        assert interaction.guild_id is not None
        if (await s.guild_settings.get(interaction.guild_id)).confirm_cost:
            price = s.prices.credits_for(size, duration)
            await reply_private(
                interaction, f"This clip costs **{credits_text(price, s.prices.usd(price))}**. "
                "Start it? Nothing is reserved until you confirm (this question expires in "
                f"{CONFIRM_SECONDS / 60:.0f} minutes).",
                view=ConfirmStart(request, interaction.channel))
            return
        await self.start_job(interaction, request, interaction.channel)

    async def start_job(self, interaction: discord.Interaction, request: GenerationRequest,
                        channel: Any) -> None:
        """Admit, reserve, post the status message and thread, queue, and tell the member.
        Used by /ref2video and by the buttons on results (re-roll, use as reference)."""
        s = self.services
        assert interaction.guild_id is not None and channel is not None  # guild_only
        _check_can_post(channel, interaction.app_permissions)
        price = s.prices.credits_for(request.size, request.duration)
        member = interaction.user
        who = Requester(
            guild_id=interaction.guild_id, user_id=member.id, channel_id=channel.id,
            parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
            role_ids=frozenset(r.id for r in getattr(member, "roles", ())))
        try:
            async with s.gatekeeper.admitting(who, request) as admission:
                job = await s.engine.create_job(
                    guild_id=interaction.guild_id, channel_id=channel.id, user_id=member.id,
                    request=request, enqueue=False, max_active=admission.max_active)
        except Refused as refused:
            await s.audit.refused(interaction.guild_id, member.id, channel.id,
                                  refused.refusal.reason_code, refused.refusal.detail)
            raise
        except InsufficientCreditsError as exc:
            raise InputError(
                f"This clip costs {credits_text(price, s.prices.usd(price))}, and you have "
                f"{exc.balance:,} credits. Ask a moderator for credits, or pick 720p or 5 s "
                f"(see `/credits prices`). Nothing was charged.") from None
        balance = await s.credits.balance(interaction.guild_id, interaction.user.id)

        try:
            context = await self._post_status(job, channel, interaction.app_permissions,
                                              balance.available)
        except BaseException as exc:
            # The job never reached the queue: undo the reservation before saying so.
            await s.engine.cancel(job.id, reason="its status message could not be posted",
                                  notify=False)
            if isinstance(exc, discord.HTTPException):
                raise InputError(
                    "I could not post in this channel, so nothing was charged. Ask a moderator "
                    "to let me send messages and embed links here, or use another channel."
                ) from None
            raise
        try:
            await s.jobs.update_fields(job.id, context={**job.context, **context})
        finally:
            queued = await s.jobs.get(job.id) or job
            s.engine.enqueue(queued)
            s.board.update(queued)

        await reply_private(
            interaction,
            f"Job #{job.id} is queued. {credits_text(price, s.prices.usd(price))} reserved; "
            f"you have {balance.available:,} credits left. Follow it here: {job_link(queued)}\n"
            "You are only charged if the clip is delivered; a failure is refunded in full.")

    async def _post_status(
        self, job: Job, channel: Any, perms: discord.Permissions, balance_after: int
    ) -> dict[str, Any]:
        shown = dataclasses.replace(job, context={**job.context, "balance_after": balance_after})
        message = await channel.send(embed=status_embed(shown, None, self.services.prices),
                                     view=queued_view(job.id), allowed_mentions=NO_PINGS)
        context: dict[str, Any] = {"status_channel_id": channel.id,
                                   "status_message_id": message.id,
                                   "balance_after": balance_after}
        if not isinstance(channel, discord.TextChannel):
            return context  # already a thread (or a channel without threads): post right here
        if not perms.create_public_threads:
            self._log_no_thread(channel.id, "no Create Public Threads permission")
            return context
        try:
            thread = await channel.create_thread(
                name=thread_name(job.id, job.request.prompt), message=message,
                auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            self._log_no_thread(channel.id, f"{exc.status} {exc.code}")
            return context
        context["thread_id"] = thread.id
        return context

    def _log_no_thread(self, channel_id: int, why: str) -> None:
        if channel_id not in self._no_thread_logged:
            self._no_thread_logged.add(channel_id)
            log.warning("cannot create threads in channel %d (%s); delivering in the channel",
                        channel_id, why)


def _check_can_post(channel: Any, perms: discord.Permissions) -> None:
    in_thread = isinstance(channel, discord.Thread)
    can_send = perms.send_messages_in_threads if in_thread else perms.send_messages
    if not (can_send and perms.embed_links and perms.view_channel):
        raise InputError(
            "I cannot post in this channel (I need View Channel, Send Messages and Embed "
            "Links). Ask a moderator to allow that, or use `/ref2video` in another channel. "
            "Nothing was charged.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(GenerateCog(services_of(bot)))
