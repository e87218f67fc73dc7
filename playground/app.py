"""The playground, started and stopped in order: the page's port, the data directory (locked,
and wiped with --fresh), the local Discord, its server and members, the bot (a child process
in simulate mode), the audit channel set by the moderator, then the page. Stopping goes the
other way round, the bot first while Discord is still there for it to close against."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import socket
import stat
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
from playground.server import PlaygroundServer, SampleMaker, listening_socket
from playground.world import WORLD_FILE, PlaygroundWorld, build_world
from simulator import clip

log = logging.getLogger(__name__)

LOCK_FILE = ".playground.lock"  # flock'ed by the playground using the directory
WORK_DIR = "work"  # the bot's downloads of finished clips
# What --fresh may delete: only what a playground leaves in its data directory (regular
# files, and the bot's work directory of clips being delivered), the lock file excepted.
OWN_FILES = (WORLD_FILE, BOT_LOG, DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm",
             f"{DATABASE}-journal")
WORK_FILE = re.compile(r"job-[0-9]+(?:-late)?\.mp4(?:\.part)?")


class StartRefused(Exception):
    """The playground cannot start as asked (the port is taken, another playground uses
    the data directory, --fresh on a directory it did not make); the message says why."""


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


def _is_file(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)  # not a symlink, a directory, a fifo...


def _is_dir(path: Path) -> bool:
    return stat.S_ISDIR(path.lstat().st_mode)


def wipe(data_dir: Path) -> None:
    """--fresh: delete the playground's own files, refusing a directory holding anything
    else, or not marked as a playground's by its world.json (so a mistyped --data cannot
    delete anything else). Only the known entries are deleted, one by one; the directory
    itself and its lock file stay."""
    if not data_dir.exists():
        return
    entries = {p.name: p for p in data_dir.iterdir() if p.name != LOCK_FILE}
    if not entries:
        return
    refuse = f"--fresh: not deleting anything in {data_dir}"
    marker = entries.get(WORLD_FILE)
    if marker is None or not _is_file(marker):
        raise StartRefused(f"{refuse}: it holds no {WORLD_FILE}, so it is not a playground's "
                           f"data directory")
    strangers: list[str] = []
    files: list[Path] = []
    for name, path in sorted(entries.items()):
        if name in OWN_FILES and _is_file(path):
            files.append(path)
        elif name == WORK_DIR and _is_dir(path):
            for inner in sorted(path.iterdir()):
                if WORK_FILE.fullmatch(inner.name) and _is_file(inner):
                    files.append(inner)
                else:
                    strangers.append(f"{WORK_DIR}/{inner.name}")
        else:
            strangers.append(name)
    if strangers:
        raise StartRefused(f"{refuse}: it holds what the playground did not make "
                           f"({', '.join(strangers[:5])})")
    for path in files:
        path.unlink(missing_ok=True)
    if (work := entries.get(WORK_DIR)) is not None:
        work.rmdir()


class DataLock:
    """An exclusive flock on `<data dir>/.playground.lock`, held while the playground runs:
    two playgrounds on one directory would each start a bot on one database and overwrite
    each other's world.json (or one would --fresh what the other uses)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """StartRefused if another process holds it (naming its pid) or the directory
        cannot be used."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartRefused(f"cannot use {self.path.parent}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartRefused(f"another playground is using {self.path.parent} "
                               f"(pid {holder})") from None
        except OSError as exc:  # no locks on this file system, say
            os.close(fd)
            raise StartRefused(f"cannot lock {self.path}: {exc}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


class Playground:
    def __init__(self, config: PlaygroundConfig, *, bot_env: EnvBuilder = simulate_env,
                 sample: SampleMaker = sample_reference) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self._bot_env = bot_env
        self._sample = sample
        self.emulator = DiscordEmulator()
        self.lock = DataLock(self.data_dir)
        self._sock: socket.socket | None = None
        self.world: PlaygroundWorld
        self.bot: BotProcess | None = None
        self.server: PlaygroundServer | None = None
        self.url = ""

    async def start(self) -> str:
        """Everything up; returns the page's URL. StartRefused if it cannot start as asked,
        BotExited if the bot stops while starting (the playground is closed again by then)."""
        try:
            # The port first: taken, it fails at once, before anything is written.
            try:
                self._sock = listening_socket(self.config.port)
            except OSError as exc:
                raise StartRefused(f"cannot serve on 127.0.0.1:{self.config.port}: {exc} "
                                   f"(try --port)") from None
            self.lock.acquire()  # before --fresh deletes anything
            if self.config.fresh:
                wipe(self.data_dir)
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
            sock, self._sock = self._sock, None
            self.url = await self.server.start(sock=sock)
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
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        await self.emulator.close()
        self.lock.release()


__all__ = ["BotExited", "Playground", "PlaygroundConfig", "StartRefused", "sample_reference"]
