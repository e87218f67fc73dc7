"""Every slash-command error ends in discord_layer.errors and becomes one private,
plain-words answer."""

from __future__ import annotations

import discord
from discord import app_commands

from discord_layer.errors import report_error


class ErrorReportingTree(app_commands.CommandTree[discord.Client]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        name = interaction.command.qualified_name if interaction.command else "?"
        await report_error(interaction, error, what=f"command /{name}")
