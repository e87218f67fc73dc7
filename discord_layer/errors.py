"""One error path for everything a member can do: slash commands, buttons and modals.

Expected errors (bad input, a server rule, too few credits...) become one private,
plain-words answer; anything else gets a short reference for the member and the full
trace in the log. discord.py only logs errors raised in dynamic items and modals, which
left the member on "thinking..." forever: those callbacks end here too.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3

import discord
from discord import app_commands

from admission.gatekeeper import Refused
from admission.input_rules import InputError
from discord_layer.replies import reply_private
from money.usd import PolicyError
from storage.credits import CreditError
from storage.guild_settings import GuildSettingsError
from storage.jobs import JobLimitError
from storage.offers import OfferClosed

log = logging.getLogger(__name__)

PERMISSION_NAMES = {"manage_guild": "Manage Server"}
OFFER_CLOSED = {
    "declined": "You answered *Not now* to this, so nothing was started or charged.",
    "expired": "This question has expired, so nothing was started or charged. Ask again.",
    "missing": "This question no longer exists, so nothing was started or charged. Ask again.",
}

# SQLite refusing a write for a cause outside the bot's code: another process holding the
# write lock past the busy timeout, the disk full, the file turned read-only. The member
# can only wait; the operator has something to fix.
STORAGE_TROUBLE = {sqlite3.SQLITE_BUSY: "busy", sqlite3.SQLITE_LOCKED: "busy",
                   sqlite3.SQLITE_FULL: "full", sqlite3.SQLITE_READONLY: "read-only"}


class UserFacingError(Exception):
    """An error whose message is written for the member, as is."""


def user_message(error: BaseException) -> str | None:
    """What to tell the member about an expected error; None for a bug."""
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
    if isinstance(error, OfferClosed):
        return OFFER_CLOSED.get(error.why, OFFER_CLOSED["missing"])
    if isinstance(error, InputError | CreditError | GuildSettingsError | PolicyError
                  | UserFacingError):
        return str(error)
    if isinstance(error, JobLimitError):
        return (f"You already have {error.active} unfinished jobs, the most allowed at once. "
                "Wait for one to finish or cancel a queued one with `/jobs cancel`.")
    return None


def storage_trouble(error: BaseException) -> str | None:
    """"busy", "full" or "read-only" when SQLite refused a write for that; else None."""
    if not isinstance(error, sqlite3.OperationalError):
        return None
    code = getattr(error, "sqlite_errorcode", None)  # extended codes keep the primary's bits
    return STORAGE_TROUBLE.get(code & 0xFF) if isinstance(code, int) else None


async def report_error(interaction: discord.Interaction, error: BaseException, *,
                       what: str) -> None:
    """Answer the member about `error` (privately, whatever was said to them so far)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    message = user_message(error)
    trouble = storage_trouble(error)
    if message is None and trouble is not None:
        reference = secrets.token_hex(4)
        log.error("%s failed: the database is %s (reference %s)", what, trouble, reference,
                  exc_info=error)
        # Every write is one transaction, rolled back whole when SQLite refuses it.
        message = (f"The bot's database is {trouble} right now, so this could not be saved "
                   f"(reference `{reference}`). You are only ever charged for a delivered "
                   "clip, and `/jobs list` shows any job that started. Please try again in a "
                   "few minutes; if it keeps happening, tell a moderator the reference.")
    elif message is None:
        reference = secrets.token_hex(4)
        log.error("%s failed (reference %s)", what, reference, exc_info=error)
        # Not "nothing was charged": a bug may strike after a job was made. What is always
        # true is the rule, and where to look.
        message = (f"Something went wrong on our side (reference `{reference}`). You are "
                   "only ever charged for a delivered clip, and `/jobs list` shows any job "
                   "that started. Please try again; if it keeps happening, tell a moderator "
                   "the reference.")
    await reply_private(interaction, message)
