"""What the engine needs from whoever shows jobs to people (the Discord layer, or a test).

Delivery is at-least-once from the engine's side: after a crash in `delivering`, or a post
whose reply was lost, the engine first asks `find_delivery` whether the clip was already
posted, and only posts again if not. Before each post it records the attempt's time on the
job (`delivery_started_at`, `delivery_attempted_at`), so the search can be exact: what the
bot posted in that window, recognised by something no user can write (not message text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from storage.jobs import Job


class DeliveryError(Exception):
    """The clip could not be posted. `permanent` means retrying will not help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DeliveryWithheld(Exception):
    """The clip exists but must not be posted where the job was asked (an NSFW flag in a
    channel that is not age-restricted). With `charge`, the owner was already told and the
    job is charged (`receipt` records that notice); without, the job fails and is refunded."""

    def __init__(self, reason: str, *, charge: bool, receipt: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.charge = charge
        self.receipt = receipt or {}


@dataclass(frozen=True)
class Clip:
    url: str                 # WaveSpeed's (temporary) output URL
    path: Path | None        # the downloaded MP4; None when it was over the download cap
    size: int | None         # bytes, when known
    nsfw: bool
    late: bool = False       # finished after the job timed out and was refunded: not charged


class Delivery(Protocol):
    async def deliver(self, job: Job, clip: Clip) -> dict[str, Any]:
        """Post the clip; return a JSON-able receipt (message ids...). Raise DeliveryError,
        or DeliveryWithheld when the clip may not be shown there."""
        ...

    async def find_delivery(self, job: Job) -> dict[str, Any] | None:
        """The receipt of an earlier post of this job's clip, if one was made. Raise
        DeliveryError when that cannot be known now (the engine asks again later)."""
        ...

    async def job_updated(self, job: Job) -> None:
        """A job changed state (best effort: errors are logged, never fatal)."""
        ...

    async def job_finished(self, job: Job) -> None:
        """Tell the owner a job failed or was cancelled and refunded. Raise to be asked again."""
        ...
