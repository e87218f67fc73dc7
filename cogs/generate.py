"""/ref2video: check the files and the prompt, then hand the request to the JobStarter
(discord_layer.job_starter), which every way of starting a job shares. Nothing is charged
until every check has passed."""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

import fault_hooks
from admission.input_rules import check_media, check_text
from discord_layer.services import Services, services_of
from discord_layer.text import SIZE_LABELS
from media.intake import Attached
from wavespeed.models import SEED_MAX, SEED_MIN, GenerationRequest

log = logging.getLogger(__name__)

SIZE_CHOICES: list[app_commands.Choice[str]] = [
    app_commands.Choice(name=label, value=value) for value, label in SIZE_LABELS.items()]


class GenerateCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="ref2video", description="Make a new clip from 1-2 reference videos and a prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="What the new clip should show",
        video="Reference video: MP4 or MOV, 2-30 seconds, up to 100 MB",
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
        fault_hooks.reached("acknowledged")
        s = self.services
        limits = s.input_limits
        check_text("prompt", prompt, limits.max_prompt_chars, required=True)
        check_text("negative_prompt", negative_prompt, limits.max_prompt_chars, required=False)
        files = [_attached("video", "video", video, limits.max_video_bytes)]
        if video2 is not None:
            files.append(_attached("video2", "video", video2, limits.max_video_bytes))
        if audio is not None:
            files.append(_attached("audio", "audio", audio, limits.max_audio_bytes))
        draft = GenerationRequest(
            videos=tuple(f.url for f in files if f.kind == "video"),
            prompt=prompt.strip(), negative_prompt=(negative_prompt or "").strip() or None,
            audio=audio.url if audio else None, size=size, duration=duration,
            shot_type=shot_type, enable_prompt_expansion=prompt_expansion, seed=seed)
        channel = interaction.channel
        # The cheap refusals first (rules, credits), then the slow part: each file is
        # downloaded, probed and kept at WaveSpeed, and the job carries those copies.
        await s.starter.precheck(interaction, draft, channel)
        # Asked again once the files' turn comes: a burst of commands must not each fetch
        # and store files that the credits, spent by the earlier ones, cannot pay for.
        kept = {k.option: k.url for k in await s.intake.take(
            files, owner=(interaction.guild_id, interaction.user.id),
            ready=lambda: s.starter.precheck(interaction, draft, channel))}
        request = dataclasses.replace(
            draft, videos=tuple(kept[f.option] for f in files if f.kind == "video"),
            audio=kept.get("audio"))
        await s.starter.begin(interaction, request, channel,
                              start_key=f"command:{interaction.id}")


def _attached(option: str, kind: Literal["video", "audio"], attachment: discord.Attachment,
              limit: int) -> Attached:
    """The attachment, if its declared name, type and size pass (InputError otherwise)."""
    check_media(option, kind, attachment.filename, attachment.content_type, attachment.size,
                limit)
    return Attached(option, kind, attachment.url, attachment.filename, attachment.content_type,
                    attachment.size)

async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(GenerateCog(services_of(bot)))
