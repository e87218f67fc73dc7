"""Running a module as a capped child process, for work on users' files.

Opening a hostile file runs FFmpeg's C code, which may allocate gigabytes or spin, and
a thread running C code cannot be stopped. A child process can: the parent side
(`run_child`) kills it on timeout or cancellation and never blocks the event loop; the
child side calls `die_with` (so it does not outlive the bot, even one killed with
SIGKILL) and `limit_resources` (address space, CPU time, priority) before it imports
anything heavy. A child module is run as `python -m MODULE ARGS... PARENT_PID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent  # the child's cwd, so `-m` finds it
PR_SET_PDEATHSIG: Final = 1
NICENESS: Final = 10  # the bot's event loop comes first


class ChildTimeout(Exception):
    """The child ran longer than its timeout and was killed."""


async def run_child(module: str, args: Sequence[str], *, time_limit: float) -> int:
    """Run `python -m module *args PARENT_PID` (this process's pid last) from the repo
    root, without stdin/stdout/stderr, and return its exit code (negative: killed by
    that signal). Raises ChildTimeout after `time_limit` seconds. On timeout or
    cancellation the child is killed and reaped before this returns or raises."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, str(os.getpid()),
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(child.wait(), time_limit)
    except TimeoutError:
        raise ChildTimeout(f"{module} ran longer than {time_limit:g} s") from None
    finally:
        if child.returncode is None:  # cancelled or timed out: stop it now
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            # Shielded: a second cancellation must not leave a zombie behind.
            await asyncio.shield(child.wait())


def die_with(parent: int) -> None:
    """In the child: be killed when the parent dies (Linux; even a parent killed by
    SIGKILL), and exit now if it is gone already."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise SystemExit(1)


def limit_resources(memory_bytes: int, cpu_seconds: int | None = None) -> None:
    """In the child, before importing anything heavy (imports count too): cap the address
    space at `memory_bytes` (allocations beyond fail: MemoryError, ENOMEM), the CPU time
    at `cpu_seconds` (SIGXCPU, then SIGKILL a second later), and lower the priority."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    os.nice(NICENESS)
