"""A lost submit reply, seen from Discord: the status message and `/jobs list` say the bot
is checking with WaveSpeed (credits held), then the adopted task's clip arrives once and is
charged once; with no task at WaveSpeed, the member is told and refunded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.e2e.scene import audit_clean, job_done, open_scene
from tests.fakes.wavespeed import Fault


async def test_the_member_sees_checking_then_gets_the_adopted_clip(tmp_path: Path) -> None:
    async with open_scene(tmp_path) as s:
        engine = s.world.services.engine
        # Searches far enough apart to look at the job while it is checking.
        engine.limits = dataclasses.replace(engine.limits, lost_check_delays=(1.5, 2.0, 2.5))
        await s.grant(s.alice, 500)
        s.wavespeed.inject("submit", Fault.drop())
        await s.generate(s.alice, "a cat surfing a wave")
        await s.world.wait_job_state(1, "checking")
        assert await s.world.balance(s.guild.id, s.alice.id) == (400, 100)  # held, not spent

        [thread] = s.emu.threads
        status = s.emu.message(thread.starter_message_id or 0)
        await s.emu.wait_for(lambda: "Checking with WaveSpeed" in status.embeds[0][
            "description"], within=5.0)
        listing = await s.emu.invoke("jobs", subcommand="list", user=s.alice, channel=s.channel)
        shown = await listing.wait_response()
        assert "checking with WaveSpeed" in shown.embeds[0]["description"]
        assert "held" in shown.embeds[0]["description"]

        job = await job_done(s, 1)
        assert job.lost_outcome == "adopted"
        clips = [m for m in s.emu.channel_messages(thread.id) if m.attachments]
        assert len(clips) == 1 and clips[0].attachments[0].data[4:8] == b"ftyp"
        assert len(s.wavespeed.submissions) == 1
        assert await s.world.ledger_kinds(1) == ["reserve", "capture"]
        assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)
        await s.emu.wait_for(lambda: "Delivered" in status.embeds[0]["description"], within=5)
        await audit_clean(s)


async def test_no_task_at_wavespeed_the_member_is_refunded_and_told(tmp_path: Path) -> None:
    async with open_scene(tmp_path) as s:
        await s.grant(s.alice, 500)
        s.wavespeed.inject("submit", Fault.status(502))
        await s.generate(s.alice, "a cat surfing a wave")
        job = await job_done(s, 1, "failed")
        assert (job.failure_code, job.lost_outcome) == ("submit_outcome_unknown", "not_found")
        [thread] = s.emu.threads
        status = s.emu.message(thread.starter_message_id or 0)
        await s.emu.wait_for(lambda: "refunded" in status.embeds[0]["description"], within=5)
        assert "list of tasks" in status.embeds[0]["description"]
        assert await s.world.ledger_kinds(1) == ["reserve", "release"]
        assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
        await audit_clean(s)
