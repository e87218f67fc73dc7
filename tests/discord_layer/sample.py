"""A job as the Discord layer sees it, for tests that render one without Discord."""

from __future__ import annotations

import dataclasses

from storage.jobs import Job, JobState
from wavespeed.models import GenerationRequest

REQUEST = GenerationRequest(videos=("https://cdn.example/a.mp4",), prompt="a cat surfing")


def job(state: JobState, **fields: object) -> Job:
    base = Job(id=7, guild_id=1, channel_id=2, user_id=3, state=state, request=REQUEST,
               price=100, reservation_id=1, task_id=None, output_url=None, output_nsfw=None,
               submit_attempts=0, not_before=None, failure_code=None, failure_detail=None,
               needs_reconciliation=False, reconciliation_note=None, delivery=None,
               balance_after=400, created_at=1.0, submitted_at=2.0)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]
