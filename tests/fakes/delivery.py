"""A delivery that records what it would have posted, standing in for the Discord layer.

Like Discord's message history, its record outlives an engine restart (the tests pass the
same instance to the new engine), which is what `find_delivery` reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from engine.delivery import Clip, DeliveryError, DeliveryWithheld
from storage.jobs import Job, JobState


@dataclass(frozen=True)
class Post:
    job_id: int
    url: str
    data: bytes | None   # the MP4 attached, or None when only a link was posted
    nsfw: bool
    receipt: dict[str, Any]
    late: bool = False


class RecordingDelivery:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.updates: list[tuple[int, JobState]] = []
        self.finished: list[tuple[int, JobState, str | None]] = []
        self.failures: list[DeliveryError] = []       # raised by the next deliver() calls
        self.notify_failures = 0                      # job_finished raises this many times
        self.notify_permanent = False                 # ... with a permanent DeliveryError
        self.notify_calls = 0
        self.lost_replies = 0       # deliver() posts, then fails as a lost reply, this often
        self.hold_before_post: asyncio.Event | None = None
        self.hold_after_post: asyncio.Event | None = None
        self.deliver_calls = 0
        self.withhold_nsfw: bool | None = None      # set: NSFW clips are withheld, charged?
        self._changed = asyncio.Condition()

    async def deliver(self, job: Job, clip: Clip) -> dict[str, Any]:
        self.deliver_calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.hold_before_post is not None:
            await self.hold_before_post.wait()
        if clip.nsfw and self.withhold_nsfw is not None:
            raise DeliveryWithheld("flagged NSFW", charge=self.withhold_nsfw,
                                   receipt={"notice": True})
        data = clip.path.read_bytes() if clip.path is not None else None
        receipt = {"message_id": 900_000 + len(self.posts), "attached": data is not None}
        self.posts.append(Post(job.id, clip.url, data, clip.nsfw, receipt, clip.late))
        if self.hold_after_post is not None:
            await self.hold_after_post.wait()
        if self.lost_replies > 0:
            self.lost_replies -= 1
            raise DeliveryError("Discord refused the message (503 0)")  # after storing it
        return receipt

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        for post in self.posts:
            if post.job_id == job.id:
                return post.receipt
        return None

    async def job_updated(self, job: Job) -> None:
        async with self._changed:
            self.updates.append((job.id, job.state))
            self._changed.notify_all()

    async def job_finished(self, job: Job) -> None:
        self.notify_calls += 1
        if self.notify_failures > 0:
            self.notify_failures -= 1
            raise DeliveryError("the channel is gone", permanent=self.notify_permanent)
        async with self._changed:
            self.finished.append((job.id, job.state, job.failure_detail))
            self._changed.notify_all()

    async def wait_for(self, job_id: int, state: JobState, within: float = 10.0) -> None:
        """Until the engine has announced `state` for the job."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: (job_id, state) in self.updates)
