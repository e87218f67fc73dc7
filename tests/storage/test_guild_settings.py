"""Per-server settings, usage counts and the periodic allowance, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import guild_settings as gs_module
from storage.credits import CreditStore, audit
from storage.database import Database
from storage.guild_settings import GuildSettings, GuildSettingsError, GuildSettingsStore, Period
from storage.jobs import JobState, JobStore
from storage.usage import (
    LimitUsage,
    active_job_count_in,
    count_jobs_since_in,
    grant_allowance_once,
    guild_jobs_since_in,
    guild_spend_since,
    last_job_at,
    limit_usage,
)
from tests.conftest import ADMIN, ALICE, BOB, GUILD
from wavespeed.models import GenerationRequest

OTHER_GUILD = 1001


# The counts limit_usage reads in one go, one at a time (the bot reads them only together).
async def count_jobs_since(db: Database, guild_id: int, user_id: int, since: float) -> int:
    async with db.reading() as conn:
        return await count_jobs_since_in(conn, guild_id, user_id, since)


async def active_job_count(db: Database, guild_id: int, user_id: int) -> int:
    async with db.reading() as conn:
        return await active_job_count_in(conn, guild_id, user_id)


async def guild_jobs_since(db: Database, guild_id: int, since: float) -> int:
    async with db.reading() as conn:
        return await guild_jobs_since_in(conn, guild_id, since)

MOD = 2998
REQUEST = GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt="a cat surfing")
DAY = 1_704_067_200  # Monday 2024-01-01 00:00 UTC


class Clock:
    def __init__(self, now: float = DAY + 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db: Database, clock: Clock) -> GuildSettingsStore:
    return GuildSettingsStore(db, clock=clock)


# -- settings ---------------------------------------------------------------------------------

async def test_defaults_when_nothing_was_set(store: GuildSettingsStore) -> None:
    settings = await store.get(GUILD)
    assert settings == GuildSettings(guild_id=GUILD)
    assert settings.channel_ids == frozenset()
    assert settings.required_role_id is None and settings.blocked_role_id is None
    assert settings.daily_jobs is None and settings.cooldown_seconds == 0
    assert settings.concurrent_jobs is None and settings.daily_spend_cap_cents is None
    assert settings.nsfw_policy == "spoiler" and settings.nsfw_charge is None
    assert settings.allowance_amount == 0 and settings.allowance_period == "day"
    assert settings.allowance_role_id is None and settings.allowance_cap is None
    assert settings.audit_channel_id is None
    assert not settings.confirm_cost and not settings.paused and settings.pause_message is None
    assert settings.updated_at is None and settings.updated_by is None
    assert not settings.has_limits
    assert await store.patterns(GUILD) == []


async def test_channels_add_remove_clear(store: GuildSettingsStore, clock: Clock) -> None:
    assert await store.add_channel(GUILD, 11, actor=ADMIN)
    assert not await store.add_channel(GUILD, 11, actor=ADMIN)  # already there
    clock.now += 5
    assert await store.add_channel(GUILD, 12, actor=MOD)
    settings = await store.get(GUILD)
    assert settings.channel_ids == {11, 12}
    assert (settings.updated_by, settings.updated_at) == (MOD, clock.now)
    assert await store.remove_channel(GUILD, 11, actor=ADMIN)
    assert not await store.remove_channel(GUILD, 11, actor=ADMIN)
    assert (await store.get(GUILD)).channel_ids == {12}
    await store.add_channel(GUILD, 13, actor=ADMIN)
    assert await store.clear_channels(GUILD, actor=ADMIN) == 2
    assert (await store.get(GUILD)).channel_ids == frozenset()
    with pytest.raises(GuildSettingsError):
        await store.add_channel(GUILD, 0, actor=ADMIN)


async def test_channel_list_is_capped_and_a_refused_write_changes_nothing(
    store: GuildSettingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gs_module, "MAX_CHANNELS", 2)
    await store.add_channel(GUILD, 1, actor=ADMIN)
    await store.add_channel(GUILD, 2, actor=ADMIN)
    assert not await store.add_channel(GUILD, 2, actor=MOD)  # a duplicate is not "one more"
    with pytest.raises(GuildSettingsError, match="remove one first"):
        await store.add_channel(GUILD, 3, actor=BOB)
    settings = await store.get(GUILD)
    assert settings.channel_ids == {1, 2}
    assert settings.updated_by == MOD  # the refused write was rolled back whole


async def test_roles_set_and_clear_independently(store: GuildSettingsStore) -> None:
    await store.set_roles(GUILD, required=501, actor=ADMIN)
    settings = await store.set_roles(GUILD, blocked=502, actor=ADMIN)
    assert (settings.required_role_id, settings.blocked_role_id) == (501, 502)
    settings = await store.set_roles(GUILD, required=None, actor=ADMIN)
    assert (settings.required_role_id, settings.blocked_role_id) == (None, 502)
    settings = await store.set_roles(GUILD, blocked=None, actor=ADMIN)
    assert (settings.required_role_id, settings.blocked_role_id) == (None, None)
    with pytest.raises(GuildSettingsError):
        await store.set_roles(GUILD, required=-1, actor=ADMIN)


async def test_limits_change_only_the_given_fields(store: GuildSettingsStore) -> None:
    settings = await store.set_limits(GUILD, daily_jobs=5, cooldown_seconds=60, actor=ADMIN)
    assert (settings.daily_jobs, settings.cooldown_seconds) == (5, 60)
    assert settings.concurrent_jobs is None and settings.daily_spend_cap_cents is None
    settings = await store.set_limits(GUILD, concurrent_jobs=2, daily_spend_cap_cents=2000,
                                      actor=ADMIN)
    assert (settings.daily_jobs, settings.cooldown_seconds) == (5, 60)
    assert (settings.concurrent_jobs, settings.daily_spend_cap_cents) == (2, 2000)
    assert settings.has_limits
    # 0 and None both turn a limit off.
    settings = await store.set_limits(GUILD, daily_jobs=0, cooldown_seconds=None,
                                      concurrent_jobs=None, daily_spend_cap_cents=0, actor=ADMIN)
    assert settings == GuildSettings(guild_id=GUILD, updated_at=settings.updated_at,
                                     updated_by=ADMIN)
    for bad in ({"daily_jobs": -1}, {"cooldown_seconds": -5}, {"concurrent_jobs": True},
                {"daily_spend_cap_cents": 1.5}):
        with pytest.raises(GuildSettingsError):
            await store.set_limits(GUILD, actor=ADMIN, **bad)


async def test_nsfw_allowance_audit_confirm_pause(store: GuildSettingsStore) -> None:
    settings = await store.set_nsfw(GUILD, policy="spoiler", charge=True, actor=ADMIN)
    assert (settings.nsfw_policy, settings.nsfw_charge) == ("spoiler", True)
    settings = await store.set_nsfw(GUILD, charge=None, actor=ADMIN)
    assert (settings.nsfw_policy, settings.nsfw_charge) == ("spoiler", None)
    with pytest.raises(GuildSettingsError):
        await store.set_nsfw(GUILD, policy="blur", actor=ADMIN)  # type: ignore[arg-type]

    settings = await store.set_allowance(GUILD, amount=200, period="week", role=77, cap=400,
                                         actor=ADMIN)
    assert (settings.allowance_amount, settings.allowance_period,
            settings.allowance_role_id, settings.allowance_cap) == (200, "week", 77, 400)
    settings = await store.set_allowance(GUILD, role=None, cap=0, actor=ADMIN)
    assert (settings.allowance_amount, settings.allowance_period,
            settings.allowance_role_id, settings.allowance_cap) == (200, "week", None, None)
    with pytest.raises(GuildSettingsError):
        await store.set_allowance(GUILD, period="month", actor=ADMIN)  # type: ignore[arg-type]
    with pytest.raises(GuildSettingsError):
        await store.set_allowance(GUILD, amount=-3, actor=ADMIN)

    assert (await store.set_audit_channel(GUILD, 900, actor=ADMIN)).audit_channel_id == 900
    assert (await store.set_audit_channel(GUILD, None, actor=ADMIN)).audit_channel_id is None
    assert (await store.set_confirm_cost(GUILD, True, actor=ADMIN)).confirm_cost
    assert not (await store.set_confirm_cost(GUILD, False, actor=ADMIN)).confirm_cost

    settings = await store.set_paused(GUILD, True, "  maintenance until 18:00  ", actor=MOD)
    assert settings.paused and settings.pause_message == "maintenance until 18:00"
    assert settings.updated_by == MOD
    settings = await store.set_paused(GUILD, True, actor=MOD)
    assert settings.paused and settings.pause_message is None
    settings = await store.set_paused(GUILD, False, "ignored", actor=ADMIN)
    assert not settings.paused and settings.pause_message is None
    with pytest.raises(GuildSettingsError):
        await store.set_paused(GUILD, True, "x" * 501, actor=ADMIN)


async def test_settings_of_one_guild_never_affect_another(store: GuildSettingsStore) -> None:
    await store.add_channel(GUILD, 11, actor=ADMIN)
    await store.set_roles(GUILD, required=501, blocked=502, actor=ADMIN)
    await store.set_limits(GUILD, daily_jobs=1, cooldown_seconds=9, concurrent_jobs=1,
                           daily_spend_cap_cents=100, actor=ADMIN)
    await store.set_nsfw(GUILD, policy="spoiler", charge=True, actor=ADMIN)
    await store.set_allowance(GUILD, amount=10, period="week", role=5, cap=20, actor=ADMIN)
    await store.set_audit_channel(GUILD, 900, actor=ADMIN)
    await store.set_confirm_cost(GUILD, True, actor=ADMIN)
    await store.set_paused(GUILD, True, "no", actor=ADMIN)
    await store.add_pattern(GUILD, "cat", "word", actor=ADMIN)
    assert await store.get(OTHER_GUILD) == GuildSettings(guild_id=OTHER_GUILD)
    assert await store.patterns(OTHER_GUILD) == []

    await store.add_channel(OTHER_GUILD, 11, actor=MOD)   # same channel id, other server
    await store.add_pattern(OTHER_GUILD, "cat", "word", actor=MOD)
    await store.clear_channels(OTHER_GUILD, actor=MOD)
    assert await store.remove_pattern(OTHER_GUILD, "cat", actor=MOD)
    first = await store.get(GUILD)
    assert first.channel_ids == {11} and first.paused and first.updated_by == ADMIN
    assert [e.pattern for e in await store.patterns(GUILD)] == ["cat"]


async def test_settings_survive_reopening_the_database(db_path: Path) -> None:
    db = await Database.open(db_path)
    store = GuildSettingsStore(db)
    await store.add_channel(GUILD, 11, actor=ADMIN)
    await store.set_limits(GUILD, daily_jobs=3, daily_spend_cap_cents=2000, actor=ADMIN)
    await store.set_paused(GUILD, True, "back soon", actor=ADMIN)
    await store.add_pattern(GUILD, r"b[a4]d", "regex", actor=ADMIN)
    before = await store.get(GUILD)
    await db.close()

    db = await Database.open(db_path)
    try:
        store = GuildSettingsStore(db)
        assert await store.get(GUILD) == before
        entries = await store.patterns(GUILD)
        assert [(e.pattern, e.kind, e.added_by) for e in entries] == [(r"b[a4]d", "regex", ADMIN)]
    finally:
        await db.close()


async def test_blocklist_add_remove_normalise(store: GuildSettingsStore, clock: Clock) -> None:
    assert await store.add_pattern(GUILD, "  Bad   WORD ", "word", actor=ADMIN)
    assert not await store.add_pattern(GUILD, "bad word", "word", actor=MOD)  # same entry
    assert await store.add_pattern(GUILD, r"\bB[a4]d\b", "regex", actor=MOD)
    entries = await store.patterns(GUILD)
    assert [(e.pattern, e.kind, e.added_by, e.added_at) for e in entries] == [
        ("bad word", "word", ADMIN, clock.now), (r"\bB[a4]d\b", "regex", MOD, clock.now)]
    assert await store.remove_pattern(GUILD, "BAD Word", actor=ADMIN)  # word: any case
    assert not await store.remove_pattern(GUILD, r"\bb[a4]d\b", actor=ADMIN)  # regex: exact
    assert await store.remove_pattern(GUILD, r"\bB[a4]d\b", actor=ADMIN)
    assert await store.patterns(GUILD) == []


async def test_blocklist_store_refuses_what_it_can_judge(
    store: GuildSettingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for pattern, kind in (("", "word"), ("   ", "regex"), ("x" * 201, "word"), ("(", "regex"),
                          ("cat", "phrase"), (r"(.+)\1b", "regex"), ("(?=a)", "regex"),
                          ("a*", "regex"), (r"\pL{100}", "regex")):  # as admission.blocklist does
        with pytest.raises(GuildSettingsError):
            await store.add_pattern(GUILD, pattern, kind, actor=ADMIN)  # type: ignore[arg-type]
    assert await store.add_pattern(GUILD, "x" * 200, "word", actor=ADMIN)
    monkeypatch.setattr(gs_module, "MAX_PATTERNS", 2)
    await store.add_pattern(GUILD, "two", "word", actor=ADMIN)
    with pytest.raises(GuildSettingsError, match="remove one first"):
        await store.add_pattern(GUILD, "three", "word", actor=ADMIN)
    assert len(await store.patterns(GUILD)) == 2


async def test_check_constraints_back_up_the_setters(db: Database) -> None:
    bad_rows = (
        "INSERT INTO guild_settings (guild_id, nsfw_policy, updated_at) VALUES (1, 'blur', 0)",
        "INSERT INTO guild_settings (guild_id, cooldown_seconds, updated_at) VALUES (1, -1, 0)",
        "INSERT INTO guild_settings (guild_id, daily_jobs, updated_at) VALUES (1, 0, 0)",
        "INSERT INTO guild_settings (guild_id, allowance_period, updated_at)"
        " VALUES (1, 'month', 0)",
        "INSERT INTO guild_settings (guild_id, paused, updated_at) VALUES (1, 2, 0)",
        "INSERT INTO guild_settings (guild_id, nsfw_charge, updated_at) VALUES (1, 'yes', 0)",
        "INSERT INTO guild_blocklist (guild_id, pattern, kind, added_at)"
        " VALUES (2, 'x', 'glob', 0)",
        "INSERT INTO guild_blocklist (guild_id, pattern, kind, added_at)"  # noqa: S608
        f" VALUES (2, '{'x' * 201}', 'word', 0)",
    )
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO guild_settings (guild_id, updated_at) VALUES (2, 0)")
    for sql in bad_rows:
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(sql)
    with pytest.raises(sqlite3.IntegrityError):  # a channel of a guild with no settings row
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO guild_channels VALUES (3, 4)")
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO accounts (guild_id, user_id, created_at) VALUES (2, 5, 0)")
    for values in ("(2, 5, 'day', 0, 10, NULL, 0)",       # an amount without its ledger row
                   "(2, 5, 'month', 0, 0, NULL, 0)",
                   "(2, 5, 'day', 0, -1, NULL, 0)",
                   "(2, 6, 'day', 0, 0, NULL, 0)"):       # no such account
        with pytest.raises(sqlite3.IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO allowance_grants (guild_id, user_id, period, period_start,"  # noqa: S608
                    f" amount, ledger_id, granted_at) VALUES {values}")


# -- usage ------------------------------------------------------------------------------------

async def make_job(jobs: JobStore, clock: Clock, at: float, *, user: int = ALICE,
                   guild: int = GUILD, price: int = 100, end: JobState | None = None) -> int:
    clock.now = at
    job = await jobs.create(guild_id=guild, channel_id=1, user_id=user, request=REQUEST,
                            price=price, max_active=100)
    if end is JobState.DELIVERED:
        await jobs.transition(job.id, [JobState.QUEUED], JobState.DELIVERED,
                              settle_as="captured")
    elif end in (JobState.FAILED, JobState.CANCELLED):
        assert end is not None
        await jobs.transition(job.id, [JobState.QUEUED], end, settle_as="released")
    elif end is JobState.RUNNING:
        await jobs.transition(job.id, [JobState.QUEUED], JobState.RUNNING)
    return job.id


async def test_usage_counts_active_and_delivered_jobs_only(db: Database, clock: Clock) -> None:
    credits = CreditStore(db, clock=clock)
    jobs = JobStore(db, clock=clock)
    for user, guild in ((ALICE, GUILD), (BOB, GUILD), (ALICE, OTHER_GUILD)):
        await credits.grant(guild, user, 10_000, actor_id=ADMIN)
    yesterday = DAY - 600
    await make_job(jobs, clock, yesterday, end=JobState.DELIVERED, price=225)  # before the day
    await make_job(jobs, clock, DAY + 10, end=JobState.DELIVERED, price=150)
    await make_job(jobs, clock, DAY + 20, end=JobState.FAILED, price=100)     # refunded
    await make_job(jobs, clock, DAY + 30, end=JobState.CANCELLED, price=100)  # refunded
    await make_job(jobs, clock, DAY + 40, end=JobState.RUNNING, price=100)
    await make_job(jobs, clock, DAY + 50, price=150)                           # queued
    await make_job(jobs, clock, DAY + 60, user=BOB, end=JobState.DELIVERED, price=100)
    await make_job(jobs, clock, DAY + 70, guild=OTHER_GUILD, price=225)
    await make_job(jobs, clock, DAY + 80, end=JobState.CANCELLED)  # last, but does not count

    assert await count_jobs_since(db, GUILD, ALICE, DAY) == 3      # delivered, running, queued
    assert await count_jobs_since(db, GUILD, ALICE, yesterday) == 4
    assert await count_jobs_since(db, GUILD, BOB, DAY) == 1
    assert await last_job_at(db, GUILD, ALICE) == DAY + 50
    assert await last_job_at(db, GUILD, 4242) is None
    assert await active_job_count(db, GUILD, ALICE) == 2
    assert await active_job_count(db, OTHER_GUILD, ALICE) == 1
    assert await guild_spend_since(db, GUILD, DAY) == 150 + 100 + 150 + 100
    assert await guild_spend_since(db, GUILD, yesterday) == 225 + 500
    assert await guild_spend_since(db, OTHER_GUILD, DAY) == 225
    assert await guild_spend_since(db, 4242, DAY) == 0
    assert await guild_jobs_since(db, GUILD, DAY) == 4
    assert await limit_usage(db, GUILD, ALICE, since=DAY) == LimitUsage(
        jobs_since=3, last_job_at=DAY + 50, active_jobs=2, guild_spend_since=500)
    assert await audit(db) == []


# -- allowance --------------------------------------------------------------------------------

async def allowance_rows(db: Database) -> list[tuple[int, int, str, int, int, int | None]]:
    async with db.reading() as conn, conn.execute(
        "SELECT guild_id, user_id, period, period_start, amount, ledger_id"
        " FROM allowance_grants ORDER BY rowid"
    ) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def test_allowance_granted_exactly_once_under_50_concurrent_calls(
    db: Database, credits: CreditStore
) -> None:
    results = await asyncio.gather(*(
        grant_allowance_once(db, GUILD, ALICE, 200, DAY, DAY + 5.0, period="day",
                             starting_credits=0)
        for _ in range(50)
    ))
    assert sorted(results) == [0] * 49 + [200]
    assert (await credits.balance(GUILD, ALICE)).available == 200
    history = await credits.history(GUILD, ALICE, limit=100)
    assert [(e.kind, e.delta_balance, e.actor_id, e.reason) for e in history] == [
        ("grant", 200, None, "daily allowance")]
    assert await allowance_rows(db) == [(GUILD, ALICE, "day", DAY, 200, history[0].id)]
    assert await audit(db) == []


async def test_allowance_once_across_two_connections(db_path: Path) -> None:
    first, second = await Database.open(db_path), await Database.open(db_path)
    try:
        results = await asyncio.gather(*(
            grant_allowance_once((first, second)[i % 2], GUILD, ALICE, 75, DAY, DAY + 1.0,
                                 period="day", starting_credits=0)
            for i in range(40)
        ))
        assert results.count(75) == 1 and results.count(0) == 39
        assert (await CreditStore(first).balance(GUILD, ALICE)).available == 75
        assert await audit(first) == []
    finally:
        await first.close()
        await second.close()


async def test_allowance_cap_is_respected(db: Database, credits: CreditStore) -> None:
    await credits.grant(GUILD, ALICE, 150, actor_id=ADMIN)
    await credits.grant(GUILD, BOB, 300, actor_id=ADMIN)
    assert await grant_allowance_once(db, GUILD, ALICE, 100, DAY, DAY + 1.0, period="day",
                                      starting_credits=0, cap=200) == 50
    assert (await credits.balance(GUILD, ALICE)).available == 200
    assert await grant_allowance_once(db, GUILD, BOB, 100, DAY, DAY + 1.0, period="day",
                                      starting_credits=0, cap=200) == 0
    # Bob used up today's allowance even though it granted nothing: spending and asking
    # again the same day does not top him up.
    await credits.revoke(GUILD, BOB, 250, actor_id=ADMIN)
    assert await grant_allowance_once(db, GUILD, BOB, 100, DAY, DAY + 2.0, period="day",
                                      starting_credits=0, cap=200) == 0
    assert (await credits.balance(GUILD, BOB)).available == 50
    assert await allowance_rows(db) == [
        (GUILD, ALICE, "day", DAY, 50, (await credits.history(GUILD, ALICE))[0].id),
        (GUILD, BOB, "day", DAY, 0, None)]
    # The next day the cap still applies: 50 -> 150, not 200 -> more.
    assert await grant_allowance_once(db, GUILD, BOB, 100, DAY + 86_400, DAY + 86_401.0,
                                      period="day", starting_credits=0, cap=200) == 100
    assert await audit(db) == []


async def test_a_new_period_grants_again(db: Database, credits: CreditStore) -> None:
    async def grant(start: int, period: Period = "day") -> int:
        return await grant_allowance_once(db, GUILD, ALICE, 30, start, start + 1.0,
                                          period=period, starting_credits=0)

    assert await grant(DAY) == 30
    assert await grant(DAY) == 0
    assert await grant(DAY + 86_400) == 30
    assert await grant(DAY + 86_400) == 0
    assert await grant(DAY, "week") == 30  # a weekly allowance is its own period
    assert await grant(DAY, "week") == 0
    assert await grant_allowance_once(db, OTHER_GUILD, ALICE, 30, DAY, DAY + 1.0, period="day",
                                      starting_credits=0) == 30  # per server
    assert (await credits.balance(GUILD, ALICE)).available == 90
    reasons = [e.reason for e in reversed(await credits.history(GUILD, ALICE))]
    assert reasons == ["daily allowance", "daily allowance", "weekly allowance"]
    assert await audit(db) == []


async def test_allowance_for_a_new_account_keeps_the_starting_credits(db: Database) -> None:
    credits = CreditStore(db, starting_credits=25)
    assert await grant_allowance_once(db, GUILD, ALICE, 100, DAY, DAY + 1.0, period="day",
                                      starting_credits=25, cap=110) == 85
    assert (await credits.balance(GUILD, ALICE)).available == 110
    reasons = [e.reason for e in reversed(await credits.history(GUILD, ALICE))]
    assert reasons == ["starting credits", "daily allowance"]
    # An allowance of 0 is no allowance: nothing is recorded, not even the period.
    assert await grant_allowance_once(db, GUILD, BOB, 0, DAY, DAY + 1.0, period="day",
                                      starting_credits=25) == 0
    assert len(await allowance_rows(db)) == 1
    with pytest.raises(ValueError, match="negative"):
        await grant_allowance_once(db, GUILD, BOB, -1, DAY, DAY + 1.0, period="day",
                                   starting_credits=0)
    assert await audit(db) == []
