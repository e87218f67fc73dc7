"""The Discord emulator's world (guilds, channels, members, roles, threads) and its records.

Payload shapes follow what discord.py 2.7 reads (see its state.py, guild.py, member.py,
threads.py, message.py). The server lives in tests/fakes/discord.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Protocol, TypeVar

DISCORD_EPOCH_MS = 1_420_070_400_000
MiB = 1024 * 1024
DEFAULT_FILESIZE_LIMIT = 10 * MiB
DEFAULT_ATTACHMENT_LINK_TTL = 86_400.0  # Discord's signed CDN links last about a day
GONE = "This content is no longer available."  # the CDN's 404 body for a dead link
THREAD_ARCHIVE_DURATIONS = frozenset({60, 1440, 4320, 10080})
TEXT, PUBLIC_THREAD, PRIVATE_THREAD = 0, 11, 12

# Gateway intents the emulator looks at.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message content

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
# Docs, Create Message "flags": IS_COMPONENTS_V2 may be set when sending too.
SENDABLE_FLAGS = (FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS
                  | FLAG_COMPONENTS_V2)
EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2


class Perm:
    """Permission bits (Discord's values)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_GUILD = 1 << 5  # "Manage Server": who the bot counts as a moderator
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38
    ALL = (1 << 51) - 1


# What @everyone may do in a fresh server, and what the bot's managed role grants.
DEFAULT_MEMBER_PERMISSIONS = (
    Perm.CREATE_INSTANT_INVITE | Perm.ADD_REACTIONS | Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS | Perm.ATTACH_FILES | Perm.READ_MESSAGE_HISTORY | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CHANGE_NICKNAME | Perm.USE_APPLICATION_COMMANDS | Perm.CREATE_PUBLIC_THREADS
    | Perm.CREATE_PRIVATE_THREADS | Perm.SEND_MESSAGES_IN_THREADS
)
DEFAULT_BOT_PERMISSIONS = DEFAULT_MEMBER_PERMISSIONS | Perm.MANAGE_THREADS


class Snowflakes:
    """Time-based, strictly increasing ids, as discord.py derives created_at from them."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last = max(now, self._last + 1)
        return self._last


def snowflake_iso(snowflake: int) -> str:
    ms = (snowflake >> 22) + DISCORD_EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


class ApiError(Exception):
    """An error answer: raised anywhere in a handler, turned into JSON by the middleware."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def form_error(path: Sequence[str | int], code: str, message: str) -> ApiError:
    """400 code 50035 with Discord's nested `errors` object pointing at `path`."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def unknown(what: str) -> ApiError:
    codes = {"Application": 10002, "Channel": 10003, "Guild": 10004, "Member": 10007,
             "Message": 10008, "User": 10013, "Webhook": 10015, "interaction": 10062}
    return ApiError(404, codes[what], f"Unknown {what}")


def missing_permissions() -> ApiError:
    return ApiError(403, 50013, "Missing Permissions")


def invalid_webhook_token() -> ApiError:
    return ApiError(401, 50027, "Invalid Webhook Token")


# -- world -------------------------------------------------------------------------------


class WorldHost(Protocol):
    """What the world objects need from the emulator."""

    bot: User
    owner: User
    users: dict[int, User]

    def next_id(self) -> int: ...

    def register_channel(self, channel: Channel | Thread) -> None: ...

    def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None) -> None: ...


@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "username": self.name, "discriminator": "0",
            "global_name": None if self.bot else self.name, "avatar": None, "public_flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    mentionable: bool = False
    bot_id: int | None = None  # set on the bot's managed role

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "name": self.name, "permissions": str(self.permissions),
            "position": self.position, "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False, "managed": self.bot_id is not None, "mentionable": self.mentionable,
            "icon": None, "unicode_emoji": None, "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class Member:
    user: User
    guild: Guild
    roles: list[Role]
    permissions_override: int | None = None
    joined_at: str = field(default_factory=iso_now)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def permissions(self) -> int:
        """What interactions carry as member.permissions: the override, else role-derived."""
        if self.permissions_override is not None:
            return self.permissions_override
        return self.guild.base_permissions(self)

    def payload(self, *, user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r.id) for r in self.roles], "joined_at": self.joined_at,
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "nick": None, "avatar": None, "communication_disabled_until": None,
        }
        if user:
            data["user"] = self.user.payload()
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass(eq=False)
class Channel:
    id: int
    guild: Guild
    name: str
    position: int
    nsfw: bool = False
    bot_deny: int = 0  # a member overwrite denying these bits to the bot
    type: int = TEXT
    default_auto_archive_duration: int = 1440

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def permissions_for(self, member: Member) -> int:
        base = self.guild.base_permissions(member)
        if base & Perm.ADMINISTRATOR:
            return Perm.ALL
        if member.user is self.guild.host.bot:
            base &= ~self.bot_deny
        return base

    def payload(self) -> dict[str, Any]:
        overwrites = []
        if self.bot_deny:
            overwrites.append({"id": str(self.guild.host.bot.id), "type": 1, "allow": "0",
                               "deny": str(self.bot_deny)})
        return {
            "id": str(self.id), "type": self.type, "guild_id": str(self.guild.id),
            "name": self.name, "position": self.position, "parent_id": None, "nsfw": self.nsfw,
            "topic": None, "rate_limit_per_user": 0, "last_message_id": None, "flags": 0,
            "permission_overwrites": overwrites,
            "default_auto_archive_duration": self.default_auto_archive_duration,
        }


@dataclass(eq=False)
class Thread:
    """A thread; also what `emulator.threads` records."""

    id: int
    parent: Channel
    name: str
    type: int
    owner_id: int
    starter_message_id: int | None
    auto_archive_duration: int
    rate_limit_per_user: int = 0
    invitable: bool = True
    created_at: str = field(default_factory=iso_now)
    message_count: int = 0
    archived: bool = False  # DiscordEmulator.archive_thread; a post unarchives it unless locked
    locked: bool = False    # then only members with Manage Threads may unarchive it
    archive_timestamp: str | None = None  # when `archived` last changed (else created_at)

    @property
    def parent_id(self) -> int:
        return self.parent.id

    @property
    def guild(self) -> Guild:
        return self.parent.guild

    @property
    def nsfw(self) -> bool:
        return self.parent.nsfw

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def permissions_for(self, member: Member) -> int:
        return self.parent.permissions_for(member)

    def payload(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "archived": self.archived, "auto_archive_duration": self.auto_archive_duration,
            "archive_timestamp": self.archive_timestamp or self.created_at,
            "locked": self.locked,
            "create_timestamp": self.created_at,
        }
        if self.type == PRIVATE_THREAD:
            metadata["invitable"] = self.invitable
        return {
            "id": str(self.id), "type": self.type, "guild_id": str(self.guild.id),
            "parent_id": str(self.parent.id), "owner_id": str(self.owner_id), "name": self.name,
            "last_message_id": None, "rate_limit_per_user": self.rate_limit_per_user,
            "message_count": self.message_count, "member_count": 1,
            "total_message_sent": self.message_count, "flags": 0, "applied_tags": [],
            "thread_metadata": metadata,
        }


class Guild:
    def __init__(
        self, host: WorldHost, name: str, *, filesize_limit: int, locale: str, bot_permissions: int,
        guild_id: int | None = None,
    ) -> None:
        self.host = host
        self.id = host.next_id() if guild_id is None else guild_id
        self.name = name
        self.filesize_limit = filesize_limit
        self.locale = locale
        self.owner_id = host.owner.id
        self.everyone = Role(self.id, self.id, "@everyone", DEFAULT_MEMBER_PERMISSIONS)
        self.roles: dict[int, Role] = {self.id: self.everyone}
        self.members: dict[int, Member] = {}
        self.channels: dict[int, Channel] = {}
        self.threads: dict[int, Thread] = {}
        bot_role = Role(host.next_id(), self.id, host.bot.name, bot_permissions, 1,
                        bot_id=host.bot.id)
        self.roles[bot_role.id] = bot_role
        self.bot_role = bot_role
        self.bot_member = self._join(host.bot, [bot_role], None)
        self.owner = self._join(host.owner, [], None)

    def _join(self, user: User, roles: list[Role], permissions: int | None) -> Member:
        member = Member(user, self, roles, permissions)
        self.members[user.id] = member
        return member

    @property
    def premium_tier(self) -> int:
        """The boost tier whose upload limit discord.py's Guild.filesize_limit will report."""
        limit = self.filesize_limit
        return 3 if limit >= 100 * MiB else 2 if limit >= 50 * MiB else 0

    def base_permissions(self, member: Member) -> int:
        if member.id == self.owner_id:
            return Perm.ALL
        base = self.everyone.permissions
        for role in member.roles:
            base |= role.permissions
        return Perm.ALL if base & Perm.ADMINISTRATOR else base

    def add_text_channel(
        self, name: str, *, nsfw: bool = False, bot_can_create_threads: bool = True,
        bot_can_send: bool = True, bot_can_attach: bool = True, channel_id: int | None = None,
    ) -> Channel:
        """`channel_id`: a fixed id (e.g. one kept from an earlier run), else a new one."""
        deny = 0 if bot_can_send else Perm.SEND_MESSAGES
        if not bot_can_create_threads:
            deny |= Perm.CREATE_PUBLIC_THREADS | Perm.CREATE_PRIVATE_THREADS
        if not bot_can_attach:
            deny |= Perm.ATTACH_FILES
        cid = self.host.next_id() if channel_id is None else channel_id
        channel = Channel(cid, self, name, len(self.channels), nsfw, deny)
        self.channels[channel.id] = channel
        self.host.register_channel(channel)
        self.host.dispatch("CHANNEL_CREATE", channel.payload(), intent=INTENT_GUILDS)
        return channel

    def add_role(self, name: str, *, permissions: int = 0, mentionable: bool = False,
                 role_id: int | None = None) -> Role:
        """`role_id`: a fixed id (e.g. one kept from an earlier run), else a new one."""
        rid = self.host.next_id() if role_id is None else role_id
        role = Role(rid, self.id, name, permissions, len(self.roles), mentionable)
        self.roles[role.id] = role
        self.host.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.payload()},
                           intent=INTENT_GUILDS)
        return role

    def add_member(
        self, user_id: int | None, name: str, *, permissions: int | None = None,
        roles: Sequence[Role] = (),
    ) -> Member:
        """`permissions` is what interactions report (default: derived from the roles)."""
        uid = self.host.next_id() if user_id is None else user_id
        user = self.host.users.setdefault(uid, User(uid, name))
        member = self._join(user, list(roles), permissions)
        self.host.dispatch("GUILD_MEMBER_ADD", {**member.payload(), "guild_id": str(self.id)},
                           intent=INTENT_GUILD_MEMBERS)
        return member

    def payload(self) -> dict[str, Any]:
        """A GUILD_CREATE payload (also fine for GET /guilds/{id})."""
        members = list(self.members.values())
        return {
            "id": str(self.id), "name": self.name, "icon": None, "splash": None,
            "discovery_splash": None, "owner_id": str(self.owner_id), "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 1,
            "explicit_content_filter": 0, "features": [], "mfa_level": 0,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None,
            "premium_tier": self.premium_tier, "premium_subscription_count": 0,
            "preferred_locale": self.locale, "public_updates_channel_id": None, "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "emojis": [], "stickers": [],
            "roles": [r.payload() for r in self.roles.values()],
            "joined_at": self.bot_member.joined_at, "large": False, "unavailable": False,
            "member_count": len(members), "members": [m.payload() for m in members],
            "channels": [c.payload() for c in self.channels.values()],
            # Active threads only, as Discord sends (an archived one is fetched when needed).
            "threads": [t.payload() for t in self.threads.values() if not t.archived],
            "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }


# -- records -----------------------------------------------------------------------------


class AttachmentLinks:
    """Signs attachment links as Discord's CDN does: `?ex=<8-hex expiry>&is=<8-hex issue
    time>&hm=<64-hex HMAC>&`, unix seconds on `clock()`, lasting `ttl()` seconds. The HMAC
    (keyed with a secret of this emulator) covers the attachment's path, ex and is, so `url`
    (`/attachments/...`) and `proxy_url` (`/media/attachments/...`) share one query.

    An attachment keeps its current link while that has at least half its lifetime left and
    was signed with the current key, so payloads produced close together agree (as Discord's
    do); past that, or after `revoke_all`, the next payload carries a freshly signed one."""

    def __init__(self, clock: Callable[[], float], ttl: Callable[[], float]) -> None:
        self._clock = clock
        self._ttl = ttl
        self._key = secrets.token_bytes(32)
        self.generation = 0  # bumped by revoke_all: links signed before it are refused

    def revoke_all(self) -> None:
        """Refuse every link issued so far; links issued from now on work."""
        self._key = secrets.token_bytes(32)
        self.generation += 1

    def _mac(self, path: str, expires: int, issued: int) -> str:
        message = f"{path}\n{expires:08x}\n{issued:08x}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def query(self, att: AttachmentRecord) -> str:
        """The signed query ("?ex=...&is=...&hm=...&") of `att`'s current link."""
        now = self._clock()
        ttl = self._ttl()
        link = att.link
        if link is None or link[0] != self.generation or link[2] - now < ttl / 2:
            issued = int(now)
            link = att.link = (self.generation, issued, issued + max(1, round(ttl)))
        _, issued, expires = link
        return f"?ex={expires:08x}&is={issued:08x}&hm={self._mac(att.path, expires, issued)}&"

    def valid(self, path: str, query: Mapping[str, str]) -> bool:
        """Whether `query` signs `path` with the current key and has not expired."""
        ex, issued, mac = (query.get(k, "") for k in ("ex", "is", "hm"))
        if not all(re.fullmatch(r"[0-9a-f]{8}", v) for v in (ex, issued)) or not re.fullmatch(
                r"[0-9a-f]{64}", mac):
            return False
        expected = self._mac(path, int(ex, 16), int(issued, 16))
        return hmac.compare_digest(mac, expected) and self._clock() < int(ex, 16)


@dataclass(eq=False)
class AttachmentRecord:
    """A served file. `url` and `proxy_url` are signed links valid when read (see
    AttachmentLinks); `size` is `declared_size` when set (a payload that lies), else the
    true length of `data`."""

    id: int
    filename: str
    data: bytes
    content_type: str | None
    base_url: str  # the emulator's, e.g. http://127.0.0.1:<port>
    path: str  # /attachments/<scope>/<id>/<filename> (or /ephemeral-attachments/...)
    links: AttachmentLinks
    description: str | None = None
    declared_size: int | None = None
    link: tuple[int, int, int] | None = None  # current link: (key generation, is, ex)

    @property
    def size(self) -> int:
        return len(self.data) if self.declared_size is None else self.declared_size

    @property
    def url(self) -> str:
        return self.base_url + self.path + self.links.query(self)

    @property
    def proxy_url(self) -> str:
        return self.base_url + "/media" + self.path + self.links.query(self)

    def payload(self) -> dict[str, Any]:
        query = self.links.query(self)
        data: dict[str, Any] = {
            "id": str(self.id), "filename": self.filename, "size": self.size,
            "url": self.base_url + self.path + query,
            "proxy_url": self.base_url + "/media" + self.path + query,
        }
        if self.content_type is not None:
            data["content_type"] = self.content_type
        if self.description is not None:
            data["description"] = self.description
        return data


@dataclass(eq=False)
class MessageRecord:
    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    via: str  # "interaction" (callback), "webhook" (follow-up) or "rest" (channel route)
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None  # None: absent, so everything pings
    message_reference: dict[str, Any] | None = None
    tts: bool = False
    type: int = 0
    interaction_id: int | None = None
    webhook_id: int | None = None
    thread_id: int | None = None  # the thread started from this message
    nonce: int | str | None = None  # as sent on POST /channels/{c}/messages
    deleted: bool = False
    created_at: float = field(default_factory=time.monotonic)
    edited_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier versions, oldest first

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response's "thinking" placeholder that nothing has filled in yet."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def has_body(self) -> bool:
        return bool(self.content or self.embeds or self.attachments or self.components)

    def snapshot(self) -> dict[str, Any]:
        return {
            "content": self.content, "embeds": list(self.embeds),
            "components": list(self.components), "flags": self.flags,
            "attachments": [(a.filename, a.size) for a in self.attachments],
            "allowed_mentions": self.allowed_mentions,
        }


@dataclass(frozen=True)
class Rejection:
    route: str  # "callback", "followup", "original", "message"
    status: int
    code: int


_T = TypeVar("_T")


async def poll(predicate: Callable[[], _T | None], within: float, what: Callable[[], str]) -> _T:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what()} (waited {within} s)")
        await asyncio.sleep(0.01)


@dataclass(eq=False)
class InteractionRecord:
    id: int
    token: str
    type: int  # 2 application command, 3 component, 4 autocomplete, 5 modal submit
    name: str  # command name or custom_id
    user_id: int
    channel_id: int
    guild_id: int
    payload: dict[str, Any]  # the INTERACTION_CREATE data as dispatched
    deadline: float  # seconds allowed for the first callback
    dispatched_at: float = field(default_factory=time.monotonic)
    acked_at: float | None = None  # seconds after dispatch of the accepted first callback
    callback_type: int | None = None
    ephemeral: bool = False
    late: bool = False  # a first callback came after the deadline and got 10062
    original: MessageRecord | None = None
    followups: list[MessageRecord] = field(default_factory=list)
    modal: dict[str, Any] | None = None  # the modal shown by a type-9 callback
    source_message: MessageRecord | None = None  # the message a component sits on
    focused: dict[str, Any] | None = None  # autocomplete: the focused option as synced
    choices: list[dict[str, Any]] | None = None  # autocomplete: what a type-8 callback offered
    rejections: list[Rejection] = field(default_factory=list)
    age_offset: float = 0.0  # added by DiscordEmulator.expire_tokens()

    @property
    def age(self) -> float:
        return time.monotonic() - self.dispatched_at + self.age_offset

    @property
    def acked(self) -> bool:
        return self.callback_type is not None

    @property
    def unacknowledged(self) -> bool:
        """No accepted callback and past the deadline: Discord shows "interaction failed"."""
        return not self.acked and self.age > self.deadline

    def describe(self) -> str:
        return (f"interaction {self.id} ({self.name!r}, type {self.type}): callback "
                f"{self.callback_type}, late={self.late}, rejections={self.rejections}")

    async def wait_acked(self, within: float = 3.0) -> InteractionRecord:
        await poll(lambda: self.acked, within, lambda: f"not acknowledged: {self.describe()}")
        return self

    async def wait_response(self, within: float = 5.0) -> MessageRecord:
        """Wait until the original response shows something (not just a "thinking" defer)."""

        def ready() -> MessageRecord | None:
            m = self.original
            return m if m is not None and not m.loading and m.has_body else None

        return await poll(ready, within, lambda: f"no visible response: {self.describe()}")


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    status: int = 0
    code: int | None = None  # Discord error code of an error answer
    json: Any = None
    form: dict[str, Any] | None = None  # multipart: {"payload_json": ..., "files": [...]}
    forced: bool = False  # answered by an injected rate limit
    deduplicated: bool = False  # enforce_nonce matched: an earlier message was returned
    reply_lost: bool = False  # processed, then answered by DiscordEmulator.fail_after_commit


@dataclass(frozen=True)
class GatewayFrame:
    direction: str  # "in" (from the bot) or "out"
    op: int
    t: str | None
    s: int | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class PathRule:
    """An injected answer for the next `remaining` requests of `method` whose path matches."""

    method: str
    pattern: re.Pattern[str]
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        """True (and one use consumed) if this rule applies to the request."""
        if self.remaining > 0 and method == self.method and self.pattern.search(path):
            self.remaining -= 1
            return True
        return False


@dataclass
class RateLimitRule(PathRule):
    """DiscordEmulator.rate_limit: answered with a 429."""

    retry_after: float = 1.0
    is_global: bool = False

    def headers(self) -> dict[str, str]:
        # discord.py retries a 429 only with a Via header (else it assumes a Cloudflare ban).
        headers = {
            "Via": "1.1 google", "Retry-After": str(max(1, round(self.retry_after))),
            "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
            "X-RateLimit-Bucket": "emulator-" + self.pattern.pattern[:16],
            "X-RateLimit-Scope": "global" if self.is_global else "shared",
        }
        if self.is_global:
            headers["X-RateLimit-Global"] = "true"
        return headers

    def body(self) -> dict[str, Any]:
        return {"message": "You are being rate limited.", "retry_after": self.retry_after,
                "global": self.is_global}


@dataclass
class LostReplyRule(PathRule):
    """DiscordEmulator.fail_after_commit: a request that succeeded is answered `status`."""

    status: int = 500

    def body(self) -> dict[str, Any]:
        try:
            phrase = HTTPStatus(self.status).phrase
        except ValueError:  # e.g. Cloudflare's 524, which discord.py also retries
            phrase = "Error"
        return {"message": f"{self.status}: {phrase}", "code": 0}


@dataclass
class RefusalRule(PathRule):
    """DiscordEmulator.refuse: a request answered with an error, not processed at all."""

    status: int = 400
    code: int = 0
    message: str = "injected refusal"

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}


# -- mentions ----------------------------------------------------------------------------

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def mentions_pinged(
    content: str, allowed_mentions: Mapping[str, Any] | None, replied_user_id: int | None = None
) -> set[str]:
    """Which of "everyone", "user:<id>", "role:<id>" the message would notify.

    Discord's rules: only mentions written in the content can ping (never embeds). With no
    allowed_mentions everything in the content pings (and a reply pings its author). With
    allowed_mentions, a kind pings only if listed in `parse`, or its id is in `users`/`roles`;
    `replied_user` decides the reply ping. @here counts as "everyone". Permissions (Mention
    Everyone, unmentionable roles) are deliberately ignored: this over-approximates pings.
    """
    if allowed_mentions is None:
        parse, users, roles, replied = {"everyone", "users", "roles"}, set(), set(), True
    else:
        parse = set(allowed_mentions.get("parse") or ())
        users = {str(u) for u in allowed_mentions.get("users") or ()}
        roles = {str(r) for r in allowed_mentions.get("roles") or ()}
        replied = bool(allowed_mentions.get("replied_user", False))
    pinged: set[str] = set()
    if ("@everyone" in content or "@here" in content) and "everyone" in parse:
        pinged.add("everyone")
    pinged.update(f"user:{u}" for u in _USER_MENTION.findall(content)
                  if "users" in parse or u in users)
    pinged.update(f"role:{r}" for r in _ROLE_MENTION.findall(content)
                  if "roles" in parse or r in roles)
    if replied_user_id is not None and replied:
        pinged.add(f"user:{replied_user_id}")
    return pinged


def _is_snowflake(value: Any) -> bool:
    # The spec's SnowflakeType is a digit string; discord.py sends ints, which Discord coerces.
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and value >= 0) or (
        isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]*", value) is not None)


def validate_allowed_mentions(value: Any) -> None:
    """MessageAllowedMentionsRequest: parse of users/roles/everyone (unique), users and roles
    <= 100 unique snowflakes each, exclusive with the same kind in parse."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise form_error(["allowed_mentions"], "MODEL_TYPE_CONVERT",
                         "Only dictionaries may be used")
    parse = value.get("parse") or []
    if not isinstance(parse, list):
        raise form_error(["allowed_mentions", "parse"], "BASE_TYPE_LIST", "Must be an array.")
    for i, kind in enumerate(parse):
        if kind not in ("everyone", "users", "roles"):
            raise form_error(["allowed_mentions", "parse", i], "ENUM_TYPE_COERCE",
                             f"Value {kind!r} is not a valid enum value.")
    if len(set(parse)) != len(parse):
        raise form_error(["allowed_mentions", "parse"], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                         "The set already contains this value.")
    for kind in ("users", "roles"):
        ids = value.get(kind)
        if ids is None:
            continue
        if kind in parse:
            raise form_error(["allowed_mentions"], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                             f"parse:[\"{kind}\"] and {kind}: [ids...] are mutually exclusive.")
        if not isinstance(ids, list):
            raise form_error(["allowed_mentions", kind], "BASE_TYPE_LIST", "Must be an array.")
        if len(ids) > 100:
            raise form_error(["allowed_mentions", kind], "BASE_TYPE_MAX_LENGTH",
                             "Must be 100 or fewer in length.")
        for i, snowflake in enumerate(ids):
            if not _is_snowflake(snowflake):
                raise form_error(["allowed_mentions", kind, i], "NUMBER_TYPE_COERCE",
                                 f"Value {snowflake!r} is not snowflake.")
        if len({str(s) for s in ids}) != len(ids):
            raise form_error(["allowed_mentions", kind], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                             "The set already contains this value.")
    if not isinstance(value.get("replied_user", False), bool | None):
        raise form_error(["allowed_mentions", "replied_user"], "BOOLEAN_TYPE_CONVERT",
                         "Must be either true or false.")


def thread_options(payload: Mapping[str, Any], default_archive: int) -> tuple[str, int, int]:
    """A thread's name, auto_archive_duration and slowmode, validated as Discord does."""
    name = payload.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise form_error(["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    archive = payload.get("auto_archive_duration") or default_archive
    if archive not in THREAD_ARCHIVE_DURATIONS:
        raise form_error(["auto_archive_duration"], "BASE_TYPE_CHOICES",
                         "Value must be one of {60, 1440, 4320, 10080}.")
    slowmode = payload.get("rate_limit_per_user") or 0
    if not isinstance(slowmode, int) or not 0 <= slowmode <= 21600:
        raise form_error(["rate_limit_per_user"], "NUMBER_TYPE_MAX", "Must be between 0 and 21600.")
    return name, archive, slowmode


# -- message validation -------------------------------------------------------------------
# Limits from Discord's docs (resources/message "Embed Limits" and "Create Message",
# components/reference) and its OpenAPI description (discord/discord-api-spec: RichEmbed*,
# *ComponentForMessageRequest, MessageCreateRequest).

FieldPath = Sequence[str | int]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def text_field(value: Any, path: FieldPath, high: int, *, low: int = 0,
               strip: bool = False) -> str:
    """A string of `low`-`high` characters (None counts as ""), else Discord's form error;
    `strip`: measured trimmed, as Discord does for embeds."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise form_error(path, "STRING_TYPE_CONVERT", f"Could not interpret {value!r} as string.")
    text = value.strip() if strip else value
    if low and not text:
        raise form_error(path, "BASE_TYPE_REQUIRED", "This field is required")
    if low and not low <= len(text) <= high:
        raise form_error(path, "BASE_TYPE_BAD_LENGTH",
                         f"Must be between {low} and {high} in length.")
    if len(text) > high:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
    return text


def int_field(value: Any, path: FieldPath, low: int, high: int) -> int | None:
    """An integer within `low`..`high` (None: absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise form_error(path, "NUMBER_TYPE_COERCE", f"Value {value!r} is not int.")
    if value < low:
        raise form_error(path, "NUMBER_TYPE_MIN",
                         f"int value should be greater than or equal to {low}.")
    if value > high:
        raise form_error(path, "NUMBER_TYPE_MAX",
                         f"int value should be less than or equal to {high}.")
    return value


def list_field(value: Any, path: FieldPath, high: int, *, low: int = 0) -> list[Any]:
    """An array of `low`-`high` items (None counts as empty)."""
    if value is None:
        value = []
    if not isinstance(value, list):
        raise form_error(path, "BASE_TYPE_LIST", "Must be an array.")
    if len(value) > high:
        raise form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
    if len(value) < low:
        raise form_error(path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length.")
    return value


def dict_field(value: Any, path: FieldPath) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise form_error(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    return value


def choice_field(value: Any, path: FieldPath, allowed: Sequence[int]) -> int:
    if isinstance(value, bool) or value not in allowed:
        raise form_error(path, "BASE_TYPE_CHOICES",
                         f"Value must be one of {tuple(allowed)}.")
    return int(value)


def validate_embeds(embeds: Any) -> None:
    """Embed Limits (docs), measured trimmed: <= 10 embeds; title 256, description 4096,
    <= 25 fields with name 1-256 and value 1-1024 (an empty or blank one is refused),
    footer.text 2048, author.name 256, and those six across all embeds <= 6000 in total.
    URLs <= 2048 and color 0-0xFFFFFF (spec RichEmbed*)."""
    total = 0
    for i, raw in enumerate(list_field(embeds, ["embeds"], 10)):
        here: list[str | int] = ["embeds", i]
        embed = dict_field(raw, here)
        total += len(text_field(embed.get("title"), [*here, "title"], 256, strip=True))
        total += len(text_field(embed.get("description"), [*here, "description"], 4096,
                                strip=True))
        text_field(embed.get("url"), [*here, "url"], 2048)
        int_field(embed.get("color"), [*here, "color"], 0, 0xFFFFFF)
        for j, raw_field in enumerate(list_field(embed.get("fields"), [*here, "fields"], 25)):
            at: list[str | int] = [*here, "fields", j]
            item = dict_field(raw_field, at)
            total += len(text_field(item.get("name"), [*at, "name"], 256, low=1, strip=True))
            total += len(text_field(item.get("value"), [*at, "value"], 1024, low=1, strip=True))
        for key, text_key, limit in (("footer", "text", 2048), ("author", "name", 256)):
            if embed.get(key) is None:
                continue
            part = dict_field(embed[key], [*here, key])
            total += len(text_field(part.get(text_key), [*here, key, text_key], limit,
                                    strip=True))
            for url_key in ("url", "icon_url"):
                text_field(part.get(url_key), [*here, key, url_key], 2048)
        for key in ("image", "thumbnail"):
            if embed.get(key) is not None:
                text_field(dict_field(embed[key], [*here, key]).get("url"),
                           [*here, key, "url"], 2048)
    if total > 6000:
        raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH",
                         "Embed size exceeds maximum size of 6000")


# Component types (spec MessageComponentTypes).
ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT, TEXT_DISPLAY, LABEL = 1, 2, 3, 4, 10, 18
SELECT_TYPES = (3, 5, 6, 7, 8)
V2_TOP_LEVEL = (1, 9, 10, 12, 13, 14, 17)  # what IS_COMPONENTS_V2 messages may hold at the top
BUTTON_LINK, BUTTON_PREMIUM = 5, 6
CHANNEL_TYPES = (0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15)  # spec ChannelTypes


class ComponentIds:
    """custom_id and id must each be unique within one message or modal (docs, components
    reference "Custom ID" and "Component Object")."""

    def __init__(self) -> None:
        self.custom_ids: set[str] = set()
        self.ids: set[int] = set()

    def add(self, component: Mapping[str, Any], path: FieldPath) -> None:
        cid = component.get("id")
        if cid is not None:
            int_field(cid, [*path, "id"], 0, 2**31 - 1)  # spec: int32, minimum 0
            if cid in self.ids:
                raise form_error([*path, "id"], "COMPONENT_ID_DUPLICATED",
                                 "Component id cannot be duplicated")
            self.ids.add(cid)
        custom_id = component.get("custom_id")
        if custom_id is not None:
            if custom_id in self.custom_ids:
                raise form_error([*path, "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED",
                                 "Component custom id cannot be duplicated")
            self.custom_ids.add(custom_id)


def _emoji(value: Any, path: FieldPath) -> None:
    if value is not None:  # spec ComponentEmojiForRequest: name <= 32
        text_field(dict_field(value, path).get("name"), [*path, "name"], 32)


def _button(b: Mapping[str, Any], path: FieldPath) -> None:
    """Docs, components reference "Button": label <= 80; non-link, non-premium buttons need a
    custom_id (1-100) and no url/sku_id; link buttons a url (<= 512) and no custom_id; premium
    buttons a sku_id and none of custom_id, label, url, emoji."""
    style = choice_field(b.get("style"), [*path, "style"], range(1, 7))
    text_field(b.get("label"), [*path, "label"], 80)
    _emoji(b.get("emoji"), [*path, "emoji"])
    if style == BUTTON_LINK:
        text_field(b.get("url"), [*path, "url"], 512, low=1)
        forbidden: tuple[str, ...] = ("custom_id", "sku_id")
    elif style == BUTTON_PREMIUM:
        text_field(b.get("sku_id"), [*path, "sku_id"], 20, low=1)
        forbidden = ("custom_id", "label", "url", "emoji")
    else:
        text_field(b.get("custom_id"), [*path, "custom_id"], 100, low=1)
        forbidden = ("url", "sku_id")
    for key in forbidden:
        if b.get(key) is not None:
            raise form_error([*path, key], "BUTTON_COMPONENT_INVALID_FIELD",
                             f"A button of style {style} cannot have {key}")


def validate_select(s: Mapping[str, Any], path: FieldPath) -> None:
    """Docs, components reference "String Select" etc. (and spec *SelectComponentFor*):
    custom_id 1-100, placeholder <= 150, min_values 0-25, max_values 1-25 (min <= max);
    a string select has 1-25 options with label and value 1-100, description <= 100;
    the others <= 25 default_values."""
    text_field(s.get("custom_id"), [*path, "custom_id"], 100, low=1)
    text_field(s.get("placeholder"), [*path, "placeholder"], 150)
    low = int_field(s.get("min_values"), [*path, "min_values"], 0, 25)
    high = int_field(s.get("max_values"), [*path, "max_values"], 1, 25)
    if (1 if low is None else low) > (1 if high is None else high):
        raise form_error([*path, "min_values"], "NUMBER_TYPE_MAX",
                         "min_values must be less than or equal to max_values")
    if s.get("type") == STRING_SELECT:
        options = list_field(s.get("options"), [*path, "options"], 25, low=1)
        for k, raw in enumerate(options):
            at: list[str | int] = [*path, "options", k]
            option = dict_field(raw, at)
            text_field(option.get("label"), [*at, "label"], 100, low=1)
            text_field(option.get("value"), [*at, "value"], 100, low=1)
            text_field(option.get("description"), [*at, "description"], 100)
            _emoji(option.get("emoji"), [*at, "emoji"])
    else:
        list_field(s.get("default_values"), [*path, "default_values"], 25)
    for k, kind in enumerate(list_field(s.get("channel_types"), [*path, "channel_types"], 25)):
        choice_field(kind, [*path, "channel_types", k], CHANNEL_TYPES)


def _component(c: Mapping[str, Any], path: FieldPath, ids: ComponentIds) -> int:
    """Validate one message component and what it holds; returns how many components that is."""
    ids.add(c, path)
    kind = c.get("type")
    if kind == ACTION_ROW:
        children = list_field(c.get("components"), [*path, "components"], 5, low=1)
        kinds = [dict_field(x, [*path, "components", k]).get("type")
                 for k, x in enumerate(children)]
        for k, child_kind in enumerate(kinds):
            choice_field(child_kind, [*path, "components", k, "type"], (BUTTON, *SELECT_TYPES))
        # Up to 5 buttons or a single select (docs, "Action Row").
        if any(k in SELECT_TYPES for k in kinds) and len(kinds) > 1:
            raise form_error([*path, "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                             "The specified component exceeds the maximum width")
        return 1 + sum(_component(x, [*path, "components", k], ids)
                       for k, x in enumerate(children))
    if kind == BUTTON:
        _button(c, path)
    elif kind in SELECT_TYPES:
        validate_select(c, path)
    elif kind == TEXT_DISPLAY:
        text_field(c.get("content"), [*path, "content"], 4000, low=1)
    nested = 1  # plus what a section or container (components v2) holds
    if isinstance(c.get("components"), list):
        nested += sum(_component(dict_field(x, [*path, "components", k]),
                                 [*path, "components", k], ids)
                      for k, x in enumerate(c["components"]))
    if isinstance(c.get("accessory"), dict):
        nested += _component(c["accessory"], [*path, "accessory"], ids)
    return nested


def validate_components(components: Any, *, v2: bool) -> None:
    """Legacy messages hold <= 5 action rows at the top (docs, "Legacy Message Component
    Behavior"); IS_COMPONENTS_V2 ones <= 40 components in all (docs; spec maxItems 40)."""
    top = list_field(components, ["components"], 40 if v2 else 5)
    ids = ComponentIds()
    total = 0
    for i, raw in enumerate(top):
        component = dict_field(raw, ["components", i])
        choice_field(component.get("type"), ["components", i, "type"],
                     V2_TOP_LEVEL if v2 else (ACTION_ROW,))
        total += _component(component, ["components", i], ids)
    if v2 and total > 40:
        raise form_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")


def validate_nonce(value: Any) -> int | str | None:
    """Spec MessageCreateRequest.nonce: an int64 or a string of <= 25 characters."""
    if value is None or isinstance(value, str):
        text_field(value, ["nonce"], 25)
        return value
    return int_field(value, ["nonce"], INT64_MIN, INT64_MAX)


def validate_message(
    message: MessageRecord, upload_sizes: Sequence[int], *, attachments: int, file_limit: int,
    request_limit: int,
) -> None:
    """Checks a message as it would stand after a create or edit (with `attachments` files
    kept or added), plus this request's uploads."""
    if len(message.content) > 2000:
        raise form_error(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    v2 = bool(message.flags & FLAG_COMPONENTS_V2)
    if v2 and (message.content or message.embeds):
        # Docs, Create Message: with IS_COMPONENTS_V2 only components may be sent.
        raise form_error(["content" if message.content else "embeds"],
                         "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                         "The 'content' and 'embeds' fields cannot be used with IS_COMPONENTS_V2")
    validate_embeds(message.embeds)
    validate_components(message.components, v2=v2)
    validate_allowed_mentions(message.allowed_mentions)
    if attachments > 10:
        raise ApiError(400, 30015, "Maximum number of attachments in a message reached (10)")
    if any(size > file_limit for size in upload_sizes) or sum(upload_sizes) > max(
        file_limit, request_limit
    ):
        raise ApiError(413, 40005, "Request entity too large")
    if not (message.has_body or attachments or message.loading):
        raise ApiError(400, 50006, "Cannot send an empty message")


__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "ApiError",
    "AttachmentLinks",
    "AttachmentRecord",
    "Channel",
    "GatewayFrame",
    "Guild",
    "InteractionRecord",
    "Member",
    "MessageRecord",
    "Perm",
    "RequestRecord",
    "Role",
    "Thread",
    "User",
    "mentions_pinged",
]
