"""One way to answer an interaction privately, whatever has been said to it so far."""

from __future__ import annotations

import logging

import discord

from discord_layer.text import NO_PINGS, stamp_embed, stamped

log = logging.getLogger(__name__)


async def reply_private(
    interaction: discord.Interaction, content: str | None = None, *,
    embed: discord.Embed | None = None, view: discord.ui.View | None = None,
) -> None:
    """An ephemeral answer that pings no one: the first response if none was sent yet,
    otherwise a follow-up (which replaces a deferred "thinking..." message)."""
    missing = discord.utils.MISSING
    if embed is not None:
        embed = stamp_embed(embed, interaction.client)
    else:
        content = stamped(content, interaction.client)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(
                content or "", ephemeral=True, allowed_mentions=NO_PINGS,
                embed=embed or missing, view=view or missing)
        else:
            await interaction.response.send_message(
                content, ephemeral=True, allowed_mentions=NO_PINGS,
                embed=embed or missing, view=view or missing)
    except discord.HTTPException as exc:
        # Usually an interaction older than its token (15 min) or one Discord forgot.
        log.warning("could not answer interaction %s (%s %s)", interaction.id, exc.status,
                    exc.code)
