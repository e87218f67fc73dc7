"""/admin: the operator's switch and view for this server: pause, resume, status.

Like /settings, the group is hidden from members without Manage Server by
`default_member_permissions` and checked again in code (`interaction_check`), which is the
gate. Every answer is private and pings no one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

import discord
from discord import app_commands
from discord.ext import commands

from admission.periods import day_window
from discord_layer.checks import require_moderator
from discord_layer.cost_watch import CostWatch
from discord_layer.replies import reply_private
from discord_layer.services import Services, services_of
from discord_layer.settings_view import pause_state
from discord_layer.text import credits_text, shorten
from money.usd import format_usd
from storage.guild_settings import MAX_PAUSE_MESSAGE_CHARS


def month_start(now: float) -> int:
    """Unix seconds of the first of the UTC month containing `now`."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())



def _margins(costs: CostWatch) -> str:
    """One line per option: what it sells for, what WaveSpeed charges, the margin."""
    reading = costs.last
    if reading is None:
        return "not read from WaveSpeed yet"
    lines = []
    for m in costs.margins():
        share = "" if m.percent is None else f" ({m.percent:+.0f}%)"
        flag = " ⚠️ below cost" if m.below_cost else ""
        lines.append(f"{m.label}: {m.credits:,} credits (${m.price_usd:.2f}) · WaveSpeed "
                     f"${m.cost_usd:.2f} · margin {_signed_usd(m.margin_usd)}{share}{flag}")
    when = f"checked <t:{int(reading.at)}:R>"
    if reading.error is not None:
        when = f"last check failed ({reading.error}) <t:{int(reading.at)}:R>" + (
            "; figures from the one before" if lines else "")
    follow = (f" · prices follow WaveSpeed's +{costs.markup_percent:g}%" if costs.follow
              else "")
    return shorten("\n".join([*lines, when + follow]), 1024)  # an embed field's limit


def _signed_usd(amount: Decimal) -> str:
    return f"{'-' if amount < 0 else '+'}${abs(amount):.2f}"


def _jobs(count: int) -> str:
    return f"{count:,} job{'s' if count != 1 else ''}"


@app_commands.guild_only()  # the switch and the numbers are per server
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, group_name="admin",
               group_description="Pause or resume generation here, and see the queue and "
               "spend (Manage Server)"):
    def __init__(self, services: Services) -> None:
        self.services = services
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return require_moderator(interaction)

    @app_commands.command(name="pause", description="Stop new /ref2video jobs on this server; "
                          "started ones finish")
    @app_commands.describe(message="What members are told when they try (optional)")
    async def pause(self, interaction: discord.Interaction,
                    message: app_commands.Range[str, 1, MAX_PAUSE_MESSAGE_CHARS] | None = None,
                    ) -> None:
        assert interaction.guild_id is not None
        store = self.services.guild_settings
        was = (await store.get(interaction.guild_id)).paused
        gs = await store.set_paused(interaction.guild_id, True, message,
                                    actor=interaction.user.id)
        head = ("Generation was already paused; the message is updated." if was else
                "Generation is paused on this server.")
        await reply_private(interaction, f"{head} {pause_state(gs)}\n"
                            "Undo it with `/admin resume`.")

    @app_commands.command(name="resume", description="Accept new /ref2video jobs again")
    async def resume(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        store = self.services.guild_settings
        if not (await store.get(interaction.guild_id)).paused:
            await reply_private(interaction, "Generation is not paused on this server, so "
                                "nothing changed. Pause it with `/admin pause`.")
            return
        await store.set_paused(interaction.guild_id, False, actor=interaction.user.id)
        await reply_private(interaction, "Generation is resumed: new jobs are accepted again.")

    @app_commands.command(name="status", description="Queue, running jobs, and this server's "
                          "jobs and spend")
    async def status(self, interaction: discord.Interaction) -> None:
        assert interaction.guild_id is not None
        gid, s = interaction.guild_id, self.services
        now = time.time()
        day, month = day_window(now)[0], month_start(now)
        gs = await s.guild_settings.get(gid)
        jobs_today = await s.usage.jobs_since(gid, day)
        spend_today = await s.usage.spend_since(gid, day)
        jobs_month = await s.usage.jobs_since(gid, month)
        spend_month = await s.usage.spend_since(gid, month)
        prices = s.settings.prices
        cap = ""
        if gs.daily_spend_cap_cents is not None:
            cap = f" of the daily cap of {format_usd(gs.daily_spend_cap_cents)}"
        embed = discord.Embed(title="Status", colour=discord.Colour.red() if gs.paused
                              else discord.Colour.green())
        embed.add_field(name="Generation here", value=pause_state(gs), inline=False)
        embed.add_field(name="Queue (all servers)", value=(
            f"{s.engine.queue_length:,} queued · {s.engine.running_count:,} running "
            f"(at most {s.settings.wavespeed_max_concurrent} at once)"), inline=False)
        embed.add_field(name="Today (UTC)", value=(
            f"{_jobs(jobs_today)} · {credits_text(spend_today, prices.usd(spend_today))}{cap}"),
            inline=False)
        embed.add_field(name="This month (UTC)", value=(
            f"{_jobs(jobs_month)} · {credits_text(spend_month, prices.usd(spend_month))}"),
            inline=False)
        reading = s.balance.last or await s.balance.check()
        if reading.usd is None:
            balance = f"unavailable ({reading.error}) · checked <t:{int(reading.at)}:R>"
        else:
            low = (" ⚠️ below the warning level"
                   if reading.usd < s.settings.wavespeed_balance_warn_usd else "")
            balance = f"${reading.usd:,.2f}{low} · checked <t:{int(reading.at)}:R>"
        account = ("WaveSpeed balance (simulated: play money, "
                   f"{s.settings.simulate_tier.title()} tier limits)" if s.settings.simulated
                   else "WaveSpeed balance (the operator's account)")
        embed.add_field(name=account, value=balance, inline=False)
        embed.add_field(name="Price and WaveSpeed's cost per clip", value=_margins(s.costs),
                        inline=False)
        embed.set_footer(text="Counts delivered and unfinished jobs of this server; refunded "
                         "ones cost nothing and are left out.")
        await reply_private(interaction, embed=embed)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(services_of(bot)))
