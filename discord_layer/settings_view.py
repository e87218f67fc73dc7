"""How a server's settings are shown back to its moderators (pure rendering)."""

from __future__ import annotations

from typing import TypeVar

import discord

from admission.server_rules import duration_text
from config import Settings
from discord_layer.text import shorten, timestamp
from money.usd import format_usd
from storage.guild_settings import KEEP, GuildSettings, Keep

T = TypeVar("T")
LISTED_CHANNELS = 15
ZWSP = "\u200b"


def pause_state(gs: GuildSettings) -> str:
    if not gs.paused:
        return "Running: new jobs are accepted."
    said = discord.utils.escape_markdown((gs.pause_message or "").strip())
    shown = f" Members are told: {shorten(said, 700)}" if said else ""
    return f"**Paused**: new jobs are refused; started ones finish.{shown}"


def keep(value: T | None) -> T | Keep:
    """An option left out keeps its setting."""
    return KEEP if value is None else value


def code_block(lines: list[str]) -> str:
    """Lines in a code block that no backtick in them can close."""
    body = "\n".join(line.replace("`", "`" + ZWSP) for line in lines)
    return f"```\n{body}\n```"


def channels_text(ids: frozenset[int]) -> str:
    if not ids:
        return "Every channel (no list)"
    ordered = sorted(ids)
    text = ", ".join(f"<#{c}>" for c in ordered[:LISTED_CHANNELS])
    if len(ordered) > LISTED_CHANNELS:
        text += f" and {len(ordered) - LISTED_CHANNELS} more"
    return f"Only {text} (and threads in them)"


def role_text(role_id: int | None) -> str:
    return f"<@&{role_id}>" if role_id else "none"


def limits_text(gs: GuildSettings, bot_limit: int) -> str:
    jobs = f"{gs.daily_jobs:,}" if gs.daily_jobs is not None else "no limit"
    cooldown = duration_text(gs.cooldown_seconds) if gs.cooldown_seconds else "none"
    concurrent = (f"{min(gs.concurrent_jobs, bot_limit)}" if gs.concurrent_jobs is not None
                  else f"the bot-wide limit ({bot_limit})")
    cap = gs.daily_spend_cap_cents
    spend = format_usd(cap) if cap is not None else "no cap"
    return (f"Jobs per member per day: {jobs}\nCooldown between a member's jobs: {cooldown}\n"
            f"Unfinished jobs per member: {concurrent}\nServer spend per day: {spend}")


def nsfw_text(gs: GuildSettings, bot_default: bool) -> str:
    where = ("withheld everywhere" if gs.nsfw_policy == "withhold" else
             "posted as a spoiler in age-restricted channels, withheld elsewhere")
    if gs.nsfw_charge is None:
        charge = (f"{'charged' if bot_default else 'refunded'} (bot default: "
                  f"NSFW_CHARGE={'true' if bot_default else 'false'})")
    else:
        charge = "charged" if gs.nsfw_charge else "refunded"
    return f"Policy `{gs.nsfw_policy}`: flagged clips are {where}. A withheld clip is {charge}."


def allowance_text(gs: GuildSettings) -> str:
    if gs.allowance_amount <= 0:
        return "Off"
    who = f"members with <@&{gs.allowance_role_id}>" if gs.allowance_role_id else "every member"
    text = f"{gs.allowance_amount:,} credits per {gs.allowance_period} (UTC) for {who}"
    if gs.allowance_cap == gs.allowance_amount:
        return text + f": topped up to {gs.allowance_amount:,}, unspent credits do not stack"
    if gs.allowance_cap is not None:
        return text + f", never above a balance of {gs.allowance_cap:,}"
    return text


def settings_embed(gs: GuildSettings, blocklist_size: int, config: Settings) -> discord.Embed:
    embed = discord.Embed(title="Settings of this server", colour=discord.Colour.blurple())
    add = embed.add_field
    add(name="Generation", value=pause_state(gs), inline=False)
    add(name="Channels", value=channels_text(gs.channel_ids), inline=False)
    add(name="Roles", value=f"Required: {role_text(gs.required_role_id)}\n"
        f"Blocked: {role_text(gs.blocked_role_id)}", inline=False)
    add(name="Limits", value=limits_text(gs, config.user_max_active_jobs), inline=False)
    add(name="NSFW", value=nsfw_text(gs, config.nsfw_charge), inline=False)
    add(name="Allowance", value=allowance_text(gs), inline=False)
    add(name="Audit channel", value=f"<#{gs.audit_channel_id}>" if gs.audit_channel_id
        else "off")
    add(name="Confirm cost", value="on" if gs.confirm_cost else "off")
    add(name="Blocklist", value=f"{blocklist_size} entr{'y' if blocklist_size == 1 else 'ies'}"
        " (`/settings blocklist list`)")
    changed = "Never: these are the defaults."
    if gs.updated_at is not None:
        by = f" by <@{gs.updated_by}>" if gs.updated_by else ""
        changed = f"{timestamp(gs.updated_at)}{by}"
    add(name="Last changed", value=changed, inline=False)
    return embed


def cannot_post_note(channel: discord.TextChannel) -> str:
    me: discord.Member | None = channel.guild.me
    if me is None:
        return ""
    perms = channel.permissions_for(me)
    if perms.view_channel and perms.send_messages:
        return ""
    return (f"\nNote: I cannot post in {channel.mention} yet; give me View Channel and Send "
            "Messages there.")
