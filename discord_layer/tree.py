"""Every slash-command error ends here and becomes one private, plain-words answer."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from discord_layer.replies import reply_private
from engine.admission import Refused
from engine.input_rules import InputError
from engine.policy import PolicyError
from storage.credits import CreditError
from storage.guild_settings import SettingsError
from storage.jobs import JobLimitError

log = logging.getLogger(__name__)

PERMISSION_NAMES = {"manage_guild": "Manage Server"}


def user_message(error: BaseException) -> str | None:
    """What to tell the user about an expected error; None for a bug."""
    if isinstance(error, app_commands.MissingPermissions):
        needed = ", ".join(PERMISSION_NAMES.get(p, p.replace("_", " ").title())
                           for p in error.missing_permissions)
        return f"You need the **{needed}** permission to use this command."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command only works in a server channel."
    if isinstance(error, app_commands.CommandOnCooldown):
        return f"Slow down: try again in {error.retry_after:.0f} s."
    if isinstance(error, Refused):
        message = error.refusal.message
        return message if "charged" in message else f"{message} Nothing was charged."
    if isinstance(error, app_commands.TransformerError):
        return f"`{error.value}` is not a valid value here."
    if isinstance(error, InputError | CreditError | Refused | SettingsError | PolicyError):
        return str(error)
    if isinstance(error, JobLimitError):
        return (f"You already have {error.active} unfinished jobs, the most allowed at once. "
                "Wait for one to finish or cancel a queued one with `/jobs cancel`.")
    return None


class ErrorReportingTree(app_commands.CommandTree[discord.Client]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            original = error.original
        message = user_message(original)
        if message is None:
            reference = secrets.token_hex(4)
            name = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed (reference %s)", name, reference,
                      exc_info=original)
            message = (f"Something went wrong on our side (reference `{reference}`). Nothing "
                       "was charged. Please try again; if it keeps happening, tell a moderator "
                       "the reference.")
        await reply_private(interaction, message)
