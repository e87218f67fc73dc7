"""What one member sees, as JSON for the page: the server, channels and threads, messages
(ephemeral ones only for the member they answer), modals the bot opened for them,
interactions of theirs the bot never answered, credits, and the synced commands.

Every id is a string: snowflakes exceed the integers a JavaScript number holds exactly.
The page escapes all text it shows (it never parses these strings as HTML).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from discord_emulator.emulator import (
    AttachmentRecord,
    DiscordEmulator,
    InteractionRecord,
    Member,
    MessageRecord,
    Thread,
)
from discord_emulator.model import DISCORD_EPOCH_MS, Perm
from playground.commands import leaves, synced_commands
from playground.credits import Credits
from playground.world import PlaygroundWorld

MESSAGES_PER_CHANNEL = 150  # the newest; enough for a session, and keeps each push small
TEXT_INPUT, ACTION_ROW, LABEL, TEXT_DISPLAY = 4, 1, 18, 10


@dataclass
class ViewState:
    """What the page changed that the emulator does not record: modals it closed."""

    closed_modals: set[int] = field(default_factory=set)


def media_url(att: AttachmentRecord) -> str:
    """Attachments are served by the playground itself (same origin, byte ranges)."""
    return f"/media/{att.id}/{quote(att.filename)}"


def _attachment(att: AttachmentRecord) -> dict[str, Any]:
    kind = att.content_type or mimetypes.guess_type(att.filename)[0] or ""
    return {"id": str(att.id), "filename": att.filename, "size": att.size,
            "content_type": kind, "url": media_url(att),
            "spoiler": att.filename.startswith("SPOILER_")}


def command_path(rec: InteractionRecord) -> str:
    """"/credits grant" from a slash command's data (its name and subcommand path)."""
    parts = [rec.name]
    options = rec.payload.get("data", {}).get("options") or []
    while options and options[0].get("type") in (1, 2):
        parts.append(options[0]["name"])
        options = options[0].get("options") or []
    return "/" + " ".join(parts)


class Viewer:
    def __init__(self, emulator: DiscordEmulator, world: PlaygroundWorld, state: ViewState
                 ) -> None:
        self.emulator = emulator
        self.world = world
        self.state = state

    def recipient(self, message: MessageRecord) -> int | None:
        """Who an interaction's message answers (the only one who sees it if ephemeral)."""
        if message.interaction_id is None:
            return None
        rec = self.emulator.interaction(message.interaction_id)
        return rec.user_id if rec is not None else None

    def visible(self, message: MessageRecord, viewer: Member) -> bool:
        return not message.ephemeral or self.recipient(message) == viewer.id

    def message(self, m: MessageRecord) -> dict[str, Any]:
        author = self.emulator.users.get(m.author_id)
        data: dict[str, Any] = {
            "id": str(m.id), "channel_id": str(m.channel_id),
            "author": {"id": str(m.author_id), "name": author.name if author else "unknown",
                       "bot": bool(author and author.bot)},
            "content": m.content, "embeds": m.embeds, "components": m.components,
            "attachments": [_attachment(a) for a in m.attachments],
            "ephemeral": m.ephemeral, "loading": m.loading, "edited": m.edited_at is not None,
            "timestamp_ms": (m.id >> 22) + DISCORD_EPOCH_MS, "thread": None, "command": None,
        }
        if m.thread_id is not None:
            thread = next((t for t in self.emulator.threads if t.id == m.thread_id), None)
            if thread is not None:
                data["thread"] = {"id": str(thread.id), "name": thread.name,
                                  "messages": len(self._messages_in(thread.id))}
        if m.interaction_id is not None and (
            rec := self.emulator.interaction(m.interaction_id)
        ) is not None and rec.type == 2:
            user = self.emulator.users.get(rec.user_id)
            data["command"] = {"user": user.name if user else "someone",
                               "name": command_path(rec)}
        return data

    def _messages_in(self, channel_id: int) -> list[MessageRecord]:
        return self.emulator.channel_messages(channel_id)

    def _channel_messages(self, channel_id: int, viewer: Member) -> list[dict[str, Any]]:
        shown = [m for m in self._messages_in(channel_id) if self.visible(m, viewer)]
        return [self.message(m) for m in shown[-MESSAGES_PER_CHANNEL:]]

    def _modal(self, rec: InteractionRecord) -> dict[str, Any]:
        assert rec.modal is not None
        inputs: list[dict[str, Any]] = []
        texts: list[str] = []
        for c in rec.modal.get("components", []):
            if c.get("type") == TEXT_DISPLAY:
                texts.append(str(c.get("content", "")))
                continue
            inner = c.get("component") if c.get("type") == LABEL else next(
                iter(c.get("components") or []), None)
            if not isinstance(inner, dict) or inner.get("type") != TEXT_INPUT:
                continue  # only text inputs are what this bot's forms hold
            inputs.append({
                "custom_id": inner["custom_id"],
                "label": c.get("label") if c.get("type") == LABEL else inner.get("label"),
                "description": c.get("description"),
                "paragraph": inner.get("style") == 2,
                "required": inner.get("required", True),
                "min_length": inner.get("min_length"), "max_length": inner.get("max_length"),
                "placeholder": inner.get("placeholder"), "value": inner.get("value") or "",
            })
        return {"interaction_id": str(rec.id), "channel_id": str(rec.channel_id),
                "title": rec.modal.get("title", ""), "texts": texts, "inputs": inputs}

    def snapshot(self, viewer: Member, credits: Mapping[int, Credits]) -> dict[str, Any]:
        w, emu = self.world, self.emulator
        guild = w.guild
        channels = []
        for ch in w.channels.values():
            threads = [t for t in emu.threads if t.parent.id == ch.id]
            channels.append({
                "id": str(ch.id), "name": ch.name, "nsfw": ch.nsfw, "topic": w.topics[ch.id],
                "bot_can_create_threads": bool(
                    ch.permissions_for(guild.bot_member) & Perm.CREATE_PUBLIC_THREADS),
                "audit": ch is w.audit_channel,
                "threads": [self._thread(t) for t in threads],
            })
        rooms: dict[str, list[dict[str, Any]]] = {}
        for ch in w.channels.values():
            rooms[str(ch.id)] = self._channel_messages(ch.id, viewer)
            for t in emu.threads:
                if t.parent.id == ch.id:
                    rooms[str(t.id)] = self._channel_messages(t.id, viewer)
        mine = [r for r in emu.interactions if r.user_id == viewer.id]
        members = []
        for name, member in w.members.items():
            account = credits.get(member.id)
            members.append({
                "id": str(member.id), "name": name,
                "moderator": bool(member.permissions & Perm.MANAGE_GUILD),
                "available": account.available if account else 0,
                "held": account.held if account else 0, "has_account": account is not None,
            })
        return {
            "viewer": str(viewer.id),
            # Which commands Discord would hide from them (default_member_permissions).
            "viewer_permissions": str(viewer.permissions),
            "guild": {"id": str(guild.id), "name": guild.name},
            "bot": {"id": str(emu.bot.id), "name": emu.bot.name},
            "members": members,
            "users": {str(u.id): u.name for u in emu.users.values()},
            "roles": [{"id": str(r.id), "name": r.name} for r in guild.roles.values()],
            "channels": channels,
            "messages": rooms,
            "modals": [self._modal(r) for r in mine
                       if r.modal is not None and r.id not in self.state.closed_modals],
            # Autocompletes (type 4) failing only leave their suggestions empty.
            "unanswered": [{"id": str(r.id), "channel_id": str(r.channel_id),
                            "name": r.name, "timestamp_ms": (r.id >> 22) + DISCORD_EPOCH_MS}
                           for r in mine if r.unacknowledged and r.type != 4],
            "commands": [leaf.view() for leaf in leaves(synced_commands(emu, guild))],
        }

    def _thread(self, t: Thread) -> dict[str, Any]:
        return {"id": str(t.id), "name": t.name, "parent_id": str(t.parent.id)}
