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
import importlib
import logging
import math
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, Literal

from storage.guild_settings import (
    MAX_PATTERN_CHARS,
    PATTERN_KINDS,
    PERIODS,
    BlocklistEntry,
    GuildSettings,
    PatternKind,
    Period,
    normalize_pattern,
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

@dataclass(frozen=True)
class CompiledPattern:
    pattern: str          # as stored (normalised)
    kind: PatternKind
    regex: re.Pattern[str]


# Python's `re` backtracks and cannot be interrupted, and a prompt is checked on the event
# loop, so one slow entry would stall the whole bot (every server). An entry is refused
# when its worst case on the longest prompt the settings allow (6000 characters) could
# exceed about REGEX_BUDGET steps (roughly a quarter of a second): a repetition inside a
# repetition, an alternation inside one, or open-ended repetitions (`*`, `+`, `{n,}`)
# whose backtracking multiplies. Possessive repetitions (`*+`, `++`) never backtrack and
# are free. The estimate comes from CPython's own regex parser, `re._parser`.
REGEX_BUDGET: Final = 250_000_000
COST_TEXT_CHARS: Final = 6000
try:
    _SRE_PARSER: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - a Python without it: the estimate is skipped
    _SRE_PARSER = None


class _Explosive(Exception):
    """A repetition containing another repetition or an alternation."""


def _sequence_cost(items: Any, *, in_repeat: bool) -> int:
    """Backtracking steps, at worst, for one attempt of a parsed sequence at one position."""
    cost = 1
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _low, high, sub = arg
            repeats = high > 1
            if in_repeat and repeats:
                raise _Explosive
            inner = _sequence_cost(sub, in_repeat=in_repeat or repeats)
            if name == "POSSESSIVE_REPEAT" or not repeats:
                cost *= inner
            else:
                cost *= inner * (min(high, COST_TEXT_CHARS) + 1)
        elif name == "BRANCH":
            if in_repeat:
                raise _Explosive
            cost *= sum(_sequence_cost(branch, in_repeat=False) for branch in arg[1])
        elif name == "SUBPATTERN":
            cost *= _sequence_cost(arg[3], in_repeat=in_repeat)
        elif name == "ATOMIC_GROUP":
            cost *= _sequence_cost(arg, in_repeat=in_repeat)
        elif name in ("ASSERT", "ASSERT_NOT"):
            cost *= _sequence_cost(arg[1], in_repeat=in_repeat)
        elif name == "GROUPREF_EXISTS":
            _group, yes, no = arg
            cost *= max(_sequence_cost(yes, in_repeat=in_repeat),
                        _sequence_cost(no, in_repeat=in_repeat) if no else 1)
    return cost


def regex_cost(source: str) -> int | None:
    """Estimated worst-case steps of searching a COST_TEXT_CHARS-long text; None when the
    regex repeats a repetition or an alternation (exponential) or cannot be estimated."""
    if _SRE_PARSER is None:  # pragma: no cover
        return 0
    try:
        parsed = _SRE_PARSER.parse(source, re.IGNORECASE)
        return COST_TEXT_CHARS * _sequence_cost(parsed, in_repeat=False)
    except _Explosive:
        return None
    except Exception:  # noqa: BLE001 - a parser we do not own: refuse rather than guess
        return None


# Texts an entry is tried on when it is added: a match of length zero on any of them means
# the entry can match "nothing", i.e. would block every prompt or none predictably.
_EMPTY_PROBES = ("", " ", "a", "A", "a b", "0", "_", "-", ".", "\n", "é", "ab12 cd")


@functools.lru_cache(maxsize=4096)  # pure, and every /ref2video compiles the whole blocklist
def compile_pattern(pattern: str, kind: str) -> CompiledPattern:
    """Check and compile a blocklist entry; raises PolicyError saying what is wrong.

    A `word` entry matches case-insensitively as a whole word or phrase: not inside a
    longer word ("cat" blocks "a Cat here", not "concatenate"), with any whitespace
    between the words of a phrase. (The boundaries are "no letter, digit or _ on either
    side" rather than `\\b`, so entries such as "c++" work too.) A `regex` entry is a
    Python regular expression matched case-insensitively anywhere in the text."""
    if kind not in PATTERN_KINDS:
        raise PolicyError(f"The kind must be word or regex, not {kind!r}.")
    text = normalize_pattern(pattern, kind)
    if not text:
        raise PolicyError("The pattern is empty. Give a word, a phrase or a regular expression.")
    if len(text) > MAX_PATTERN_CHARS:
        raise PolicyError(
            f"The pattern is {len(text)} characters; the limit is {MAX_PATTERN_CHARS}. "
            "Split it into shorter entries."
        )
    if kind == "word":
        source = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in text.split()) + r"(?!\w)"
        return CompiledPattern(text, "word", re.compile(source, re.IGNORECASE))
    try:
        regex = re.compile(text, re.IGNORECASE)
    except re.error as err:
        where = f" at position {err.pos}" if err.pos is not None else ""
        raise PolicyError(
            f"`{_code(text)}` is not a valid regular expression: {err.msg}{where}. "
            "To block it as plain text, add it as a word entry instead."
        ) from None
    except (RecursionError, OverflowError):
        raise PolicyError(
            f"`{_code(text)}` is too complex a regular expression. Simplify it."
        ) from None
    cost = regex_cost(text)
    if cost is None or cost > REGEX_BUDGET:
        raise PolicyError(
            f"`{_code(text)}` could take too long on a long prompt and slow the bot down for "
            "everyone. Do not repeat a group that itself repeats or has alternatives (`|`), "
            "and use at most one open-ended `*`, `+` or `{n,}`: give the others a small bound "
            "such as `{0,10}`, or make them possessive (`*+`, `++`)."
        )
    for probe in _EMPTY_PROBES:
        if any(m.start() == m.end() for m in regex.finditer(probe)):
            raise PolicyError(
                f"`{_code(text)}` can match empty text, so it would block prompts that "
                "contain none of what you mean. Make every part of it match at least one "
                "character (e.g. `+` instead of `*`, and no empty alternative)."
            )
    return CompiledPattern(text, "regex", regex)


def compile_patterns(entries: Iterable[BlocklistEntry]) -> list[CompiledPattern]:
    """Compile a stored blocklist. An entry that no longer compiles (stored by an older
    version, say) is skipped with a warning rather than refusing every prompt."""
    compiled: list[CompiledPattern] = []
    for entry in entries:
        try:
            compiled.append(compile_pattern(entry.pattern, entry.kind))
        except PolicyError as err:
            log.warning("skipping blocklist entry %r (%s): %s", entry.pattern, entry.kind, err)
    return compiled


def normalize_prompt(text: str) -> str:
    """What the blocklist sees: NFKC (so full-width and styled letters read as plain ones)
    with invisible format characters (zero-width spaces and joiners) removed."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")


def check_prompt(
    patterns: Sequence[CompiledPattern], prompt: str, negative_prompt: str | None = None
) -> Refusal | None:
    """The user's message never repeats what matched; `detail` names the entry and the
    field for the moderators' log."""
    for option, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if not text or not patterns:
            continue
        seen = normalize_prompt(text)
        for entry in patterns:
            if entry.regex.search(seen):
                return Refusal(
                    Reason.BLOCKED_PROMPT,
                    f"Your {option} contains a word or phrase this server does not allow, "
                    "so nothing was started or charged. Rephrase it and try again.",
                    detail=f"{option} matched {entry.kind} entry {entry.pattern!r}",
                )
    return None


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


def _code(text: str) -> str:
    """Text fit to show inside `code`."""
    return text.replace("`", "'")
