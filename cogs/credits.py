"""/credits: balances, history and prices for everyone; grants for moderators.

Grant, revoke and set need Manage Server, checked in code on every call
(`discord_layer.checks`). Discord cannot hide
them with `default_member_permissions`: it applies to top-level commands only, and hiding
`/credits` would hide `/credits balance` from everyone too. So the check in code is the gate.
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from discord_layer.checks import moderator_only, require_moderator
from discord_layer.replies import reply_private
from discord_layer.services import Services, services_of
from discord_layer.text import MAX_AMOUNT, SIZE_LABELS, credits_text, shorten, timestamp
from storage.credits import LedgerEntry
from wavespeed.models import DURATIONS

PAGE_SIZE = 10
KIND_LABELS = {"grant": "granted", "revoke": "revoked", "adjust": "set by a moderator",
               "reserve": "reserved", "capture": "charged", "release": "refunded"}


def _entry_line(entry: LedgerEntry) -> str:
    amount = entry.delta_balance if entry.kind != "reserve" else -entry.delta_held
    job = f" · job #{entry.job_id}" if entry.job_id else ""
    by = f" by <@{entry.actor_id}>" if entry.actor_id and entry.kind in (
        "grant", "revoke", "adjust") else ""
    reason = f" · {discord.utils.escape_markdown(shorten(entry.reason, 80))}" if (
        entry.reason and entry.kind in ("grant", "revoke", "adjust")) else ""
    sign = "+" if amount > 0 else ""
    return (f"{timestamp(entry.created_at, 'd')} **{sign}{amount:,}** "
            f"{KIND_LABELS.get(entry.kind, entry.kind)}{by}{job}{reason} → "
            f"{entry.balance_after:,}")


@app_commands.guild_only()  # accounts are per server; in a DM there is none
class CreditsCog(commands.GroupCog, group_name="credits", group_description="Credits: "
                 "what clips cost, your balance and its history"):
    def __init__(self, services: Services) -> None:
        self.services = services
        super().__init__()

    def _who(self, interaction: discord.Interaction,
             user: discord.Member | discord.User | None) -> int:
        """Members see their own account; looking at someone else's needs Manage Server."""
        if user is not None and user.id != interaction.user.id:
            require_moderator(interaction)
            return user.id
        return interaction.user.id

    @app_commands.command(name="balance", description="Show a credit balance")
    @app_commands.describe(user="Whose balance (moderators only; default: yours)")
    async def balance(self, interaction: discord.Interaction,
                      user: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        who = self._who(interaction, user)
        if who == interaction.user.id:  # acting, so any allowance due is granted now
            roles = frozenset(r.id for r in getattr(interaction.user, "roles", ()))
            await self.services.gatekeeper.grant_due_allowance(interaction.guild_id, who, roles)
        bal = await self.services.credits.balance(interaction.guild_id, who)
        prices = self.services.settings.prices
        held = f", plus {bal.held:,} held for unfinished jobs" if bal.held else ""
        await reply_private(interaction, f"<@{who}> has **{bal.available:,} credits** "
                            f"(${prices.usd(bal.available):,.2f}){held}.")

    @app_commands.command(name="history", description="Credit history, newest first")
    @app_commands.describe(user="Whose history (moderators only; default: yours)",
                           page="Page number, from 1")
    async def history(self, interaction: discord.Interaction,
                      user: discord.Member | None = None,
                      page: app_commands.Range[int, 1, 100_000] = 1) -> None:
        assert interaction.guild_id is not None
        who = self._who(interaction, user)
        credits = self.services.credits
        total = await credits.history_count(interaction.guild_id, who)
        pages = max(1, -(-total // PAGE_SIZE))
        page = min(page, pages)
        entries = await credits.history(interaction.guild_id, who, limit=PAGE_SIZE,
                                        offset=(page - 1) * PAGE_SIZE)
        embed = discord.Embed(title="Credit history", colour=discord.Colour.blurple(),
                              description="\n".join(map(_entry_line, entries))
                              or "No credit activity yet.")
        embed.set_footer(text=f"Page {page} of {pages} · {total} entries"
                         + (f" · /credits history page:{page + 1} for older" if page < pages
                            else ""))
        await reply_private(interaction, f"History of <@{who}>:", embed=embed)

    @app_commands.command(name="prices", description="What each clip costs")
    async def prices(self, interaction: discord.Interaction) -> None:
        prices = self.services.settings.prices
        lines = []
        for size, label in SIZE_LABELS.items():
            amounts = [(d, prices.credits_for(size, d)) for d in DURATIONS]
            costs = " · ".join(f"{d} s: {credits_text(c, prices.usd(c))}" for d, c in amounts)
            lines.append(f"**{label}** - {costs}")
        lines.append(f"\n1 credit = ${prices.usd_per_credit:g}. You pay only for delivered "
                     "clips; failures and cancellations are refunded.")
        await reply_private(interaction, "\n".join(lines))

    @app_commands.command(name="grant", description="Give a member credits (Manage Server)")
    @moderator_only()
    @app_commands.describe(user="Who gets them", amount="How many credits",
                           reason="Why (kept in the ledger)")
    async def grant(self, interaction: discord.Interaction, user: discord.Member,
                    amount: app_commands.Range[int, 1, MAX_AMOUNT],
                    reason: app_commands.Range[str, 1, 200] | None = None) -> None:
        assert interaction.guild_id is not None
        await _acknowledge(interaction)
        entry = await self.services.credits.grant(interaction.guild_id, user.id, amount,
                                                  actor_id=interaction.user.id, reason=reason)
        await self.services.audit.credits_changed(
            interaction.guild_id, interaction.user.id, user.id, f"granted {amount:,} credits to",
            reason)
        await reply_private(interaction, f"Granted {amount:,} credits to {user.mention}; "
                            f"their balance is now {entry.balance_after:,}.")

    @app_commands.command(name="revoke", description="Take credits back (Manage Server)")
    @moderator_only()
    @app_commands.describe(user="From whom", amount="How many credits",
                           reason="Why (kept in the ledger)")
    async def revoke(self, interaction: discord.Interaction, user: discord.Member,
                     amount: app_commands.Range[int, 1, MAX_AMOUNT],
                     reason: app_commands.Range[str, 1, 200] | None = None) -> None:
        assert interaction.guild_id is not None
        await _acknowledge(interaction)
        bal = await self.services.credits.balance(interaction.guild_id, user.id)
        if amount > bal.available:
            await reply_private(
                interaction, f"{user.mention} has only {bal.available:,} credits to take "
                f"(credits held for unfinished jobs cannot be revoked). Revoke at most that, "
                f"or use `/credits set`.")
            return
        entry = await self.services.credits.revoke(interaction.guild_id, user.id, amount,
                                                   actor_id=interaction.user.id, reason=reason)
        await self.services.audit.credits_changed(
            interaction.guild_id, interaction.user.id, user.id, f"revoked {amount:,} credits from",
            reason)
        await reply_private(interaction, f"Revoked {amount:,} credits from {user.mention}; "
                            f"their balance is now {entry.balance_after:,}.")

    @app_commands.command(name="set", description="Set a member's balance (Manage Server)")
    @moderator_only()
    @app_commands.describe(user="Whose balance", amount="The new balance in credits",
                           reason="Why (kept in the ledger)")
    async def set_balance(self, interaction: discord.Interaction, user: discord.Member,
                          amount: app_commands.Range[int, 0, MAX_AMOUNT],
                          reason: app_commands.Range[str, 1, 200] | None = None) -> None:
        assert interaction.guild_id is not None
        await _acknowledge(interaction)
        entry = await self.services.credits.set_balance(
            interaction.guild_id, user.id, amount, actor_id=interaction.user.id, reason=reason)
        note = "" if entry is not None else " (it already was)"
        held = (await self.services.credits.balance(interaction.guild_id, user.id)).held
        if held:
            note += (f". The {held:,} credits held for their unfinished jobs are charged if "
                     "those clips are delivered and not refunded otherwise, so the balance "
                     "stays as you set it")
        if entry is not None or held:  # forfeiting held refunds is a change too
            forfeit = f" (and {held:,} held credits will not be refunded)" if held else ""
            await self.services.audit.credits_changed(
                interaction.guild_id, interaction.user.id, user.id,
                f"set the balance to {amount:,} credits{forfeit} for", reason)
        await reply_private(interaction, f"{user.mention}'s balance is now {amount:,} "
                            f"credits{note}.")


async def _acknowledge(interaction: discord.Interaction) -> None:
    """Before the first write: while another process holds the database's write lock, a
    write waits out the busy timeout (10 s), far past Discord's 3 s for an answer, and the
    member would hear nothing, not even the error."""
    await interaction.response.defer(ephemeral=True, thinking=True)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(CreditsCog(services_of(bot)))
