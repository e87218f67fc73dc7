"""bot.py as a child process, configured only by its environment, logging to a file.

`simulate_env` is the one place the bot's settings are chosen: simulate mode (a simulated
WaveSpeed inside the bot, no key, nothing paid) against the local Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
BOT_LOG = "bot.log"
DATABASE = "playground.sqlite3"
READY_LINE = "engine started"  # bot.py logs this once it takes commands and runs jobs
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")  # nothing else leaks in
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class BotOptions:
    """What the playground's command line chooses for the bot."""

    speedup: float = 10.0
    failure_rate: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    """Where the bot finds Discord (the emulator in the playground's process)."""

    token: str
    api_base: str


# Builds the bot's environment (variables of its own; PASSED_THROUGH ones are added).
EnvBuilder = Callable[[Endpoint, Path, BotOptions], Mapping[str, str]]


def simulate_env(discord: Endpoint, data_dir: Path, options: BotOptions) -> dict[str, str]:
    return {
        "DISCORD_TOKEN": discord.token,
        "DISCORD_API_BASE_URL": discord.api_base,
        "DATABASE_PATH": str(data_dir / DATABASE),
        "WAVESPEED_MODE": "simulate",
        "SIMULATE_SPEEDUP": f"{options.speedup:g}",
        "SIMULATE_TIER": "silver",
        "SIMULATE_FAILURE_RATE": f"{options.failure_rate:g}",
        "WAVESPEED_MAX_CONCURRENT": "4",
        "WAVESPEED_SUBMITS_PER_MINUTE": "30",
        "POLL_INTERVAL_SECONDS": "1",
        "STATUS_UPDATE_SECONDS": "2",
        "LOG_LEVEL": "INFO",
    }


class BotExited(Exception):
    """bot.py stopped on its own; the message ends with the tail of its log."""


PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """Linux: a function for the child to run before exec, which has it sent SIGTERM if the
    playground dies without stopping it, so no orphaned bot keeps the database's instance
    lease. libc is loaded here, in the parent: nothing but the call runs after the fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_death_signal


class BotProcess:
    def __init__(self, data_dir: Path, discord: Endpoint, options: BotOptions,
                 env: EnvBuilder = simulate_env) -> None:
        self.data_dir = data_dir = data_dir.resolve()
        self.log_path = data_dir / BOT_LOG
        self.database_path = data_dir / DATABASE
        self._env = env(discord, data_dir, options)
        self.proc: asyncio.subprocess.Process | None = None
        self._log_start = 0  # where this run's lines begin in the (appended) log

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
        env.update(self._env)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._log_start = out.tell()
            # cwd is the data directory, so a developer's .env in the repository (a real
            # DISCORD_GUILD_ID, prices...) is never read; only the environment configures it.
            # Its own session: Ctrl-C in the terminal reaches the playground, which stops
            # the bot itself, in order (the bot first, while Discord is still up).
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bot.py"), cwd=self.data_dir,
                env=self.environment(),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
                preexec_fn=_death_signal())
        log.info("bot started (pid %d), logging to %s", self.proc.pid, self.log_path)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_text(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        # discord.py colours its log inside containers (it takes Docker for a terminal).
        plain = ANSI_ESCAPE.sub("", self.log_text())
        return "\n".join(plain.splitlines()[-lines:])

    def exited(self) -> BotExited:
        code = self.proc.returncode if self.proc is not None else None
        return BotExited(f"the bot exited with code {code}; the end of {self.log_path}:\n"
                         f"{self.log_tail()}")

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until the bot logs that its engine started; BotExited if it exits first,
        TimeoutError (with the log's tail) if neither happens in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while READY_LINE not in self.log_text():
            if not self.running:
                raise self.exited()
            if loop.time() > deadline:
                raise TimeoutError(f"the bot did not start within {within:g} s; the end of "
                                   f"{self.log_path}:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def wait_exit(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` s; the exit code (None if never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("the bot did not stop within %g s of SIGTERM: killing it", grace)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        return proc.returncode
