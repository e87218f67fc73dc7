"""Credits: grants, reservations and settlement, raced and audited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.credits import CreditError, CreditStore, InsufficientCreditsError, audit, settle
from storage.database import Database
from storage.jobs import JobLimitError, JobState, JobStore
from tests.conftest import ADMIN, ALICE, BOB, GUILD
from wavespeed.models import GenerationRequest

REQUEST = GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt="a cat surfing")


async def ledger_sums(db: Database, guild: int, user: int) -> tuple[int, int, int, int]:
    async with db.reading() as conn, conn.execute(
        "SELECT a.balance, a.held, (SELECT COALESCE(SUM(delta_balance), 0) FROM ledger l"
        " WHERE l.guild_id = a.guild_id AND l.user_id = a.user_id),"
        " (SELECT COALESCE(SUM(delta_held), 0) FROM ledger l"
        " WHERE l.guild_id = a.guild_id AND l.user_id = a.user_id)"
        " FROM accounts a WHERE guild_id = ? AND user_id = ?", (guild, user),
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def test_200_concurrent_reservations_exactly_three_succeed(
    db: Database, credits: CreditStore, jobs: JobStore
) -> None:
    await credits.grant(GUILD, ALICE, 350, actor_id=ADMIN, reason="test")  # covers 3 x 100

    async def attempt() -> bool:
        try:
            await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                              price=100, max_active=1000)
        except InsufficientCreditsError:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(200)))
    assert results.count(True) == 3
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (50, 300)
    assert await ledger_sums(db, GUILD, ALICE) == (50, 300, 50, 300)
    assert len(await jobs.for_user(GUILD, ALICE, limit=500)) == 3  # refused ones left no job
    assert await audit(db) == []


async def test_concurrent_reservations_across_two_connections(db_path: Path) -> None:
    """Two connections to one file (two processes, say) racing: still exactly 3."""
    first, second = await Database.open(db_path), await Database.open(db_path)
    try:
        await CreditStore(first).grant(GUILD, ALICE, 300, actor_id=ADMIN)
        stores = (JobStore(first), JobStore(second))

        async def attempt(i: int) -> bool:
            try:
                await stores[i % 2].create(guild_id=GUILD, channel_id=1, user_id=ALICE,
                                           request=REQUEST, price=100, max_active=1000)
            except InsufficientCreditsError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(200)))
        assert results.count(True) == 3
        assert await ledger_sums(first, GUILD, ALICE) == (0, 300, 0, 300)
        assert await audit(first) == []
    finally:
        await first.close()
        await second.close()


async def test_capture_and_release_are_idempotent(db: Database, credits: CreditStore,
                                                  jobs: JobStore) -> None:
    await credits.grant(GUILD, ALICE, 500, actor_id=ADMIN)
    delivered = await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                                  price=150, max_active=5)
    refunded = await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                                 price=100, max_active=5)
    for _ in range(3):
        async with db.transaction() as conn:
            await settle(conn, delivered.reservation_id, "captured", now=1.0)
            await settle(conn, refunded.reservation_id, "released", now=1.0)
    # A release after a capture (and the other way round) changes nothing either.
    async with db.transaction() as conn:
        assert not await settle(conn, delivered.reservation_id, "released", now=2.0)
        assert not await settle(conn, refunded.reservation_id, "captured", now=2.0)
    balance = await credits.balance(GUILD, ALICE)
    assert (balance.available, balance.held) == (350, 0)
    kinds = [e.kind for e in reversed(await credits.history(GUILD, ALICE, limit=50))]
    assert kinds == ["grant", "reserve", "reserve", "capture", "release"]
    assert await audit(db) == []


async def test_a_new_job_records_the_balance_its_reservation_left(
        db: Database, credits: CreditStore, jobs: JobStore) -> None:
    await credits.grant(GUILD, ALICE, 500, actor_id=ADMIN)
    first = await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                              price=150, max_active=5)
    second = await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                               price=100, max_active=5)
    assert (first.balance_after, second.balance_after) == (350, 250)
    assert (await credits.balance(GUILD, ALICE)).available == 250
    again = await jobs.get(first.id)   # stored, not only returned
    assert again is not None and again.balance_after == 350
    assert (again.status_channel_id, again.status_message_id, again.thread_id) == (
        None, None, None)
    await jobs.record_messages(first.id, status_channel_id=5, status_message_id=6,
                               thread_id=None)
    await jobs.record_messages(second.id, status_channel_id=5, status_message_id=8,
                               thread_id=9)
    recorded = [await jobs.get(j.id) for j in (first, second)]
    assert [(j.status_channel_id, j.status_message_id, j.thread_id, j.balance_after)
            for j in recorded if j is not None] == [(5, 6, None, 350), (5, 8, 9, 250)]


async def test_settling_via_transition_happens_once(credits: CreditStore, jobs: JobStore) -> None:
    await credits.grant(GUILD, ALICE, 100, actor_id=ADMIN)
    job = await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                            price=100, max_active=5)
    results = await asyncio.gather(*(
        jobs.transition(job.id, [JobState.QUEUED], JobState.CANCELLED, settle_as="released")
        for _ in range(10)
    ))
    assert sum(r is not None for r in results) == 1
    assert (await credits.balance(GUILD, ALICE)).available == 100


async def test_grant_revoke_set_history(db: Database, credits: CreditStore) -> None:
    await credits.grant(GUILD, ALICE, 200, actor_id=ADMIN, reason="welcome")
    await credits.revoke(GUILD, ALICE, 50, actor_id=ADMIN, reason="oops")
    with pytest.raises(InsufficientCreditsError):
        await credits.revoke(GUILD, ALICE, 1000, actor_id=ADMIN)
    await credits.set_balance(GUILD, ALICE, 20, actor_id=ADMIN, reason="reset")
    assert await credits.set_balance(GUILD, ALICE, 20, actor_id=ADMIN) is None
    for bad in (0, -5):
        with pytest.raises(CreditError):
            await credits.grant(GUILD, ALICE, bad, actor_id=ADMIN)
    with pytest.raises(CreditError):
        await credits.set_balance(GUILD, ALICE, -1, actor_id=ADMIN)
    history = await credits.history(GUILD, ALICE, limit=10)
    assert [(e.kind, e.delta_balance, e.balance_after, e.actor_id, e.reason) for e in history] == [
        ("adjust", -130, 20, ADMIN, "reset"),
        ("revoke", -50, 150, ADMIN, "oops"),
        ("grant", 200, 200, ADMIN, "welcome"),
    ]
    assert [e.kind for e in await credits.history(GUILD, ALICE, limit=1, offset=1)] == ["revoke"]
    assert await credits.history_count(GUILD, ALICE) == 3
    assert (await credits.balance(GUILD, BOB)).available == 0  # other users untouched
    assert await credits.balance(GUILD + 1, ALICE) != await credits.balance(GUILD, ALICE)
    assert await audit(db) == []


async def test_starting_credits_granted_once(db: Database) -> None:
    store = CreditStore(db, starting_credits=100)
    await asyncio.gather(*(store.balance(GUILD, ALICE) for _ in range(20)))
    history = await store.history(GUILD, ALICE)
    assert [(e.kind, e.delta_balance, e.reason) for e in history] == [
        ("grant", 100, "starting credits")]


async def test_concurrent_grants_and_revokes_never_go_negative(
    db: Database, credits: CreditStore
) -> None:
    await credits.grant(GUILD, ALICE, 10, actor_id=ADMIN)

    async def revoke() -> bool:
        try:
            await credits.revoke(GUILD, ALICE, 3, actor_id=ADMIN)
        except InsufficientCreditsError:
            return False
        return True

    outcomes = await asyncio.gather(*(revoke() for _ in range(50)),
                                    *(credits.grant(GUILD, ALICE, 1, actor_id=ADMIN)
                                      for _ in range(5)))
    revoked = sum(1 for o in outcomes[:50] if o is True)
    balance = (await credits.balance(GUILD, ALICE)).available
    assert balance == 10 + 5 - 3 * revoked >= 0
    assert await audit(db) == []


async def test_active_job_limit_is_enforced_atomically(credits: CreditStore,
                                                       jobs: JobStore) -> None:
    await credits.grant(GUILD, ALICE, 10_000, actor_id=ADMIN)

    async def attempt() -> bool:
        try:
            await jobs.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                              price=100, max_active=2)
        except JobLimitError:
            return False
        return True

    assert (await asyncio.gather(*(attempt() for _ in range(30)))).count(True) == 2
    assert (await credits.balance(GUILD, ALICE)).available == 10_000 - 200
