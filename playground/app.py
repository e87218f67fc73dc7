"""The playground, started and stopped in order: the local Discord, its server and members,
the bot (a child process in simulate mode), the audit channel set by the moderator, then the
page. Stopping goes the other way round, the bot first while Discord is still there for it
to close against."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from discord_emulator.emulator import DiscordEmulator
from playground.bot_process import (
    BOT_LOG,
    DATABASE,
    BotExited,
    BotOptions,
    BotProcess,
    Endpoint,
    EnvBuilder,
    simulate_env,
)
from playground.credits import CreditReader
from playground.server import PlaygroundServer, SampleMaker
from playground.world import WORLD_FILE, PlaygroundWorld, build_world
from simulator import clip

log = logging.getLogger(__name__)

# What --fresh may delete: only what a playground leaves in its data directory.
OWN_FILES = (WORLD_FILE, BOT_LOG, DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "work")


def sample_reference() -> bytes:
    """A short real MP4 for members who have no reference clip of their own."""
    return clip.sample_reference()


@dataclass(frozen=True)
class PlaygroundConfig:
    data_dir: Path = Path("data/playground")
    port: int = 8765
    fresh: bool = False
    bot: BotOptions = field(default_factory=BotOptions)
    bot_start_seconds: float = 60.0


def wipe(data_dir: Path) -> None:
    """--fresh: delete the playground's own files, refusing a directory holding others (so
    a mistyped --data cannot delete anything else)."""
    if not data_dir.exists():
        return
    strangers = sorted(p.name for p in data_dir.iterdir() if p.name not in OWN_FILES)
    if strangers:
        raise SystemExit(f"--fresh: {data_dir} holds files the playground did not make "
                         f"({', '.join(strangers[:5])}); not deleting it")
    shutil.rmtree(data_dir)


class Playground:
    def __init__(self, config: PlaygroundConfig, *, bot_env: EnvBuilder = simulate_env,
                 sample: SampleMaker = sample_reference) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self._bot_env = bot_env
        self._sample = sample
        self.emulator = DiscordEmulator()
        self.world: PlaygroundWorld
        self.bot: BotProcess | None = None
        self.server: PlaygroundServer | None = None
        self.url = ""

    async def start(self) -> str:
        """Everything up; returns the page's URL. BotExited if the bot stops while starting
        (the playground is closed again by then)."""
        try:
            if self.config.fresh:
                wipe(self.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            await self.emulator.start()
            self.world = build_world(self.emulator, self.data_dir)
            self.bot = BotProcess(self.data_dir, Endpoint(self.emulator.bot_token,
                                                          self.emulator.api_base),
                                  self.config.bot, self._bot_env)
            await self.bot.start()
            await self.bot.wait_ready(self.config.bot_start_seconds)
            await self._set_audit_channel()
            self.server = PlaygroundServer(
                self.emulator, self.world, CreditReader(self.bot.database_path),
                sample=self._sample, about={
                    "speedup": self.config.bot.speedup,
                    "failure_rate": self.config.bot.failure_rate,
                    "data_dir": str(self.data_dir), "bot_log": str(self.bot.log_path)})
            self.url = await self.server.start(self.config.port)
        except BaseException:
            await self.close()
            raise
        return self.url

    async def _set_audit_channel(self) -> None:
        """Run /settings audit_channel as the moderator, as a person would."""
        w = self.world
        rec = await self.emulator.invoke("settings", subcommand="audit_channel",
                                         user=w.moderator, channel=w.audit_channel,
                                         options={"channel": w.audit_channel})
        try:
            reply = await rec.wait_response(within=15.0)
        except TimeoutError:
            tail = self.bot.log_tail() if self.bot is not None else ""
            raise TimeoutError(f"/settings audit_channel got no answer from the bot; the end "
                               f"of its log:\n{tail}") from None
        log.info("/settings audit_channel: %s", reply.content.splitlines()[0]
                 if reply.content else "(answered)")

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; BotExited if the bot exits first."""
        assert self.bot is not None
        stopping = asyncio.ensure_future(stop.wait())
        exiting = asyncio.ensure_future(self.bot.wait_exit())
        try:
            await asyncio.wait({stopping, exiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            exiting.cancel()
        if not stop.is_set():
            raise self.bot.exited()

    async def close(self) -> None:
        if self.bot is not None:
            code = await self.bot.stop()
            log.info("the bot stopped (exit code %s)", code)
            self.bot = None
        if self.server is not None:
            await self.server.close()
            self.server = None
        await self.emulator.close()


__all__ = ["BotExited", "Playground", "PlaygroundConfig", "sample_reference"]
