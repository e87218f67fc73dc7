"""Whether a server's settings let this /ref2video go ahead, checked before anything is
charged; and what they say about allowances and NSFW clips.

Pure functions over plain values and `GuildSettings`: `admission.gatekeeper` reads the settings
(`storage.guild_settings`) and the usage (`storage.usage`), calls these, and the Discord
layer shows a `Refusal.message` to the user as is. Each message says why and what would
work. Times are Discord timestamps (`<t:unix:R>`), channels `<#id>` and roles `<@&id>`, so
the message must be sent with mentions disabled. Days are those of `admission.periods`.

The order of the checks: `check_pause`, `check_channel`, `check_roles`, the prompt
blocklist (`admission.blocklist.check_blocklist`), `check_limits`; the first refusal wins.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Literal

from money.usd import format_usd
from storage.guild_settings import GuildSettings

COMMAND = "/ref2video"
MAX_LISTED_CHANNELS: Final = 20


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
    counts); the limits reset at `next_day_start`. Pass `admission.periods.day_window(now)`."""
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
            f"{duration_text(cooldown)}).",
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


def duration_text(seconds: int) -> str:
    """A span of seconds in words: "90 s", "2 min 30 s", "3 h 10 min" (also /settings)."""
    if seconds < 120:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")
