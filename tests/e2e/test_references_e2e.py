"""References kept at WaveSpeed (issue 12): a job carries WaveSpeed's copies of its files,
so a queued job, a Re-roll and Use as reference work after Discord's links expire; a
Re-roll past WaveSpeed's 7-day retention asks for the files again and charges nothing; a
failed upload costs nothing. Through the Discord emulator and the fake WaveSpeed."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storage.credits import audit
from tests.e2e.scene import Scene, custom_ids, delivered_clip, job_done, open_scene
from tests.fakes.wavespeed import Fault, TaskBehaviour
from tests.media import make_mp4


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        yield s


async def fetch_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status


async def ledger_of(s: Scene, user_id: int) -> list[str]:
    async with s.world.db.reading() as conn, conn.execute(
        "SELECT kind FROM ledger WHERE user_id = ? ORDER BY id", (user_id,)
    ) as cur:
        return [str(r[0]) for r in await cur.fetchall()]


async def test_the_job_carries_wavespeeds_copies_not_discords_links(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    first = s.video("holiday-cat.mp4", make_mp4(seconds=2.5, width=64, height=48))
    second = s.video("beach-dog.mov", make_mp4(seconds=3.0, width=48, height=64),
                     content_type="video/quicktime")
    reply = await s.generate(s.alice, video=first, video2=second)
    assert "Job #1 is queued" in reply.content, reply.content
    await job_done(s, 1)
    [submitted] = s.wavespeed.submissions
    videos = submitted.body["videos"]
    assert all(v.startswith(s.wavespeed.base_url + "/media/") for v in videos), videos
    # In order, and byte for byte the member's files.
    stored = [s.wavespeed.uploads[v.split("/media/")[1].split("/")[0]] for v in videos]
    assert stored == [s.emu.served_attachment(int(a["id"])).data  # type: ignore[union-attr]
                      for a in (first, second)]
    # The member's file name is not in WaveSpeed's URL.
    assert not any("holiday" in v or "beach" in v for v in videos)
    assert all(re.fullmatch(r"reference-[0-9a-f]{32}\.(mp4|mov)", v.rsplit("/", 1)[1])
               for v in videos), videos


async def test_a_reroll_after_discords_links_expired_submits_the_stored_copies(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    video = s.video()
    await s.generate(s.alice, video=video)
    await job_done(s, 1)
    [clip] = [m for m in s.thread_messages() if m.attachments]
    s.emu.expire_attachment_links()
    assert await fetch_status(video["url"]) == 404  # Discord's link is dead now
    ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
    question = await ask.wait_response()
    go = await s.emu.click(question, custom_ids(question)[0], user=s.alice)
    assert "Job #2 is queued" in (await go.wait_response(within=10.0)).content
    await job_done(s, 2)
    first, second = s.wavespeed.submissions
    assert second.body["videos"] == first.body["videos"]
    assert second.body["seed"] != first.body["seed"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (300, 0)


async def test_a_reroll_past_wavespeeds_retention_asks_for_the_files_and_charges_nothing(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    # Eight days later: WaveSpeed has dropped the copies, and the bot knows when they went.
    s.wavespeed.clock = lambda: time.time() + 8 * 86400
    async with s.world.db.transaction() as conn:
        await conn.execute("UPDATE stored_media SET uploaded_at = uploaded_at - ?,"
                           " expires_at = expires_at - ?", (8 * 86400, 8 * 86400))
    ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
    answer = await ask.wait_response()
    assert "7 days" in answer.content and "/ref2video" in answer.content, answer.content
    assert "Nothing was charged" in answer.content
    assert custom_ids(answer) == []  # no price to confirm
    assert len(s.wavespeed.submissions) == 1
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)
    assert await ledger_of(s, s.alice.id) == ["grant", "reserve", "capture"]


async def test_a_queued_job_whose_copies_expired_is_refunded_without_a_submit(
        tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05, wavespeed_max_concurrent=1) as s:
        await s.grant(s.alice, 500)
        s.wavespeed.queue_tasks(TaskBehaviour.ok(complete_after=1.5))
        await s.generate(s.alice, "first")           # holds the only slot for 1.5 s
        await s.world.wait_job_state(1, "running")
        await s.generate(s.alice, "second", video=s.video(
            "other.mp4", make_mp4(seconds=2.5, width=48, height=48)))
        async with s.world.db.transaction() as conn:
            await conn.execute(
                "UPDATE stored_media SET uploaded_at = uploaded_at - ?, expires_at ="
                " expires_at - ? WHERE url IN (SELECT value FROM jobs, json_each("
                "json_extract(jobs.request, '$.videos')) WHERE jobs.id = 2)",
                (8 * 86400, 8 * 86400))
        job = await s.world.wait_job_state(2, "failed")
        assert job.failure_code == "references_expired"
        assert len(s.wavespeed.submissions) == 1
        await job_done(s, 1)
        assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)
        assert await audit(s.world.db) == []


async def test_use_as_reference_after_the_links_expired_keeps_a_copy_of_the_clip(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    s.emu.expire_attachment_links()
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    sent = await s.emu.submit_modal(opened, {"prompt": "the same cat, at night"})
    assert "Job #2 is queued" in (await sent.wait_response(within=10.0)).content
    await job_done(s, 2)
    [video] = s.wavespeed.submissions[1].body["videos"]
    assert video.startswith(s.wavespeed.base_url + "/media/")
    token = video.split("/media/")[1].split("/")[0]
    assert s.wavespeed.uploads[token] == clip.attachments[0].data


async def test_a_failed_upload_is_a_clear_message_at_no_cost(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    for route in ("upload_ticket", "upload"):
        s.wavespeed.inject(route, *[Fault.status(503)] * 10)
    reply = await s.generate(s.alice)
    assert "could not be stored at WaveSpeed" in reply.content, reply.content
    assert "nothing was started or charged" in reply.content
    assert s.wavespeed.submissions == []
    assert await ledger_of(s, s.alice.id) == ["grant"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)


async def test_a_member_without_credits_is_told_before_anything_is_downloaded(
        scene: Scene) -> None:
    s = scene
    reply = await s.generate(s.alice)
    assert "costs 100 credits" in reply.content and "Nothing was charged" in reply.content
    assert s.wavespeed.uploads == {}
    assert s.wavespeed.requests_to("/media/uploads") == []
