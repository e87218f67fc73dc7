"""The end-to-end scene: a started bot (BotWorld) against the Discord emulator and the fake
WaveSpeed, a guild with a channel, a moderator and two members, and the steps the e2e tests
share. The `scene` fixture is in tests/e2e/conftest.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discord_emulator.emulator import Channel, DiscordEmulator, Guild, Member, MessageRecord, Perm
from discord_layer.text import SIMULATED_NOTE
from simulator.wavespeed_api import SimulatedWaveSpeed
from storage.credits import audit
from tests.bot_world import BotWorld, WaveSpeedEndpoint
from tests.fakes.wavespeed import FakeWaveSpeed
from tests.media import make_mp4

MP4 = make_mp4(seconds=2.5)  # references must be 2-30 s long


@dataclass
class Scene:
    world: BotWorld
    emu: DiscordEmulator
    wavespeed: SimulatedWaveSpeed  # the fake's API (FakeWaveSpeed), or simulate mode's
    guild: Guild
    channel: Channel
    admin: Member
    alice: Member
    bob: Member

    def video(self, name: str = "ref.mp4", data: bytes = MP4,
              content_type: str = "video/mp4") -> dict[str, Any]:
        return self.emu.add_attachment(name, data, content_type)

    async def grant(self, member: Member, amount: int) -> None:
        rec = await self.emu.invoke("credits", subcommand="grant", user=self.admin,
                                    channel=self.channel,
                                    options={"user": member, "amount": amount})
        reply = await rec.wait_response()
        assert "Granted" in reply.content, reply.content

    async def generate(self, member: Member, prompt: str = "a cat surfing a wave",
                       **options: Any) -> MessageRecord:
        """Run /ref2video and return its (private) answer."""
        options.setdefault("video", self.video())
        rec = await self.emu.invoke("ref2video", user=member, channel=self.channel,
                                    options={"prompt": prompt, **options})
        await rec.wait_acked()
        assert rec.acked_at is not None and rec.acked_at < 3.0 and not rec.late
        assert rec.ephemeral
        return await rec.wait_response(within=10.0)

    def kept(self, url: str) -> bytes:
        """The bytes of a reference copy kept in the fake WaveSpeed's media storage (a URL a
        job submitted: the bot submits its copies, never Discord's links)."""
        prefix = self.wavespeed.base_url + "/media/"
        assert url.startswith(prefix), url
        return self.wavespeed.uploads[url[len(prefix):].split("/")[0]]

    def attachment_bytes(self, attachment: dict[str, Any]) -> bytes:
        served = self.emu.served_attachment(int(attachment["id"]))
        assert served is not None
        return served.data

    def thread_messages(self) -> list[MessageRecord]:
        return [m for t in self.emu.threads for m in self.emu.channel_messages(t.id)]


async def make_scene(tmp_path: Path, emu: DiscordEmulator, wavespeed: SimulatedWaveSpeed,
                     endpoint: WaveSpeedEndpoint | None = None, **settings: Any) -> Scene:
    """`endpoint` is what the bot's client points at (default `wavespeed` itself; simulate
    mode's SimulatedService, whose API is `wavespeed`)."""
    guild = emu.add_guild("Clip Club")
    channel = guild.add_text_channel("clips")
    admin = guild.add_member(None, "mod", permissions=Perm.ALL)
    alice = guild.add_member(None, "alice")
    bob = guild.add_member(None, "bob")
    world = BotWorld(tmp_path, emu, endpoint or wavespeed, **settings)
    await world.start()
    return Scene(world, emu, wavespeed, guild, channel, admin, alice, bob)


@contextlib.asynccontextmanager
async def open_scene(tmp_path: Path, *, processing_after: float = 0.01,
                     complete_after: float = 0.1, **settings: Any) -> AsyncIterator[Scene]:
    """A started bot against a fresh emulator and fake WaveSpeed; stopped afterwards, and
    the emulator must not have hit an error of its own."""
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=processing_after,
                                                       complete_after=complete_after) as ws:
        s = await make_scene(tmp_path, emu, ws, **settings)
        try:
            yield s
        finally:
            await s.world.stop()
            assert emu.internal_errors == []
        # Live mode (every scene here) never claims to be simulated.
        assert not [m for m in emu.messages if says_simulated(m)]


def says_simulated(message: MessageRecord) -> bool:
    """Whether a message, in any of its versions, carries the simulate-mode note."""
    versions = [{"content": message.content, "embeds": message.embeds}, *message.history]
    return any(SIMULATED_NOTE in str(v.get("content") or "") or any(
        SIMULATED_NOTE in str((e.get("footer") or {}).get("text", ""))
        for e in v.get("embeds") or []) for v in versions)


async def job_done(s: Scene, job_id: int, state: str = "delivered") -> Any:
    return await s.world.wait_job_state(job_id, state, within=15.0)


async def delivered_clip(s: Scene, prompt: str = "a cat surfing", **options: Any
                         ) -> MessageRecord:
    """Run /ref2video as alice and wait for job 1's clip; the message holding it."""
    await s.generate(s.alice, prompt, **options)
    await job_done(s, 1)
    [clip] = [m for m in s.thread_messages() if m.attachments]
    return clip


async def audit_clean(s: Scene) -> None:
    assert await audit(s.world.db) == []


def custom_ids(message: MessageRecord) -> list[str]:
    """The custom_ids of a message's buttons, row by row."""
    return [c["custom_id"] for row in message.components for c in row.get("components", [])
            if "custom_id" in c]
