"""Buttons on job messages, kept working across restarts: the job id lives in the custom_id
and discord.py's dynamic items route any click whose custom_id matches, whichever process
sent the message.

- Cancel (on a queued job's status message): the owner or a moderator; refunded.
- Re-roll (on a result): the owner; same settings, new seed, a new charged job after a
  confirmation that shows the price.
- Use as reference (on a result): the owner; the clip becomes `video` of a new job whose
  prompt they type in a modal.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import TYPE_CHECKING, Any

import discord

from discord_layer.replies import reply_private
from discord_layer.text import credits_text
from storage.jobs import Job, JobState
from wavespeed.models import SEED_MAX, GenerationRequest

if TYPE_CHECKING:  # services -> status -> buttons: only the type is needed here
    from discord_layer.services import Services

CONFIRM_SECONDS = 120.0


def _services(interaction: discord.Interaction) -> Services:
    # Imported here: services -> status -> buttons would otherwise be a cycle.
    from discord_layer.services import services_of

    return services_of(interaction.client)


async def _job_for(interaction: discord.Interaction, job_id: int, *, moderators: bool
                   ) -> Job | None:
    """The job, if this member may act on it; otherwise answer them and return None."""
    job = await _services(interaction).jobs.get(job_id)
    if job is None or job.guild_id != interaction.guild_id:
        await reply_private(interaction, f"Job #{job_id} no longer exists here.")
        return None
    may = job.user_id == interaction.user.id or (
        moderators and interaction.permissions.manage_guild)
    if not may:
        whose = "its owner or a moderator" if moderators else "its owner"
        await reply_private(interaction, f"Only {whose} can use this button on job #{job_id}.")
        return None
    return job


async def _start(interaction: discord.Interaction, request: GenerationRequest, channel: Any
                 ) -> None:
    cog: Any = interaction.client.get_cog("GenerateCog")  # type: ignore[attr-defined]
    await cog.start_job(interaction, request, channel)


def _channel_of(interaction: discord.Interaction, job: Job) -> Any:
    return interaction.client.get_channel(job.channel_id) or interaction.channel


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"r2v:cancel:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                           custom_id=f"r2v:cancel:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> CancelButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=True)
        if job is not None:
            await cancel_and_tell(interaction, job)


async def cancel_and_tell(interaction: discord.Interaction, job: Job) -> None:
    """Cancel a job this member may cancel (owner or moderator), refund it, and say so.
    Used by the Cancel button and by /jobs cancel."""
    s = _services(interaction)
    who = "its owner" if job.user_id == interaction.user.id else "a moderator"
    if await s.engine.cancel(job.id, reason=f"cancelled by {who}") is None:
        await reply_private(interaction, f"Job #{job.id} has already started, so it can no "
                            "longer be cancelled.")
        return
    await reply_private(interaction, f"Job #{job.id} is cancelled and its "
                        f"{credits_text(job.price, s.prices.usd(job.price))} refunded.")


class ConfirmStart(discord.ui.View):
    """A private "start it for this price?" question; nothing is reserved unless confirmed,
    and a timeout simply leaves it unconfirmed."""

    def __init__(self, request: GenerationRequest, channel: Any) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.request = request
        self.channel = channel

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success)
    async def confirm(self, interaction: discord.Interaction,
                      button: discord.ui.Button[ConfirmStart]) -> None:
        self.stop()
        await interaction.response.defer(ephemeral=True, thinking=True)
        await _start(interaction, self.request, self.channel)

    @discord.ui.button(label="Not now", style=discord.ButtonStyle.secondary)
    async def decline(self, interaction: discord.Interaction,
                      button: discord.ui.Button[ConfirmStart]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Not started; nothing was charged.",
                                                view=None)


class RerollButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                   template=r"r2v:reroll:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", style=discord.ButtonStyle.primary,
                                           custom_id=f"r2v:reroll:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> RerollButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=False)
        if job is None:
            return
        s = _services(interaction)
        seed = random.randint(0, SEED_MAX)  # a seed, not a secret
        while seed == job.request.seed:
            seed = random.randint(0, SEED_MAX)
        request = dataclasses.replace(job.request, seed=seed)
        cost = credits_text(job.price, s.prices.usd(job.price))
        await reply_private(
            interaction, f"Re-roll job #{job.id} with the same settings and a new seed for "
            f"**{cost}**? You are charged only if the clip is delivered.",
            view=ConfirmStart(request, _channel_of(interaction, job)))


class _ReferencePrompt(discord.ui.Modal, title="Use this clip as a reference"):
    prompt: discord.ui.TextInput[_ReferencePrompt] = discord.ui.TextInput(
        label="Prompt for the new clip", custom_id="prompt", style=discord.TextStyle.paragraph,
        max_length=4000)

    def __init__(self, job: Job, clip_url: str) -> None:
        super().__init__(timeout=600)
        self.job = job
        self.clip_url = clip_url

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        old = self.job.request
        request = GenerationRequest(videos=(self.clip_url,), prompt=self.prompt.value.strip()
                                    or old.prompt, size=old.size, duration=old.duration)
        await _start(interaction, request, _channel_of(interaction, self.job))


class ReuseButton(discord.ui.DynamicItem[discord.ui.Button[Any]],
                  template=r"r2v:reuse:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Use as reference",
                                           style=discord.ButtonStyle.secondary,
                                           custom_id=f"r2v:reuse:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> ReuseButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=False)
        if job is None:
            return
        message = interaction.message
        url = message.attachments[0].url if message and message.attachments else job.output_url
        if job.state is not JobState.DELIVERED or not url:
            await reply_private(interaction, f"Job #{job.id} has no clip to use.")
            return
        await interaction.response.send_modal(_ReferencePrompt(job, url))


DYNAMIC_ITEMS = (CancelButton, RerollButton, ReuseButton)


def queued_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(ReuseButton(job_id))
    return view
