"""The pure checks of a server's rules: who, where, what it may cost; allowance and NSFW."""

from __future__ import annotations

import pytest

from admission.server_rules import (
    Reason,
    Refusal,
    allowance_for,
    check_channel,
    check_limits,
    check_pause,
    check_roles,
    effective_max_active,
    nsfw_action,
    nsfw_charged,
)
from storage.guild_settings import GuildSettings
from tests.admission.moments import DAY_START, NEXT_DAY, NOW

GUILD = 1000


def settings(**fields: object) -> GuildSettings:
    return GuildSettings(guild_id=GUILD, **fields)  # type: ignore[arg-type]


# -- pause, channel, roles ------------------------------------------------------------------

def test_pause() -> None:
    assert check_pause(settings()) is None
    assert check_pause(settings(pause_message="ignored when not paused")) is None
    refusal = check_pause(settings(paused=True, pause_message="Server maintenance until 6pm."))
    assert refusal is not None and refusal.reason_code == Reason.PAUSED
    assert refusal.reason_code == "paused"
    assert refusal.message.startswith(
        "Generation is paused on this server: Server maintenance until 6pm.")
    assert "already running will finish" in refusal.message
    generic = check_pause(settings(paused=True))
    assert generic is not None and "paused on this server by its moderators" in generic.message


def test_channel_allow_list() -> None:
    assert check_channel(settings(), 5) is None                       # empty: everywhere
    allowed = settings(channel_ids=frozenset({11, 12}))
    assert check_channel(allowed, 11) is None
    assert check_channel(allowed, 999, parent_id=12) is None          # a thread of #12
    refusal = check_channel(allowed, 999, parent_id=13)
    assert refusal is not None and refusal.reason_code == "channel_not_allowed"
    assert "only allows /ref2video in <#11>, <#12>" in refusal.message
    assert "Run it there" in refusal.message
    many = check_channel(settings(channel_ids=frozenset(range(1, 31))), 99)
    assert many is not None and "<#20> and 10 more" in many.message
    assert "<#21>" not in many.message and len(many.message) < 2000


def test_roles() -> None:
    assert check_roles(settings(), []) is None
    required = settings(required_role_id=501)
    assert check_roles(required, [7, 501]) is None
    refusal = check_roles(required, [7])
    assert refusal == Refusal(
        "role_required",
        "You need the <@&501> role to use /ref2video on this server. Ask a moderator for it.")
    blocked = settings(required_role_id=501, blocked_role_id=502)
    refusal = check_roles(blocked, [501, 502])                        # blocked wins
    assert refusal is not None and refusal.reason_code == "role_blocked"
    assert "<@&502> role cannot use /ref2video" in refusal.message
    assert check_roles(settings(blocked_role_id=502), [501]) is None


# -- limits ---------------------------------------------------------------------------------

def limits(s: GuildSettings, **usage: object) -> Refusal | None:
    values: dict[str, object] = {
        "jobs_today": 0, "last_job_at": None, "active_jobs": 0, "spend_today_cents": 0,
        "price_cents": 100, "now": NOW, "day_start": DAY_START, "next_day_start": NEXT_DAY,
    }
    values.update(usage)
    return check_limits(s, **values)  # type: ignore[arg-type]


def test_no_limits_allow_everything() -> None:
    assert limits(settings(), jobs_today=1000, last_job_at=NOW - 1, active_jobs=50,
                  spend_today_cents=10**9) is None


def test_daily_jobs() -> None:
    s = settings(daily_jobs=5)
    assert limits(s, jobs_today=4) is None
    refusal = limits(s, jobs_today=5)
    assert refusal == Refusal(
        "daily_jobs",
        f"You have used your 5 jobs for today on this server; the limit resets <t:{NEXT_DAY}:R>.")
    one = limits(settings(daily_jobs=1), jobs_today=1)
    assert one is not None and "your 1 job for today" in one.message


def test_cooldown() -> None:
    s = settings(cooldown_seconds=60)
    assert limits(s) is None                                   # never ran a job
    assert limits(s, last_job_at=NOW - 60) is None             # exactly elapsed
    refusal = limits(s, last_job_at=NOW - 15.5)
    assert refusal is not None and refusal.reason_code == "cooldown"
    assert refusal.message == (
        f"Wait <t:{NOW + 45}:R> before your next job (this server's cooldown is 60 s).")
    long = limits(settings(cooldown_seconds=5400), last_job_at=NOW)
    assert long is not None and "cooldown is 90 min" in long.message
    longer = limits(settings(cooldown_seconds=3 * 3600 + 600), last_job_at=NOW)
    assert longer is not None and "cooldown is 3 h 10 min" in longer.message


def test_concurrent_jobs() -> None:
    s = settings(concurrent_jobs=2)
    assert limits(s, active_jobs=1) is None
    refusal = limits(s, active_jobs=2)
    assert refusal is not None and refusal.reason_code == "concurrent_jobs"
    assert "You already have 2 unfinished jobs; this server allows 2 at a time" in refusal.message
    assert "/jobs cancel" in refusal.message
    assert effective_max_active(settings(), 3) == 3
    assert effective_max_active(s, 3) == 2
    assert effective_max_active(settings(concurrent_jobs=9), 3) == 3


def test_daily_spend_cap() -> None:
    s = settings(daily_spend_cap_cents=2000)
    assert limits(s, spend_today_cents=1900, price_cents=100) is None    # exactly reaches it
    reached = limits(s, spend_today_cents=2000, price_cents=100)
    assert reached == Refusal(
        "spend_cap",
        f"This server has reached its daily spending cap of $20.00; it resets <t:{NEXT_DAY}:R>.")
    assert limits(s, spend_today_cents=2150, price_cents=100) == reached  # past it (races)
    partial = limits(s, spend_today_cents=1950, price_cents=150)
    assert partial is not None and partial.reason_code == "spend_cap"
    assert partial.message == (
        "This job costs $1.50, but only $0.50 of this server's daily spending cap of $20.00 is "
        f"left. A smaller size or a shorter duration may fit; the cap resets <t:{NEXT_DAY}:R>.")


def test_limits_report_the_longest_wait_first() -> None:
    s = settings(daily_jobs=1, daily_spend_cap_cents=100, cooldown_seconds=60,
                 concurrent_jobs=1)
    everything: dict[str, int | None] = {
        "jobs_today": 1, "spend_today_cents": 100, "last_job_at": NOW, "active_jobs": 1}
    codes: list[str | None] = []
    for lifted in ("jobs_today", "spend_today_cents", "last_job_at", "active_jobs"):
        refusal = limits(s, **everything)
        codes.append(refusal.reason_code if refusal else None)
        everything[lifted] = 0 if lifted != "last_job_at" else None
    assert codes == ["daily_jobs", "spend_cap", "cooldown", "concurrent_jobs"]
    assert limits(s, **everything) is None


def test_limits_need_a_window_containing_now() -> None:
    with pytest.raises(ValueError, match="day_start"):
        limits(settings(), now=NEXT_DAY)


# -- allowance and NSFW ---------------------------------------------------------------------

def test_allowance_for_members() -> None:
    assert allowance_for(settings(), [1]) == 0
    assert allowance_for(settings(allowance_amount=200), []) == 200
    role = settings(allowance_amount=50, allowance_role_id=77)
    assert allowance_for(role, [77, 3]) == 50
    assert allowance_for(role, [3]) == 0


def test_nsfw_decisions() -> None:
    assert nsfw_action(settings(), age_restricted=False) == "withhold"
    assert nsfw_action(settings(), age_restricted=True) == "spoiler"  # the default policy
    strict = settings(nsfw_policy="withhold")
    assert nsfw_action(strict, age_restricted=False) == "withhold"
    assert nsfw_action(strict, age_restricted=True) == "withhold"
    assert nsfw_charged(settings(), True) is True
    assert nsfw_charged(settings(), False) is False
    assert nsfw_charged(settings(nsfw_charge=False), True) is False
    assert nsfw_charged(settings(nsfw_charge=True), False) is True
