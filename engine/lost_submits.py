"""Which task in WaveSpeed's history, if any, a lost submit created.

A submit whose reply was lost (timeout, dropped connection, 5xx, the bot stopping mid-POST)
may have created a paid task whose id we never learned. WaveSpeed's history lists the
account's tasks with their model and creation time, but not their input, so a task is
matched by time alone: same model, created inside the job's window (the POST's start to a
while after its end, with a margin for clock skew), owned by no job.

Matching by time is only safe when it is unique, so a candidate is adopted only when the
window has closed (no later task of ours can still appear), it is the job's one candidate,
the history was read in full, and no other job could claim it: another POST in flight
(`submitting`: its reply may still come; claimed with a wider clock-skew margin, since a
wrong adoption costs more than a refund) or another lost submit, searching or already
refunded, whose window holds it. Everything else waits for a later search, by which time
the other jobs may have learned their ids ("elimination"), and at the last search is
refunded and flagged for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from storage.jobs import Job, JobState
from wavespeed.models import History


class SearchLimits(Protocol):
    @property
    def lost_window_before(self) -> float: ...
    @property
    def lost_window_after(self) -> float: ...
    @property
    def lost_claim_margin(self) -> float: ...
    @property
    def submit_max_seconds(self) -> float: ...


@dataclass(frozen=True)
class Verdict:
    adopt: str | None                # the task to adopt, if exactly one is beyond doubt
    candidates: tuple[str, ...]      # unowned tasks in the window, newest first
    contested: tuple[str, ...]       # those another job could also claim
    complete: bool = True            # the history was read in full

    @property
    def ambiguous(self) -> bool:
        return self.adopt is None and bool(self.candidates)


def post_ended(job: Job, limits: SearchLimits) -> float:
    """When the POST ended (wall clock); if the bot stopped mid-POST, the latest it could
    have (the client's connect plus read timeout)."""
    started = job.submitted_at if job.submitted_at is not None else job.created_at
    return job.submit_ended_at or started + limits.submit_max_seconds


def window(job: Job, limits: SearchLimits) -> tuple[float, float]:
    """Creation times (wall clock) a task made by this job's POST can have. WaveSpeed may
    create the task a while after the reply was lost (the request waited in its queue)."""
    started = job.submitted_at if job.submitted_at is not None else job.created_at
    return (started - limits.lost_window_before,
            post_ended(job, limits) + limits.lost_window_after)


def as_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def choose(
    job: Job, history: History, *, owned: set[str], doubtful: list[Job], limits: SearchLimits,
    read_at: float,
) -> Verdict:
    """The verdict of one search. `owned`: task ids some job has; `doubtful`: the other jobs
    that may own an unrecorded task (submitting, checking, or lost submits refunded without
    a task); `read_at`: when the history read began (wall clock)."""
    low, high = window(job, limits)
    created = {p.id: p.created.timestamp() for p in history.items if p.created is not None}
    candidates = [p.id for p in history.items
                  if p.id not in owned and p.id in created and low <= created[p.id] <= high]
    others = [_claim_window(other, limits, read_at) for other in doubtful]
    contested = tuple(task for task in candidates
                      if any(lo <= created[task] <= hi for lo, hi in others))
    closed = read_at >= high
    adopt = (candidates[0]
             if closed and len(candidates) == 1 and not contested and history.complete
             else None)
    return Verdict(adopt, tuple(candidates), contested, history.complete)


def _claim_window(other: Job, limits: SearchLimits, now: float) -> tuple[float, float]:
    if other.state is JobState.SUBMITTING:  # its POST may be on the wire right now
        started = other.submitted_at if other.submitted_at is not None else other.created_at
        return started - limits.lost_claim_margin, now + limits.lost_window_after
    low, high = window(other, limits)
    return low - limits.lost_claim_margin, high
