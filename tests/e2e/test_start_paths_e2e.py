"""Every way of starting a paid job, attacked through the Discord emulator (issue 8): double
presses, presses across a restart, the rules every path must obey, and errors that must
reach the member. Assertions are on jobs, the ledger, submits and what Discord showed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import InteractionRecord, MessageRecord
from money.prices import PriceTable
from tests.e2e.scene import Scene, custom_ids, delivered_clip, job_done, open_scene
from tests.fakes.wavespeed import TaskBehaviour
from tests.harness import fail_calls


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        yield s




def text_inputs(rec: InteractionRecord) -> list[dict[str, Any]]:
    assert rec.modal is not None
    return [c for row in rec.modal["components"] for c in row["components"]]


async def job_count(s: Scene) -> int:
    async with s.world.db.reading() as conn, conn.execute("SELECT COUNT(*) FROM jobs") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0



async def confirm_question(s: Scene) -> MessageRecord:
    await s.world.services.guild_settings.set_confirm_cost(s.guild.id, True, actor=s.admin.id)
    question = await s.generate(s.alice)
    assert "costs **100 credits ($1.00)**" in question.content
    return question


# ---- 2. one press, one job -------------------------------------------------------------------

async def test_two_confirm_clicks_in_the_same_loop_pass_start_one_job(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    question = await confirm_question(s)
    confirm, _ = custom_ids(question)
    # Both clicks are dispatched before the bot can answer either.
    first, second = await asyncio.gather(s.emu.click(question, confirm, user=s.alice),
                                         s.emu.click(question, confirm, user=s.alice))
    answers = [(await r.wait_response(within=10.0)).content for r in (first, second)]
    assert sum("Job #1 is queued" in a for a in answers) == 1, answers
    assert sum("already started" in a for a in answers) == 1, answers
    await job_done(s, 1)
    assert await job_count(s) == 1
    assert len(s.wavespeed.submissions) == 1
    assert await s.world.ledger_kinds(1) == ["reserve", "capture"]
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_a_confirm_pressed_again_after_a_restart_starts_nothing_more(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    question = await confirm_question(s)
    confirm, decline = custom_ids(question)
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #1 is queued" in (await go.wait_response(within=10.0)).content
    await s.world.restart()
    again = await s.emu.click(question, confirm, user=s.alice)
    assert "already started" in (await again.wait_response(within=10.0)).content
    late_no = await s.emu.click(question, decline, user=s.alice)
    await late_no.wait_acked()
    assert "already started" in question.content   # Not now cannot undo a started job
    await job_done(s, 1)
    assert await job_count(s) == 1 and len(s.wavespeed.submissions) == 1
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_a_question_survives_a_restart_and_is_only_the_askers(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await s.grant(s.bob, 500)
    question = await confirm_question(s)
    confirm, _ = custom_ids(question)
    await s.world.restart()
    other = await s.emu.click(question, confirm, user=s.bob)
    assert "Only the member who was asked" in (await other.wait_response()).content
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #1 is queued" in (await go.wait_response(within=10.0)).content
    assert await s.world.balance(s.guild.id, s.bob.id) == (500, 0)


async def test_a_reference_form_submitted_twice_starts_one_job(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    first, second = await asyncio.gather(
        s.emu.submit_modal(opened, {"prompt": "at night"}),
        s.emu.submit_modal(opened, {"prompt": "at night"}))
    answers = [(await r.wait_response(within=10.0)).content for r in (first, second)]
    assert sum("Job #2 is queued" in a for a in answers) == 1, answers
    await job_done(s, 2)
    assert await job_count(s) == 2 and len(s.wavespeed.submissions) == 2
    assert await s.world.balance(s.guild.id, s.alice.id) == (300, 0)


# ---- 7. Use as reference obeys the same rules as /ref2video -------------------------------

async def test_use_as_reference_asks_to_confirm_when_the_server_wants_it(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    await s.world.services.guild_settings.set_confirm_cost(s.guild.id, True, actor=s.admin.id)
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    sent = await s.emu.submit_modal(opened, {"prompt": "the same cat, at night"})
    question = await sent.wait_response(within=10.0)
    assert "costs **100 credits ($1.00)**" in question.content
    assert await job_count(s) == 1                      # nothing started yet
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)
    confirm, _ = custom_ids(question)
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #2 is queued" in (await go.wait_response(within=10.0)).content
    await job_done(s, 2)
    assert s.wavespeed.submissions[1].body["prompt"] == "the same cat, at night"


async def test_use_as_reference_limits_the_prompt_like_the_command(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05, max_prompt_chars=40) as s:
        await s.grant(s.alice, 500)
        clip = await delivered_clip(s)
        opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
        await opened.wait_acked()
        [field] = text_inputs(opened)
        assert field["max_length"] == 40


async def test_use_as_reference_refused_by_a_rule_is_answered(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    await s.world.services.guild_settings.set_paused(s.guild.id, True, "maintenance",
                                                     actor=s.admin.id)
    sent = await s.emu.submit_modal(opened, {"prompt": "again"})
    reply = await sent.wait_response(within=10.0)
    assert "paused" in reply.content and "Nothing was charged" in reply.content
    assert await job_count(s) == 1
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


# ---- 12. errors in buttons reach the member -------------------------------------------------

async def test_a_reroll_without_enough_credits_is_answered(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 100)
    clip = await delivered_clip(s)                      # spends all of it
    ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
    question = await ask.wait_response()
    confirm, _ = custom_ids(question)
    go = await s.emu.click(question, confirm, user=s.alice)
    reply = await go.wait_response(within=10.0)
    assert "you have 0 credits" in reply.content and "Nothing was charged" in reply.content
    assert await job_count(s) == 1
    assert await s.world.ledger_kinds(1) == ["reserve", "capture"]


async def test_a_reroll_over_the_job_limit_is_answered(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05, user_max_active_jobs=1) as s:
        await s.grant(s.alice, 500)
        clip = await delivered_clip(s)
        s.wavespeed.queue_tasks(TaskBehaviour.never())
        await s.generate(s.alice, "busy")                 # job 2 keeps the one slot
        ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
        question = await ask.wait_response()
        go = await s.emu.click(question, custom_ids(question)[0], user=s.alice)
        reply = await go.wait_response(within=10.0)
        assert "unfinished jobs" in reply.content
        assert await job_count(s) == 2


# ---- 9. Re-roll shows the price it charges ---------------------------------------------------

async def test_a_reroll_shows_and_charges_todays_price(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        await s.grant(s.alice, 500)
        clip = await delivered_clip(s)                  # charged 100
        s.world.settings = dataclasses.replace(
            s.world.settings, prices=PriceTable(p720_5s=120))
        await s.world.restart()
        ask = await s.emu.click(clip, "r2v:reroll:1", user=s.alice)
        question = await ask.wait_response()
        assert "120 credits ($1.20)" in question.content, question.content
        go = await s.emu.click(question, custom_ids(question)[0], user=s.alice)
        assert "Job #2 is queued" in (await go.wait_response(within=10.0)).content
        await job_done(s, 2)
        assert await s.world.balance(s.guild.id, s.alice.id) == (280, 0)


# ---- found by review ------------------------------------------------------------------------

async def test_a_second_confirm_is_told_it_started_not_refused_by_the_cooldown(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await s.world.services.guild_settings.set_limits(s.guild.id, actor=s.admin.id,
                                                     cooldown_seconds=600)
    question = await confirm_question(s)
    confirm, _ = custom_ids(question)
    go = await s.emu.click(question, confirm, user=s.alice)
    assert "Job #1 is queued" in (await go.wait_response(within=10.0)).content
    again = await s.emu.click(question, confirm, user=s.alice)
    assert "already started" in (await again.wait_response(within=10.0)).content


async def test_a_form_submitted_after_a_restart_is_answered_and_starts_once(
        scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    clip = await delivered_clip(s)
    opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
    await opened.wait_acked()
    await s.world.restart()
    sent = await s.emu.submit_modal(opened, {"prompt": "after the restart"})
    assert "Job #2 is queued" in (await sent.wait_response(within=10.0)).content
    again = await s.emu.submit_modal(opened, {"prompt": "after the restart"})
    assert "already started" in (await again.wait_response(within=10.0)).content
    await job_done(s, 2)
    [kept] = s.wavespeed.submissions[1].body["videos"]
    assert s.kept(kept) == clip.attachments[0].data  # a copy of the clip, not its link
    assert await s.world.balance(s.guild.id, s.alice.id) == (300, 0)


async def test_a_cancel_is_acknowledged_in_time_while_discord_is_slow(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05, wavespeed_max_concurrent=1) as s:
        await s.grant(s.alice, 500)
        s.wavespeed.queue_tasks(TaskBehaviour.never())
        await s.generate(s.alice, "first")
        await s.world.wait_job_state(1, "running")
        await s.generate(s.alice, "second")
        queued = await s.world.wait_job_state(2, "queued")
        status = s.emu.message(queued.status_message_id)
        thread_id = queued.thread_id
        s.emu.refuse("POST", rf"/channels/{thread_id}/messages$", 500, times=2)  # retried
        rec = await s.emu.click(status, "r2v:cancel:2", user=s.alice)
        await rec.wait_acked()
        assert rec.acked_at is not None and rec.acked_at < 3.0 and not rec.late
        assert "cancelled" in (await rec.wait_response(within=10.0)).content
        assert await s.world.ledger_kinds(2) == ["reserve", "release"]


async def test_a_database_error_after_the_job_is_made_is_never_nothing_was_charged(
        scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    s = scene
    await s.grant(s.alice, 500)
    fail_calls(monkeypatch, s.world.services.starter, "_post_status")
    reply = await s.generate(s.alice)
    assert "cancelled, so nothing was charged" in reply.content, reply.content
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)
    assert await s.world.ledger_kinds(1) == ["reserve", "release"]
    fail_calls(monkeypatch, s.world.services.starter.jobs, "record_messages")
    reply = await s.generate(s.alice, "second")
    assert "Job #2 is queued" in reply.content, reply.content   # it runs, and says so
    await job_done(s, 2)
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_a_set_balance_is_said_not_refunded(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.never())
    await s.generate(s.alice, "one")
    job = await s.world.wait_job_state(1, "running")
    rec = await s.emu.invoke("credits", subcommand="set", user=s.admin, channel=s.channel,
                             options={"user": s.alice, "amount": 400})   # what it already is
    assert "not refunded otherwise" in (await rec.wait_response()).content
    s.wavespeed.tasks[job.task_id].behaviour = TaskBehaviour.fail("boom")
    s.wavespeed.finish_task(job.task_id)
    failed = await job_done(s, 1, "failed")
    thread_id = failed.thread_id
    [notice] = await s.emu.wait_for(lambda: [m for m in s.emu.channel_messages(thread_id)
                                             if "failed" in m.content and m.author_id ==
                                             s.emu.bot.id and not m.embeds])
    assert "not refunded" in notice.content and "were refunded" not in notice.content
    assert await s.world.balance(s.guild.id, s.alice.id) == (400, 0)


async def test_a_late_clip_can_be_used_as_a_reference(tmp_path: Path) -> None:
    async with open_scene(tmp_path, complete_after=0.05, job_timeout_seconds=0.3) as s:
        await s.grant(s.alice, 500)
        s.wavespeed.queue_tasks(TaskBehaviour.never())
        await s.generate(s.alice, "slow one")
        failed = await job_done(s, 1, "failed")
        s.wavespeed.finish_task(failed.task_id)
        thread_id = failed.thread_id
        [clip] = await s.emu.wait_for(lambda: [m for m in s.emu.channel_messages(thread_id)
                                               if m.attachments], within=10.0)
        opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
        await opened.wait_acked()
        assert opened.modal is not None
