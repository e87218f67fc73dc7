"""Buttons on job messages, kept working across restarts: what they act on (a job, an offer)
lives in the custom_id, and discord.py's dynamic items route any click whose custom_id
matches, whichever process sent the message.

- Cancel (on a queued job's status message): the owner or a moderator; refunded.
- Re-roll (on a result): the owner; same settings, new seed, a new charged job after a
  confirmation that shows the current price.
- Use as reference (on a result): the owner; the clip becomes `video` of a new job whose
  prompt they type in a modal.
- Confirm / Not now (on a price question): the member asked. The offer is in the database
  (storage.offers), and the job store starts at most one job per offer.

Errors in any of them go through discord_layer.errors like a slash command's, so the member
is always answered.
"""

from __future__ import annotations

import dataclasses
import random
import re
import secrets
from typing import TYPE_CHECKING, Any

import discord

from discord_layer.errors import report_error
from discord_layer.replies import reply_private
from discord_layer.text import credits_text
from storage.jobs import Job, JobState
from wavespeed.models import SEED_MAX, GenerationRequest

if TYPE_CHECKING:  # services -> status -> buttons: only the type is needed here
    from discord_layer.services import Services

CONFIRM_SECONDS = 120.0
MODAL_PROMPT_MAX = 4000          # Discord's limit for a text input
RESULT_ID = "r2v:reroll:{job_id}"      # on every delivered clip: how find_delivery knows it
WITHHELD_ID = "r2v:withheld:{job_id}"  # on the notice of a clip withheld but charged


def _services(interaction: discord.Interaction) -> Services:
    # Imported here: services -> status -> buttons would otherwise be a cycle.
    from discord_layer.services import services_of

    return services_of(interaction.client)


class _Reporting:
    """Mixed into each persistent button: its errors reach the member like a command's
    (discord.py only logs errors raised in dynamic items)."""

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.run(interaction)
        except Exception as exc:  # noqa: BLE001 - report_error answers and logs
            await report_error(interaction, exc, what=f"button {type(self).__name__}")

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


_Dynamic = discord.ui.DynamicItem[discord.ui.Button[Any]]


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


def _channel_of(interaction: discord.Interaction, job: Job) -> Any:
    return interaction.client.get_channel(job.channel_id) or interaction.channel


class CancelButton(_Reporting, _Dynamic, template=r"r2v:cancel:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                           custom_id=f"r2v:cancel:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> CancelButton:
        return cls(int(match["job"]))

    async def run(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=True)
        if job is not None:
            await cancel_and_tell(interaction, job)


async def cancel_and_tell(interaction: discord.Interaction, job: Job) -> None:
    """Cancel a job this member may cancel (owner or moderator), refund it, and say so.
    Used by the Cancel button and by /jobs cancel."""
    s = _services(interaction)
    if not interaction.response.is_done():  # posting the notice may take a while
        await interaction.response.defer(ephemeral=True, thinking=True)
    who = "its owner" if job.user_id == interaction.user.id else "a moderator"
    cancelled = await s.engine.cancel(job.id, reason=f"cancelled by {who}")
    if cancelled is None:
        await reply_private(interaction, f"Job #{job.id} has already started, so it can no "
                            "longer be cancelled.")
        return
    await reply_private(interaction, f"Job #{job.id} is cancelled and its "
                        f"{credits_text(job.price, s.prices.usd(job.price))} "
                        f"{cancelled.refunded}.")


class ConfirmButton(_Reporting, _Dynamic, template=r"r2v:confirm:(?P<token>[A-Za-z0-9_-]{1,40})"):
    def __init__(self, token: str) -> None:
        super().__init__(discord.ui.Button(label="Confirm", style=discord.ButtonStyle.success,
                                           custom_id=f"r2v:confirm:{token}"))
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> ConfirmButton:
        return cls(match["token"])

    async def run(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await _services(interaction).starter.accept(interaction, self.token)


class DeclineButton(_Reporting, _Dynamic, template=r"r2v:decline:(?P<token>[A-Za-z0-9_-]{1,40})"):
    def __init__(self, token: str) -> None:
        super().__init__(discord.ui.Button(label="Not now", style=discord.ButtonStyle.secondary,
                                           custom_id=f"r2v:decline:{token}"))
        self.token = token

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> DeclineButton:
        return cls(match["token"])

    async def run(self, interaction: discord.Interaction) -> None:
        answer = await _services(interaction).starter.decline(interaction, self.token)
        await interaction.response.edit_message(content=answer, view=None)


class RerollButton(_Reporting, _Dynamic, template=r"r2v:reroll:(?P<job>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Re-roll", style=discord.ButtonStyle.primary,
                                           custom_id=RESULT_ID.format(job_id=job_id)))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction,
                             item: discord.ui.Item[Any], match: re.Match[str]
                             ) -> RerollButton:
        return cls(int(match["job"]))

    async def run(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=False)
        if job is None:
            return
        seed = random.randint(0, SEED_MAX)  # a seed, not a secret
        while seed == job.request.seed:
            seed = random.randint(0, SEED_MAX)
        request = dataclasses.replace(job.request, seed=seed)
        # Always confirmed, at today's price (the old job's may differ).
        await _services(interaction).starter.begin(
            interaction, request, _channel_of(interaction, job), always_confirm=True,
            intro=f"Re-roll job #{job.id} with the same settings and a new seed? ")


REFERENCE_FORM = re.compile(r"r2v:reference:(?P<job>\d+):(?P<token>[A-Za-z0-9_-]{1,40})")


def _reference_form(job_id: int, max_chars: int) -> discord.ui.Modal:
    """The Use as reference form. Only what Discord shows: its submission is handled by
    `on_reference_form` from the custom_id alone, so it also works after a restart, and the
    token in it is the start key, so submitting it twice starts one job."""
    form = discord.ui.Modal(title="Use this clip as a reference", timeout=None,
                            custom_id=f"r2v:reference:{job_id}:{secrets.token_urlsafe(12)}")
    form.add_item(discord.ui.TextInput(
        label="Prompt for the new clip", custom_id="prompt", style=discord.TextStyle.paragraph,
        max_length=min(max_chars, MODAL_PROMPT_MAX)))
    form.stop()  # never stored in discord.py's modal store: on_reference_form answers it
    return form


async def on_reference_form(interaction: discord.Interaction) -> None:
    """Listener for every interaction: handles submissions of the Use as reference form."""
    if interaction.type is not discord.InteractionType.modal_submit:
        return
    data: Any = interaction.data or {}
    match = REFERENCE_FORM.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return
    try:
        await interaction.response.defer(ephemeral=True, thinking=True)
        job = await _job_for(interaction, int(match["job"]), moderators=False)
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
        await _services(interaction).starter.begin(
            interaction, request, _channel_of(interaction, job),
            start_key=f"modal:{match['token']}")
    except Exception as exc:  # noqa: BLE001 - report_error answers and logs
        await report_error(interaction, exc, what="the Use as reference form")


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


class ReuseButton(_Reporting, _Dynamic, template=r"r2v:reuse:(?P<job>\d+)"):
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

    async def run(self, interaction: discord.Interaction) -> None:
        job = await _job_for(interaction, self.job_id, moderators=False)
        if job is None:
            return
        if not _has_clip(job):
            await reply_private(interaction, f"Job #{job.id} has no clip to use.")
            return
        limit = _services(interaction).input_limits.max_prompt_chars
        await interaction.response.send_modal(_reference_form(job.id, limit))


DYNAMIC_ITEMS = (CancelButton, RerollButton, ReuseButton, ConfirmButton, DeclineButton)


def queued_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(ReuseButton(job_id))
    return view


def withheld_view(job_id: int) -> discord.ui.View:
    """Re-roll, and a disabled label that marks the notice as this job's (find_delivery)."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(discord.ui.Button(label="Clip withheld", disabled=True,
                                    style=discord.ButtonStyle.secondary,
                                    custom_id=WITHHELD_ID.format(job_id=job_id)))
    return view


def confirm_view(token: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConfirmButton(token))
    view.add_item(DeclineButton(token))
    return view
