"""What the buttons on job messages do (discord_layer.buttons), and the Use as reference
form's submission; /jobs cancel shares the cancel.

Who may press: Cancel, the job's owner or a moderator; Re-roll and Use as reference, the
owner. Starting a job goes through the JobStarter like every other start.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import discord

from admission.input_rules import InputLimits
from discord_layer.buttons import REFERENCE_FORM, reference_form
from discord_layer.checks import is_moderator
from discord_layer.errors import report_error
from discord_layer.job_starter import JobStarter
from discord_layer.replies import reply_private
from discord_layer.text import credits_text, stamped
from engine.engine import JobEngine
from money.prices import PriceTable
from storage.jobs import Job, JobState, JobStore
from wavespeed.models import SEED_MAX, GenerationRequest


class JobActions:
    """Implements discord_layer.buttons.ButtonActions."""

    def __init__(self, *, jobs: JobStore, engine: JobEngine, starter: JobStarter,
                 prices: PriceTable, input_limits: InputLimits) -> None:
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
            url = await _clip_url(interaction, job)
            if url is None:
                await reply_private(interaction, f"Job #{job.id} has no clip to use any more.")
                return
            old = job.request
            prompt = _submitted(data.get("components") or [], "prompt").strip() or old.prompt
            request = GenerationRequest(videos=(url,), prompt=prompt, size=old.size,
                                        duration=old.duration)
            await self._starter.begin(
                interaction, request, _channel_of(interaction, job),
                start_key=f"modal:{match['token']}")
        except Exception as exc:  # noqa: BLE001 - report_error answers and logs
            await report_error(interaction, exc, what="the Use as reference form")


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


async def _clip_url(interaction: discord.Interaction, job: Job) -> str | None:
    """A fresh link to the posted clip (Discord signs attachment links for about a day), or
    WaveSpeed's output link when the clip was posted as a link."""
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
            return message.attachments[0].url
    return job.output_url
