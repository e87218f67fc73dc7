"""Who may do what: the one place the Discord layer decides that a member is a moderator.

A moderator has Manage Server in the channel of the interaction. Discord's
`default_member_permissions` only hides commands, and a server can override it, so these
checks are the gate. A refusal is discord.py's own `MissingPermissions`, which
discord_layer.errors turns into the member's answer like any other error.

- `@moderator_only()`: on a command only moderators may run (discord.py's
  `app_commands.checks.has_permissions`, so the check runs before the command does).
- `require_moderator(interaction)`: the same check in code, for a group's
  `interaction_check` or a command where only some uses need it.
- `is_moderator(interaction)`: the question alone, for code that chooses, not refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import discord
from discord import app_commands

T = TypeVar("T")

MODERATOR_PERMISSION = "manage_guild"


def moderator_only() -> Callable[[T], T]:
    return app_commands.checks.has_permissions(manage_guild=True)


def is_moderator(interaction: discord.Interaction) -> bool:
    return interaction.permissions.manage_guild


def require_moderator(interaction: discord.Interaction) -> bool:
    """True, or raise MissingPermissions (answered by discord_layer.errors)."""
    if not is_moderator(interaction):
        raise app_commands.MissingPermissions([MODERATOR_PERMISSION])
    return True
