"""One simulated clip, rendered in a child process: `python -m simulator.render_worker DIR`.

The references are users' files. Even opening one makes FFmpeg decode its first pictures
at whatever size they declare, so a 2 MB file can claim gigabytes, and a thread running
C code cannot be stopped when the bot shuts down. A child process solves both: its address
space is capped (`MEMORY_LIMIT_BYTES`), it runs at a lower priority than the bot, and the
bot kills it on shutdown or after `RENDER_TIMEOUT_SECONDS`.

DIR holds `job.json` ({"width", "height", "seconds", "caption", "references": n}) and the
references as `ref1`, `ref2` (`reference_path`), put there by the caller. The child
writes `clip.mp4` and exits 0, or writes `error.txt` (a message fit for the user) and
exits `EXIT_UNUSABLE`.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from media import child_process
from media.child_process import ChildTimeout, die_with, limit_resources, run_child

MEMORY_LIMIT_BYTES: Final = 1536 * 1024**2  # address space, not RSS: threads reserve stacks
RENDER_TIMEOUT_SECONDS: Final = 300.0
EXIT_UNUSABLE: Final = 3
ROOT: Final = child_process.ROOT


class RenderFailed(Exception):
    """The clip was not made; str() is fit to show the user."""


def reference_path(directory: Path, index: int) -> Path:
    """Where reference `index` (from 1) of a job in `directory` is put for the child."""
    return directory / f"ref{index}"


async def render_in_child(directory: Path, references: int, *, width: int, height: int,
                          seconds: float, caption: str) -> bytes:
    """Render the `references` already at `reference_path(directory, 1..n)` in a child
    process; raises RenderFailed. Cancelling kills the child."""
    (directory / "job.json").write_text(json.dumps({
        "width": width, "height": height, "seconds": seconds, "caption": caption,
        "references": references}), encoding="utf-8")
    try:
        code = await run_child("simulator.render_worker", [str(directory)],
                               time_limit=RENDER_TIMEOUT_SECONDS)
    except ChildTimeout:
        raise RenderFailed("the simulated model timed out") from None
    if code == 0:
        return (directory / "clip.mp4").read_bytes()
    error = directory / "error.txt"
    if code == EXIT_UNUSABLE and error.is_file():
        raise RenderFailed(error.read_text(encoding="utf-8"))
    reason = (f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
    raise RenderFailed(f"the simulated model crashed on these references ({reason}); "
                       "a file may be too large or damaged")


def main(argv: Sequence[str]) -> int:
    directory = Path(argv[1])
    die_with(int(argv[2]))
    limit_resources(MEMORY_LIMIT_BYTES)
    from simulator.clip import ClipError, render_clip  # after the limit: imports count too

    job = json.loads((directory / "job.json").read_text(encoding="utf-8"))
    references = [reference_path(directory, i).read_bytes()
                  for i in range(1, int(job["references"]) + 1)]
    try:
        clip = render_clip(references, width=int(job["width"]), height=int(job["height"]),
                           seconds=float(job["seconds"]), caption=str(job["caption"]))
    except (ClipError, MemoryError) as exc:
        text = str(exc) if isinstance(exc, ClipError) else "a reference needs too much memory"
        (directory / "error.txt").write_text(text, encoding="utf-8")
        return EXIT_UNUSABLE
    (directory / "clip.mp4").write_bytes(clip)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
