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

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

MEMORY_LIMIT_BYTES: Final = 1536 * 1024**2  # address space, not RSS: threads reserve stacks
RENDER_TIMEOUT_SECONDS: Final = 300.0
EXIT_UNUSABLE: Final = 3
ROOT: Final = Path(__file__).resolve().parent.parent


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
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator.render_worker", str(directory), str(os.getpid()),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        code = await asyncio.wait_for(child.wait(), RENDER_TIMEOUT_SECONDS)
    except TimeoutError:
        raise RenderFailed("the simulated model timed out") from None
    finally:
        if child.returncode is None:  # cancelled or timed out: stop it now
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    if code == 0:
        return (directory / "clip.mp4").read_bytes()
    error = directory / "error.txt"
    if code == EXIT_UNUSABLE and error.is_file():
        raise RenderFailed(error.read_text(encoding="utf-8"))
    reason = (f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
    raise RenderFailed(f"the simulated model crashed on these references ({reason}); "
                       "a file may be too large or damaged")


PR_SET_PDEATHSIG: Final = 1


def _die_with(parent: int) -> None:
    """Linux: be killed when the bot dies, even by SIGKILL, instead of rendering on for up
    to RENDER_TIMEOUT_SECONDS; and stop now if it is gone already."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise SystemExit(1)


def main(argv: Sequence[str]) -> int:
    directory = Path(argv[1])
    _die_with(int(argv[2]))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    os.nice(10)  # the bot's event loop comes first
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
