"""The pure policy checks: who, where, what may be asked, what it may cost."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from engine.policy import (
    CompiledPattern,
    PolicyError,
    Reason,
    Refusal,
    allowance_for,
    check_channel,
    check_limits,
    check_pause,
    check_prompt,
    check_roles,
    compile_pattern,
    compile_patterns,
    credits_to_cents,
    day_window,
    effective_max_active,
    format_usd,
    normalize_prompt,
    nsfw_action,
    nsfw_charged,
    period_start,
    period_window,
    usd_to_cents,
)
from storage.guild_settings import MAX_REGEX_PROGRAM, BlocklistEntry, GuildSettings

GUILD = 1000
MONDAY = 1_704_067_200     # 2024-01-01 00:00 UTC, a Monday
NOW = MONDAY + 2 * 86_400 + 13 * 3600 + 17  # Wednesday 13:00:17
DAY_START, NEXT_DAY = MONDAY + 2 * 86_400, MONDAY + 3 * 86_400


def settings(**fields: object) -> GuildSettings:
    return GuildSettings(guild_id=GUILD, **fields)  # type: ignore[arg-type]


# -- time windows ---------------------------------------------------------------------------

def test_day_and_week_windows_are_utc() -> None:
    assert day_window(NOW) == (DAY_START, NEXT_DAY)
    assert day_window(DAY_START) == (DAY_START, NEXT_DAY)          # midnight opens a day
    assert day_window(NEXT_DAY - 0.001) == (DAY_START, NEXT_DAY)
    assert period_start(NOW, "day") == DAY_START
    assert period_window(NOW, "week") == (MONDAY, MONDAY + 7 * 86_400)
    assert period_start(MONDAY, "week") == MONDAY
    assert period_start(MONDAY - 1, "week") == MONDAY - 7 * 86_400  # Sunday 23:59:59
    assert period_start(MONDAY + 7 * 86_400 - 1, "week") == MONDAY
    assert datetime.fromtimestamp(period_start(NOW, "week"), tz=UTC).weekday() == 0
    with pytest.raises(ValueError, match="period"):
        period_window(NOW, "month")  # type: ignore[arg-type]


# -- money ----------------------------------------------------------------------------------

def test_money_conversions() -> None:
    assert credits_to_cents(150, 0.01) == 150
    assert credits_to_cents(100, 0.1) == 1000
    assert credits_to_cents(1, 0.015) == 2          # rounded up: a cap errs toward the payer
    assert credits_to_cents(0, 0.01) == 0
    assert usd_to_cents(20) == 2000
    assert usd_to_cents(12.5) == 1250
    assert usd_to_cents("$0.105") == 11
    assert usd_to_cents(" 7 ") == 700
    for bad in ("abc", -1, "nan", "inf", ""):
        with pytest.raises(PolicyError):
            usd_to_cents(bad)
    assert format_usd(2000) == "$20.00"
    assert format_usd(5) == "$0.05"
    assert format_usd(123_456_78) == "$123,456.78"


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


# -- blocklist ------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "kind", "message"), [
    ("", "word", "empty"),
    ("   ", "regex", "empty"),
    ("x" * 201, "word", "201 characters; the limit is 200"),
    ("(unclosed", "regex", "not a valid regular expression: missing ), unterminated subpattern"),
    ("[a-", "regex", "not a valid regular expression"),
    ("a*", "regex", "can match empty text"),
    ("cat|", "regex", "can match empty text"),
    ("^", "regex", "can match empty text"),
    (r"\b", "regex", "can match empty text"),
    ("(x)?", "regex", "can match empty text"),
    ("cat", "glob", "must be word or regex"),
])
def test_invalid_patterns_are_refused_with_a_reason(pattern: str, kind: str,
                                                    message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        compile_pattern(pattern, kind)


# These were refused by the old backtracking-cost estimate; RE2 matches them in linear
# time, so they are accepted and must simply match what they say.
@pytest.mark.parametrize(("pattern", "hit", "miss"), [
    (r"(a+)+$", "a" * 1500, "a" * 1499 + "!"),
    (r"(\w+\s?)*x", "ab " * 499 + "x", "ab " * 500),
    (r"(a|aa)+b", "a" * 1499 + "b", "a" * 1500),
    (r"a.*b.*c", "a" + "b" * 1498 + "c", "a" + "b" * 1499),
    (r"a[^x]*b\w{0,32}c", "a" * 1400 + "b" + "z" * 32 + "c", "a" * 1400 + "b" + "z" * 99),
    (r"n+[i1]+g+", "n" * 700 + "1" * 700 + "g", "n" * 750 + "1" * 750),
])
def test_regexes_that_stalled_backtracking_are_accepted_and_match(
    pattern: str, hit: str, miss: str
) -> None:
    assert blocked(pattern, "regex", hit)
    assert not blocked(pattern, "regex", miss)


@pytest.mark.parametrize("pattern", [
    r"secret\w+", r"a.{0,30}b.{0,30}c", r"bad\s*word\s{0,3}here", r"n++[i1]++g++",
    r"(cat|dog)s?", r"\bb[a4]d\b", r"(ha){2,5}",
])
def test_ordinary_regexes_are_accepted(pattern: str) -> None:
    compiled = compile_pattern(pattern, "regex")
    assert compiled.kind == "regex" and compiled.size <= MAX_REGEX_PROGRAM


def test_pattern_limits_and_normalisation() -> None:
    assert compile_pattern("x" * 200, "word").pattern == "x" * 200
    assert compile_pattern("  Bad \t Word ", "word").pattern == "bad word"
    assert compile_pattern(" B[a4]d ", "regex").pattern == "B[a4]d"   # regex: only trimmed


def blocked(pattern: str, kind: str, text: str) -> bool:
    return check_prompt([compile_pattern(pattern, kind)], text) is not None


def test_word_entries_match_whole_words_case_insensitively() -> None:
    assert blocked("cat", "word", "a Cat here")
    assert blocked("cat", "word", "CAT!")
    assert blocked("cat", "word", "cat")
    assert blocked("cat", "word", "the cat's toy")
    assert not blocked("cat", "word", "concatenate")
    assert not blocked("cat", "word", "cats")
    assert not blocked("cat", "word", "bobcat")
    assert blocked("bad word", "word", "a BAD\n  word here")
    assert not blocked("bad word", "word", "a badword")
    assert blocked("c++", "word", "written in C++ today")
    assert not blocked("c++", "word", "abc++")
    assert blocked("a.b", "word", "see a.b now")                    # escaped, not a regex
    assert not blocked("a.b", "word", "see axb now")


def test_prompts_are_normalised_before_matching() -> None:
    assert blocked("cat", "word", "a ｃａｔ (full width)")
    assert blocked("cat", "word", "c\u200bat with a zero-width space")
    assert normalize_prompt("c\u200ba\u200dt") == "cat"


def test_regex_entries_are_case_insensitive_anywhere() -> None:
    assert blocked(r"b[a4]d", "regex", "a B4D idea")
    assert blocked(r"b[a4]d", "regex", "badger")                    # regex: not whole-word
    assert not blocked(r"\bb[a4]d\b", "regex", "badger")
    assert not blocked(r"b[a4]d", "regex", "bed")


def test_blocked_prompt_refusal_does_not_echo_the_match() -> None:
    patterns = [compile_pattern("dog", "word"), compile_pattern(r"secret\w+", "regex")]
    assert check_prompt(patterns, "a cat surfing", "blurry") is None
    assert check_prompt(patterns, "a cat surfing", None) is None
    assert check_prompt([], "anything at all", "dog") is None

    refusal = check_prompt(patterns, "a Secretword cat", None)
    assert refusal is not None and refusal.reason_code == "blocked_prompt"
    assert refusal.message.startswith("Your prompt contains a word or phrase this server")
    assert "Rephrase it" in refusal.message and "nothing was started or charged" in refusal.message
    for leaked in ("secret", "Secretword", r"secret\w+"):
        assert leaked.lower() not in refusal.message.lower()
    assert refusal.detail == r"prompt matched regex entry 'secret\\w+'"

    refusal = check_prompt(patterns, "a cat surfing", "no DOG please")
    assert refusal is not None and refusal.message.startswith("Your negative prompt contains")
    assert "dog" not in refusal.message.lower()
    assert refusal.detail == "negative prompt matched word entry 'dog'"


def test_compile_patterns_skips_entries_that_no_longer_compile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = [BlocklistEntry("cat", "word", 1, 0.0), BlocklistEntry("(", "regex", 1, 0.0),
               BlocklistEntry("x*", "regex", 1, 0.0)]
    compiled = compile_patterns(entries)
    assert [(c.pattern, c.kind) for c in compiled] == [("cat", "word")]
    assert all(isinstance(c, CompiledPattern) for c in compiled)
    assert "skipping blocklist entry" in caplog.text


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
