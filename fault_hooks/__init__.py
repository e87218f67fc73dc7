"""Test-only hooks, honoured only when a test asks for them through the environment; a
real deployment never sets these variables and every hook is then a no-op.

`REF2VIDEO_TEST_CRASH_AT=<point>[:<nth>[:<delay_ms>]]` makes the process SIGKILL itself
the `nth` time (default 1) it reaches `<point>` of a job's life, `delay_ms` after it (a
timer thread, so the loop runs on meanwhile: the timing seed of the crash matrix). Nothing
runs on the way out, exactly like a crash or a pulled plug.
`REF2VIDEO_TEST_TIMING=fast` shortens the engine's waits (lost-submit searches, retries)
and the WaveSpeed client's timeouts to what a local fake answers in, so a child process
under test settles a lost submit in seconds instead of minutes.

Nothing here imports the rest of the bot: the core calls `reached()` without depending on
anything above it."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass

CRASH_ENV = "REF2VIDEO_TEST_CRASH_AT"
TIMING_ENV = "REF2VIDEO_TEST_TIMING"

# Every point a job passes, in the order of its life; `reached()` refuses others, so a
# misspelt point fails the test that set it instead of never firing.
POINTS = (
    "acknowledged",          # /ref2video deferred: Discord has its answer, nothing held yet
    "confirm_acknowledged",  # a Confirm press deferred, its job not yet reserved
    "reserved",              # the job and its reservation committed, not yet queued
    "submitting",            # marked submitting, the POST not yet sent
    "submit_answered",       # WaveSpeed answered with a task id, not yet recorded
    "checking",              # the POST's outcome is unknown: about to search the history
    "task_recorded",         # the task id is stored (running)
    "polled",                # a poll said the task is still going
    "completed",             # WaveSpeed said completed; delivering, nothing downloaded
    "downloaded",            # the clip is on disk, not yet posted
    "posted",                # Discord answered the post, the capture not yet committed
    "captured",              # captured, the status message not yet edited
    "released",              # a failure's refund committed, the member not yet told
)


@dataclass
class _Armed:
    point: str
    nth: int
    delay: float
    hits: int = 0


_armed: _Armed | None = None


def arm(environ: Mapping[str, str]) -> None:
    """Read the crash point from `environ`; raises ValueError for a malformed one."""
    global _armed
    spec = environ.get(CRASH_ENV, "").strip()
    if not spec:
        _armed = None
        return
    point, _, rest = spec.partition(":")
    nth_text, _, delay_text = rest.partition(":")
    if point not in POINTS:
        raise ValueError(f"{CRASH_ENV}: unknown point {point!r}")
    nth = int(nth_text or "1")
    delay = int(delay_text or "0") / 1000
    if nth < 1 or delay < 0:
        raise ValueError(f"{CRASH_ENV}: nth must be >= 1 and delay_ms >= 0")
    _armed = _Armed(point, nth, delay)


def reached(point: str) -> None:
    """A job passed `point`: crash here if a test asked for it."""
    armed = _armed
    if armed is None:
        return
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if point != armed.point:
        return
    armed.hits += 1
    if armed.hits != armed.nth:
        return
    if armed.delay <= 0:
        _die()
    timer = threading.Timer(armed.delay, _die)
    timer.daemon = True
    timer.start()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fast_timing(environ: Mapping[str, str]) -> bool:
    return environ.get(TIMING_ENV, "").strip().lower() == "fast"
