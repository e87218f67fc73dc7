"""The playground's Discord server: channels and members built on the emulator.

Ids are kept in `<data dir>/world.json`, so a second run on the same data directory finds
the same server, channels and members - and so the same balances and jobs in the bot's
database, whose accounts are keyed by server and member.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discord_emulator.emulator import Channel, DiscordEmulator, Guild, Member, Role
from discord_emulator.model import DEFAULT_MEMBER_PERMISSIONS, Perm
from playground.commands import is_snowflake

log = logging.getLogger(__name__)

GUILD_NAME = "Clip Club"
MEMBER_NAMES = ("alice", "bob", "mod")  # mod holds the Moderator role (Manage Server)
MODERATOR = "mod"
AUDIT_CHANNEL = "audit"
WORLD_FILE = "world.json"


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    topic: str
    nsfw: bool = False
    bot_can_create_threads: bool = True


CHANNELS = (
    ChannelSpec("clips", "A normal channel: clips are delivered in a thread."),
    ChannelSpec("after-dark", "Age-restricted (NSFW): flagged clips may be shown as spoilers.",
                nsfw=True),
    ChannelSpec("no-threads", "The bot may not create threads here, so it delivers in the "
                              "channel.", bot_can_create_threads=False),
    ChannelSpec(AUDIT_CHANNEL, "The server's audit channel (set with /settings audit_channel "
                               "when the playground starts)."),
)


@dataclass
class PlaygroundWorld:
    guild: Guild
    channels: dict[str, Channel]  # by name, in sidebar order
    members: dict[str, Member]  # by name: alice, bob, mod
    moderator_role: Role
    topics: dict[int, str]  # channel id -> what the channel is for

    @property
    def moderator(self) -> Member:
        return self.members[MODERATOR]

    @property
    def audit_channel(self) -> Channel:
        return self.channels[AUDIT_CHANNEL]

    def member(self, name_or_id: str | int) -> Member:
        """A member by name or id (KeyError if neither)."""
        if isinstance(name_or_id, str):
            if name_or_id in self.members:
                return self.members[name_or_id]
            if not is_snowflake(name_or_id):
                raise KeyError(name_or_id)
        found = self.guild.members.get(int(name_or_id))
        if found is None or found.user.bot or found.id == self.guild.owner_id:
            raise KeyError(name_or_id)
        return found


def _load_ids(path: Path) -> dict[str, int]:
    try:
        raw: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s (%s): the server gets new ids", path, exc)
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}


def build_world(emulator: DiscordEmulator, data_dir: Path) -> PlaygroundWorld:
    """Add the server to `emulator`, reusing the ids kept in `data_dir` (then saving them)."""
    path = data_dir / WORLD_FILE
    ids = _load_ids(path)
    guild = emulator.add_guild(GUILD_NAME, guild_id=ids.get("guild"))
    moderator_role = guild.add_role("Moderator", role_id=ids.get("role:Moderator"),
                                    permissions=DEFAULT_MEMBER_PERMISSIONS | Perm.MANAGE_GUILD)
    channels: dict[str, Channel] = {}
    topics: dict[int, str] = {}
    for spec in CHANNELS:
        channel = guild.add_text_channel(
            spec.name, nsfw=spec.nsfw, bot_can_create_threads=spec.bot_can_create_threads,
            channel_id=ids.get(f"channel:{spec.name}"))
        channels[spec.name] = channel
        topics[channel.id] = spec.topic
    members: dict[str, Member] = {}
    for name in MEMBER_NAMES:
        roles = [moderator_role] if name == MODERATOR else []
        members[name] = guild.add_member(ids.get(f"member:{name}"), name, roles=roles)
    kept = {"guild": guild.id, "role:Moderator": moderator_role.id}
    kept.update({f"channel:{n}": c.id for n, c in channels.items()})
    kept.update({f"member:{n}": m.id for n, m in members.items()})
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept, indent=2) + "\n")
    return PlaygroundWorld(guild, channels, members, moderator_role, topics)
