"""The bot's two secrets never leave where they belong (issue 13, secrets): with
recognisable fake secrets, jobs are delivered, failed, refused and reported on, WaveSpeed
echoes the key back in its error texts, and then every log line (DEBUG included), every
request the Discord emulator recorded, every message it holds, the database file and every
file the bot wrote are searched for either secret. The Discord token belongs only in the
Authorization header to Discord, the WaveSpeed key only in the one to WaveSpeed; neither
header is recorded."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import pytest

from discord_emulator.emulator import DiscordEmulator
from tests.e2e.scene import job_done, make_scene
from tests.fakes.wavespeed import FakeWaveSpeed, Fault, TaskBehaviour

DISCORD_TOKEN = f"CANARY-DISCORD-{secrets.token_hex(12)}"
WAVESPEED_KEY = f"CANARY-WAVESPEED-{secrets.token_hex(12)}"


async def test_no_secret_reaches_a_log_a_message_the_database_or_a_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with DiscordEmulator() as emu, FakeWaveSpeed(
            api_key=WAVESPEED_KEY, processing_after=0.01, complete_after=0.05) as ws:
        emu.bot_token = DISCORD_TOKEN
        s = await make_scene(tmp_path, emu, ws)
        try:
            await s.grant(s.alice, 1000)
            await s.generate(s.alice, "a delivered clip")
            await job_done(s, 1)
            ws.queue_tasks(TaskBehaviour.fail(f"model crashed near {WAVESPEED_KEY}"))
            await s.generate(s.alice, "a failed clip")
            await job_done(s, 2, "failed")
            # WaveSpeed refusing a submit, quoting the key back at us.
            ws.inject("submit", Fault.status(400, f"invalid key {WAVESPEED_KEY}"))
            await s.generate(s.alice, "a refused submit")
            await job_done(s, 3, "failed")
            ws.inject("pricing", Fault.status(401, f"Bearer {WAVESPEED_KEY} is not valid"))
            await s.world.services.costs.check()
            bad = s.video("bad.mp4", b"\x89PNG" * 64)
            await s.generate(s.alice, "a refused file", video=bad)
            status = await s.emu.invoke("admin", subcommand="status", user=s.admin,
                                        channel=s.channel)
            await status.wait_response()
        finally:
            await s.world.stop()

        places: dict[str, str] = {}
        places["logs"] = "\n".join(
            f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
        places["Discord requests"] = "\n".join(
            f"{r.path} {r.query} {r.json!r} {r.form!r}" for r in emu.requests)
        places["Discord messages"] = "\n".join(
            f"{m.content} {m.embeds!r} {m.history!r}" for m in emu.messages)
        places.update(await asyncio.to_thread(_files_under, tmp_path))
        assert any(name.endswith(".sqlite3") for name in places)  # the database was read
        assert "a delivered clip" in places["Discord messages"]  # and the messages were
        for secret in (DISCORD_TOKEN, WAVESPEED_KEY):
            leaked = [name for name, text in places.items() if secret in text]
            assert leaked == [], f"{secret[:16]}... found in {leaked}"


def _files_under(root: Path) -> dict[str, str]:
    """Every file the bot wrote (the database and its WAL, the work directory...)."""
    return {str(path.relative_to(root)): path.read_bytes().decode("utf-8", errors="replace")
            for path in root.rglob("*") if path.is_file()}
