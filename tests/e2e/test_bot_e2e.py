"""The bot end to end: the Discord emulator sends INTERACTION_CREATE, the real bot answers,
the fake WaveSpeed runs the task, and the clip (or the refund) shows up in the emulator's
record. Assertions are on what Discord and WaveSpeed saw and on the books."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.scene import MP4, Scene, audit_clean, job_done, open_scene
from tests.fakes.wavespeed import TaskBehaviour
from tests.harness import wait_for
from tests.media import make_audio, make_mp4, make_video

# ---- the happy path -------------------------------------------------------------------------

async def test_grant_then_generate_delivers_the_clip_into_a_thread(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    video = s.video()
    reply = await s.generate(s.alice, "two dancers on a pier", video=video, size="720*1280",
                             duration=10, shot_type="multi", prompt_expansion=True, seed=42,
                             negative_prompt="blurry")
    assert "Job #1 is queued" in reply.content and "150 credits" in reply.content
    job = await job_done(s, 1)

    [submitted] = s.wavespeed.submissions
    [kept] = submitted.body["videos"]  # WaveSpeed's copy of the attachment
    assert s.kept(kept) == s.attachment_bytes(video)
    assert submitted.body == {
        "videos": [kept], "prompt": "two dancers on a pier",
        "negative_prompt": "blurry", "size": "720*1280", "duration": 10,
        "shot_type": "multi", "enable_prompt_expansion": True, "seed": 42,
    }
    [thread] = s.emu.threads
    assert thread.parent_id == s.channel.id and thread.name.startswith("#1 two dancers")
    clip = await s.emu.wait_for(lambda: [m for m in s.emu.channel_messages(thread.id)
                                         if m.attachments])
    [attachment] = clip[0].attachments
    assert attachment.filename == "ref2video-1.mp4" and attachment.data[4:8] == b"ftyp"
    assert f"<@{s.alice.id}>" in clip[0].content
    assert s.emu.mentions_pinged(clip[0]) == {f"user:{s.alice.id}"}

    assert await s.world.balance(s.guild.id, s.alice.id) == (350, 0)
    assert await s.world.ledger_kinds(job.id) == ["reserve", "capture"]
    await audit_clean(s)

    # The status message ends up saying so, and /jobs list links the thread.
    status = s.emu.message(thread.starter_message_id or 0)
    await s.emu.wait_for(lambda: "Delivered" in status.embeds[0]["description"], within=5.0)
    listing = await s.emu.invoke("jobs", subcommand="list", user=s.alice, channel=s.channel)
    shown = await listing.wait_response()
    assert "#1" in shown.embeds[0]["description"] and str(thread.id) in shown.embeds[0][
        "description"]


async def test_two_videos_and_audio_reach_wavespeed_in_order(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    first = s.video("a.mp4", make_mp4(seconds=2.5, width=64, height=48))
    second = s.video("b.mov", make_video(fmt="mov", seconds=3.0),
                     content_type="video/quicktime")
    audio = s.emu.add_attachment("song.mp3", make_audio(fmt="mp3", seconds=3.0), "audio/mpeg")
    await s.generate(s.alice, video=first, video2=second, audio=audio)
    await job_done(s, 1)
    [submitted] = s.wavespeed.submissions
    assert [s.kept(v) for v in submitted.body["videos"]] == [
        s.attachment_bytes(first), s.attachment_bytes(second)]
    assert s.kept(submitted.body["audio"]) == s.attachment_bytes(audio)


# ---- bad input costs nothing ---------------------------------------------------------------

BAD_INPUTS = [
    ("no credits", {}, "costs 100 credits"),
    ("png as video", {"video": ("cat.png", b"\x89PNG" + bytes(100), "image/png")},
     "must be a video"),
    ("oversize", {"video": ("big.mp4", MP4 + bytes(60_000), "video/mp4")}, "the limit is"),
    ("long prompt", {"prompt": "x" * 51}, "the limit is 50"),
]


@pytest.mark.parametrize("scene", [{"max_video_bytes": 50_000, "max_prompt_chars": 50}],
                         indirect=True)
@pytest.mark.parametrize(("case", "options", "words"), BAD_INPUTS,
                         ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_is_refused_privately_and_costs_nothing(
    scene: Scene, case: str, options: dict[str, Any], words: str
) -> None:
    s = scene
    if case != "no credits":
        await s.grant(s.alice, 500)
    before = await s.world.ledger_count()
    opts = dict(options)
    if "video" in opts:
        name, data, kind = opts["video"]
        opts["video"] = s.video(name, data, kind)
    reply = await s.generate(s.alice, **({"prompt": "a cat"} | opts))
    assert reply.ephemeral and words in reply.content, reply.content
    assert "Traceback" not in reply.content
    await asyncio.sleep(0.2)
    assert s.wavespeed.submissions == []
    assert await s.world.ledger_count() == before
    assert s.emu.threads == []
    assert s.emu.channel_messages(s.channel.id, include_ephemeral=False) == []


async def test_members_without_manage_server_cannot_grant(scene: Scene) -> None:
    s = scene
    rec = await s.emu.invoke("credits", subcommand="grant", user=s.alice, channel=s.channel,
                             options={"user": s.alice, "amount": 1000})
    reply = await rec.wait_response()
    assert reply.ephemeral and "Manage Server" in reply.content
    assert await s.world.ledger_count() == 0
    assert await s.world.balance(s.guild.id, s.alice.id) == (0, 0)


# ---- failures are refunded -----------------------------------------------------------------

async def test_failed_task_is_explained_in_the_thread_and_refunded(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.fail("content policy violation"))
    await s.generate(s.alice)
    job = await job_done(s, 1, "failed")
    notices = await s.emu.wait_for(
        lambda: [m for m in s.thread_messages() if "failed" in m.content])
    assert "content policy violation" in notices[0].content and "refunded" in notices[0].content
    assert s.wavespeed.api_key not in notices[0].content
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
    assert await s.world.ledger_kinds(job.id) == ["reserve", "release"]
    await audit_clean(s)


async def test_output_over_the_upload_limit_is_delivered_as_a_link(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.huge(11 * 1024 * 1024))  # over the 10 MiB default
    await s.generate(s.alice)
    job = await job_done(s, 1)
    [clip] = [m for m in s.thread_messages() if "ready" in m.content]
    assert clip.attachments == [] and f"/outputs/{job.task_id}.mp4" in clip.content
    assert await s.world.ledger_kinds(job.id) == ["reserve", "capture"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


# ---- nobody gets pinged by a prompt --------------------------------------------------------

async def test_a_prompt_with_mass_mentions_pings_no_one(scene: Scene) -> None:
    s = scene
    role = s.guild.add_role("everyone-ish", mentionable=True)
    await s.grant(s.alice, 500)
    prompt = f"@everyone @here <@&{role.id}> <@{s.bob.id}> **bold** ```"
    await s.generate(s.alice, prompt, negative_prompt="@everyone")
    await job_done(s, 1)
    await s.emu.wait_for(lambda: any(m.attachments for m in s.thread_messages()))
    for message in s.emu.messages:
        assert message.allowed_mentions is not None  # every message says whom it may ping
        pinged = s.emu.mentions_pinged(message)
        assert pinged <= {f"user:{s.alice.id}"}, (message.content, pinged)
    assert [t.name for t in s.emu.threads] == [f"#1 @everyone @here <@&{role.id}> "
                                               f"<@{s.bob.id}> **bold** ```"]


# ---- cancelling ------------------------------------------------------------------------------

@pytest.mark.parametrize("scene", [{"wavespeed_max_concurrent": 1}], indirect=True)
async def test_cancel_a_queued_job_refunds_it(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice, "first")
    await s.world.wait_job_state(1, "running")
    await s.generate(s.alice, "second")
    second_status = s.emu.channel_messages(s.channel.id, include_ephemeral=False)[-1]
    await s.emu.wait_for(lambda: "Queued, position 1" in second_status.embeds[0]["description"],
                         within=5.0)
    rec = await s.emu.invoke("jobs", subcommand="cancel", user=s.bob, channel=s.channel,
                             options={"job": 2})
    assert "not yours" in (await rec.wait_response()).content
    rec = await s.emu.invoke("jobs", subcommand="cancel", user=s.alice, channel=s.channel,
                             options={"job": 2})
    assert "cancelled" in (await rec.wait_response()).content
    assert await s.world.ledger_kinds(2) == ["reserve", "release"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 100)
    s.wavespeed.finish_task(s.wavespeed.submissions[0].task_id)
    await job_done(s, 1)
    assert len(s.wavespeed.submissions) == 1


# ---- load ------------------------------------------------------------------------------------

async def test_a_burst_of_50_users_is_acknowledged_in_time(tmp_path: Path) -> None:
    async with open_scene(tmp_path, processing_after=0.0, complete_after=0.05,
                          wavespeed_max_concurrent=8) as s:
        emu, wavespeed = s.emu, s.wavespeed
        members = [s.guild.add_member(None, f"user{i}") for i in range(50)]
        for member in members:
            await s.world.services.credits.grant(s.guild.id, member.id, 100, actor_id=1)
        video = s.video()
        records = [await emu.invoke("ref2video", user=m, channel=s.channel,
                                    options={"prompt": f"clip {i}", "video": video})
                   for i, m in enumerate(members)]
        await wait_for(_all_acked(records), within=5.0)
        late = [r.acked_at for r in records if r.late or (r.acked_at or 99) >= 3.0]
        assert late == []
        for job_id in range(1, 51):
            await s.world.wait_job_state(job_id, "delivered", within=60.0)
        assert len(wavespeed.submissions) == 50
        assert wavespeed.max_running_seen <= 8
        await audit_clean(s)


def _all_acked(records: list[Any]) -> Any:
    async def probe() -> bool:
        return all(r.acked for r in records)

    return probe


# ---- where clips go ----------------------------------------------------------------------

async def test_a_clip_after_the_interaction_token_expired_still_arrives(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice)
    await s.world.wait_job_state(1, "running")
    s.emu.expire_tokens()  # 15 minutes pass: the interaction's webhook is dead now
    s.wavespeed.finish_task(s.wavespeed.submissions[0].task_id)
    await job_done(s, 1)
    assert [m for m in s.thread_messages() if m.attachments]
    assert all(r.status != 401 for r in s.emu.requests)


async def test_without_thread_permission_the_clip_goes_to_the_channel(scene: Scene) -> None:
    s = scene
    closed = s.guild.add_text_channel("no-threads", bot_can_create_threads=False)
    await s.grant(s.alice, 500)
    rec = await s.emu.invoke("ref2video", user=s.alice, channel=closed,
                             options={"prompt": "a cat", "video": s.video()})
    await rec.wait_response(within=10.0)
    await job_done(s, 1)
    assert s.emu.threads == []
    posted = s.emu.channel_messages(closed.id, include_ephemeral=False)
    assert [m for m in posted if m.attachments and f"<@{s.alice.id}>" in m.content]
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_in_process_restart_keeps_the_job_and_its_status_message(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice)
    await s.world.wait_job_state(1, "running")
    await s.world.restart()
    s.wavespeed.finish_task(s.wavespeed.submissions[0].task_id)
    await job_done(s, 1)
    [thread] = s.emu.threads
    status = s.emu.message(thread.starter_message_id or 0)
    await s.emu.wait_for(lambda: "Delivered" in status.embeds[0]["description"], within=5.0)
    assert len([m for m in s.thread_messages() if m.attachments]) == 1
    assert len(s.wavespeed.submissions) == 1


# ---- NSFW outputs ------------------------------------------------------------------------

async def test_a_flagged_clip_is_withheld_in_a_normal_channel_and_refunded(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.nsfw())
    await s.generate(s.alice)
    job = await job_done(s, 1, "failed")
    assert job.failure_code == "withheld"
    notices = await s.emu.wait_for(
        lambda: [m for m in s.thread_messages() if "not posted" in m.content])
    assert "age-restricted" in notices[0].content and "refunded" in notices[0].content
    assert not any(m.attachments for m in s.thread_messages())
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)


@pytest.mark.parametrize("scene", [{"nsfw_charge": True}], indirect=True)
async def test_a_withheld_clip_is_charged_when_the_operator_says_so(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.nsfw())
    await s.generate(s.alice)
    job = await job_done(s, 1)
    assert job.delivery["withheld"]
    assert [m for m in s.thread_messages() if "were charged" in m.content]
    assert not any(m.attachments for m in s.thread_messages())
    assert await s.world.ledger_kinds(1) == ["reserve", "capture"]


async def test_a_flagged_clip_is_posted_as_a_spoiler_in_an_age_restricted_channel(
    scene: Scene
) -> None:
    s = scene
    adults = s.guild.add_text_channel("after-dark", nsfw=True)
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.nsfw())
    rec = await s.emu.invoke("ref2video", user=s.alice, channel=adults,
                             options={"prompt": "a cat", "video": s.video()})
    await rec.wait_response(within=10.0)
    await job_done(s, 1)
    [clip] = [m for m in s.thread_messages() if m.attachments]
    assert clip.attachments[0].filename == "SPOILER_ref2video-1.mp4"


# ---- Discord pushing back --------------------------------------------------------------------

async def test_rate_limited_posts_are_retried_and_the_clip_still_arrives_once(
    scene: Scene
) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.emu.rate_limit("POST", r"/channels/\d+/messages$", retry_after=0.3, times=2)
    await s.generate(s.alice)
    await job_done(s, 1)
    assert len([m for m in s.thread_messages() if m.attachments]) == 1
    assert sum(1 for r in s.emu.requests if r.forced) == 2


# ---- the commands are the product's contract ---------------------------------------------

async def test_synced_commands_match_the_documented_names_and_options(scene: Scene) -> None:
    def options(command: dict[str, Any]) -> list[tuple[str, int, bool]]:
        return [(o["name"], o["type"], o.get("required", False)) for o in command["options"]]

    def every_description(command: dict[str, Any]) -> list[str]:
        found = [command["description"]]
        for option in command.get("options", []):
            found += every_description(option)
        return found

    emu = scene.emu
    generate = emu.command("ref2video")
    assert generate is not None
    assert options(generate) == [
        ("prompt", 3, True), ("video", 11, True), ("video2", 11, False),
        ("negative_prompt", 3, False), ("audio", 11, False), ("size", 3, False),
        ("duration", 4, False), ("shot_type", 3, False), ("prompt_expansion", 5, False),
        ("seed", 4, False)]
    by_name = {o["name"]: o for o in generate["options"]}
    assert [(c["name"], c["value"]) for c in by_name["size"]["choices"]] == [
        ("720p landscape 1280x720", "1280*720"), ("720p portrait 720x1280", "720*1280"),
        ("1080p landscape 1920x1080", "1920*1080"), ("1080p portrait 1080x1920", "1080*1920")]
    assert [c["value"] for c in by_name["duration"]["choices"]] == [5, 10]
    assert (by_name["seed"]["min_value"], by_name["seed"]["max_value"]) == (-1, 2147483647)

    credits, jobs = emu.command("credits"), emu.command("jobs")
    assert credits is not None and jobs is not None
    assert sorted(o["name"] for o in credits["options"]) == [
        "balance", "grant", "history", "prices", "revoke", "set"]
    assert sorted(o["name"] for o in jobs["options"]) == ["cancel", "list"]
    for command in (generate, credits, jobs):
        assert all(d.strip() for d in every_description(command))
        assert command["contexts"] == [0]  # servers only: credits are per server
