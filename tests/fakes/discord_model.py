"""The Discord emulator's world (guilds, channels, members, roles, threads) and its records.

Payload shapes follow what discord.py 2.7 reads (see its state.py, guild.py, member.py,
threads.py, message.py). The server lives in tests/fakes/discord.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

DISCORD_EPOCH_MS = 1_420_070_400_000
MiB = 1024 * 1024
DEFAULT_FILESIZE_LIMIT = 10 * MiB
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
SENDABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_EPHEMERAL | FLAG_SUPPRESS_NOTIFICATIONS
EDITABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2


class Perm:
    """Permission bits (Discord's values)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
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
            "archived": False, "auto_archive_duration": self.auto_archive_duration,
            "archive_timestamp": self.created_at, "locked": False,
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
        self, host: WorldHost, name: str, *, filesize_limit: int, locale: str, bot_permissions: int
    ) -> None:
        self.host = host
        self.id = host.next_id()
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
        bot_can_send: bool = True, bot_can_attach: bool = True,
    ) -> Channel:
        deny = 0 if bot_can_send else Perm.SEND_MESSAGES
        if not bot_can_create_threads:
            deny |= Perm.CREATE_PUBLIC_THREADS | Perm.CREATE_PRIVATE_THREADS
        if not bot_can_attach:
            deny |= Perm.ATTACH_FILES
        channel = Channel(self.host.next_id(), self, name, len(self.channels), nsfw, deny)
        self.channels[channel.id] = channel
        self.host.register_channel(channel)
        self.host.dispatch("CHANNEL_CREATE", channel.payload(), intent=INTENT_GUILDS)
        return channel

    def add_role(self, name: str, *, permissions: int = 0, mentionable: bool = False) -> Role:
        role = Role(self.host.next_id(), self.id, name, permissions, len(self.roles), mentionable)
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
            "threads": [t.payload() for t in self.threads.values()],
            "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }


# -- records -----------------------------------------------------------------------------


@dataclass(eq=False)
class AttachmentRecord:
    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    proxy_url: str
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id), "filename": self.filename, "size": self.size,
            "url": self.url, "proxy_url": self.proxy_url,
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
    type: int  # 2 application command, 3 component, 5 modal submit
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


@dataclass(frozen=True)
class GatewayFrame:
    direction: str  # "in" (from the bot) or "out"
    op: int
    t: str | None
    s: int | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class RateLimitRule:
    method: str
    pattern: re.Pattern[str]
    retry_after: float
    remaining: int
    is_global: bool

    def matches(self, method: str, path: str) -> bool:
        """True (and one use consumed) if this rule answers the request with a 429."""
        if self.remaining > 0 and method == self.method and self.pattern.search(path):
            self.remaining -= 1
            return True
        return False

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


def validate_allowed_mentions(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise form_error(["allowed_mentions"], "MODEL_TYPE_CONVERT",
                         "Only dictionaries may be used")
    parse = value.get("parse") or []
    for kind in parse:
        if kind not in ("everyone", "users", "roles"):
            raise form_error(["allowed_mentions", "parse"], "ENUM_TYPE_COERCE",
                             f"Value {kind!r} is not a valid enum value.")
    for kind in ("users", "roles"):
        ids = value.get(kind)
        if ids is not None and kind in parse:
            raise form_error(["allowed_mentions"], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                             f"parse:[\"{kind}\"] and {kind}: [ids...] are mutually exclusive.")
        if ids is not None and len(ids) > 100:
            raise form_error(["allowed_mentions", kind], "BASE_TYPE_MAX_LENGTH",
                             "Must be 100 or fewer in length.")


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

_EMBED_LIMITS = (("title", 256), ("description", 4096))


def validate_embeds(embeds: Any) -> None:
    if not isinstance(embeds, list):
        raise form_error(["embeds"], "BASE_TYPE_LIST", "Must be an array.")
    if len(embeds) > 10:
        raise form_error(["embeds"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in _EMBED_LIMITS:
            text = str(embed.get(key) or "")
            total += len(text)
            if len(text) > limit:
                raise form_error(["embeds", i, key], "BASE_TYPE_MAX_LENGTH",
                                 f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            raise form_error(["embeds", i, "fields"], "BASE_TYPE_MAX_LENGTH",
                             "Must be 25 or fewer in length.")
        for f in fields:
            total += len(str(f.get("name", ""))) + len(str(f.get("value", "")))
        total += len(str((embed.get("footer") or {}).get("text", "")))
        total += len(str((embed.get("author") or {}).get("name", "")))
    if total > 6000:
        raise form_error(["embeds"], "MESSAGE_EMBEDS_TOO_LONG",
                         "Embed size exceeds maximum size of 6000")


def validate_message(
    message: MessageRecord, upload_sizes: Sequence[int], *, attachments: int, file_limit: int,
    request_limit: int,
) -> None:
    """Checks a message as it would stand after a create or edit (with `attachments` files
    kept or added), plus this request's uploads."""
    if len(message.content) > 2000:
        raise form_error(["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    validate_embeds(message.embeds)
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
