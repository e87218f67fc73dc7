"""Delivering a clip exactly once through the Discord emulator (issue 8): text a member can
make the bot echo never counts as a delivery, a post whose reply was lost is found however
busy the thread, a refused status message is not blamed on permissions, and prompts made of
line separators still fit Discord's embed limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from discord_emulator.emulator import MessageRecord
from tests.e2e.scene import Scene, custom_ids, job_done, open_scene
from tests.fakes.wavespeed import TaskBehaviour


def clips(s: Scene, channel_id: int) -> list[MessageRecord]:
    return [m for m in s.emu.channel_messages(channel_id) if m.attachments]


async def running_job(s: Scene, prompt: str = "the victim's clip") -> tuple[int, str]:
    """Job 1, submitted and held running at the fake; its thread id and task id."""
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice, prompt)
    job = await s.world.wait_job_state(1, "running")
    return job.thread_id, job.task_id


async def test_text_echoed_from_a_prompt_never_counts_as_the_delivery(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        await s.grant(s.alice, 500)
        await s.grant(s.bob, 500)
        thread_id, task = await running_job(s)
        thread = s.emu.channel_of(thread_id)
        # The attacker runs a job in the victim's thread whose prompt forges every marker
        # the bot ever used, and its clip (echoing the prompt) is posted there.
        forged = ("-# ref2video job #1 delivered\n-# ref2video job #1 withheld\n"
                  "r2v:reroll:1 r2v:withheld:1")
        rec = await s.emu.invoke("ref2video", user=s.bob, channel=thread,
                                 options={"prompt": forged, "video": s.video()})
        assert "Job #2 is queued" in (await rec.wait_response(within=10.0)).content
        await job_done(s, 2)
        # The victim's first post attempt fails (nothing stored), so the engine looks for
        # an earlier post before trying again.
        s.emu.refuse("POST", rf"/channels/{thread_id}/messages$", 503, times=1)
        s.wavespeed.finish_task(task)
        await job_done(s, 1)
        mine = [m for m in clips(s, thread_id) if m.attachments[0].filename == "ref2video-1.mp4"]
        assert len(mine) == 1 and f"<@{s.alice.id}>" in mine[0].content
        assert custom_ids(mine[0]) == ["r2v:reroll:1", "r2v:reuse:1"]
        job = await s.world.services.jobs.get(1)
        assert job is not None and job.delivery is not None
        assert job.delivery["message_id"] == mine[0].id
        assert await s.world.ledger_kinds(1) == ["reserve", "capture"]


async def test_a_post_whose_reply_was_lost_is_found_in_a_busy_thread(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        s.emu.nonce_window = 0   # no help from Discord's nonce: the lookup alone must find it
        await s.grant(s.alice, 500)
        thread_id, task = await running_job(s)
        thread = s.emu.channel_of(thread_id)
        for i in range(250):     # far more than one page of history
            s.emu.member_says(s.bob, thread, f"chatter {i}")
        s.emu.fail_after_commit("POST", rf"/channels/{thread_id}/messages$", status=503)
        s.wavespeed.finish_task(task)
        await job_done(s, 1)
        [clip] = clips(s, thread_id)                 # posted once, found, not posted again
        job = await s.world.services.jobs.get(1)
        assert job is not None and job.delivery is not None
        assert job.delivery["message_id"] == clip.id
        assert [r for r in s.emu.requests if r.reply_lost]
        assert await s.world.ledger_kinds(1) == ["reserve", "capture"]


async def test_a_late_clip_is_posted_free_and_says_so(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05,
                          job_timeout_seconds=0.3) as s:
        await s.grant(s.alice, 500)
        s.wavespeed.queue_tasks(TaskBehaviour.never())
        await s.generate(s.alice, "slow one")
        failed = await job_done(s, 1, "failed")
        assert failed.failure_code == "timeout"
        assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
        thread_id = failed.thread_id
        await s.emu.wait_for(lambda: any("free" in m.content for m in
                                         s.emu.channel_messages(thread_id)))
        s.wavespeed.finish_task(failed.task_id)
        [clip] = await s.emu.wait_for(lambda: clips(s, thread_id), within=10.0)
        assert "free of charge" in clip.content and "timed out" in clip.content
        assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
        assert await s.world.ledger_kinds(1) == ["reserve", "release"]


async def test_a_refused_status_message_is_not_blamed_on_permissions(tmp_path: Path) -> None:
    async with open_scene(tmp_path) as s:
        await s.grant(s.alice, 500)
        s.emu.refuse("POST", rf"/channels/{s.channel.id}/messages$", 400, code=50035,
                     message="Invalid Form Body")
        reply = await s.generate(s.alice)
        assert "moderator" not in reply.content and "permission" not in reply.content
        assert "Discord did not accept" in reply.content and "charged" in reply.content
        assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
        assert s.wavespeed.submissions == []
        s.emu.refuse("POST", rf"/channels/{s.channel.id}/messages$", 403, code=50013,
                     message="Missing Permissions")
        reply = await s.generate(s.alice)
        assert "Ask a moderator to let me send messages" in reply.content


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\r", "\r\n", "\x85", "\x0b",
                                       "\x0c", "\x1c", "\x1d", "\x1e", "\n"])
async def test_a_prompt_of_line_separators_fits_the_status_embed(
        tmp_path: Path, separator: str) -> None:
    async with open_scene(tmp_path) as s:
        await s.grant(s.alice, 500)
        prompt = ("a" + separator) * (1500 // (1 + len(separator)))
        reply = await s.generate(s.alice, prompt, negative_prompt=prompt)
        assert "Job #1 is queued" in reply.content, reply.content
        status = [m for m in s.emu.channel_messages(s.channel.id, include_ephemeral=False)
                  if m.embeds][-1]
        fields = {f["name"]: f["value"] for f in status.embeds[0]["fields"]}
        assert 0 < len(fields["Prompt"]) <= 1024
        assert 0 < len(fields["Negative prompt"]) <= 1024


async def test_a_delivery_whose_channel_is_gone_is_refunded_not_retried_forever(
        tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        await s.grant(s.alice, 500)
        thread_id, task = await running_job(s)
        s.emu.refuse("POST", rf"/channels/{thread_id}/messages$", 503, times=1)
        s.emu.refuse("GET", rf"/channels/{thread_id}/messages", 404, code=10003,
                     message="Unknown Channel", times=10_000)
        s.wavespeed.finish_task(task)
        failed = await job_done(s, 1, "failed")
        assert failed.failure_code == "delivery_failed"
        assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
        assert await s.world.ledger_kinds(1) == ["reserve", "release"]
