"""The ledger under random operations (issue 13, first part): a Hypothesis state machine
drives grants, revokes, sets, reservations, captures, releases, cancels, allowances, second
settlements and restarts (the database closed and opened again) against the real storage
on a real SQLite file, and after every step checks the books against a model and against
themselves (`storage.credits.audit`): no negative balance, balance = sum of the ledger,
held = sum of open reservations, no reservation settled twice, nothing applied twice.

A failure prints the shortest sequence of steps that breaks a rule. More examples with
RELIABILITY_EXAMPLES=2000 (the default keeps CI fast)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storage.credits import CreditStore, InsufficientCreditsError, audit, settle
from storage.database import Database
from storage.jobs import JobState, JobStore
from storage.usage import grant_allowance_once
from tests.reliability.scale import record, size
from wavespeed.models import GenerationRequest

GUILD = 1
USERS = (11, 12, 13)
REQUEST = GenerationRequest(videos=("https://ws.example/media/a/ref.mp4",), prompt="a cat")
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES") or size(ci=40, soak=2000))


@dataclass
class Held:
    """A job the model knows holds credits."""

    job_id: int
    user: int
    price: int
    forfeited: bool = False


@dataclass
class Model:
    available: dict[int, int] = field(default_factory=lambda: dict.fromkeys(USERS, 0))
    held: dict[int, list[Held]] = field(default_factory=lambda: {u: [] for u in USERS})
    periods: set[tuple[int, int]] = field(default_factory=set)  # allowance periods used


class LedgerMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")
    settled = Bundle("settled")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-"))
        self.path = self.directory / "bot.sqlite3"
        self.now = 1_700_000_000.0
        self.model = Model()
        self.db: Database = self.run(Database.open(self.path))

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def clock(self) -> float:
        self.now += 1.0
        return self.now

    @property
    def credits(self) -> CreditStore:
        return CreditStore(self.db, clock=self.clock)

    @property
    def store(self) -> JobStore:
        return JobStore(self.db, clock=self.clock)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ---- moves ---------------------------------------------------------------------------

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 500))
    def grant(self, user: int, amount: int) -> None:
        self.run(self.credits.grant(GUILD, user, amount, actor_id=1))
        self.model.available[user] += amount

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 600))
    def revoke(self, user: int, amount: int) -> None:
        try:
            self.run(self.credits.revoke(GUILD, user, amount, actor_id=1))
        except InsufficientCreditsError:
            assert self.model.available[user] < amount
            return
        assert self.model.available[user] >= amount
        self.model.available[user] -= amount

    @rule(user=st.sampled_from(USERS), amount=st.integers(0, 800))
    def set_balance(self, user: int, amount: int) -> None:
        self.run(self.credits.set_balance(GUILD, user, amount, actor_id=1))
        self.model.available[user] = amount
        for held in self.model.held[user]:
            held.forfeited = True  # a refund would land on top of the amount they chose

    @rule(target=jobs, user=st.sampled_from(USERS), price=st.integers(1, 300))
    def reserve(self, user: int, price: int) -> Any:
        try:
            job = self.run(self.store.create(
                guild_id=GUILD, channel_id=5, user_id=user, request=REQUEST, price=price,
                max_active=1000))
        except InsufficientCreditsError:
            assert self.model.available[user] < price
            return None
        assert self.model.available[user] >= price
        self.model.available[user] -= price
        held = Held(job.id, user, price)
        self.model.held[user].append(held)
        assert job.balance_after == self.model.available[user]
        return held

    def _finish(self, held: Held | None, state: JobState, outcome: str) -> Held | None:
        if held is None:
            return None
        moved = self.run(self.store.transition(
            held.job_id, [JobState.QUEUED, JobState.RUNNING], state, settle_as=outcome))
        assert moved is not None, "a held job's first settlement must apply"
        self.model.held[held.user].remove(held)
        if outcome == "released" and not held.forfeited:
            self.model.available[held.user] += held.price
        return held

    @rule(target=settled, held=consumes(jobs))
    def capture(self, held: Held | None) -> Held | None:
        return self._finish(held, JobState.DELIVERED, "captured")

    @rule(target=settled, held=consumes(jobs))
    def release(self, held: Held | None) -> Held | None:
        return self._finish(held, JobState.FAILED, "released")

    @rule(target=settled, held=consumes(jobs))
    def cancel(self, held: Held | None) -> Held | None:
        return self._finish(held, JobState.CANCELLED, "released")

    @rule(held=jobs)
    def start_running(self, held: Held | None) -> None:
        if held is not None:  # a state change that moves no money
            self.run(self.store.transition(held.job_id, [JobState.QUEUED], JobState.RUNNING,
                                           task_id=f"task-{held.job_id}"))

    @rule(done=settled, outcome=st.sampled_from(["captured", "released"]),
          state=st.sampled_from([JobState.DELIVERED, JobState.FAILED]))
    def settle_again(self, done: Held | None, outcome: str, state: JobState) -> None:
        """A second press, a retried delivery, a late reply: none may move money again."""
        if done is None:
            return
        job = self.run(self.store.get(done.job_id))
        assert job is not None and job.state.is_terminal
        again = self.run(self.store.transition(
            done.job_id, [JobState.QUEUED, JobState.RUNNING], state, settle_as=outcome))
        assert again is None

        async def direct() -> bool:
            async with self.db.transaction() as conn:
                return await settle(conn, job.reservation_id, outcome, now=self.clock())

        assert self.run(direct()) is False

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 300), period=st.integers(0, 2),
          cap=st.one_of(st.none(), st.integers(0, 600)))
    def allowance(self, user: int, amount: int, period: int, cap: int | None) -> None:
        granted = self.run(grant_allowance_once(
            self.db, GUILD, user, amount, period * 86400, self.clock(), period="day",
            starting_credits=0, cap=cap))
        if (user, period) in self.model.periods:
            assert granted == 0
            return
        self.model.periods.add((user, period))
        held = sum(h.price for h in self.model.held[user])
        expected = amount if cap is None else max(0, min(amount, cap - held -
                                                          self.model.available[user]))
        assert granted == expected
        self.model.available[user] += granted

    @precondition(lambda self: True)
    @rule()
    def restart(self) -> None:
        self.run(self.db.close())
        self.db = self.run(Database.open(self.path))

    # ---- what must always hold -------------------------------------------------------------

    @invariant()
    def books_agree(self) -> None:
        assert self.run(audit(self.db)) == []
        for user in USERS:
            balance = self.run(self.credits.balance(GUILD, user))
            assert balance.available >= 0 and balance.held >= 0
            assert balance.available == self.model.available[user], user
            assert balance.held == sum(h.price for h in self.model.held[user]), user


def test_ledger_properties() -> None:
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=40, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
    # Reached only if every example held every rule: nothing was lost.
    record("ledger properties", "random grants, revokes, sets, reservations, captures, "
           "releases, allowances, cancels and restarts; every rule checked after each step",
           EXAMPLES, 0, command=f"RELIABILITY_EXAMPLES={EXAMPLES} scripts/run-tests "
           "tests/reliability/test_ledger_properties.py", detail="runs of up to 40 steps")
