"""Which child processes are alive, for tests that check nothing is left running."""

from __future__ import annotations

import os
from pathlib import Path


def live_children(module: str, parent: int | None = None) -> list[int]:
    """Pids of live (not zombie) `python -m module` processes whose parent is `parent`
    (default: this process), read from /proc."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and module.encode() in cmdline and stat[0] != "Z":
            found.append(int(entry.name))
    return found
