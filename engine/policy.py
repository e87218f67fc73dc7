"""Whether a server's settings let this /ref2video go ahead, checked before anything is
charged.

Pure functions over plain values and `GuildSettings`: the Discord layer reads the settings
(`storage.guild_settings`) and the usage (`storage.usage`), calls these, and shows a
`Refusal.message` to the user as is. Each message says why and what would work. Times are
Discord timestamps (`<t:unix:R>`), channels `<#id>` and roles `<@&id>`, so the message
must be sent with mentions disabled. Days start at 00:00 UTC, weeks on Monday 00:00 UTC.

A sensible order for the checks: `check_pause`, `check_channel`, `check_roles`,
`check_prompt`, `check_limits`; the first refusal wins.
"""

from __future__ import annotations

import functools
import logging
import math
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final, Literal

import re2

from storage.guild_settings import (
    PERIODS,
    WORD_END,
    WORD_START,
    BlocklistEntry,
    CheckedEntry,
    GuildSettings,
    Period,
    Re2Regex,
    SettingsError,
    compile_entry,
    re2_compile,
    word_body,
)

log = logging.getLogger(__name__)

COMMAND = "/ref2video"
MAX_LISTED_CHANNELS: Final = 20


class PolicyError(ValueError):
    """A setting a moderator tried that cannot work; the message says why, for them."""


class Reason(StrEnum):
    PAUSED = "paused"
    CHANNEL = "channel_not_allowed"
    ROLE_REQUIRED = "role_required"
    ROLE_BLOCKED = "role_blocked"
    BLOCKED_PROMPT = "blocked_prompt"
    DAILY_JOBS = "daily_jobs"
    SPEND_CAP = "spend_cap"
    COOLDOWN = "cooldown"
    CONCURRENT_JOBS = "concurrent_jobs"


@dataclass(frozen=True)
class Refusal:
    """Why a job may not start. `message` is for the user; `detail` is for moderators and
    logs only (e.g. which blocklist entry matched), never shown to the user."""

    reason_code: str
    message: str
    detail: str | None = field(default=None)


# -- time windows ---------------------------------------------------------------------------

def period_window(now: float, period: Period) -> tuple[int, int]:
    """(start, next start) in unix seconds of the UTC day, or the week from Monday 00:00
    UTC, that contains `now`."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    moment = datetime.fromtimestamp(now, tz=UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    length = timedelta(days=1)
    if period == "week":
        start -= timedelta(days=start.weekday())
        length = timedelta(days=7)
    return int(start.timestamp()), int((start + length).timestamp())


def day_window(now: float) -> tuple[int, int]:
    """(start, next start) of the UTC day containing `now`, in unix seconds."""
    return period_window(now, "day")


def period_start(now: float, period: Period) -> int:
    """Unix seconds at which the UTC day (or Monday-based week) containing `now` began."""
    return period_window(now, period)[0]


# -- money ---------------------------------------------------------------------------------

def credits_to_cents(credits: int, usd_per_credit: float) -> int:
    """US cents that `credits` cost, rounded up (a cap errs on the side of the payer)."""
    cents = Decimal(credits) * Decimal(str(usd_per_credit)) * 100
    return int(cents.to_integral_value(rounding=ROUND_CEILING))


def usd_to_cents(usd: float | str) -> int:
    """A dollar amount a moderator typed (e.g. 20 or "12.50"), to whole cents."""
    try:
        value = Decimal(str(usd).strip().lstrip("$"))
    except InvalidOperation:
        raise PolicyError(f"{usd!r} is not an amount in US dollars.") from None
    if not value.is_finite() or value < 0:
        raise PolicyError("A dollar amount must be 0 or more.")
    return int((value * 100).to_integral_value(rounding=ROUND_HALF_UP))


def format_usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"


# -- who and where --------------------------------------------------------------------------

def check_pause(settings: GuildSettings) -> Refusal | None:
    if not settings.paused:
        return None
    reason = (settings.pause_message or "").strip()
    said = f"Generation is paused on this server: {reason}" if reason else (
        "Generation is paused on this server by its moderators.")
    return Refusal(Reason.PAUSED,
                   f"{said}\nJobs already running will finish; try {COMMAND} again later.")


def check_channel(
    settings: GuildSettings, channel_id: int, parent_id: int | None = None
) -> Refusal | None:
    """`parent_id` is the channel a thread belongs to: a thread counts as its parent."""
    allowed = settings.channel_ids
    if not allowed or channel_id in allowed or (parent_id is not None and parent_id in allowed):
        return None
    ordered = sorted(allowed)
    listed = ", ".join(f"<#{c}>" for c in ordered[:MAX_LISTED_CHANNELS])
    if len(ordered) > MAX_LISTED_CHANNELS:
        listed += f" and {len(ordered) - MAX_LISTED_CHANNELS} more"
    return Refusal(
        Reason.CHANNEL,
        f"This server only allows {COMMAND} in {listed} (and threads in them). "
        "Run it there instead.",
    )


def check_roles(settings: GuildSettings, member_role_ids: Collection[int]) -> Refusal | None:
    """The blocked role wins over the required one."""
    roles = set(member_role_ids)
    if settings.blocked_role_id is not None and settings.blocked_role_id in roles:
        return Refusal(
            Reason.ROLE_BLOCKED,
            f"Members with the <@&{settings.blocked_role_id}> role cannot use {COMMAND} on "
            "this server. Ask a moderator if you think that is a mistake.",
        )
    if settings.required_role_id is not None and settings.required_role_id not in roles:
        return Refusal(
            Reason.ROLE_REQUIRED,
            f"You need the <@&{settings.required_role_id}> role to use {COMMAND} on this "
            "server. Ask a moderator for it.",
        )
    return None


# -- what may be asked ----------------------------------------------------------------------

CompiledPattern = CheckedEntry  # a blocklist entry checked for RE2

# The programs a prompt is searched with are built per blocklist: all word entries in one
# (sharing one pair of boundaries), all regex entries in another (so a heavy regex never
# slows the words down), and a prompt is one linear pass over each, whatever the number of
# entries. Not `re2.Set`: when its DFA runs out of memory it reports "no match", which here
# would let a prompt through; a plain search falls back to a slower linear method instead.
# One capturing group per entry tells which entry matched.
PROGRAM_MAX_MEM: Final = 8 * 1024 * 1024  # bytes, per combined program (RE2's default)


def compile_pattern(pattern: str, kind: str) -> CompiledPattern:
    """Check and compile a blocklist entry; raises PolicyError saying what is wrong.

    The checks are `storage.guild_settings.compile_entry`, which the store's `add_pattern`
    runs too: whole words or phrases in any case for `word`, RE2 syntax for `regex`."""
    try:
        return compile_entry(pattern, kind)
    except SettingsError as err:
        raise PolicyError(str(err)) from None


def compile_patterns(entries: Iterable[BlocklistEntry]) -> list[CompiledPattern]:
    """Compile a stored blocklist. An entry that no longer compiles (stored by an older
    version, whose Python regexes allowed backreferences and lookaround, say) is skipped
    with a warning rather than refusing every prompt."""
    compiled: list[CompiledPattern] = []
    for entry in entries:
        result = _stored_entry(entry.pattern, entry.kind)
        if isinstance(result, str):
            log.warning("skipping blocklist entry %r (%s): %s", entry.pattern, entry.kind,
                        result)
        else:
            compiled.append(result)
    return compiled


@functools.lru_cache(maxsize=1024)  # a refused entry is not cached by compile_entry
def _stored_entry(pattern: str, kind: str) -> CompiledPattern | str:
    """The compiled entry, or why it does not compile."""
    try:
        return compile_entry(pattern, kind)
    except SettingsError as err:
        return str(err)


def normalize_prompt(text: str) -> str:
    """What the blocklist sees: NFKC (so full-width and styled letters read as plain ones)
    with invisible format characters (zero-width spaces and joiners) removed, and lone
    surrogates too (RE2 reads UTF-8, which cannot encode them)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) not in ("Cf", "Cs"))


def check_prompt(
    patterns: Sequence[CompiledPattern], prompt: str, negative_prompt: str | None = None
) -> Refusal | None:
    """The user's message never repeats what matched; `detail` names the entry and the
    field for the moderators' log. Takes time linear in the texts' length (RE2), but up to
    a fraction of a second for a long prompt and a heavy blocklist: call it off the event
    loop (`check_blocklist` in a thread)."""
    if not patterns:
        return None
    programs = _programs(tuple(patterns))
    for option, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if not text:
            continue
        seen = normalize_prompt(text)
        for program in programs:
            entry = program.first_match(seen)
            if entry is not None:
                return Refusal(
                    Reason.BLOCKED_PROMPT,
                    f"Your {option} contains a word or phrase this server does not allow, "
                    "so nothing was started or charged. Rephrase it and try again.",
                    detail=f"{option} matched {entry.kind} entry {entry.pattern!r}",
                )
    return None


def check_blocklist(
    entries: Sequence[BlocklistEntry], prompt: str, negative_prompt: str | None = None
) -> Refusal | None:
    """`check_prompt` against a stored blocklist, compiling it first: the whole check,
    meant to run in a worker thread (`asyncio.to_thread`)."""
    return check_prompt(compile_patterns(entries), prompt, negative_prompt)


@dataclass(frozen=True)
class _Program:
    """One RE2 program for several entries, and the capturing group of each."""

    regex: Re2Regex
    groups: tuple[tuple[int, CompiledPattern], ...]

    def first_match(self, text: str) -> CompiledPattern | None:
        """The entry of the leftmost match, if any entry matches."""
        found = self.regex.search(text)
        if found is None:
            return None
        return next((entry for group, entry in self.groups if found.start(group) >= 0),
                    self.groups[0][1])


@functools.lru_cache(maxsize=128)  # per blocklist, i.e. per server
def _programs(patterns: tuple[CompiledPattern, ...]) -> tuple[_Program, ...]:
    words = [p for p in patterns if p.kind == "word"]
    regexes = [p for p in patterns if p.kind == "regex"]
    programs: list[_Program] = []
    if words:
        body = "|".join(f"({word_body(p.pattern)})" for p in words)
        programs += _combined(WORD_START + f"(?:{body})" + WORD_END,
                              [(i + 1, p) for i, p in enumerate(words)])
    if regexes:
        groups, group = [], 1
        for p in regexes:  # each entry's own groups come before the next entry's
            groups.append((group, p))
            group += 1 + p.groups
        programs += _combined("|".join(f"({p.source})" for p in regexes), groups)
    return tuple(programs)


def _combined(source: str, groups: list[tuple[int, CompiledPattern]]) -> list[_Program]:
    """One program for these entries; or, if they do not compile together (a blocklist
    stored by an older version may be over the size limits), one program per entry."""
    expected = groups[-1][0] + groups[-1][1].groups
    try:
        regex = re2_compile(source, PROGRAM_MAX_MEM)
    except re2.error as err:
        log.warning("blocklist entries checked one by one: %s", err)
    else:
        # An entry that quotes to the end of itself (`\Q...`) would swallow the next one:
        # then the groups no longer line up, and the entries are checked one by one.
        if regex.groups == expected:
            return [_Program(regex, tuple(groups))]
        log.warning("blocklist entries checked one by one: their groups do not line up")
    # Each compiled as `compile_entry` checked it, so within ENTRY_MAX_MEM.
    return [_Program(re2_compile(p.source), ((0, p),)) for _, p in groups]


# -- what it may cost -----------------------------------------------------------------------

def check_limits(
    settings: GuildSettings, *,
    jobs_today: int, last_job_at: float | None, active_jobs: int,
    spend_today_cents: int, price_cents: int,
    now: float, day_start: float, next_day_start: float,
) -> Refusal | None:
    """The per-user daily jobs, the server's daily spend cap, the per-user cooldown and the
    per-user unfinished jobs, in that order (the longest wait first, so the user is not sent
    to wait out a cooldown only to meet the daily limit). `jobs_today` and
    `spend_today_cents` must cover `day_start` up to `now` (see `storage.usage` for what
    counts); the limits reset at `next_day_start`. Pass `day_window(now)`."""
    if not day_start <= now < next_day_start:
        raise ValueError("now must fall inside [day_start, next_day_start)")
    resets = f"<t:{math.ceil(next_day_start)}:R>"
    if settings.daily_jobs is not None and jobs_today >= settings.daily_jobs:
        return Refusal(
            Reason.DAILY_JOBS,
            f"You have used your {_jobs(settings.daily_jobs)} for today on this server; "
            f"the limit resets {resets}.",
        )
    cap = settings.daily_spend_cap_cents
    if cap is not None and spend_today_cents + price_cents > cap:
        left = cap - spend_today_cents
        if left <= 0:
            message = (f"This server has reached its daily spending cap of {format_usd(cap)}; "
                       f"it resets {resets}.")
        else:
            message = (
                f"This job costs {format_usd(price_cents)}, but only {format_usd(left)} of "
                f"this server's daily spending cap of {format_usd(cap)} is left. A smaller "
                f"size or a shorter duration may fit; the cap resets {resets}."
            )
        return Refusal(Reason.SPEND_CAP, message)
    cooldown = settings.cooldown_seconds
    if cooldown > 0 and last_job_at is not None and now < last_job_at + cooldown:
        ready = math.ceil(last_job_at + cooldown)
        return Refusal(
            Reason.COOLDOWN,
            f"Wait <t:{ready}:R> before your next job (this server's cooldown is "
            f"{_duration(cooldown)}).",
        )
    limit = settings.concurrent_jobs
    if limit is not None and active_jobs >= limit:
        return Refusal(
            Reason.CONCURRENT_JOBS,
            f"You already have {_jobs(active_jobs, 'unfinished job')}; this server allows "
            f"{limit} at a time. Wait for one to finish, or cancel a queued one with "
            "/jobs cancel.",
        )
    return None


def effective_max_active(settings: GuildSettings, bot_limit: int) -> int:
    """The unfinished-jobs limit to give `JobStore.create(max_active=...)`, which enforces it
    atomically: the server's own limit when it is lower than the bot-wide one."""
    if settings.concurrent_jobs is None:
        return bot_limit
    return min(bot_limit, settings.concurrent_jobs)


# -- allowance and NSFW ---------------------------------------------------------------------

def allowance_for(settings: GuildSettings, member_role_ids: Collection[int]) -> int:
    """Credits per period this member is due; 0 when there is no allowance for them."""
    if settings.allowance_amount <= 0:
        return 0
    if settings.allowance_role_id is not None and settings.allowance_role_id not in set(
        member_role_ids
    ):
        return 0
    return settings.allowance_amount


def nsfw_action(
    settings: GuildSettings, *, age_restricted: bool
) -> Literal["withhold", "spoiler"]:
    """What to do with a clip WaveSpeed flagged as NSFW: outside an age-restricted channel
    it is always withheld; inside one, as the server's `nsfw_policy` says."""
    if not age_restricted:
        return "withhold"
    return settings.nsfw_policy


def nsfw_charged(settings: GuildSettings, bot_default: bool) -> bool:
    """Whether a withheld clip is charged: the server's setting, else NSFW_CHARGE."""
    return bot_default if settings.nsfw_charge is None else settings.nsfw_charge


# -- wording --------------------------------------------------------------------------------

def _jobs(count: int, noun: str = "job") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
