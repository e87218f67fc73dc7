"""Every slash-command error ends in discord_layer.errors and becomes one private,
plain-words answer; and no command runs with an option outside what it declared."""

from __future__ import annotations

import math
from typing import Any

import discord
from discord import app_commands

from discord_layer.errors import report_error
from discord_layer.replies import reply_private
from discord_layer.text import shorten

_BOUNDED = (discord.AppCommandOptionType.string, discord.AppCommandOptionType.integer,
            discord.AppCommandOptionType.number)


def option_problem(param: app_commands.Parameter, value: Any) -> str | None:
    """What is wrong with `value` for `param`, measured against the choices, range or
    length the command declared (and synced to Discord), or None if it fits."""
    if value is None or param.type not in _BOUNDED:
        return None
    name = f"`{param.display_name}`"
    if param.choices:
        allowed = [c.value for c in param.choices]
        if value not in allowed:
            listed = ", ".join(f"`{c.value}`" for c in param.choices)
            return (f"{name} must be one of {listed}, not `{shorten(str(value), 40)}`. Pick "
                    "one of the choices Discord offers.")
        return None
    low, high = param.min_value, param.max_value
    if isinstance(value, str):
        size = len(value)
        if size == 0 and (low or 0) > 0:
            return f"{name} is empty. Give it a value."
        if (low is not None and size < low) or (high is not None and size > high):
            return (f"{name} is {size:,} characters; it takes {low or 0:,} to {high:,}. "
                    "Shorten it and try again.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # NaN compares false with everything: only an explicit test refuses it.
    if (isinstance(value, float) and not math.isfinite(value)) or (
            low is not None and not low <= value) or (high is not None and not value <= high):
        span = f"from {_num(low)} to {_num(high)}" if low is not None and high is not None else (
            f"at least {_num(low)}" if low is not None else f"at most {_num(high)}")
        return (f"{name} must be a number {span}, not `{shorten(str(value), 40)}`. Give "
                "a value in that range.")
    return None


def _num(value: float | None) -> str:
    """1,000,000 rather than 1,000,000.0 for a whole number option bound."""
    if value is None:
        return "?"
    return f"{int(value):,}" if value == int(value) else f"{value:,}"


class ErrorReportingTree(app_commands.CommandTree[discord.Client]):
    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Discord refuses option values outside the declared choices, ranges and lengths
        before the bot sees them; they are checked again here, so a value past them (a
        malformed or forged interaction) is refused in plain words before any command code
        runs - never a 2^63 grant reaching the ledger or a seed the API refuses."""
        if interaction.type is not discord.InteractionType.application_command:
            return True
        command = interaction.command
        if not isinstance(command, app_commands.Command):
            return True
        for param in command.parameters:
            problem = option_problem(param, getattr(interaction.namespace, param.display_name,
                                                    None))
            if problem is not None:
                await reply_private(interaction, f"{problem} Nothing was changed or charged.")
                return False
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        name = interaction.command.qualified_name if interaction.command else "?"
        await report_error(interaction, error, what=f"command /{name}")
