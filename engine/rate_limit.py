"""At most N submits in any sliding window (WaveSpeed's per-minute submission quota)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable


class SlidingWindowLimiter:
    def __init__(
        self, max_events: int, window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs at least one event in a positive window")
        self.max_events = max_events
        self.window = window_seconds
        self._clock = clock
        self._events: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._events and self._events[0] <= now - self.window:
            self._events.popleft()

    def wait_time(self) -> float:
        """Seconds until one more event is allowed (0 when it is allowed now)."""
        now = self._clock()
        self._trim(now)
        if len(self._events) < self.max_events:
            return 0.0
        return max(0.0, self._events[0] + self.window - now)

    def record(self) -> None:
        self._events.append(self._clock())

    def seed(self, ages: Iterable[float]) -> None:
        """Restore events that happened `age` seconds ago (from the database after a restart)."""
        now = self._clock()
        for age in sorted(ages, reverse=True):
            if 0 <= age < self.window:
                self._events.append(now - age)
