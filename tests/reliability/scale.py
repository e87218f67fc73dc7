"""How hard the reliability suite pushes, and where it writes its figures.

`pytest --soak` (see tests/conftest.py) turns on the long runs CI does not need; each test
picks its sample size with `size(ci=..., soak=...)`. With RELIABILITY_FIGURES=<file> every
table in the suite appends one JSON line per row (what was done, how many times, what was
lost, the command that repeats it); `python -m tests.reliability.figures <file>` prints
them as the table in docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SOAK = False  # set from --soak by tests/conftest.py before any test module is imported


def size(*, ci: int, soak: int) -> int:
    return soak if SOAK else ci


def record(suite: str, what: str, times: int, lost: int, *, command: str,
           detail: str = "") -> None:
    """One row of the reliability table. `lost` counts runs that broke a promise (money
    wrong, a clip lost or doubled, a task sent twice): the test must also fail on it."""
    target = os.environ.get("RELIABILITY_FIGURES")
    if not target:
        return
    row = {"suite": suite, "what": what, "times": times, "lost": lost, "command": command,
           "detail": detail, "soak": SOAK, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")
