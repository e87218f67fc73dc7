"""/settings: this server's rules for /ref2video, changed by members with Manage Server.

`default_member_permissions` hides the group from other members, but a server can override
that, so `interaction_check` checks the permission in code for every subcommand. Answers are
private and ping no one; each setter changes only the options given.
"""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from discord_layer.checks import require_moderator
from discord_layer.errors import UserFacingError
from discord_layer.replies import reply_private
from discord_layer.services import Services, services_of
from discord_layer.settings_view import (
    ZWSP,
    allowance_text,
    cannot_post_note,
    channels_text,
    code_block,
    keep,
    limits_text,
    nsfw_text,
    settings_embed,
)
from discord_layer.text import MAX_AMOUNT
from money.usd import credits_to_cents, format_usd, usd_to_cents
from storage.guild_settings import (
    KEEP,
    MAX_PATTERN_CHARS,
    GuildSettingsError,
    Keep,
    normalize_pattern,
)

BLOCKLIST_PAGE = 15


@app_commands.guild_only()  # settings are per server
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(commands.GroupCog, group_name="settings",
                  group_description="This server's rules for /ref2video (Manage Server)"):
    channels = app_commands.Group(name="channels", description="Where /ref2video may be used")
    role = app_commands.Group(name="role", description="Who may use /ref2video")
    blocklist = app_commands.Group(name="blocklist",
                                   description="Words and patterns prompts may not contain")

    def __init__(self, services: Services) -> None:
        self.services = services
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return require_moderator(interaction)

    def _guild(self, interaction: discord.Interaction) -> int:
        assert interaction.guild_id is not None
        return interaction.guild_id

    @app_commands.command(name="show", description="Every setting of this server")
    async def show(self, interaction: discord.Interaction) -> None:
        gid = self._guild(interaction)
        store = self.services.guild_settings
        gs, entries = await store.get(gid), await store.patterns(gid)
        await reply_private(interaction, embed=settings_embed(gs, len(entries),
                                                                  self.services.settings))

    # -- where -------------------------------------------------------------------------------

    async def _which(self, interaction: discord.Interaction,
                     channel: discord.TextChannel | None) -> discord.TextChannel | None:
        chosen = channel or interaction.channel
        if not isinstance(chosen, discord.TextChannel):
            await reply_private(interaction, "This is not a text channel: pick one with `channel`.")
            return None
        return chosen

    @channels.command(name="add", description="Allow /ref2video in a channel; then only "
                      "listed channels allow it")
    @app_commands.describe(channel="The text channel to allow (default: this one)")
    async def channels_add(self, interaction: discord.Interaction,
                           channel: discord.TextChannel | None = None) -> None:
        gid, chosen = self._guild(interaction), await self._which(interaction, channel)
        if chosen is None:
            return
        added = await self.services.guild_settings.add_channel(gid, chosen.id,
                                                               actor=interaction.user.id)
        ids = (await self.services.guild_settings.get(gid)).channel_ids
        head = f"{chosen.mention} is {'now' if added else 'already'} allowed."
        first = " Until now it worked everywhere." if added and len(ids) == 1 else ""
        await reply_private(interaction, f"{head}{first}\nChannels: "
                            f"{channels_text(ids)}.{cannot_post_note(chosen)}")

    @channels.command(name="remove", description="Stop allowing /ref2video in a channel")
    @app_commands.describe(channel="The text channel to remove from the list (default: this one)")
    async def channels_remove(self, interaction: discord.Interaction,
                              channel: discord.TextChannel | None = None) -> None:
        gid, chosen = self._guild(interaction), await self._which(interaction, channel)
        if chosen is None:
            return
        removed = await self.services.guild_settings.remove_channel(
            gid, chosen.id, actor=interaction.user.id)
        ids = (await self.services.guild_settings.get(gid)).channel_ids
        head = (f"{chosen.mention} is removed from the list." if removed else
                f"{chosen.mention} was not on the list, so nothing changed.")
        where = channels_text(ids) if ids else "every channel (the list is empty)"
        await reply_private(interaction, f"{head}\nChannels: {where}.")

    @channels.command(name="clear", description="Allow /ref2video in every channel again")
    async def channels_clear(self, interaction: discord.Interaction) -> None:
        count = await self.services.guild_settings.clear_channels(
            self._guild(interaction), actor=interaction.user.id)
        head = (f"Removed {count} channel{'s' if count != 1 else ''} from the list." if count
                else "There was no channel list.")
        await reply_private(interaction, f"{head} /ref2video works in every channel.")

    # -- who ---------------------------------------------------------------------------------

    async def _set_role(self, interaction: discord.Interaction, which: Literal["required",
                        "blocked"], role: discord.Role | None) -> None:
        gid = self._guild(interaction)
        if role is not None and role.is_default():
            await reply_private(interaction, f"Everyone has @everyone, so it cannot be the {which}"
                                " role. Pick another role, or leave `role` out to clear it.")
            return
        gs = await self.services.guild_settings.get(gid)
        other = gs.blocked_role_id if which == "required" else gs.required_role_id
        if role is not None and role.id == other:
            await reply_private(interaction, f"{role.mention} is already the "
                                f"{'blocked' if which == 'required' else 'required'} role; one "
                                "role cannot be both. Clear that one first.")
            return
        await self.services.guild_settings.set_roles(
            gid, actor=interaction.user.id, **{which: role.id if role is not None else None})
        if role is None:
            text = f"No role is {which} any more."
        elif which == "required":
            text = f"Only members with {role.mention} can use /ref2video now."
        else:
            text = f"Members with {role.mention} cannot use /ref2video now."
        await reply_private(interaction, text)

    @role.command(name="required", description="A role members need for /ref2video (none: clear)")
    @app_commands.describe(role="The role members must have; leave out to remove the requirement")
    async def role_required(self, interaction: discord.Interaction,
                            role: discord.Role | None = None) -> None:
        await self._set_role(interaction, "required", role)

    @role.command(name="blocked", description="A role that may not use /ref2video (none: clear)")
    @app_commands.describe(role="Members with this role are refused; leave out to clear it")
    async def role_blocked(self, interaction: discord.Interaction,
                           role: discord.Role | None = None) -> None:
        await self._set_role(interaction, "blocked", role)

    # -- what --------------------------------------------------------------------------------

    @blocklist.command(name="add", description="Refuse prompts that contain a word, phrase or "
                       "pattern")
    @app_commands.describe(pattern="A word or phrase, or a regular expression with kind: regex",
                           kind="word (default): whole words, any case; regex: an RE2 regular "
                           "expression (no lookaround)")
    async def blocklist_add(self, interaction: discord.Interaction,
                            pattern: app_commands.Range[str, 1, MAX_PATTERN_CHARS],
                            kind: Literal["word", "regex"] = "word") -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        try:  # the store checks the entry off the loop (compile_entry, the one validator)
            added = await store.add_pattern(gid, pattern, kind, actor=interaction.user.id)
        except GuildSettingsError as err:  # answered by discord_layer.errors, as every error
            raise UserFacingError(f"Not added: {err}") from err
        count = len(await store.patterns(gid))
        what = "word entry" if kind == "word" else "regex entry"
        head = f"Added the {what}" if added else f"The blocklist already has the {what}"
        shown = normalize_pattern(pattern, kind)
        await reply_private(interaction, f"{head}:\n{code_block([shown])}\nPrompts and "
                            "negative prompts that match it are refused before anything is "
                            f"charged. The blocklist has {count} entries.")

    @blocklist.command(name="remove", description="Remove a blocklist entry")
    @app_commands.describe(pattern="The entry exactly as /settings blocklist list shows it")
    async def blocklist_remove(self, interaction: discord.Interaction,
                               pattern: app_commands.Range[str, 1, 1000]) -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        removed = await store.remove_pattern(gid, pattern, actor=interaction.user.id)
        if not removed and ZWSP in pattern:  # copied out of the list's escaped code block
            removed = await store.remove_pattern(gid, pattern.replace(ZWSP, ""),
                                                 actor=interaction.user.id)
        if not removed:
            await reply_private(interaction, f"The blocklist has no entry\n{code_block([pattern])}"
                                "\nSee `/settings blocklist list` for the exact entries.")
            return
        count = len(await store.patterns(gid))
        await reply_private(interaction, f"Removed the entry\n{code_block([pattern.strip()])}\n"
                            f"The blocklist has {count} entries.")

    @blocklist.command(name="list", description="The blocklist (shown only to you)")
    @app_commands.describe(page="Page number, from 1")
    async def blocklist_list(self, interaction: discord.Interaction,
                             page: app_commands.Range[int, 1, 1000] = 1) -> None:
        entries = await self.services.guild_settings.patterns(self._guild(interaction))
        if not entries:
            await reply_private(interaction, "The blocklist is empty. Add entries with "
                                "`/settings blocklist add`.")
            return
        pages = -(-len(entries) // BLOCKLIST_PAGE)
        page = min(page, pages)
        start = (page - 1) * BLOCKLIST_PAGE
        lines = [f"{start + i + 1:>3}. {e.kind:<5} {e.pattern}"
                 for i, e in enumerate(entries[start:start + BLOCKLIST_PAGE])]
        embed = discord.Embed(title="Blocklist", description=code_block(lines),
                              colour=discord.Colour.blurple())
        embed.set_footer(text=f"Page {page} of {pages} · {len(entries)} entries · word entries "
                         "match whole words in any case")
        await reply_private(interaction, embed=embed)

    # -- what it may cost ----------------------------------------------------------------------

    @app_commands.command(name="limits", description="Per-member job limits and the server's "
                          "daily spend cap (only given options change)")
    @app_commands.describe(
        daily_jobs="Jobs each member may start per UTC day (0 = no limit)",
        cooldown_seconds="Seconds a member must wait between jobs (0 = none)",
        concurrent_jobs="Unfinished jobs a member may have at once (0 = the bot-wide limit)",
        daily_spend_cap_usd="US dollars this server may spend per UTC day, e.g. 20 or 12.5 "
                            "(0 = no cap)")
    async def limits(self, interaction: discord.Interaction,
                     daily_jobs: app_commands.Range[int, 0, 100_000] | None = None,
                     cooldown_seconds: app_commands.Range[int, 0, 7 * 86_400] | None = None,
                     concurrent_jobs: app_commands.Range[int, 0, 100] | None = None,
                     daily_spend_cap_usd: app_commands.Range[float, 0, 1_000_000] | None = None,
                     ) -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        bot_limit = self.services.settings.user_max_active_jobs
        if (daily_jobs, cooldown_seconds, concurrent_jobs, daily_spend_cap_usd) == (None,) * 4:
            gs = await store.get(gid)
            await reply_private(interaction, f"{limits_text(gs, bot_limit)}\nGive an option to "
                                "change one; 0 turns it off.")
            return
        # A refusal (PolicyError, GuildSettingsError) is answered by discord_layer.errors.
        cap = KEEP if daily_spend_cap_usd is None else usd_to_cents(daily_spend_cap_usd)
        gs_new = await store.set_limits(
            gid, actor=interaction.user.id, daily_jobs=keep(daily_jobs),
            cooldown_seconds=keep(cooldown_seconds), concurrent_jobs=keep(concurrent_jobs),
            daily_spend_cap_cents=cap)
        p, notes = self.services.settings.prices, ""
        cheapest = credits_to_cents(min(p.p720_5s, p.p720_10s, p.p1080_5s, p.p1080_10s),
                                    p.usd_per_credit)
        if isinstance(cap, int) and 0 < cap < cheapest:
            notes += f"\nNote: no clip fits under this cap; the cheapest is {format_usd(cheapest)}."
        if concurrent_jobs and concurrent_jobs > bot_limit:
            notes += f"\nNote: the bot-wide limit of {bot_limit} unfinished jobs still applies."
        await reply_private(interaction, "Limits updated.\n"
                            f"{limits_text(gs_new, bot_limit)}{notes}")

    @app_commands.command(name="nsfw", description="What happens to clips WaveSpeed flags as NSFW")
    @app_commands.describe(
        policy="withhold: never post them; spoiler: as a spoiler in age-restricted channels only",
        charge="Whether a withheld clip is charged; default: the bot's NSFW_CHARGE")
    async def nsfw(self, interaction: discord.Interaction,
                   policy: Literal["withhold", "spoiler"] | None = None,
                   charge: Literal["charge", "refund", "default"] | None = None) -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        bot_default = self.services.settings.nsfw_charge
        if policy is None and charge is None:
            gs = await store.get(gid)
            await reply_private(interaction, f"{nsfw_text(gs, bot_default)}\nGive `policy` or "
                                "`charge` to change it.")
            return
        charged: bool | Keep | None = KEEP if charge is None else {
            "charge": True, "refund": False, "default": None}[charge]
        gs = await store.set_nsfw(gid, actor=interaction.user.id, policy=keep(policy),
                                  charge=charged)
        await reply_private(interaction, f"NSFW setting updated. {nsfw_text(gs, bot_default)}\n"
                            "Outside age-restricted channels a flagged clip is always withheld.")

    @app_commands.command(name="allowance", description="Credits members get automatically "
                          "each day or week")
    @app_commands.describe(
        amount="Credits each member is topped up to per period (0 = off)",
        period="day or week (UTC; weeks start on Monday); left out: unchanged",
        role="Only members with this role get it; with an amount but no role: everyone")
    async def allowance(self, interaction: discord.Interaction,
                        amount: app_commands.Range[int, 0, MAX_AMOUNT] | None = None,
                        period: Literal["day", "week"] | None = None,
                        role: discord.Role | None = None) -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        if amount is None and period is None and role is None:
            gs = await store.get(gid)
            await reply_private(interaction, f"Allowance: {allowance_text(gs)}.\nSet it with "
                                "`amount` (0 turns it off), `period` and `role`.")
            return
        role_id = None if role is None or role.is_default() else role.id
        if amount is None:  # only the period and/or the role change
            gs = await store.set_allowance(gid, actor=interaction.user.id, period=keep(period),
                                           role=KEEP if role is None else role_id)
        else:
            gs = await store.set_allowance(
                gid, actor=interaction.user.id, amount=amount, period=keep(period),
                role=role_id if amount else None, cap=amount or None)
        how = ("" if gs.allowance_amount <= 0 else
               "\nEach member is granted it at their first command of the period, up to a "
               f"balance of {gs.allowance_amount:,}: it tops them up rather than stacking.")
        await reply_private(interaction, f"Allowance: {allowance_text(gs)}.{how}")

    # -- switches --------------------------------------------------------------------------------

    @app_commands.command(name="audit_channel", description="Where every job and moderation "
                          "event is logged (none: off)")
    @app_commands.describe(channel="The text channel for the audit log; leave out to turn it off")
    async def audit_channel(self, interaction: discord.Interaction,
                            channel: discord.TextChannel | None = None) -> None:
        gid = self._guild(interaction)
        await self.services.guild_settings.set_audit_channel(
            gid, channel.id if channel else None, actor=interaction.user.id)
        if channel is None:
            await reply_private(interaction, "The audit log is off.")
            return
        await reply_private(interaction, f"Jobs, credit changes, refunds and refusals are logged "
                            f"in {channel.mention} now (nobody is pinged)."
                            f"{cannot_post_note(channel)}")

    @app_commands.command(name="confirm_cost", description="Ask members to confirm the price "
                          "before a job is charged")
    @app_commands.describe(enabled="True: ask with a button first; False: charge right away")
    async def confirm_cost(self, interaction: discord.Interaction,
                           enabled: bool | None = None) -> None:
        gid, store = self._guild(interaction), self.services.guild_settings
        if enabled is None:
            gs = await store.get(gid)
            state = "on" if gs.confirm_cost else "off"
            await reply_private(interaction, f"Cost confirmation is {state}. Give `enabled` to "
                                "change it.")
            return
        await store.set_confirm_cost(gid, enabled, actor=interaction.user.id)
        await reply_private(interaction, "Cost confirmation is on: members confirm the price "
                            "with a button before anything is reserved." if enabled else
                            "Cost confirmation is off: jobs are charged when they are started.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SettingsCog(services_of(bot)))
