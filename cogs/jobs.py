"""/jobs: your recent jobs, and cancelling one that has not started (refunded)."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from discord_layer.checks import is_moderator
from discord_layer.replies import reply_private
from discord_layer.services import Services, services_of
from discord_layer.text import credits_text, job_link, shorten, timestamp
from storage.jobs import JobState

LIST_LIMIT = 10


@app_commands.guild_only()  # accounts are per server; in a DM there is none
class JobsCog(commands.GroupCog, group_name="jobs",
              group_description="Your clip jobs: list them, cancel a queued one"):
    def __init__(self, services: Services) -> None:
        self.services = services
        super().__init__()

    @app_commands.command(name="list", description="Your recent jobs")
    async def list_jobs(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        s = self.services
        jobs = await s.jobs.for_user(interaction.guild_id, interaction.user.id, limit=LIST_LIMIT)
        if not jobs:
            await reply_private(interaction, "You have no jobs yet. Start one with `/ref2video`.")
            return
        lines = []
        for job in jobs:
            state = job.state.value
            if job.state is JobState.CHECKING:
                state = "checking with WaveSpeed"
            elif job.state is JobState.QUEUED:
                position = s.engine.queue_position(job.id)
                state = f"queued, position {position}" if position else "queued"
            charged = "charged" if job.state is JobState.DELIVERED else (
                job.refunded if job.state.is_terminal else "held")
            prompt = discord.utils.escape_markdown(shorten(" ".join(job.request.prompt.split()),
                                                           50))
            cost = credits_text(job.price, s.settings.prices.usd(job.price))
            lines.append(f"**#{job.id}** {state} · {cost} {charged} · "
                         f"{timestamp(job.created_at)} · [{prompt}]({job_link(job)})")
        embed = discord.Embed(title="Your recent jobs", description="\n".join(lines),
                              colour=discord.Colour.blurple())
        await reply_private(interaction, embed=embed)

    @app_commands.command(name="cancel", description="Cancel a queued job; it is refunded")
    @app_commands.describe(job="The job number (see /jobs list)")
    async def cancel(self, interaction: discord.Interaction,
                     job: app_commands.Range[int, 1, 2**53 - 1]) -> None:
        assert interaction.guild_id is not None
        # Before the read: behind a write waiting out another process's lock, the bot's one
        # database connection answers nothing for up to the busy timeout (10 s > 3 s).
        await interaction.response.defer(ephemeral=True, thinking=True)
        s = self.services
        found = await s.jobs.get(job)
        if found is None or found.guild_id != interaction.guild_id:
            await reply_private(interaction, f"There is no job #{job} in this server. See "
                                "`/jobs list` for yours.")
            return
        if found.user_id != interaction.user.id and not is_moderator(interaction):
            await reply_private(interaction, f"Job #{job} is not yours, so you cannot cancel it.")
            return
        if found.state is not JobState.QUEUED:
            await reply_private(
                interaction, f"Job #{job} is {found.state.value}, so it can no longer be "
                "cancelled: only queued jobs can (once WaveSpeed has it, it is paid for).")
            return
        await s.actions.cancel_and_tell(interaction, found)

    @cancel.autocomplete("job")
    async def _queued_jobs(self, interaction: discord.Interaction,
                           current: int | str) -> list[app_commands.Choice[int]]:
        if interaction.guild_id is None:
            return []
        jobs = await self.services.jobs.for_user(interaction.guild_id, interaction.user.id,
                                                 limit=50)
        typed = str(current or "")
        return [app_commands.Choice(name=shorten(f"#{j.id} {' '.join(j.request.prompt.split())}",
                                                 100), value=j.id)
                for j in jobs if j.state is JobState.QUEUED and str(j.id).startswith(typed)
                ][:25]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(JobsCog(services_of(bot)))
