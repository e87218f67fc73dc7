"""Persisted jobs. Each transition is a conditional UPDATE (`WHERE state IN (...)`), so two
actors racing for one job (the scheduler and a cancel, say) cannot both win; and a
transition that settles money does so in the same transaction."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiosqlite

from storage.credits import ensure_account, reserve, settle
from storage.database import Database
from storage.offers import check_open, offer_key
from wavespeed.models import GenerationRequest


class JobState(StrEnum):
    QUEUED = "queued"          # credits held, waiting for a WaveSpeed slot
    SUBMITTING = "submitting"  # the POST may be on the wire: never POST again from here
    CHECKING = "checking"      # its reply was lost: looking for the task in WaveSpeed's history
    RUNNING = "running"        # WaveSpeed has the task (task_id known): poll it
    DELIVERING = "delivering"  # output ready: download and post it
    DELIVERED = "delivered"    # posted, credits captured
    FAILED = "failed"          # credits released
    CANCELLED = "cancelled"    # credits released

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


ACTIVE_STATES = (JobState.QUEUED, JobState.SUBMITTING, JobState.CHECKING, JobState.RUNNING,
                 JobState.DELIVERING)
TERMINAL_STATES = (JobState.DELIVERED, JobState.FAILED, JobState.CANCELLED)


class AlreadyStarted(Exception):
    """The press or command that would start this job already started `job`."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"already started as job {job.id}")
        self.job = job


class JobLimitError(Exception):
    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"already {active} unfinished jobs; the limit is {limit}")
        self.active = active
        self.limit = limit


@dataclass(frozen=True)
class Job:
    id: int
    guild_id: int
    channel_id: int
    user_id: int
    state: JobState
    request: GenerationRequest
    price: int
    reservation_id: int
    task_id: str | None
    output_url: str | None
    output_nsfw: bool | None
    submit_attempts: int
    not_before: float | None
    failure_code: str | None
    failure_detail: str | None
    needs_reconciliation: bool
    reconciliation_note: str | None
    delivery: dict[str, Any] | None
    notified: bool = False
    created_at: float = 0.0
    submitted_at: float | None = None
    finished_at: float | None = None
    start_key: str | None = None
    delivery_started_at: float | None = None
    delivery_attempted_at: float | None = None
    watch_until: float | None = None
    late_outcome: str | None = None
    refund_forfeited: bool = False   # /credits set while held: a release refunds nothing
    submit_ended_at: float | None = None  # a lost submit's POST ended; None: cut off mid-POST
    lost_outcome: str | None = None  # what the history search for a lost submit found
    lost_candidates: tuple[str, ...] = ()  # task ids it matched at its last search
    # Where its messages are (JobStore.record_messages); None until posted, or if never.
    status_channel_id: int | None = None
    status_message_id: int | None = None
    thread_id: int | None = None  # None: it has no thread, and is delivered in its channel
    balance_after: int | None = None  # what its owner had left once its price was reserved

    @property
    def refunded(self) -> str:
        """'refunded', or 'not refunded' when a set balance forfeited this job's hold."""
        return "not refunded" if self.refund_forfeited else "refunded"

    @property
    def user_key(self) -> tuple[int, int]:
        return (self.guild_id, self.user_id)

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Job:
        return cls(
            id=row["id"], guild_id=row["guild_id"], channel_id=row["channel_id"],
            user_id=row["user_id"], state=JobState(row["state"]),
            request=GenerationRequest.from_json(json.loads(row["request"])),
            price=row["price"], reservation_id=row["reservation_id"], task_id=row["task_id"],
            output_url=row["output_url"],
            output_nsfw=None if row["output_nsfw"] is None else bool(row["output_nsfw"]),
            submit_attempts=row["submit_attempts"], not_before=row["not_before"],
            failure_code=row["failure_code"], failure_detail=row["failure_detail"],
            needs_reconciliation=bool(row["needs_reconciliation"]),
            reconciliation_note=row["reconciliation_note"],
            delivery=json.loads(row["delivery"]) if row["delivery"] else None,
            notified=bool(row["notified"]),
            created_at=row["created_at"], submitted_at=row["submitted_at"],
            finished_at=row["finished_at"], start_key=row["start_key"],
            delivery_started_at=row["delivery_started_at"],
            delivery_attempted_at=row["delivery_attempted_at"],
            watch_until=row["watch_until"], late_outcome=row["late_outcome"],
            refund_forfeited=bool(row["refund_forfeited"]),
            submit_ended_at=row["submit_ended_at"], lost_outcome=row["lost_outcome"],
            lost_candidates=tuple(json.loads(row["lost_candidates"] or "[]")),
            status_channel_id=row["status_channel_id"],
            status_message_id=row["status_message_id"], thread_id=row["thread_id"],
            balance_after=row["balance_after"],
        )


_SELECT = ("SELECT j.*, r.id AS reservation_id, r.refund_forfeited AS refund_forfeited"
           " FROM jobs j JOIN reservations r ON r.job_id = j.id")

# Columns a transition may set besides the state.
_SETTABLE = frozenset({
    "task_id", "output_url", "output_nsfw", "submit_attempts", "not_before", "failure_code",
    "failure_detail", "needs_reconciliation", "delivery", "notified", "submitted_at",
    "finished_at", "delivery_started_at", "delivery_attempted_at", "watch_until",
    "late_outcome", "submit_ended_at", "lost_outcome", "lost_candidates",
})


class JobStore:
    def __init__(
        self, db: Database, *, starting_credits: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self._starting_credits = starting_credits
        self._clock = clock

    async def create(
        self, *, guild_id: int, channel_id: int, user_id: int, request: GenerationRequest,
        price: int, max_active: int, start_key: str | None = None, offer_token: str | None = None,
    ) -> Job:
        """Insert a queued job and reserve its price, all or nothing.
        Raises InsufficientCreditsError or JobLimitError; then nothing is written.
        The job's `balance_after` is what its owner has left once its price is held.

        `start_key` names what started it (an interaction, an accepted offer): a second
        create with the same key raises AlreadyStarted with the first job, whatever the
        timing, in this process or another one on the same file. With `offer_token` the
        key is that offer's, and the offer must still be open (else OfferClosed)."""
        now = self._clock()
        if offer_token is not None:
            start_key = offer_key(offer_token)
        async with self.db.transaction() as conn:
            if start_key is not None:
                async with conn.execute(
                    f"{_SELECT} WHERE j.start_key = ?", (start_key,)
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    raise AlreadyStarted(Job.from_row(row))
            if offer_token is not None:
                await check_open(conn, offer_token, now)
            await ensure_account(conn, guild_id, user_id,
                                 starting_credits=self._starting_credits, now=now)
            placeholders = ",".join("?" * len(ACTIVE_STATES))
            async with conn.execute(
                f"SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?"  # noqa: S608
                f" AND state IN ({placeholders})",
                (guild_id, user_id, *ACTIVE_STATES),
            ) as cur:
                row = await cur.fetchone()
            active = int(row[0]) if row else 0
            if active >= max_active:
                raise JobLimitError(active, max_active)
            cur = await conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, state, request, price,"
                " created_at, updated_at, start_key) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                (guild_id, channel_id, user_id, json.dumps(request.to_json()), price,
                 now, now, start_key),
            )
            job_id = cur.lastrowid
            assert job_id is not None
            await reserve(conn, guild_id, user_id, price, job_id, now=now)
            await conn.execute(
                "UPDATE jobs SET balance_after = (SELECT balance FROM accounts"
                " WHERE guild_id = ? AND user_id = ?) WHERE id = ?",
                (guild_id, user_id, job_id))
            await _event(conn, job_id, None, JobState.QUEUED, None, now)
            return await _get(conn, job_id)

    async def get(self, job_id: int) -> Job | None:
        async with self.db.reading() as conn:
            return await _find(conn, job_id)

    async def transition(
        self, job_id: int, from_states: Iterable[JobState], to_state: JobState, *,
        detail: str | None = None, settle_as: str | None = None, **fields: Any,
    ) -> Job | None:
        """Move a job that is in one of `from_states`; None if it was not (someone else moved
        it first). `settle_as` ('captured' or 'released') settles its reservation in the same
        transaction."""
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise ValueError(f"not settable: {sorted(unknown)}")
        froms = tuple(from_states)
        now = self._clock()
        values = {k: _encode(v) for k, v in fields.items()}
        if to_state.is_terminal:
            values.setdefault("finished_at", now)
        assignments = "".join(f", {name} = ?" for name in values)
        placeholders = ",".join("?" * len(froms))
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                f"UPDATE jobs SET state = ?, updated_at = ?{assignments}"  # noqa: S608
                f" WHERE id = ? AND state IN ({placeholders}) RETURNING state",
                (to_state, now, *values.values(), job_id, *froms),
            )
            moved = await cur.fetchone()
            await cur.close()
            if moved is None:
                return None
            job = await _get(conn, job_id)
            await _event(conn, job_id, None, to_state, detail, now)
            if settle_as is not None:
                await settle(conn, job.reservation_id, settle_as, now=now, reason=detail)
            return job

    async def update_fields(self, job_id: int, **fields: Any) -> None:
        """Set bookkeeping columns without a state change (e.g. `notified`)."""
        unknown = set(fields) - _SETTABLE
        if unknown or not fields:
            raise ValueError(f"not settable: {sorted(unknown)}")
        values = {k: _encode(v) for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608
                (*values.values(), self._clock(), job_id),
            )

    async def record_messages(
        self, job_id: int, *, status_channel_id: int, status_message_id: int,
        thread_id: int | None,
    ) -> None:
        """Where the job's status message (and its thread, if it has one) were posted: its
        updates edit that message and its clip goes to that thread, after a restart too."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE jobs SET status_channel_id = ?, status_message_id = ?, thread_id = ?,"
                " updated_at = ? WHERE id = ?",
                (status_channel_id, status_message_id, thread_id, self._clock(), job_id))

    async def active(self) -> list[Job]:
        return await self._select(
            f"WHERE j.state IN ({','.join('?' * len(ACTIVE_STATES))}) ORDER BY j.id",
            ACTIVE_STATES,
        )

    async def unnotified(self) -> list[Job]:
        """Finished jobs whose owner has not been told yet (a crash came in between)."""
        return await self._select(
            "WHERE j.state IN ('failed', 'cancelled') AND j.notified = 0 ORDER BY j.id", ()
        )

    async def for_user(self, guild_id: int, user_id: int, *, limit: int = 10) -> list[Job]:
        return await self._select(
            "WHERE j.guild_id = ? AND j.user_id = ? ORDER BY j.id DESC LIMIT ?",
            (guild_id, user_id, limit),
        )

    async def by_start_key(self, start_key: str) -> Job | None:
        found = await self._select("WHERE j.start_key = ?", (start_key,))
        return found[0] if found else None

    async def watched(self) -> list[Job]:
        """Timed-out jobs WaveSpeed may still finish, still being watched."""
        return await self._select(
            "WHERE j.watch_until IS NOT NULL AND j.late_outcome IS NULL ORDER BY j.id", ())

    async def keep_late_task(self, job_id: int, task_id: str, watch_until: float) -> bool:
        """A task learned after its job was failed as an unknown outcome: record its id and
        watch it (see JobEngine._watch_loop). False if the job has a task or is not failed."""
        now = self._clock()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET task_id = ?, watch_until = ?, updated_at = ?"
                " WHERE id = ? AND state = 'failed' AND task_id IS NULL AND late_outcome IS NULL",
                (task_id, watch_until, now, job_id))
            if cur.rowcount != 1:
                return False
            await _event(conn, job_id, None, JobState.FAILED, f"late task {task_id}", now)
            return True

    async def adopt(self, job_id: int, task_id: str, *, outcome: str = "adopted") -> Job | None:
        """A lost submit's task found: checking -> running with that task, charged as usual.
        None if the job is no longer checking or another job already owns the task (the
        UNIQUE task_id decides: never two jobs on one task)."""
        try:
            return await self.transition(
                job_id, [JobState.CHECKING], JobState.RUNNING, task_id=task_id,
                lost_outcome=outcome, lost_candidates=[task_id],
                detail=f"{outcome.replace('_', ' ')}: task {task_id}")
        except sqlite3.IntegrityError as exc:
            if "task_id" not in str(exc):
                raise
            return None

    async def in_doubt(self, except_id: int, *, since: float) -> list[Job]:
        """The other jobs that may own a task nobody recorded: submitting now (the reply may
        still come), checking, or lost submits since `since` refunded without a task (their
        task may exist all the same). A lost submit's search must not take those for its own."""
        return await self._select(
            "WHERE j.id != ? AND (j.state IN ('submitting', 'checking') OR ("
            "j.lost_outcome IN ('not_found', 'ambiguous', 'unchecked') AND j.task_id IS NULL"
            " AND j.submitted_at >= ?)) ORDER BY j.id", (except_id, since))

    async def owned(self, task_ids: Iterable[str]) -> set[str]:
        """Those of `task_ids` some job already owns."""
        ids = list(task_ids)
        if not ids:
            return set()
        async with self.db.reading() as conn, conn.execute(
            f"SELECT task_id FROM jobs WHERE task_id IN ({','.join('?' * len(ids))})",  # noqa: S608
            ids,
        ) as cur:
            return {r[0] for r in await cur.fetchall()}

    async def adopt_by_hand(self, job_id: int, task_id: str, *, watch_period: float) -> str:
        """The operator names a lost submit's task (`ops reconcile JOB --task ID`). A job
        still checking continues with it and is charged as usual; one already refunded
        keeps its refund and the task is watched, so the running bot posts its clip free.
        Returns what was done; raises ValueError saying why not."""
        task_id = task_id.strip()
        if not task_id or len(task_id) > 200 or not task_id.isprintable():
            raise ValueError("a WaveSpeed task id is a short printable string")
        now = self._clock()
        async with self.db.transaction() as conn:
            job = await _find(conn, job_id)
            if job is None:
                raise ValueError(f"there is no job {job_id}")
            async with conn.execute("SELECT id FROM jobs WHERE task_id = ?", (task_id,)) as cur:
                owner = await cur.fetchone()
            if owner is not None:
                raise ValueError(f"task {task_id} already belongs to job {owner[0]}")
            if job.task_id is not None:
                raise ValueError(f"job {job_id} already has task {job.task_id}")
            if job.state is JobState.CHECKING:
                await conn.execute(
                    "UPDATE jobs SET state = 'running', task_id = ?, lost_outcome ="
                    " 'adopted_by_hand', lost_candidates = ?, updated_at = ? WHERE id = ?",
                    (task_id, json.dumps([task_id]), now, job_id))
                await _event(conn, job_id, JobState.CHECKING, JobState.RUNNING,
                             f"adopted by hand: task {task_id}", now)
                return (f"job {job_id} continues with task {task_id}; it is charged as usual "
                        "when the clip is delivered")
            if (job.state is not JobState.FAILED or job.failure_code != "submit_outcome_unknown"
                    or job.late_outcome is not None):
                raise ValueError(f"job {job_id} is {job.state.value} "
                                 f"({job.failure_code or 'no failure'}): not a lost submit")
            note = f"adopted task {task_id} by hand; the clip is posted free (user refunded)"
            await conn.execute(
                "UPDATE jobs SET task_id = ?, watch_until = ?, lost_outcome = 'adopted_by_hand',"
                " lost_candidates = ?, needs_reconciliation = 1, reconciliation_note = ?,"
                " updated_at = ? WHERE id = ?",
                (task_id, (job.submitted_at or now) + watch_period, json.dumps([task_id]), note,
                 now, job_id))
            await _event(conn, job_id, None, JobState.FAILED, note, now)
            return (f"job {job_id} now watches task {task_id}; the user keeps the refund and the "
                    "running bot posts the clip free when it is ready")

    async def flag_owner(self, task_id: str, why: str) -> None:
        """Flag the job holding `task_id` for the operator: another job claims it too."""
        now = self._clock()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET needs_reconciliation = 1, updated_at = ? WHERE task_id = ?"
                " AND reconciliation_note IS NULL RETURNING id, state", (now, task_id))
            rows = await cur.fetchall()
            await cur.close()
            for row in rows:
                await _event(conn, row[0], None, JobState(row[1]),
                             f"task {task_id} disputed: {why}", now)

    async def lost_submits(self, since: float) -> list[Job]:
        """Jobs since `since` whose submit reply was lost, whatever their search found."""
        return await self._select(
            "WHERE j.lost_outcome IS NOT NULL AND j.submitted_at >= ? ORDER BY j.id", (since,))

    async def set_late_outcome(self, job_id: int, outcome: str, *,
                               delivery: dict[str, Any] | None = None) -> bool:
        """Record once what became of a watched job; False if it was already recorded."""
        now = self._clock()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET late_outcome = ?, delivery = COALESCE(?, delivery),"
                " updated_at = ? WHERE id = ? AND watch_until IS NOT NULL"
                " AND late_outcome IS NULL",
                (outcome, json.dumps(delivery) if delivery else None, now, job_id))
            if cur.rowcount != 1:
                return False
            await _event(conn, job_id, None, JobState.FAILED, f"late: {outcome}", now)
            return True

    async def needing_reconciliation(self) -> list[Job]:
        return await self._select(
            "WHERE j.needs_reconciliation = 1 AND j.reconciliation_note IS NULL ORDER BY j.id", ()
        )

    async def mark_reconciled(self, job_id: int, note: str) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET reconciliation_note = ?, updated_at = ?"
                " WHERE id = ? AND needs_reconciliation = 1 AND reconciliation_note IS NULL",
                (note, self._clock(), job_id),
            )
            if cur.rowcount:
                await _event(conn, job_id, None, JobState.FAILED, f"reconciled: {note}",
                             self._clock())
            return cur.rowcount == 1

    async def events(self, job_id: int) -> list[tuple[str, str | None]]:
        async with self.db.reading() as conn, conn.execute(
            "SELECT to_state, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
        ) as cur:
            return [(r["to_state"], r["detail"]) for r in await cur.fetchall()]

    async def submitted_since(self, since: float) -> list[float]:
        """Submit times (wall clock) after `since`, to rebuild the rate window on start-up."""
        async with self.db.reading() as conn, conn.execute(
            "SELECT submitted_at FROM jobs WHERE submitted_at >= ? ORDER BY submitted_at",
            (since,),
        ) as cur:
            return [r[0] for r in await cur.fetchall()]

    async def _select(self, where: str, params: Iterable[Any]) -> list[Job]:
        async with self.db.reading() as conn, conn.execute(
            f"{_SELECT} {where}", tuple(params)
        ) as cur:
            return [Job.from_row(r) for r in await cur.fetchall()]


def _encode(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    if isinstance(value, bool):
        return int(value)
    return value


async def _find(conn: aiosqlite.Connection, job_id: int) -> Job | None:
    async with conn.execute(f"{_SELECT} WHERE j.id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
    return Job.from_row(row) if row else None


async def _get(conn: aiosqlite.Connection, job_id: int) -> Job:
    job = await _find(conn, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    return job


async def _event(
    conn: aiosqlite.Connection, job_id: int, from_state: JobState | None, to_state: JobState,
    detail: str | None, now: float,
) -> None:
    await conn.execute(
        "INSERT INTO job_events (job_id, from_state, to_state, detail, at) VALUES (?, ?, ?, ?, ?)",
        (job_id, from_state, to_state, detail, now),
    )
