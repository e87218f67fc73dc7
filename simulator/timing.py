"""How long a simulated task takes and whether it fails: the simulator's `Planner`.

WAN 2.6 on WaveSpeed queues a task for a few seconds ("created"), then generates it
("processing") for a time that grows with the clip's duration and resolution. The figures
below are the simulator's model of that, not measurements to rely on; `speedup` divides
them all (a demo at 10x finishes a 5 s 720p clip in about 10 s instead of about 100 s).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Final

from simulator.wavespeed_api import TaskBehaviour
from wavespeed.models import resolution_of

QUEUED_SECONDS: Final = (2.0, 6.0)  # time in "created", uniform
BASE_SECONDS: Final = 40.0  # generating a 720p clip, plus PER_CLIP_SECOND per second of clip
PER_CLIP_SECOND: Final = 12.0
RESOLUTION_FACTOR: Final = {"720p": 1.0, "1080p": 1.8}
JITTER: Final = 0.25  # each task takes up to 25% more or less than the model says
FAILURE_MESSAGE: Final = "simulated failure: the model could not generate this clip"
# A prompt with this word comes back flagged NSFW, to rehearse a server's NSFW policy.
NSFW_WORD: Final = re.compile(r"\bnsfw\b", re.IGNORECASE)

# WaveSpeed's account tiers: submissions a minute and tasks running at once.
TIERS: Final[dict[str, tuple[int, int]]] = {
    "BRONZE": (2, 2),
    "SILVER": (500, 300),
    "GOLD": (3000, 3000),
}


def generation_seconds(size: str, duration: int) -> float:
    """The modelled time in "processing" at 1x, before jitter."""
    return (BASE_SECONDS + PER_CLIP_SECOND * duration) * RESOLUTION_FACTOR[resolution_of(size)]


@dataclass
class RealisticPlanner:
    """Timing scaled by duration and size, divided by `speedup`; a `failure_rate` share of
    tasks fail (part-way through, as real failures do); a prompt saying "nsfw" is flagged.
    `seed` makes a run repeatable."""

    speedup: float = 1.0
    failure_rate: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.speedup >= 1.0:
            raise ValueError("speedup must be at least 1")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError("failure_rate must be from 0 to 1")
        self._rng = random.Random(self.seed)

    def __call__(self, body: dict[str, Any]) -> TaskBehaviour:
        rng = self._rng
        queued = rng.uniform(*QUEUED_SECONDS) / self.speedup
        generating = generation_seconds(str(body.get("size", "1280*720")),
                                        int(body.get("duration", 5)))
        generating *= rng.uniform(1.0 - JITTER, 1.0 + JITTER) / self.speedup
        if rng.random() < self.failure_rate:
            return TaskBehaviour.fail(FAILURE_MESSAGE, processing_after=queued,
                                      complete_after=queued + generating * rng.uniform(0.2, 0.9))
        if NSFW_WORD.search(str(body.get("prompt", ""))):
            return TaskBehaviour.nsfw(processing_after=queued,
                                      complete_after=queued + generating)
        return TaskBehaviour.ok(processing_after=queued, complete_after=queued + generating)
