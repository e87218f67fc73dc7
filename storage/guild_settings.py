"""Per-server settings: where /ref2video may be used, by whom, what it may ask and cost.

`GuildSettingsStore.get` returns a frozen `GuildSettings`; a server that never changed
anything gets the defaults (everything off or unlimited). Each setter is one write
transaction that also records who changed the settings and when, and touches only the
server it is given. The checks that use these settings are in `admission.server_rules` and
`admission.blocklist`.

Setters take `KEEP` (the default) for "leave this as it is" and `None` for "clear it",
so a slash command can pass only the options the moderator filled in.
"""

from __future__ import annotations

import asyncio
import functools
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal, Protocol, cast, get_args

import aiosqlite
import re2  # google-re2: matching in time linear in the text, whatever the pattern

from storage.database import Database

NsfwPolicy = Literal["withhold", "spoiler"]
Period = Literal["day", "week"]
PatternKind = Literal["word", "regex"]

NSFW_POLICIES: Final[tuple[str, ...]] = get_args(NsfwPolicy)
PERIODS: Final[tuple[str, ...]] = get_args(Period)
PATTERN_KINDS: Final[tuple[str, ...]] = get_args(PatternKind)

MAX_PATTERN_CHARS: Final = 200
MAX_PATTERNS: Final = 200          # per server: every prompt is checked against all of them
# RE2 bounds a search by the text's length times the program's size, so bounding the
# programs bounds the time a prompt takes to check (see `compile_entry`).
ENTRY_MAX_MEM: Final = 256 * 1024  # bytes for one entry's RE2 program: ~16,000 instructions
MAX_REGEX_PROGRAM: Final = 20_000  # RE2 instructions, a server's regex entries together
MAX_CHANNELS: Final = 100          # per server
MAX_PAUSE_MESSAGE_CHARS: Final = 500


class Keep(Enum):
    """Type of `KEEP`: a setter argument left as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class GuildSettingsError(ValueError):
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
                raise GuildSettingsError(
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

        The entry is checked by `compile_entry`, the one validator of blocklist entries
        (`admission.blocklist` only compiles what it accepted), and the server's regex entries
        must stay within MAX_REGEX_PROGRAM together. Entries are stored as `normalize_pattern`
        makes them."""
        # RE2 compiles off the event loop, and outside the transaction: the database has one
        # connection, so a transaction holds up every server's reads and writes.
        entry = await asyncio.to_thread(compile_entry, pattern, kind)
        if entry.kind == "regex":
            listed: list[tuple[str, str]] = [(e.pattern, e.kind)
                                             for e in await self.patterns(guild_id)]
            await asyncio.to_thread(_check_regex_budget, entry, listed)
        now = self._clock()
        async with self.db.transaction() as conn:
            await self._touch(conn, guild_id, actor)
            async with conn.execute(
                "SELECT pattern, kind FROM guild_blocklist WHERE guild_id = ?", (guild_id,)
            ) as cur:
                stored = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
            if entry.kind == "regex":  # again, atomically; compiled above, so from the cache
                _check_regex_budget(entry, stored)
            cur = await conn.execute(
                "INSERT INTO guild_blocklist (guild_id, pattern, kind, added_by, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (guild_id, entry.pattern, entry.kind, actor, now),
            )
            added = cur.rowcount == 1
            if added and len(stored) >= MAX_PATTERNS:
                raise GuildSettingsError(
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
                raise GuildSettingsError(
                    f"The NSFW policy must be withhold or spoiler, not {policy!r}.")
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
                raise GuildSettingsError(
                    f"The allowance period must be day or week, not {period!r}.")
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
            raise GuildSettingsError(
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
    to one space (it matches case-insensitively and across any whitespace anyway), and
    loses invisible format characters (zero-width spaces and joiners), which prompts lose
    before they are matched: an entry keeping them could never match anything."""
    text = pattern.strip()
    if kind == "word":
        text = "".join(ch for ch in unicodedata.normalize("NFKC", text)
                       if unicodedata.category(ch) != "Cf")
        text = " ".join(text.casefold().split())
    return text


def _check_id(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GuildSettingsError(f"Not a valid {what} id: {value!r}.")


def _optional_id(what: str, value: int | None) -> int | None:
    if value is not None:
        _check_id(what, value)
    return value


def _optional_limit(name: str, value: int | None) -> int | None:
    """A whole number >= 0 where 0 and None both mean off (returned as None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GuildSettingsError(f"{name} must be a whole number, not {value!r}.")
    if value < 0:
        raise GuildSettingsError(f"{name} cannot be negative (use 0 to turn it off).")
    return value or None


# -- blocklist entries as RE2 programs ------------------------------------------------------
#
# Python's `re` backtracks, so one entry such as `(.+)\1b` could take seconds per prompt.
# RE2 does not backtrack: a search takes at most time proportional to the text's length
# times the program's size, whatever the pattern, and RE2 refuses what would need
# backtracking (backreferences, lookaround). Bounding the program (ENTRY_MAX_MEM,
# MAX_REGEX_PROGRAM) therefore bounds the time, which replaces the old estimate of
# backtracking cost built on CPython's private `re._parser` (which backreferences fooled).

class Re2Match(Protocol):
    def start(self, group: int = 0) -> int: ...
    def end(self, group: int = 0) -> int: ...


class Re2Regex(Protocol):
    """What the blocklist uses of a compiled `re2` pattern (the module has no type hints)."""

    @property
    def groups(self) -> int: ...
    @property
    def programsize(self) -> int: ...
    def search(self, text: str) -> Re2Match | None: ...
    def finditer(self, text: str) -> Iterator[Re2Match]: ...


@dataclass(frozen=True)
class CheckedEntry:
    """A blocklist entry that passed `compile_entry`. Only what its RE2 program told is
    kept, not the program: a word entry's boundaries alone take ~35 KB of RE2 memory, and
    `admission.blocklist` compiles a server's entries together anyway."""

    pattern: str          # as stored (normalised)
    kind: PatternKind
    source: str           # the RE2 expression for this entry alone
    size: int             # RE2 instructions of `source`; a search's worst case grows with them
    groups: int           # capturing groups in `source`


# Not Python's Unicode \w, and Python's \s, spelled for RE2 (whose \w, \s and \b are
# ASCII-only); case-sensitive, as case folding would add U+0345 and the like to them. A word
# entry's boundaries consume the character next to it, where Python's used lookbehind and
# lookahead; that changes nothing about whether a prompt contains the entry.
NOT_WORD_CHAR: Final = r"(?-i:[^\pL\pN_])"
WORD_START: Final = rf"(?:^|{NOT_WORD_CHAR})"
WORD_END: Final = rf"(?:{NOT_WORD_CHAR}|$)"
WORD_SPACE: Final = r"(?-i:[\t-\r\x{1c}-\x{1f}\x{85}\pZ])+"

# Texts a regex entry is tried on when it is added: a match of length zero on any of them
# means the entry can match "nothing", i.e. would block every prompt or none predictably.
_EMPTY_PROBES = ("", " ", "a", "A", "a b", "0", "_", "-", ".", "\n", "é", "ab12 cd")

_NOT_SUPPORTED = ("Blocklist regexes use RE2 syntax, which checks a prompt in time "
                  "proportional to its length and so has no backreferences or lookaround.")


def re2_compile(source: str, max_mem: int = ENTRY_MAX_MEM) -> Re2Regex:
    """Case-insensitive; a program over `max_mem` bytes is refused rather than built; and
    quiet (RE2 would otherwise print every pattern it refuses to stderr)."""
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = max_mem
    options.log_errors = False
    return cast(Re2Regex, re2.compile(source, options))


def word_body(text: str) -> str:
    """A normalised word entry for RE2, without its boundaries: the words taken literally
    with any whitespace between them."""
    return WORD_SPACE.join(re2.escape(word) for word in text.split())


@functools.lru_cache(maxsize=4096)  # pure, and every /ref2video compiles the whole blocklist
def compile_entry(pattern: str, kind: str) -> CheckedEntry:
    """Check and compile a blocklist entry: the one validator of entries, for the store
    and `admission.blocklist` alike. Raises GuildSettingsError saying what is wrong, for the
    moderator.

    A `word` entry matches case-insensitively as a whole word or phrase: not inside a
    longer word ("cat" blocks "a Cat here", not "concatenate"), with any whitespace
    between the words of a phrase. (The boundaries are "no letter, digit or _ on either
    side" rather than `\\b`, so entries such as "c++" work too.) A `regex` entry is an RE2
    regular expression matched case-insensitively anywhere in the text."""
    if kind not in PATTERN_KINDS:
        raise GuildSettingsError(f"The kind must be word or regex, not {kind!r}.")
    text = normalize_pattern(pattern, kind)
    if not text:
        raise GuildSettingsError(
            "The pattern is empty. Give a word, a phrase or a regular expression.")
    if len(text) > MAX_PATTERN_CHARS:
        raise GuildSettingsError(
            f"The pattern is {len(text)} characters; the limit is {MAX_PATTERN_CHARS}. "
            "Split it into shorter entries."
        )
    if kind == "word":
        source = WORD_START + word_body(text) + WORD_END
    else:
        source = _without_possessive(text)
    try:
        regex = re2_compile(source)
    except re2.error as err:
        raise GuildSettingsError(_refusal(text, _error_text(err))) from None
    if kind == "regex" and any(m.start() == m.end() for probe in _EMPTY_PROBES
                               for m in regex.finditer(probe)):
        raise GuildSettingsError(
            f"`{_code(text)}` can match empty text, so it would block prompts that "
            "contain none of what you mean. Make every part of it match at least one "
            "character (e.g. `+` instead of `*`, and no empty alternative)."
        )
    return CheckedEntry(text, cast(PatternKind, kind), source, regex.programsize,
                        regex.groups)


def _check_regex_budget(entry: CheckedEntry, stored: Iterable[tuple[str, str]]) -> None:
    """Refuse `entry` if the server's regex entries would exceed MAX_REGEX_PROGRAM
    together: every prompt is checked against all of them."""
    total = entry.size
    for pattern, kind in stored:
        if kind == "regex" and pattern != entry.pattern:
            try:
                total += compile_entry(pattern, kind).size
            except GuildSettingsError:
                continue  # stored by an older version: skipped when prompts are checked
    if total > MAX_REGEX_PROGRAM:
        raise GuildSettingsError(
            f"With `{_code(entry.pattern)}`, this server's regex entries would be too large "
            f"together ({total:,} RE2 instructions; the limit is {MAX_REGEX_PROGRAM:,}), and "
            "every prompt is checked against all of them. Simplify or remove some regex "
            "entries (smaller counts such as `{0,10}`, fewer Unicode classes such as `\\pL`), "
            "or add plain words and phrases as word entries, which do not count."
        )


def _error_text(err: Exception) -> str:
    raw = err.args[0] if err.args else ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


# RE2's syntax errors (the part before ": "), in the words Python's `re` uses.
_SYNTAX = {
    "missing )": "missing ), unterminated subpattern",
    "unexpected )": "unbalanced parenthesis",
    "missing ]": "unterminated character set",
    "trailing \\": "bad escape (end of pattern)",
    "no argument for repetition operator": "nothing to repeat",
    "bad repetition operator": "multiple repeat",
    "invalid perl operator": "unsupported group or flag",
}


def _refusal(text: str, error: str) -> str:
    """Why RE2 refused `text`, and what to do instead."""
    what, _, where = error.partition(": ")
    shown = f"`{_code(text)}`"
    if what == "invalid perl operator" and where.startswith(("(?=", "(?!", "(?<")):
        return (f"{shown} uses lookahead or lookbehind (`(?=`, `(?!`, `(?<=`, `(?<!`), which "
                f"is not supported. {_NOT_SUPPORTED} Match the text itself instead "
                "(e.g. `cat` rather than `(?=cat)`), or add each case as its own entry.")
    if ((what == "invalid escape sequence" and (where[1:2].isdigit() or where[1:2] == "k"))
            or (where == "(?P" and "(?P=" in text)):
        return (f"{shown} uses a backreference (such as `\\1` or `(?P=name)`), which is not "
                "supported. "
                f"{_NOT_SUPPORTED} Spell out the repeated part instead (e.g. `(ab)ab` rather "
                "than `(ab)\\1`), or add each case as its own entry.")
    if what == "invalid repetition size":
        return (f"{shown} repeats too much (`{_code(where)}`): a count may be at most 1000, "
                "and nested counts multiply (`(a{100}){100}` is 10000). Use smaller counts.")
    if what.startswith("pattern too large"):
        return (f"{shown} is too large once compiled: counts such as `{{100}}` copy what they "
                "repeat, and Unicode classes such as `\\pL` are large. Use smaller counts, or "
                "split it into several entries.")
    return (f"{shown} is not a valid regular expression: {_SYNTAX.get(what, what)} at "
            f"`{_code(where)}`{_HINTS.get(where[:2], '')}. Blocklist regexes use RE2 syntax. "
            "To block it as plain text, add it as a word entry instead.")


# Python escapes RE2 spells differently.
_HINTS = {"\\Z": " (write `\\z` for the end of the text)",
          "\\u": " (write a character by its code as `\\x{e9}`)",
          "\\U": " (write a character by its code as `\\x{1F600}`)",
          "\\N": " (type the character itself, or write its code as `\\x{e9}`)"}


def _without_possessive(source: str) -> str:
    """`a++` as `a+`, `(?>x)` as `(?:x)`. The old version advised possessive repetitions
    against backtracking; RE2 never backtracks and does not parse them. The plain form
    blocks at least what the possessive one did (that one only ever matched less), and
    nothing else changes: RE2 refuses a `+` after a repetition anyway."""
    out: list[str] = []
    i = 0
    while i < len(source):
        if source.startswith("\\Q", i):  # literal text up to \E: copied as is
            end = source.find("\\E", i + 2)
            j = len(source) if end < 0 else end + 2
        elif source[i] == "\\":
            j = i + 2
        elif source[i] == "[":
            j = _class_end(source, i)
        elif source.startswith("(?>", i):
            out.append("(?:")
            i += 3
            continue
        elif repeat := _REPEAT.match(source, i):
            j = repeat.end()
            if source.startswith("+", j):
                out.append(repeat.group())
                i = j + 1
                continue
        else:
            j = i + 1
        out.append(source[i:j])
        i = j
    return "".join(out)


_REPEAT = re2.compile(r"(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})\??")


def _class_end(source: str, start: int) -> int:
    """Where the character class opening at `start` ends (past its `]`)."""
    i = start + 1
    if source.startswith("^", i):
        i += 1
    if source.startswith("]", i):  # a leading ] is literal
        i += 1
    while i < len(source) and source[i] != "]":
        if source[i] == "\\":
            i += 2
        elif source.startswith("[:", i) and (close := source.find(":]", i + 2)) >= 0:
            i = close + 2
        else:
            i += 1
    return min(i + 1, len(source))


def _code(text: str) -> str:
    """Text fit to show inside `code`."""
    return text.replace("`", "'")
