"""Fixtures of the playground's tests: a whole playground (the emulator, the real bot.py in
simulate mode as a child process, the web server) on a free port, and a bare web server on
an emulator world without any bot, for what needs no bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from discord_emulator.emulator import DiscordEmulator
from playground.app import Playground, PlaygroundConfig
from playground.bot_process import BotOptions
from playground.credits import CreditReader
from playground.server import PlaygroundServer
from playground.world import PlaygroundWorld, build_world
from tests.media import make_mp4
from tests.playground.client import PlaygroundClient

# Fast clips: simulated generation takes about 0.1 s at 1000x (rendering the MP4 takes longer).
TEST_SPEEDUP = 1000.0


def playground_config(tmp_path: Path) -> PlaygroundConfig:
    return PlaygroundConfig(data_dir=tmp_path / "data", port=0,
                            bot=BotOptions(speedup=TEST_SPEEDUP))


@pytest.fixture
async def playground(tmp_path: Path) -> AsyncIterator[Playground]:
    pg = Playground(playground_config(tmp_path))
    await pg.start()
    try:
        yield pg
    finally:
        await pg.close()
    assert pg.emulator.internal_errors == []


@pytest.fixture
async def client(playground: Playground) -> AsyncIterator[PlaygroundClient]:
    async with aiohttp.ClientSession() as session:
        yield PlaygroundClient(session, playground.url)


@dataclass
class Bare:
    emulator: DiscordEmulator
    world: PlaygroundWorld
    server: PlaygroundServer
    client: PlaygroundClient


@pytest.fixture
async def bare(tmp_path: Path) -> AsyncIterator[Bare]:
    """The web server on the playground's world, with no bot (so no commands)."""
    async with DiscordEmulator() as emulator, aiohttp.ClientSession() as session:
        world = build_world(emulator, tmp_path)
        server = PlaygroundServer(emulator, world, CreditReader(tmp_path / "none.sqlite3"),
                                  sample=make_mp4)
        url = await server.start()
        try:
            yield Bare(emulator, world, server, PlaygroundClient(session, url))
        finally:
            await server.close()
