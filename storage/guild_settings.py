"""Per-server settings: where /ref2video may be used, by whom, what it may ask and cost.

`GuildSettingsStore.get` returns a frozen `GuildSettings`; a server that never changed
anything gets the defaults (everything off or unlimited). Each setter is one write
transaction that also records who changed the settings and when, and touches only the
server it is given. The checks that use these settings are in `engine.policy`.

Setters take `KEEP` (the default) for "leave this as it is" and `None` for "clear it",
so a slash command can pass only the options the moderator filled in.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal, get_args

import aiosqlite

from storage.database import Database

NsfwPolicy = Literal["withhold", "spoiler"]
Period = Literal["day", "week"]
PatternKind = Literal["word", "regex"]

NSFW_POLICIES: Final[tuple[str, ...]] = get_args(NsfwPolicy)
PERIODS: Final[tuple[str, ...]] = get_args(Period)
PATTERN_KINDS: Final[tuple[str, ...]] = get_args(PatternKind)

MAX_PATTERN_CHARS: Final = 200
MAX_PATTERNS: Final = 200          # per server: every prompt is checked against all of them
MAX_CHANNELS: Final = 100          # per server
MAX_PAUSE_MESSAGE_CHARS: Final = 500


class Keep(Enum):
    """Type of `KEEP`: a setter argument left as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class SettingsError(ValueError):
    """A setting that cannot be stored; the message is meant for the moderator."""


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    channel_ids: frozenset[int] = frozenset()    # empty: every channel
    required_role_id: int | None = None
    blocked_role_id: int | None = None
    daily_jobs: int | None = None                 # per user per UTC day; None: no limit
    cooldown_seconds: int = 0                     # per user; 0: none
    concurrent_jobs: int | None = None            # per user; None: the bot-wide limit only
    daily_spend_cap_cents: int | None = None      # per server per UTC day; None: no cap
    nsfw_policy: NsfwPolicy = "spoiler"  # as spoiler where age-restricted; else withheld
    nsfw_charge: bool | None = None               # None: the bot-wide NSFW_CHARGE
    allowance_amount: int = 0                     # credits per period; 0: no allowance
    allowance_period: Period = "day"
    allowance_role_id: int | None = None          # None: everyone gets the allowance
    allowance_cap: int | None = None              # None: no cap
    audit_channel_id: int | None = None
    confirm_cost: bool = False
    paused: bool = False
    pause_message: str | None = None
    updated_at: float | None = None               # None: never changed
    updated_by: int | None = None

    @property
    def has_limits(self) -> bool:
        return (self.daily_jobs is not None or self.cooldown_seconds > 0
                or self.concurrent_jobs is not None or self.daily_spend_cap_cents is not None)


@dataclass(frozen=True)
class BlocklistEntry:
    pattern: str
    kind: PatternKind
    added_by: int | None
    added_at: float


class GuildSettingsStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    # -- reading ---------------------------------------------------------------------------

    async def get(self, guild_id: int) -> GuildSettings:
        async with self.db.reading() as conn:
            async with conn.execute(
                "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)
            ) as cur:
                row = await cur.fetchone()
            async with conn.execute(
                "SELECT channel_id FROM guild_channels WHERE guild_id = ?", (guild_id,)
            ) as cur:
                channels = frozenset(int(r[0]) for r in await cur.fetchall())
        if row is None:
            return GuildSettings(guild_id=guild_id, channel_ids=channels)
        return GuildSettings(
            guild_id=guild_id,
            channel_ids=channels,
            required_role_id=row["required_role_id"],
            blocked_role_id=row["blocked_role_id"],
            daily_jobs=row["daily_jobs"],
            cooldown_seconds=row["cooldown_seconds"],
            concurrent_jobs=row["concurrent_jobs"],
            daily_spend_cap_cents=row["daily_spend_cap_cents"],
            nsfw_policy=row["nsfw_policy"],
            nsfw_charge=None if row["nsfw_charge"] is None else bool(row["nsfw_charge"]),
            allowance_amount=row["allowance_amount"],
            allowance_period=row["allowance_period"],
            allowance_role_id=row["allowance_role_id"],
            allowance_cap=row["allowance_cap"],
            audit_channel_id=row["audit_channel_id"],
            confirm_cost=bool(row["confirm_cost"]),
            paused=bool(row["paused"]),
            pause_message=row["pause_message"],
            updated_at=row["updated_at"],
            updated_by=row["updated_by"],
        )

    async def audit_channels(self) -> dict[int, int]:
        """Every server's audit channel: guild id -> channel id."""
        async with self.db.reading() as conn, conn.execute(
            "SELECT guild_id, audit_channel_id FROM guild_settings"
            " WHERE audit_channel_id IS NOT NULL"
        ) as cur:
            return {int(g): int(c) for g, c in await cur.fetchall()}

    async def patterns(self, guild_id: int) -> list[BlocklistEntry]:
        """The server's blocklist, oldest first."""
        async with self.db.reading() as conn, conn.execute(
            "SELECT pattern, kind, added_by, added_at FROM guild_blocklist"
            " WHERE guild_id = ? ORDER BY id", (guild_id,),
        ) as cur:
            rows = await cur.fetchall()
        return [BlocklistEntry(r["pattern"], r["kind"], r["added_by"], r["added_at"])
                for r in rows]

    # -- channels --------------------------------------------------------------------------

    async def add_channel(self, guild_id: int, channel_id: int, *, actor: int | None) -> bool:
        """Allow /ref2video in a channel; False if it was already allowed."""
        _check_id("channel", channel_id)
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            async with conn.execute(
                "SELECT COUNT(*) FROM guild_channels WHERE guild_id = ?", (guild_id,)
            ) as cur:
                row = await cur.fetchone()
            count = int(row[0]) if row else 0
            cur = await conn.execute(
                "INSERT INTO guild_channels (guild_id, channel_id) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING", (guild_id, channel_id),
            )
            added = cur.rowcount == 1
            if added and count >= MAX_CHANNELS:
                raise SettingsError(
                    f"This server already allows {MAX_CHANNELS} channels, the most it can "
                    "have; remove one first."
                )
            return added

    async def remove_channel(self, guild_id: int, channel_id: int, *, actor: int | None) -> bool:
        """False if the channel was not on the list."""
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            cur = await conn.execute(
                "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?",
                (guild_id, channel_id),
            )
            return cur.rowcount == 1

    async def clear_channels(self, guild_id: int, *, actor: int | None) -> int:
        """Allow every channel again; returns how many were on the list."""
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            cur = await conn.execute("DELETE FROM guild_channels WHERE guild_id = ?", (guild_id,))
            return max(cur.rowcount, 0)

    # -- roles -----------------------------------------------------------------------------

    async def set_roles(
        self, guild_id: int, *, actor: int | None,
        required: int | Keep | None = KEEP, blocked: int | Keep | None = KEEP,
    ) -> GuildSettings:
        changes: dict[str, Any] = {}
        if not isinstance(required, Keep):
            changes["required_role_id"] = _optional_id("role", required)
        if not isinstance(blocked, Keep):
            changes["blocked_role_id"] = _optional_id("role", blocked)
        return await self._update(guild_id, actor, changes)

    # -- blocklist -------------------------------------------------------------------------

    async def add_pattern(
        self, guild_id: int, pattern: str, kind: PatternKind, *, actor: int | None
    ) -> bool:
        """Add a blocklist entry; False if the server already has it.

        Check it with `engine.policy.compile_pattern` first, which explains what is wrong
        with a bad entry; this store refuses only what it can judge alone (the kind, the
        length, a regular expression that does not compile). Entries are stored as
        `normalize_pattern` makes them."""
        if kind not in PATTERN_KINDS:
            raise SettingsError(f"The kind must be word or regex, not {kind!r}.")
        pattern = normalize_pattern(pattern, kind)
        if not pattern:
            raise SettingsError("The pattern is empty.")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise SettingsError(
                f"The pattern is {len(pattern)} characters; the limit is {MAX_PATTERN_CHARS}."
            )
        if kind == "regex":
            try:
                re.compile(pattern)
            except re.error as err:
                raise SettingsError(f"Not a valid regular expression: {err}") from None
        now = self._clock()
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            async with conn.execute(
                "SELECT COUNT(*) FROM guild_blocklist WHERE guild_id = ?", (guild_id,)
            ) as cur:
                row = await cur.fetchone()
            count = int(row[0]) if row else 0
            cur = await conn.execute(
                "INSERT INTO guild_blocklist (guild_id, pattern, kind, added_by, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (guild_id, pattern, kind, actor, now),
            )
            added = cur.rowcount == 1
            if added and count >= MAX_PATTERNS:
                raise SettingsError(
                    f"This server's blocklist already has {MAX_PATTERNS} entries, the most it "
                    "can have; remove one first."
                )
            return added

    async def remove_pattern(self, guild_id: int, pattern: str, *, actor: int | None) -> bool:
        """Remove the entry spelled exactly so (after trimming), or else the word entry it
        normalises to; False if the server had neither."""
        exact = normalize_pattern(pattern, "regex")
        word = normalize_pattern(pattern, "word")
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            cur = await conn.execute(
                "DELETE FROM guild_blocklist WHERE guild_id = ? AND pattern = ?",
                (guild_id, exact),
            )
            if cur.rowcount == 0 and word != exact:
                cur = await conn.execute(
                    "DELETE FROM guild_blocklist WHERE guild_id = ? AND pattern = ?"
                    " AND kind = 'word'", (guild_id, word),
                )
            return cur.rowcount == 1

    # -- limits and switches ---------------------------------------------------------------

    async def set_limits(
        self, guild_id: int, *, actor: int | None,
        daily_jobs: int | Keep | None = KEEP,
        cooldown_seconds: int | Keep | None = KEEP,
        concurrent_jobs: int | Keep | None = KEEP,
        daily_spend_cap_cents: int | Keep | None = KEEP,
    ) -> GuildSettings:
        """Only the given limits change. None or 0 turns a limit off."""
        changes: dict[str, Any] = {}
        if not isinstance(daily_jobs, Keep):
            changes["daily_jobs"] = _optional_limit("daily_jobs", daily_jobs)
        if not isinstance(cooldown_seconds, Keep):
            changes["cooldown_seconds"] = _optional_limit("cooldown_seconds",
                                                          cooldown_seconds) or 0
        if not isinstance(concurrent_jobs, Keep):
            changes["concurrent_jobs"] = _optional_limit("concurrent_jobs", concurrent_jobs)
        if not isinstance(daily_spend_cap_cents, Keep):
            changes["daily_spend_cap_cents"] = _optional_limit("daily_spend_cap",
                                                               daily_spend_cap_cents)
        return await self._update(guild_id, actor, changes)

    async def set_nsfw(
        self, guild_id: int, *, actor: int | None,
        policy: NsfwPolicy | Keep = KEEP, charge: bool | Keep | None = KEEP,
    ) -> GuildSettings:
        """`charge=None` goes back to the bot-wide NSFW_CHARGE."""
        changes: dict[str, Any] = {}
        if not isinstance(policy, Keep):
            if policy not in NSFW_POLICIES:
                raise SettingsError(f"The NSFW policy must be withhold or spoiler, not {policy!r}.")
            changes["nsfw_policy"] = policy
        if not isinstance(charge, Keep):
            changes["nsfw_charge"] = None if charge is None else int(bool(charge))
        return await self._update(guild_id, actor, changes)

    async def set_allowance(
        self, guild_id: int, *, actor: int | None,
        amount: int | Keep | None = KEEP, period: Period | Keep = KEEP,
        role: int | Keep | None = KEEP, cap: int | Keep | None = KEEP,
    ) -> GuildSettings:
        """`amount` None or 0 turns the allowance off; `role` None gives it to everyone;
        `cap` None or 0 removes the cap."""
        changes: dict[str, Any] = {}
        if not isinstance(amount, Keep):
            changes["allowance_amount"] = _optional_limit("allowance amount", amount) or 0
        if not isinstance(period, Keep):
            if period not in PERIODS:
                raise SettingsError(f"The allowance period must be day or week, not {period!r}.")
            changes["allowance_period"] = period
        if not isinstance(role, Keep):
            changes["allowance_role_id"] = _optional_id("role", role)
        if not isinstance(cap, Keep):
            changes["allowance_cap"] = _optional_limit("allowance cap", cap)
        return await self._update(guild_id, actor, changes)

    async def set_audit_channel(
        self, guild_id: int, channel_id: int | None, *, actor: int | None
    ) -> GuildSettings:
        return await self._update(guild_id, actor,
                                  {"audit_channel_id": _optional_id("channel", channel_id)})

    async def set_confirm_cost(
        self, guild_id: int, enabled: bool, *, actor: int | None
    ) -> GuildSettings:
        return await self._update(guild_id, actor, {"confirm_cost": int(bool(enabled))})

    async def set_paused(
        self, guild_id: int, paused: bool, message: str | None = None, *, actor: int | None
    ) -> GuildSettings:
        """Pause (with an optional message users see) or resume; resuming clears the message."""
        text = (message or "").strip() if paused else ""
        if len(text) > MAX_PAUSE_MESSAGE_CHARS:
            raise SettingsError(
                f"The pause message is {len(text)} characters; the limit is "
                f"{MAX_PAUSE_MESSAGE_CHARS}."
            )
        return await self._update(guild_id, actor,
                                  {"paused": int(bool(paused)), "pause_message": text or None})

    # -- internals -------------------------------------------------------------------------

    async def _update(
        self, guild_id: int, actor: int | None, changes: Mapping[str, Any]
    ) -> GuildSettings:
        unknown = set(changes) - _COLUMNS
        if unknown:
            raise ValueError(f"not a settings column: {sorted(unknown)}")
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            if changes:
                assignments = ", ".join(f"{name} = ?" for name in changes)
                await conn.execute(
                    f"UPDATE guild_settings SET {assignments} WHERE guild_id = ?",  # noqa: S608
                    (*changes.values(), guild_id),
                )
        return await self.get(guild_id)

    async def _touch(self, conn: aiosqlite.Connection, guild_id: int, actor: int | None) -> None:
        """Create the server's row if needed and record who changed it and when."""
        _check_id("server", guild_id)
        await conn.execute(
            "INSERT INTO guild_settings (guild_id, updated_at, updated_by) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id) DO UPDATE SET updated_at = excluded.updated_at,"
            " updated_by = excluded.updated_by",
            (guild_id, self._clock(), actor),
        )


# Columns `_update` may set: the names go into SQL, so they come from this fixed set only.
_COLUMNS = frozenset({
    "required_role_id", "blocked_role_id", "daily_jobs", "cooldown_seconds",
    "concurrent_jobs", "daily_spend_cap_cents", "nsfw_policy", "nsfw_charge",
    "allowance_amount", "allowance_period", "allowance_role_id", "allowance_cap",
    "audit_channel_id", "confirm_cost", "paused", "pause_message",
})


def normalize_pattern(pattern: str, kind: str) -> str:
    """How a blocklist entry is stored and compared. A regular expression is only trimmed;
    a word entry is also NFKC-normalised, case-folded and has its inner whitespace collapsed
    to one space (it matches case-insensitively and across any whitespace anyway)."""
    text = pattern.strip()
    if kind == "word":
        text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text


def _check_id(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SettingsError(f"Not a valid {what} id: {value!r}.")


def _optional_id(what: str, value: int | None) -> int | None:
    if value is not None:
        _check_id(what, value)
    return value


def _optional_limit(name: str, value: int | None) -> int | None:
    """A whole number >= 0 where 0 and None both mean off (returned as None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(f"{name} must be a whole number, not {value!r}.")
    if value < 0:
        raise SettingsError(f"{name} cannot be negative (use 0 to turn it off).")
    return value or None
