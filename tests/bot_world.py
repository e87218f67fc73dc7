"""The whole bot on real parts: the Discord emulator and the fake WaveSpeed on 127.0.0.1,
a SQLite file, and the real `Ref2VideoBot` with the unmodified discord.py client.

`BotWorld` runs the bot inside the test's event loop (fast, and its state is inspectable);
`BotProcess` runs `bot.py` as a child process, so a test can kill it like a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from yarl import URL

from bot import Ref2VideoBot, engine_limits, fast_test_timing
from config import Secret, Settings
from discord_emulator.emulator import DiscordEmulator
from discord_layer.api_base import use_api_base
from discord_layer.services import Services
from engine.engine import EngineLimits
from storage.database import Database
from tests.harness import FAST_RETRY, wait_for
from wavespeed.client import WaveSpeedClient

ROOT = Path(__file__).resolve().parent.parent


class WaveSpeedEndpoint(Protocol):
    """Where a world's WaveSpeed client points: the fake WaveSpeed, or simulate mode's
    SimulatedService."""

    @property
    def api_key(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def host(self) -> str: ...


def world_settings(tmp_path: Path, discord: DiscordEmulator, wavespeed: WaveSpeedEndpoint,
                   **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": Secret(discord.bot_token),
        "wavespeed_api_key": Secret(wavespeed.api_key),
        "wavespeed_base_url": wavespeed.base_url,
        "discord_api_base_url": discord.api_base,
        "database_path": tmp_path / "bot.sqlite3",
        "wavespeed_submits_per_minute": 1000,
        "poll_interval_seconds": 0.02,
        "status_update_seconds": 1.0,
        # A process started after another was killed waits this long for its lease.
        "instance_takeover_seconds": 3.0,
    }
    values.update(overrides)
    return Settings(**values)


def fast_limits(settings: Settings) -> EngineLimits:
    return fast_test_timing(engine_limits(settings))  # the world's client: 2 s timeouts


async def ledger_kinds(db: Database, job_id: int) -> list[str]:
    """The ledger kinds written for one job, oldest first."""
    async with db.reading() as conn, conn.execute(
        "SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,)
    ) as cur:
        return [str(r[0]) for r in await cur.fetchall()]


class BotWorld:
    def __init__(self, tmp_path: Path, discord: DiscordEmulator, wavespeed: WaveSpeedEndpoint,
                 **overrides: Any) -> None:
        self.settings = world_settings(tmp_path, discord, wavespeed, **overrides)
        self.tmp_path = tmp_path
        self.discord = discord
        self.wavespeed = wavespeed
        self.db: Database
        self.bot: Ref2VideoBot
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None

    @property
    def services(self) -> Services:
        assert self.bot.services is not None
        return self.bot.services

    async def start(self) -> None:
        use_api_base(self.settings.discord_api_base_url)
        self.db = await Database.open(self.settings.database_path)
        self._session = aiohttp.ClientSession()
        client = WaveSpeedClient(self._session, self.wavespeed.api_key,
                                 self.wavespeed.base_url, retry=FAST_RETRY,
                                 request_timeout=2.0, submit_timeout=2.0,
                                 output_http_hosts=[self.wavespeed.host,
                                                    _host_of(self.discord.api_base)])
        self.bot = Ref2VideoBot(self.settings, self.db, client,
                                limits=fast_limits(self.settings),
                                workdir=self.tmp_path / "work", guild_ready_timeout=0.1)
        await self.bot.login(self.settings.discord_token.reveal())
        self._runner = asyncio.create_task(self.bot.connect(reconnect=False))
        await asyncio.wait_for(self.bot.wait_until_engine_started(), timeout=10)

    async def stop(self) -> None:
        await self.bot.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._runner, timeout=5)
        if self._session is not None:
            await self._session.close()
        await self.db.close()
        use_api_base(None)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def balance(self, guild_id: int, user_id: int) -> tuple[int, int]:
        b = await self.services.credits.balance(guild_id, user_id)
        return b.available, b.held

    async def ledger_kinds(self, job_id: int) -> list[str]:
        return await ledger_kinds(self.db, job_id)

    async def ledger_count(self) -> int:
        async with self.db.reading() as conn, conn.execute("SELECT COUNT(*) FROM ledger") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def wait_job_state(self, job_id: int, *states: str, within: float = 15.0) -> Any:
        async def probe() -> Any:
            job = await self.services.jobs.get(job_id)
            return job if job is not None and job.state.value in states else None

        return await wait_for(probe, within)


class BotProcess:
    """`bot.py` in a child process, configured only through environment variables. Processes
    with different `name`s log to different files (`<name>.log`)."""

    def __init__(self, settings: Settings, tmp_path: Path, name: str = "bot", *,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.extra_env = extra_env or {}  # e.g. fault_hooks' test-only variables
        self.tmp_path = tmp_path
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = tmp_path / f"{name}.log"

    def env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env.update({
            "DISCORD_TOKEN": s.discord_token.reveal(),
            "WAVESPEED_API_KEY": s.wavespeed_api_key.reveal() if s.wavespeed_api_key else "",
            "WAVESPEED_BASE_URL": s.wavespeed_base_url,
            "DISCORD_API_BASE_URL": s.discord_api_base_url or "",
            "DATABASE_PATH": str(s.database_path),
            "WAVESPEED_SUBMITS_PER_MINUTE": str(s.wavespeed_submits_per_minute),
            "POLL_INTERVAL_SECONDS": str(s.poll_interval_seconds),
            "STATUS_UPDATE_SECONDS": str(s.status_update_seconds),
            "INSTANCE_TAKEOVER_SECONDS": str(s.instance_takeover_seconds),
            "LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
        })
        if s.simulated:  # bot.py starts its own simulated WaveSpeed: no key, no base URL
            env.update({
                "WAVESPEED_MODE": s.wavespeed_mode,
                "WAVESPEED_API_KEY": "",
                "WAVESPEED_BASE_URL": "",
                "SIMULATE_SPEEDUP": str(s.simulate_speedup),
                "SIMULATE_TIER": s.simulate_tier,
                "SIMULATE_FAILURE_RATE": str(s.simulate_failure_rate),
            })
        env.update(self.extra_env)
        return env

    async def start(self) -> None:
        log = self.log_path.open("ab")
        # cwd is the temp dir so a developer's .env in the repository is never read.
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bot.py"), cwd=self.tmp_path, env=self.env(),
            stdout=log, stderr=log)
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, exactly like a crash or a pulled plug."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def wait(self, within: float = 10.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout=within)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await self.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def restored_discord_base() -> Iterator[None]:
    try:
        yield
    finally:
        use_api_base(None)


def _host_of(url: str) -> str:
    """host:port of a URL: the emulator's, whose attachments the bot downloads."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"
