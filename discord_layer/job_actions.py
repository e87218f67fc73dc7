"""What the buttons on job messages do (discord_layer.buttons), and the Use as reference
form's submission; /jobs cancel shares the cancel.

Who may press: Cancel, the job's owner or a moderator; Re-roll and Use as reference, the
owner. Starting a job goes through the JobStarter like every other start.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import discord

import fault_hooks
from admission.input_rules import InputLimits
from discord_layer.buttons import REFERENCE_FORM, reference_form
from discord_layer.checks import is_moderator
from discord_layer.errors import report_error
from discord_layer.job_starter import JobStarter
from discord_layer.replies import reply_private
from discord_layer.text import credits_text, stamped
from engine.engine import JobEngine
from media.intake import Attached, ReferenceIntake
from money.prices import PriceTable
from storage.jobs import Job, JobState, JobStore
from storage.media import MediaStore
from wavespeed.models import SEED_MAX, GenerationRequest

# A Re-roll needs its references kept at least this much longer: the new job may queue.
REROLL_MARGIN = 6 * 3600.0


class JobActions:
    """Implements discord_layer.buttons.ButtonActions."""

    def __init__(self, *, jobs: JobStore, engine: JobEngine, starter: JobStarter,
                 prices: PriceTable, input_limits: InputLimits, media: MediaStore,
                 intake: ReferenceIntake) -> None:
        self._media = media
        self._intake = intake
        self._jobs = jobs
        self._engine = engine
        self._starter = starter
        self._prices = prices
        self._input_limits = input_limits

    async def _job_for(self, interaction: discord.Interaction, job_id: int, *,
                       moderators: bool) -> Job | None:
        """The job, if this member may act on it; otherwise answer them and return None."""
        job = await self._jobs.get(job_id)
        if job is None or job.guild_id != interaction.guild_id:
            await reply_private(interaction, f"Job #{job_id} no longer exists here.")
            return None
        may = job.user_id == interaction.user.id or (moderators and is_moderator(interaction))
        if not may:
            whose = "its owner or a moderator" if moderators else "its owner"
            await reply_private(interaction,
                                f"Only {whose} can use this button on job #{job_id}.")
            return None
        return job

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self._job_for(interaction, job_id, moderators=True)
        if job is not None:
            await self.cancel_and_tell(interaction, job)

    async def cancel_and_tell(self, interaction: discord.Interaction, job: Job) -> None:
        """Cancel a job this member may cancel (owner or moderator), refund it, and say so.
        Used by the Cancel button and by /jobs cancel."""
        if not interaction.response.is_done():  # posting the notice may take a while
            await interaction.response.defer(ephemeral=True, thinking=True)
        who = "its owner" if job.user_id == interaction.user.id else "a moderator"
        cancelled = await self._engine.cancel(job.id, reason=f"cancelled by {who}")
        if cancelled is None:
            await reply_private(interaction, f"Job #{job.id} has already started, so it can no "
                                "longer be cancelled.")
            return
        await reply_private(interaction, f"Job #{job.id} is cancelled and its "
                            f"{credits_text(job.price, self._prices.usd(job.price))} "
                            f"{cancelled.refunded}.")

    async def confirm(self, interaction: discord.Interaction, token: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        fault_hooks.reached("confirm_acknowledged")
        await self._starter.accept(interaction, token)

    async def decline(self, interaction: discord.Interaction, token: str) -> None:
        answer = await self._starter.decline(interaction, token)
        await interaction.response.edit_message(content=stamped(answer, interaction.client),
                                                view=None)

    async def reroll(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self._job_for(interaction, job_id, moderators=False)
        if job is None:
            return
        seed = random.randint(0, SEED_MAX)  # a seed, not a secret
        while seed == job.request.seed:
            seed = random.randint(0, SEED_MAX)
        gone = await self._references_gone(job)
        if gone is not None:
            await reply_private(interaction, gone)
            return
        request = dataclasses.replace(job.request, seed=seed)
        # Always confirmed, at today's price (the old job's may differ).
        await self._starter.begin(
            interaction, request, _channel_of(interaction, job), always_confirm=True,
            intro=f"Re-roll job #{job.id} with the same settings and a new seed? ")

    async def reuse(self, interaction: discord.Interaction, job_id: int) -> None:
        job = await self._job_for(interaction, job_id, moderators=False)
        if job is None:
            return
        if not _has_clip(job):
            await reply_private(interaction, f"Job #{job.id} has no clip to use.")
            return
        limit = self._input_limits.max_prompt_chars
        await interaction.response.send_modal(reference_form(job.id, limit))

    async def on_reference_form(self, interaction: discord.Interaction) -> None:
        """Listener for every interaction: handles submissions of the Use as reference form."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: Any = interaction.data or {}
        match = REFERENCE_FORM.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            job = await self._job_for(interaction, int(match["job"]), moderators=False)
            if job is None:
                return
            clip = await _clip_url(interaction, job)
            if clip is None:
                await reply_private(interaction, f"Job #{job.id} has no clip to use any more.")
                return
            url, size = clip
            old = job.request
            prompt = _submitted(data.get("components") or [], "prompt").strip() or old.prompt
            draft = GenerationRequest(videos=(url,), prompt=prompt, size=old.size,
                                      duration=old.duration)
            channel = _channel_of(interaction, job)
            await self._starter.precheck(interaction, draft, channel)
            # The clip is taken in like an attachment: checked, and kept at WaveSpeed, so
            # the new job never depends on the link it was fetched from.
            kept = await self._intake.take([Attached(
                "clip", "video", url, f"job-{job.id}.mp4", "video/mp4", size,
                again="Download the clip and send it with `/ref2video` instead.")],
                owner=(interaction.guild_id, interaction.user.id))
            request = dataclasses.replace(draft, videos=(kept[0].url,))
            await self._starter.begin(interaction, request, channel,
                                      start_key=f"modal:{match['token']}")
        except Exception as exc:  # noqa: BLE001 - report_error answers and logs
            await report_error(interaction, exc, what="the Use as reference form")


    async def _references_gone(self, job: Job) -> str | None:
        """Why a Re-roll of `job` cannot use its references (what to tell its owner), or
        None while WaveSpeed keeps its copies long enough for a new job to be queued."""
        request = job.request
        expiry = await self._media.expiry(
            [*request.videos, *([request.audio] if request.audio else [])])
        if expiry is None:
            return (f"Job #{job.id}'s reference files were not kept (it is from before the "
                    "bot kept copies), so it cannot be re-rolled. Run `/ref2video` again with "
                    "the files. Nothing was charged.")
        if expiry < time.time() + REROLL_MARGIN:
            return (f"WaveSpeed keeps reference files for 7 days, and job #{job.id}'s are "
                    f"{'gone' if expiry <= time.time() else 'about to go'}, so it cannot be "
                    "re-rolled. Run `/ref2video` again with the files. Nothing was charged.")
        return None


def _channel_of(interaction: discord.Interaction, job: Job) -> Any:
    return interaction.client.get_channel(job.channel_id) or interaction.channel


def _submitted(components: list[Any], custom_id: str) -> str:
    """A text input's value in a modal submission (rows or labels around it)."""
    for component in components:
        if not isinstance(component, dict):
            continue
        if component.get("custom_id") == custom_id and isinstance(component.get("value"), str):
            return str(component["value"])
        inner = component.get("components") or (
            [component["component"]] if isinstance(component.get("component"), dict) else [])
        found = _submitted(inner, custom_id)
        if found:
            return found
    return ""


def _has_clip(job: Job) -> bool:
    return job.state is JobState.DELIVERED or job.late_outcome == "delivered"


async def _clip_url(interaction: discord.Interaction, job: Job) -> tuple[str, int | None] | None:
    """A fresh link to the posted clip (Discord signs attachment links for about a day:
    fetching the message signs a new one) and its size, or WaveSpeed's output link when the
    clip was posted as a link."""
    if not _has_clip(job) or job.delivery is None:
        return None
    receipt = job.delivery
    if receipt.get("attached") and receipt.get("message_id") and receipt.get("channel_id"):
        channel = interaction.client.get_partial_messageable(int(receipt["channel_id"]))
        try:
            message = await channel.fetch_message(int(receipt["message_id"]))
        except discord.HTTPException:
            message = None
        if message is not None and message.attachments:
            return message.attachments[0].url, message.attachments[0].size
    return (job.output_url, None) if job.output_url else None
