"""The Discord fault matrix (issue 13): the whole bot (tests/e2e/scene.py: the real bot in the
test's loop, the Discord emulator, the fake WaveSpeed, a SQLite file) runs one /ref2video job
while Discord misbehaves at some point of the job's life - 429s on status edits and on the
clip's upload, the status message, the thread or the channel deleted, the thread archived
(or archived and locked), a permission taken away, threads not allowed, the upload refused
as too large (413), 5xx answers after Discord had in fact stored the message, the gateway
dropped and resumed, INVALID_SESSION - and every row must end right:

- the job is delivered and charged once (ledger exactly reserve, capture) or failed and
  refunded (reserve, release), the credit audit is clean and the balance is what it says;
- the task was sent to WaveSpeed once; there is exactly one clip post (or none), one status
  message, at most one failure notice, and no message posted twice;
- the member hears about it where they would look: the clip (or the failure notice) in the
  job's thread, in the channel when the thread could not be used, or on the status message
  when neither can take a post; and `/jobs list`, run afterwards in another channel, is
  answered within Discord's 3 s and shows the job's real end.

In CI each row runs once with its fault at the row's usual point; `pytest --soak` runs each
row 10 times with the onset (queued, submitting, running, delivering) and the fault's
details drawn from a seeded random generator: a failure prints the seed that replays it
(DISCORD_FAULTS_SEED=<seed>).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from discord_emulator.emulator import MessageRecord, Perm, RequestRecord, Thread
from storage.credits import audit
from tests.e2e.scene import Scene, custom_ids, open_scene
from tests.fakes.wavespeed import Fault, TaskBehaviour
from tests.reliability import scale

SUITE = "Discord faults"
COMMAND = "scripts/run-tests tests/reliability/test_discord_faults.py --soak"
START_CREDITS = 500
PRICE = 100  # 720p, 5 s: the default price table
Onset = Literal["command", "queued", "submitting", "running", "delivering"]
MID_JOB: tuple[Onset, ...] = ("queued", "submitting", "running", "delivering")
TOLD = {"thread": "in the thread", "channel": "in the channel",
        "status": "on the status message", "jobs list": "only by /jobs list"}
HOLD = 0.6  # seconds the fake holds a submit reply or an output download, for an onset there


@dataclass
class Run:
    """One run of a row: the scene, what the job's messages are, and what the fault noted."""

    s: Scene
    rng: random.Random
    onset: Onset
    status: MessageRecord | None = None
    thread: Thread | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def thread_id(self) -> int:
        assert self.thread is not None, "this row needs the job's thread"
        return self.thread.id

    def requests(self, method: str, pattern: str) -> list[RequestRecord]:
        return [r for r in self.s.emu.requests if r.method == method
                and re.search(pattern, r.path)]


Step = Callable[[Run], Awaitable[None]]


async def nothing(run: Run) -> None:
    return None


@dataclass(frozen=True)
class Row:
    what: str
    outcome: Literal["delivered", "failed"]
    # Where the member hears: the clip or failure notice posted in the job's "thread" or its
    # "channel"; "status": only the status message (the place to post is unusable); "jobs
    # list": nowhere in the server (the channel is gone), only /jobs list.
    told: Literal["thread", "channel", "status", "jobs list"]
    fault: Step              # applied at the onset
    verify: Step = nothing   # the fault really happened, and its own promise held
    onsets: tuple[Onset, ...] = MID_JOB  # the first is CI's
    threads: bool = True     # whether the job should get a thread


# ---- the faults -----------------------------------------------------------------------------

async def status_edit_429s(run: Run) -> None:
    assert run.status is not None
    # 1-7 in a row: past 5, discord.py gives up on that edit and the board must try again.
    times = run.rng.randint(1, 7) if scale.SOAK else 6
    run.notes["times"] = times
    run.s.emu.rate_limit("PATCH", rf"/channels/\d+/messages/{run.status.id}$", times=times,
                         retry_after=0.05)


async def status_edit_429s_hit(run: Run) -> None:
    assert run.status is not None
    forced = [r for r in run.requests("PATCH", rf"/messages/{run.status.id}$") if r.forced]
    assert len(forced) == run.notes["times"]


async def upload_429s(run: Run) -> None:
    # More than discord.py's 5 tries (CI: 6) means one post attempt fails with a 429: that
    # is Discord saying "later", not "never", so the clip must still be delivered.
    times = run.rng.randint(1, 9) if scale.SOAK else 6
    run.notes["times"] = times
    run.s.emu.rate_limit("POST", rf"/channels/{run.thread_id}/messages$", times=times,
                         retry_after=0.05)


async def upload_429s_hit(run: Run) -> None:
    forced = [r for r in run.requests("POST", rf"/channels/{run.thread_id}/messages$")
              if r.forced]
    assert len(forced) == run.notes["times"]


async def delete_status(run: Run) -> None:
    assert run.status is not None
    run.s.emu.delete_message(run.status)


async def status_stays_deleted(run: Run) -> None:
    assert run.status is not None and run.status.deleted
    # Nothing was edited after it was gone (a 404 each time would be fine; none succeed).
    after = [r for r in run.requests("PATCH", rf"/messages/{run.status.id}$") if r.status < 400
             and r.at > run.notes["at"]]
    assert after == []


async def delete_thread(run: Run) -> None:
    assert run.thread is not None
    run.s.emu.delete_channel(run.thread)


async def archive_thread(run: Run) -> None:
    assert run.thread is not None
    run.s.emu.archive_thread(run.thread, locked=run.rng.random() < 0.5 if scale.SOAK else False)
    run.notes["locked"] = run.thread.locked


async def thread_reopened(run: Run) -> None:
    assert run.thread is not None and not run.thread.archived  # the bot's post unarchived it


async def lock_thread_without_manage_threads(run: Run) -> None:
    assert run.thread is not None
    run.s.emu.revoke(run.s.channel, Perm.MANAGE_THREADS)
    run.s.emu.archive_thread(run.thread, locked=True)


async def thread_still_locked(run: Run) -> None:
    assert run.thread is not None and run.thread.archived and run.thread.locked
    refused = [r for r in run.requests("POST", rf"/channels/{run.thread_id}/messages$")
               if r.code == 50083]
    assert refused, "the bot never tried to post in the locked thread"


async def revoke_thread_posting(run: Run) -> None:
    run.s.emu.revoke(run.s.channel, Perm.SEND_MESSAGES_IN_THREADS)


async def thread_posts_refused(run: Run) -> None:
    refused = [r for r in run.requests("POST", rf"/channels/{run.thread_id}/messages$")
               if r.status == 403]
    assert refused, "the bot never tried to post in the thread"


async def delete_channel(run: Run) -> None:
    run.s.emu.delete_channel(run.s.channel)


async def no_thread_permission(run: Run) -> None:
    run.s.emu.revoke(run.s.channel, Perm.CREATE_PUBLIC_THREADS | Perm.CREATE_PRIVATE_THREADS)


async def thread_creation_refused(run: Run) -> None:
    # The permission went between the command and the thread's creation (app_permissions
    # still said yes): Discord answers 403 50013.
    run.s.emu.refuse("POST", r"/channels/\d+/messages/\d+/threads$", 403, code=50013,
                     message="Missing Permissions")


async def no_thread_made(run: Run) -> None:
    assert run.s.emu.threads == []


async def upload_over_the_real_limit(run: Run) -> None:
    # discord.py derives 10 MiB from the boost tier; the server's real limit is lower, so
    # Discord answers the upload 413 (40005) and the bot must fall back to the link.
    run.s.guild.filesize_limit = 1024
    assert len(run.s.wavespeed.static_output) > run.s.guild.filesize_limit


async def link_posted_instead(run: Run) -> None:
    refused = [r for r in run.requests("POST", rf"/channels/{run.thread_id}/messages$")
               if r.status == 413]
    assert refused, "the upload was never refused"
    [clip] = clip_posts(run.s)
    assert clip.attachments == [] and "WaveSpeed's link" in clip.content
    assert f"{run.s.wavespeed.base_url}/outputs/" in clip.content


async def clip_reply_lost(run: Run) -> None:
    # discord.py retries 500/502/504 itself (the nonce gets the stored message back); a 503
    # it does not (CI's case), so the bot's next attempt must find the post or reuse the
    # job's nonce. Up to 6 lost in a row: past discord.py's 5 tries.
    status = run.rng.choice([500, 502, 503, 504]) if scale.SOAK else 503
    times = run.rng.randint(1, 6) if scale.SOAK else 1
    run.notes.update(status=status, times=times)
    run.s.emu.fail_after_commit("POST", rf"/channels/{run.thread_id}/messages$", status,
                                times=times)


async def clip_reply_was_lost(run: Run) -> None:
    lost = [r for r in run.requests("POST", rf"/channels/{run.thread_id}/messages$")
            if r.reply_lost]
    assert lost, "no reply was lost"


async def status_reply_lost(run: Run) -> None:
    run.s.emu.fail_after_commit("POST", rf"/channels/{run.s.channel.id}/messages$", 500)


async def status_reply_was_lost(run: Run) -> None:
    assert any(r.reply_lost for r in run.requests("POST", rf"/channels/{run.s.channel.id}/"
                                                  "messages$"))


async def thread_reply_lost(run: Run) -> None:
    run.s.emu.fail_after_commit("POST", r"/channels/\d+/messages/\d+/threads$", 500)


async def thread_reply_was_lost(run: Run) -> None:
    assert any(r.reply_lost for r in run.requests("POST", r"/messages/\d+/threads$"))
    assert len(run.s.emu.threads) == 1


async def drop_gateway(run: Run) -> None:
    how = run.rng.choice(["4000", "tcp", "op7"]) if scale.SOAK else "4000"
    run.notes.update(how=how, resumes=run.s.emu.gateway.resumes,
                     identifies=len(run.s.emu.gateway.identifies))
    if how == "op7":
        await run.s.emu.reconnect_gateway()
    else:
        run.s.emu.drop_gateway(code=4000 if how == "4000" else None)


async def resumed(run: Run) -> None:
    gw = run.s.emu.gateway
    await run.s.emu.wait_for(lambda: gw.resumes > run.notes["resumes"], within=20)
    assert len(gw.identifies) == run.notes["identifies"]  # resumed, not a new session


async def invalid_session(run: Run) -> None:
    resumable = run.rng.random() < 0.5 if scale.SOAK else False
    run.notes.update(resumable=resumable, resumes=run.s.emu.gateway.resumes,
                     identifies=len(run.s.emu.gateway.identifies))
    run.s.emu.invalidate_session(resumable=resumable)


async def session_restored(run: Run) -> None:
    gw = run.s.emu.gateway
    if run.notes["resumable"]:
        await run.s.emu.wait_for(lambda: gw.resumes > run.notes["resumes"], within=20)
    else:
        await run.s.emu.wait_for(lambda: len(gw.identifies) > run.notes["identifies"],
                                 within=20)
        # A fresh READY, not a RESUME of the session Discord threw away.
        assert gw.resumes == run.notes["resumes"]


ROWS: dict[str, Row] = {row.what: row for row in [
    Row("429 on status-message edits", "delivered", "thread", status_edit_429s,
        status_edit_429s_hit),
    Row("429 on the clip upload", "delivered", "thread", upload_429s, upload_429s_hit,
        onsets=("running", "queued", "submitting", "delivering")),
    Row("status message deleted", "delivered", "thread", delete_status, status_stays_deleted),
    Row("thread deleted", "delivered", "channel", delete_thread),
    Row("thread archived", "delivered", "thread", archive_thread, thread_reopened),
    Row("thread archived and locked, bot without Manage Threads", "failed", "status",
        lock_thread_without_manage_threads, thread_still_locked),
    Row("Send Messages in Threads revoked", "failed", "status", revoke_thread_posting,
        thread_posts_refused),
    Row("channel deleted", "failed", "jobs list", delete_channel),
    Row("no Create Public Threads permission", "delivered", "channel", no_thread_permission,
        no_thread_made, onsets=("command",), threads=False),
    Row("thread creation refused (403)", "delivered", "channel", thread_creation_refused,
        no_thread_made, onsets=("command",), threads=False),
    Row("upload over the server's real limit (413)", "delivered", "thread",
        upload_over_the_real_limit, link_posted_instead),
    Row("5xx after the clip post was stored", "delivered", "thread", clip_reply_lost,
        clip_reply_was_lost),
    Row("5xx after the status message was stored", "delivered", "thread", status_reply_lost,
        status_reply_was_lost, onsets=("command",)),
    Row("5xx after the thread was created", "delivered", "thread", thread_reply_lost,
        thread_reply_was_lost, onsets=("command",)),
    Row("gateway disconnect and resume", "delivered", "thread", drop_gateway, resumed),
    Row("INVALID_SESSION", "delivered", "thread", invalid_session, session_restored),
]}


# ---- what every row must show ---------------------------------------------------------------

def bot_posts(s: Scene) -> list[MessageRecord]:
    """Every public message the bot made, including ones in since-deleted channels."""
    return [m for m in s.emu.messages if m.author_id == s.emu.bot.id and not m.ephemeral]


def clip_posts(s: Scene) -> list[MessageRecord]:
    return [m for m in bot_posts(s) if "r2v:reroll:1" in custom_ids(m)]


def failure_notices(s: Scene) -> list[MessageRecord]:
    return [m for m in bot_posts(s) if "job #1 failed" in m.content]


def status_messages(s: Scene) -> list[MessageRecord]:
    return [m for m in bot_posts(s) if m.embeds and m.embeds[0].get("title") == "Job #1"]


def visible(s: Scene, channel_id: int) -> bool:
    return all(c.id != channel_id for c in s.emu.deleted_channels)


async def check_run(run: Run, row: Row, elsewhere: Any) -> None:
    s = run.s
    job = await s.world.wait_job_state(1, "delivered", "failed", within=30)
    assert job.state.value == row.outcome, (job.state, job.failure_code, job.failure_detail)
    delivered = row.outcome == "delivered"

    # Money: charged once, or refunded in full; nothing held, the ledger sums.
    kinds = ["reserve", "capture"] if delivered else ["reserve", "release"]
    assert await s.world.ledger_kinds(1) == kinds
    assert await audit(s.world.db) == []
    spent = PRICE if delivered else 0
    assert await s.world.balance(s.guild.id, s.alice.id) == (START_CREDITS - spent, 0)
    assert len(s.wavespeed.submissions) == 1  # the task was sent once

    # Posts: one clip or none, one status message, nothing twice.
    clips = clip_posts(s)
    assert len(clips) == (1 if delivered else 0), [m.content for m in clips]
    assert len(status_messages(s)) == 1
    seen: set[tuple[int, str, str]] = set()
    for m in bot_posts(s):
        key = (m.channel_id, m.content, json.dumps([e.get("title") for e in m.embeds]))
        assert key not in seen, f"posted twice: {m.content[:80]!r}"
        seen.add(key)
    assert (run.thread is not None or bool(s.emu.threads)) == row.threads

    # The member hears about it where they would look.
    mention = f"<@{s.alice.id}>"
    expected_place = {"thread": run.thread.id if run.thread else None,
                      "channel": s.channel.id, "status": None, "jobs list": None}[row.told]
    if delivered:
        [clip] = clips
        assert clip.channel_id == expected_place and mention in clip.content
        assert "your clip is ready" in clip.content
    elif row.told in ("status", "jobs list"):
        # Nowhere to post: the status message says it (where it still exists), and nothing
        # was posted in a place the member cannot see.
        for m in failure_notices(s):
            assert not visible(s, m.channel_id), m.content
        [status] = status_messages(s)
        assert visible(s, status.channel_id) == (row.told == "status")
        if row.told == "status":
            await s.emu.wait_for(lambda: "refunded" in _description(status), within=20)
            assert "Failed" in _description(status)
    else:
        notice = await s.emu.wait_for(lambda: next(iter(failure_notices(s)), None), within=20)
        assert notice is not None and notice.channel_id == expected_place
        assert mention in notice.content
        assert "refunded" in notice.content
        assert len(failure_notices(s)) == 1
    [status] = status_messages(s)
    if delivered and not status.deleted and visible(s, status.channel_id):
        await s.emu.wait_for(lambda: "Delivered" in _description(status), within=20)
    await row.verify(run)  # after the waits above: e.g. the status edit retried to the end

    # And the bot still answers, in time, with the job's real end.
    listing = await s.emu.invoke("jobs", subcommand="list", user=s.alice, channel=elsewhere)
    await listing.wait_acked(within=5)
    assert listing.acked_at is not None and listing.acked_at < 3.0 and not listing.late
    reply = await listing.wait_response(within=10)
    text = reply.embeds[0]["description"] if reply.embeds else reply.content
    assert f"**#1** {row.outcome}" in text, text
    assert ("charged" if delivered else "refunded") in text


def _description(message: MessageRecord) -> str:
    return str(message.embeds[0].get("description", "")) if message.embeds else ""


# ---- driving one run ------------------------------------------------------------------------

async def run_once(tmp_path: Path, row: Row, rng: random.Random) -> Onset:
    onset = rng.choice(row.onsets) if scale.SOAK else row.onsets[0]
    jitter = rng.uniform(0.0, 0.3) if scale.SOAK else 0.0
    async with open_scene(tmp_path) as s:
        await s.grant(s.alice, START_CREDITS)
        elsewhere = s.guild.add_text_channel("elsewhere")
        run = Run(s, rng, onset)
        s.wavespeed.queue_tasks(TaskBehaviour.never())  # finished by hand, after the fault
        if onset == "command":
            await row.fault(run)
        elif onset == "submitting":
            s.wavespeed.inject("submit", Fault.delay(HOLD + jitter))
        elif onset == "delivering":
            s.wavespeed.inject("output", Fault.delay(HOLD + jitter))
        reply = await s.generate(s.alice)
        assert "Job #1 is queued" in reply.content, reply.content
        posted = status_messages(s)
        run.status = posted[0] if posted else None
        run.thread = s.emu.threads[0] if s.emu.threads else None
        if onset == "submitting":
            await s.world.wait_job_state(1, "submitting", "running")
        elif onset in ("running", "delivering"):
            await s.world.wait_job_state(1, "running")
            await asyncio.sleep(jitter)
        if onset == "delivering":
            s.wavespeed.finish_task((await _job(s)).task_id)
            await s.world.wait_job_state(1, "delivering")
        if onset != "command":
            run.notes["at"] = time.monotonic()
            await row.fault(run)
        else:
            run.notes["at"] = 0.0
        if onset != "delivering":
            running = await s.world.wait_job_state(1, "running", "failed", within=30)
            if running.state.value == "running":
                if onset != "running":
                    await asyncio.sleep(jitter)
                s.wavespeed.finish_task(running.task_id)
        await check_run(run, row, elsewhere)
    return onset


async def _job(s: Scene) -> Any:
    job = await s.world.services.jobs.get(1)
    assert job is not None
    return job


def _base_seed() -> int:
    given = os.environ.get("DISCORD_FAULTS_SEED")
    if given:
        return int(given)
    return random.SystemRandom().randrange(2**32) if scale.SOAK else 13


@pytest.mark.parametrize("what", list(ROWS))
async def test_a_discord_fault_mid_job_ends_right_and_the_member_is_told(
        tmp_path: Path, what: str) -> None:
    row = ROWS[what]
    times = scale.size(ci=1, soak=10)
    base = _base_seed()
    onsets: dict[str, int] = {}
    for i in range(times):
        seed = base + i
        try:
            onset = await run_once(tmp_path / f"run{i}", row, random.Random(f"{what}/{seed}"))
        except BaseException as exc:
            exc.add_note(f"replay: DISCORD_FAULTS_SEED={seed} (row {what!r}, run {i}"
                         f"{', --soak' if scale.SOAK else ''})")
            raise
        onsets[onset] = onsets.get(onset, 0) + 1
    scale.record(SUITE, f"{what} -> {row.outcome}, told {TOLD[row.told]}", times, 0,
                 command=COMMAND, detail="onsets " + ", ".join(
                     f"{k} x{v}" for k, v in sorted(onsets.items())))
