"""Buttons on job messages through the emulator: Cancel on a queued job, Re-roll and Use as
reference on a result; they keep working after a restart and refuse everyone but the owner
(and moderators, for Cancel)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.scene import Scene, custom_ids, delivered_clip, job_done, open_scene
from tests.fakes.wavespeed import TaskBehaviour


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, complete_after=0.05, wavespeed_max_concurrent=1) as s:
        yield s




async def test_cancel_button_refuses_others_and_refunds_for_the_owner(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice, "first")
    await s.world.wait_job_state(1, "running")
    await s.generate(s.alice, "second")
    status = s.emu.channel_messages(s.channel.id, include_ephemeral=False)[-1]
    assert custom_ids(status) == ["r2v:cancel:2"]
    other = await s.emu.click(status, "r2v:cancel:2", user=s.bob)
    assert "Only its owner or a moderator" in (await other.wait_response()).content
    assert await s.world.ledger_kinds(2) == ["reserve"]
    mine = await s.emu.click(status, "r2v:cancel:2", user=s.alice)
    assert "cancelled" in (await mine.wait_response()).content
    assert await s.world.ledger_kinds(2) == ["reserve", "release"]
    await s.emu.wait_for(lambda: custom_ids(status) == [], within=5.0)  # button removed


async def test_reroll_after_a_restart_charges_once_with_a_new_seed(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s, seed=7)
    assert custom_ids(clip) == ["r2v:reroll:1", "r2v:reuse:1"]
    await s.world.restart()
    ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
    question = await ask.wait_response()
    assert question.ephemeral and "100 credits ($1.00)" in question.content
    confirm, _ = custom_ids(question)  # Confirm, Not now
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #2 is queued" in (await go.wait_response(within=10.0)).content
    await job_done(s, 2)
    first, second = (sub.body for sub in s.wavespeed.submissions)
    assert second["seed"] != first["seed"] == 7
    assert {k: v for k, v in second.items() if k != "seed"} == {
        k: v for k, v in first.items() if k != "seed"}
    assert await s.world.ledger_kinds(2) == ["reserve", "capture"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (300, 0)


async def test_reroll_by_someone_else_is_refused_and_costs_nothing(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await s.grant(s.bob, 500)
    clip = await delivered_clip(s)
    before = await s.world.ledger_count()
    rec = await s.emu.click(clip, "r2v:reroll:1", user=s.bob)
    reply = await rec.wait_response()
    assert reply.ephemeral and "Only its owner" in reply.content
    assert await s.world.ledger_count() == before
    assert len(s.wavespeed.submissions) == 1


async def test_use_as_reference_submits_the_clip_as_the_video(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    assert opened.modal is not None
    sent = await s.emu.submit_modal(opened, {"prompt": "the same cat, at night"})
    assert "Job #2 is queued" in (await sent.wait_response(within=10.0)).content
    await job_done(s, 2)
    second = s.wavespeed.submissions[1].body
    [kept] = second["videos"]
    assert s.kept(kept) == clip.attachments[0].data  # WaveSpeed's copy of the clip
    assert second["prompt"] == "the same cat, at night"


async def test_cost_confirmation_reserves_nothing_until_confirmed(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await s.world.services.guild_settings.set_confirm_cost(s.guild.id, True, actor=s.admin.id)
    question = await s.generate(s.alice)
    assert "costs **100 credits ($1.00)**" in question.content
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
    assert s.wavespeed.submissions == []
    confirm, _decline = custom_ids(question)
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #1 is queued" in (await go.wait_response(within=10.0)).content
    await job_done(s, 1)
    assert await s.world.ledger_kinds(1) == ["reserve", "capture"]

    second = await s.generate(s.alice, "another")
    no = await s.emu.click(second, custom_ids(second)[1], user=s.alice)
    await no.wait_acked()
    assert "nothing was charged" in second.content
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)
    assert len(s.wavespeed.submissions) == 1
