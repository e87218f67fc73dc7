"""Simulate mode end to end: the real bot and the Discord emulator against simulate mode's
own SimulatedService (realistic planner, tier limits, real MP4s rendered from the
references by simulator/clip.py), in-process so its state can be read; and once as the
real `bot.py` with WAVESPEED_MODE=simulate and no key at all."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from config import Secret
from discord_emulator.emulator import DiscordEmulator, MessageRecord, Perm
from simulator.service import SimulatedService, list_price_usd
from simulator.timing import FAILURE_MESSAGE
from storage.credits import audit
from storage.database import Database
from tests.bot_world import BotProcess, ledger_kinds, world_settings
from tests.e2e.scene import Scene, job_done, make_scene, says_simulated
from tests.media import make_mp4

REFERENCE = make_mp4(seconds=2.5, width=96, height=64)


@contextlib.asynccontextmanager
async def simulated(tmp_path: Path, *, failure_rate: float = 0.0) -> AsyncIterator[Scene]:
    async with DiscordEmulator() as emu, SimulatedService(
            speedup=1000.0, tier="SILVER", failure_rate=failure_rate, seed=7,
            http_hosts=(emu.base_url.split("://", 1)[1],)) as sim:  # its attachments
        s = await make_scene(tmp_path, emu, sim.api, sim, wavespeed_mode="SIMULATE",
                             starting_credits=0)
        try:
            yield s
        finally:
            await s.world.stop()
            assert emu.internal_errors == []


def probe(data: bytes) -> tuple[int, int, float]:
    """Width, height and duration (s) of an MP4, as PyAV decodes it."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = len(list(container.decode(stream)))
        rate = stream.average_rate or Fraction(12)
        return stream.codec_context.width, stream.codec_context.height, frames / float(rate)


def everything_posted(emu: DiscordEmulator) -> list[MessageRecord]:
    return [m for m in emu.messages if not m.deleted]


async def test_a_simulated_clip_of_the_chosen_size_arrives_and_is_charged(
        tmp_path: Path) -> None:
    async with simulated(tmp_path) as s:
        audit_channel = s.guild.add_text_channel("audit")
        rec = await s.emu.invoke("settings", subcommand="audit_channel", user=s.admin,
                                 channel=s.channel, options={"channel": audit_channel})
        await rec.wait_response()
        await s.grant(s.alice, 500)
        reply = await s.generate(s.alice, "a paper boat on a stormy sea",
                                 video=s.video(data=REFERENCE), video2=s.video("b.mp4"),
                                 size="720*1280", duration=5)
        assert "#1" in reply.content or reply.embeds, reply.content
        job = await job_done(s, 1)
        clips = [a for m in s.thread_messages() for a in m.attachments
                 if a.filename.endswith(".mp4")]
        assert len(clips) == 1
        width, height, seconds = probe(clips[0].data)
        assert (width, height) == (720, 1280)
        assert abs(seconds - 5.0) < 0.2
        # Credits move exactly as in paid mode: reserved, then captured once.
        assert await s.world.balance(s.guild.id, s.alice.id) == (500 - job.price, 0)
        assert await ledger_kinds(s.world.db, 1) == ["reserve", "capture"]
        assert await audit(s.world.db) == []
        # The simulated account was charged the list price, as WaveSpeed would charge.
        (task,) = s.wavespeed.tasks.values()
        assert task.body["size"] == "720*1280" and task.body["duration"] == 5
        assert s.wavespeed.balance_usd == 500.0 - list_price_usd(task.body)
        status = await s.emu.invoke("admin", subcommand="status", user=s.admin,
                                    channel=s.channel)
        (embed,) = (await status.wait_response()).embeds
        account = next(f for f in embed["fields"] if f["name"].startswith("WaveSpeed balance"))
        assert "simulated" in account["name"] and account["value"].startswith("$")
        # Every message the bot posted - replies, status, thread, audit - says so.
        assert await s.emu.wait_for(lambda: len(s.emu.channel_messages(audit_channel.id)) >= 2)
        posted = everything_posted(s.emu)
        assert posted and all(says_simulated(m) for m in posted), [
            (m.content, m.embeds) for m in posted if not says_simulated(m)]


async def test_a_simulated_failure_is_refunded_and_explained(tmp_path: Path) -> None:
    async with simulated(tmp_path, failure_rate=1.0) as s:
        await s.grant(s.bob, 300)
        await s.generate(s.bob, "a lighthouse at dusk", duration=10)
        job = await job_done(s, 1, "failed")
        assert await s.world.balance(s.guild.id, s.bob.id) == (300, 0)
        assert await ledger_kinds(s.world.db, 1) == ["reserve", "release"]
        notices = await s.emu.wait_for(
            lambda: [m for m in s.thread_messages() if "refunded" in m.content])
        assert FAILURE_MESSAGE in notices[0].content and says_simulated(notices[0])
        assert job.task_id in s.wavespeed.tasks
        assert await audit(s.world.db) == []


async def test_a_prompt_saying_nsfw_rehearses_the_servers_nsfw_policy(tmp_path: Path) -> None:
    async with simulated(tmp_path) as s:
        await s.grant(s.alice, 300)
        await s.generate(s.alice, "an nsfw scene")
        job = await job_done(s, 1, "failed")
        assert job.failure_code == "withheld"
        notices = await s.emu.wait_for(
            lambda: [m for m in s.thread_messages() if "not posted" in m.content])
        assert says_simulated(notices[0])
        assert not any(m.attachments for m in s.thread_messages())
        assert await s.world.balance(s.guild.id, s.alice.id) == (300, 0)


async def test_an_undecodable_reference_is_refused_before_anything_is_reserved(
        tmp_path: Path) -> None:
    # The simulated model would fail it (tests/simulator), but the bot's probe sees it first.
    async with simulated(tmp_path) as s:
        await s.grant(s.alice, 200)
        reply = await s.generate(s.alice, "a fox",
                                 video=s.video("fake.mp4", data=b"\x89PNG" * 64))
        assert "is not a video file I can read" in reply.content, reply.content
        assert says_simulated(reply)
        assert s.wavespeed.submissions == []
        assert await s.world.balance(s.guild.id, s.alice.id) == (200, 0)


async def test_bot_py_in_simulate_mode_needs_no_key(tmp_path: Path) -> None:
    """The product path: bot.py starts its own simulated WaveSpeed (no key, no base URL)."""
    async with DiscordEmulator() as emu:
        guild = emu.add_guild("Sim")
        channel = guild.add_text_channel("clips")
        mod = guild.add_member(None, "mod", permissions=Perm.ALL)
        alice = guild.add_member(None, "alice")
        placeholder: Any = type("NoWaveSpeed", (), {"api_key": "unused", "base_url": "",
                                                    "host": ""})()
        settings = world_settings(tmp_path, emu, placeholder, wavespeed_mode="SIMULATE",
                                  wavespeed_api_key=None, simulate_speedup=1000.0,
                                  simulate_tier="SILVER")
        proc = BotProcess(settings, tmp_path)
        await proc.start()
        try:
            await emu.wait_for(lambda: "engine started" in proc.log_text(), within=30.0)
            grant = await emu.invoke("credits", subcommand="grant", user=mod, channel=channel,
                                     options={"user": alice, "amount": 400})
            assert "Granted" in (await grant.wait_response(within=15.0)).content
            rec = await emu.invoke("ref2video", user=alice, channel=channel, options={
                "prompt": "a kite over dunes",
                "video": emu.add_attachment("ref.mp4", REFERENCE, "video/mp4")})
            reply = await rec.wait_response(within=15.0)
            assert "Job #1 is queued" in reply.content, reply.content
            clip = await emu.wait_for(lambda: [
                a for t in emu.threads for m in emu.channel_messages(t.id)
                for a in m.attachments if a.filename.endswith(".mp4")], within=60.0)
            assert probe(clip[0].data)[:2] == (1280, 720)
        finally:
            await proc.stop()
        log = proc.log_text()
        assert "SIMULATE MODE" in log and "Traceback" not in log, log[-3000:]
        db = await Database.open(settings.database_path)
        try:
            assert await ledger_kinds(db, 1) == ["reserve", "capture"]
        finally:
            await db.close()
        # The same database in live mode: refused before anything runs against it.
        live = BotProcess(dataclasses.replace(
            settings, wavespeed_mode="LIVE", wavespeed_api_key=Secret("live-key")),
            tmp_path, name="live")
        await live.start()
        assert await live.wait(within=30.0) == 2
        assert "holds the jobs and credits of SIMULATE mode" in live.log_text()
