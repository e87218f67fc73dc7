"""Concurrency (issue 13): many /ref2video at once against the real bot (BotWorld, in the
test's loop) on the Discord emulator and the fake WaveSpeed, and the money still adds up.

- One member whose balance covers exactly k clips sends N commands at once: exactly k jobs
  are accepted and reserved, every other command is refused privately at no cost, the
  balance never goes below zero, and once the jobs finish there are exactly k captures.
  Its references are fetched and stored at WaveSpeed only for the commands the balance
  can still pay for when their turn at the intake comes (a handful beyond k at most).
- N members with credits for one clip each send one command each, all at once: every
  interaction is acknowledged within Discord's 3 s, and every member whose command is
  accepted is charged exactly once (one reserve, then one capture or one release). The
  intake checks three commands' files at a time and refuses a command that waited longer
  than its limit (180 s): on a busy machine a few of 500 are told to try again, at no cost.
- The same interaction delivered twice (a Discord retry: the same INTERACTION_CREATE id and
  token again), at once or after the first has started its job, starts one job with one
  reservation and one submission; a Confirm button pressed twice at once starts one job.

The engine's own caps (a member's unfinished jobs, WaveSpeed's concurrency) are set high so
they do not hide the result; the reference intake (media/intake.py: 3 slots, 2 per member,
a wait limit) is the bot's as shipped. CI runs a smaller N; `--soak` runs N = 500."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import InteractionRecord, Member, MessageRecord
from storage.credits import audit
from storage.database import Database
from tests.e2e.scene import Scene, custom_ids, open_scene
from tests.harness import wait_for
from tests.reliability.scale import SOAK, record, size

PRICE = 100  # 720p, 5 s: the default price table
ACK_LIMIT = 3.0  # Discord's: a first response later than this is "Unknown interaction"
N_ONE_MEMBER = size(ci=100, soak=500)
N_MEMBERS = size(ci=100, soak=500)
REPEATS = size(ci=4, soak=40)
COMMAND = "scripts/run-tests tests/reliability/test_concurrency.py" + (" --soak" if SOAK else "")
# The engine's caps out of the way: every accepted job may be unfinished at once, and
# WaveSpeed runs as many as are submitted.
SETTINGS: dict[str, Any] = {"user_max_active_jobs": 1000, "wavespeed_max_concurrent": 500}
QUEUED = re.compile(r"Job #(\d+) is queued")
INTAKE_BUSY = "Too many files are being checked right now. Try again"  # media/intake.py
SUITE = "concurrency"
# References a burst from one member may store beyond the k it can pay for: the commands
# that pass the credit check at the intake (two at a time per member) in the moment between
# an earlier command's last upload and its reservation.
WASTE_SLACK = 4


def answer_within(n: int) -> float:
    """Seconds to wait for n answers: each member's commands pass the intake two at a time
    (a download, a probe in a child process, an upload each), on a shared 2-core machine."""
    return 60.0 + 1.5 * n


async def answers(recs: Sequence[InteractionRecord], within: float) -> list[MessageRecord]:
    """Every interaction's visible answer, in order. One poller for all of them: a poller
    per interaction would keep the loop (the bot's too) busy waking hundreds of tasks."""
    def ready(rec: InteractionRecord) -> MessageRecord | None:
        m = rec.original
        return m if m is not None and not m.loading and m.has_body else None

    async def probe() -> bool:
        return all(ready(r) is not None for r in recs)

    try:
        await wait_for(probe, within)
    except AssertionError:
        stuck = [r.describe() for r in recs if ready(r) is None]
        raise AssertionError(f"{len(stuck)} of {len(recs)} unanswered: {stuck[:3]}") from None
    return [m for r in recs if (m := ready(r)) is not None]


def late_acks(recs: Sequence[InteractionRecord]) -> list[str]:
    """Interactions not acknowledged (privately) within Discord's 3 s."""
    return [r.describe() for r in recs if r.acked_at is None or r.acked_at >= ACK_LIMIT
            or r.late or not r.ephemeral]


def refused_at_no_cost(message: MessageRecord) -> bool:
    return message.ephemeral and "nothing was charged" in message.content.lower()


async def burst(s: Scene, members: Sequence[Member], tag: str) -> list[InteractionRecord]:
    """One /ref2video per member, all dispatched before the bot can answer any (each with
    its own upload and a prompt that names it)."""
    videos = [s.video(f"ref{i}.mp4") for i in range(len(members))]
    return [await s.emu.invoke("ref2video", user=m, channel=s.channel,
                               options={"prompt": f"{tag} {i}", "video": videos[i]})
            for i, m in enumerate(members)]


async def scalar(db: Database, sql: str, *params: Any) -> int:
    async with db.reading() as conn, conn.execute(sql, params) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def money_rows(db: Database) -> dict[int, list[str]]:
    """Each member's reserve/capture/release rows, oldest first."""
    rows: dict[int, list[str]] = {}
    async with db.reading() as conn, conn.execute(
        "SELECT user_id, kind FROM ledger WHERE kind IN ('reserve', 'capture', 'release')"
        " ORDER BY id"
    ) as cur:
        for user_id, kind in await cur.fetchall():
            rows.setdefault(int(user_id), []).append(str(kind))
    return rows


async def all_finished(s: Scene, within: float) -> None:
    async def done() -> bool:
        return await scalar(s.world.db, "SELECT COUNT(*) FROM jobs WHERE state NOT IN"
                            " ('delivered', 'failed', 'cancelled')") == 0
    await wait_for(done, within)


async def never_negative(db: Database) -> None:
    """No ledger row ever left a balance or a hold below zero."""
    assert await scalar(db, "SELECT COUNT(*) FROM ledger WHERE balance_after < 0"
                            " OR held_after < 0") == 0
    assert await audit(db) == []


# ---- one member, N commands, credits for k --------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 3, 7])
async def test_one_member_many_commands_exactly_k_accepted(tmp_path: Path, k: int) -> None:
    n = N_ONE_MEMBER
    async with open_scene(tmp_path, **SETTINGS) as s:
        if k:
            await s.grant(s.alice, k * PRICE)
        started = time.monotonic()
        recs = await burst(s, [s.alice] * n, "one member")
        replies = await answers(recs, answer_within(n))
        answered = time.monotonic() - started
        assert late_acks(recs) == []
        slowest = max(r.acked_at or 0.0 for r in recs)
        accepted = [m for m in replies if QUEUED.search(m.content)]
        refused = [m for m in replies if not QUEUED.search(m.content)]
        assert len(accepted) == k, [m.content for m in accepted]
        assert [m.content for m in refused if not refused_at_no_cost(m)] == []
        # Reserved, and only k: the store never let a reservation past the balance (the
        # first jobs may have finished while later commands were still being checked).
        assert await scalar(s.world.db, "SELECT COUNT(*) FROM jobs") == k
        assert (await money_rows(s.world.db)).get(s.alice.id, []).count("reserve") == k
        await never_negative(s.world.db)
        # A refused command stores nothing at WaveSpeed, bar the few that passed their
        # second credit check while an earlier command, done with its files, had not yet
        # reserved (see WASTE_SLACK).
        stored = len(s.wavespeed.uploads)
        assert k <= stored <= k + WASTE_SLACK, stored
        await all_finished(s, 30.0 + 2.0 * k)
        assert sorted((await money_rows(s.world.db)).get(s.alice.id, [])) == (
            ["capture"] * k + ["reserve"] * k)
        assert await s.world.balance(s.guild.id, s.alice.id) == (0, 0)
        assert len(s.wavespeed.submissions) == k
        await never_negative(s.world.db)
        kinds = _refusal_kinds(refused)
    record(SUITE, f"{n} simultaneous /ref2video from one member whose credits cover {k} "
           f"clip(s): exactly {k} accepted, reserved and captured; the rest refused at no "
           "cost", n, 0, command=COMMAND,
           detail=f"slowest acknowledgement {slowest:.2f} s; all answered in {answered:.0f} s; "
                  f"refusals: {kinds}; {stored} reference(s) stored at WaveSpeed")


def _refusal_kinds(refused: Sequence[MessageRecord]) -> str:
    counts: dict[str, int] = {}
    for m in refused:
        text = m.content
        kind = ("too few credits" if "credits. Ask a moderator" in text
                else "intake busy, try again" if INTAKE_BUSY in text
                else text[:60])
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"


# ---- N members, one command each ------------------------------------------------------------


async def test_many_members_at_once_all_acknowledged_and_each_charged_once(
        tmp_path: Path) -> None:
    n = N_MEMBERS
    async with open_scene(tmp_path, **SETTINGS) as s:
        members = [s.guild.add_member(None, f"member{i}") for i in range(n)]
        credits = s.world.services.credits
        for m in members:
            await credits.grant(s.guild.id, m.id, PRICE, actor_id=s.admin.id,
                                reason="one clip")
        started = time.monotonic()
        recs = await burst(s, members, "member")
        replies = await answers(recs, answer_within(n))
        answered = time.monotonic() - started
        assert late_acks(recs) == []
        slowest = max(r.acked_at or 0.0 for r in recs)
        # Accepted, or (when the intake's queue is longer than its wait limit, as on a
        # busy machine) told to try again, at no cost; never any other refusal.
        busy = {m.id for m, reply in zip(members, replies, strict=True)
                if not QUEUED.search(reply.content)}
        assert [r.content for r in replies if not QUEUED.search(r.content)
                and not (refused_at_no_cost(r) and INTAKE_BUSY in r.content)] == []
        await all_finished(s, 60.0 + 0.5 * n)
        rows = await money_rows(s.world.db)
        outcomes = {"delivered": 0, "refunded": 0}
        for m in members:
            kinds = rows.get(m.id, [])
            if m.id in busy:
                assert kinds == [], (m.id, kinds)
                assert await s.world.balance(s.guild.id, m.id) == (PRICE, 0)
                continue
            assert kinds in (["reserve", "capture"], ["reserve", "release"]), (m.id, kinds)
            refunded = kinds[-1] == "release"
            outcomes["refunded" if refunded else "delivered"] += 1
            assert await s.world.balance(s.guild.id, m.id) == ((PRICE, 0) if refunded
                                                                else (0, 0))
        # One task per member: each prompt submitted once.
        prompts = sorted(sub.body["prompt"] for sub in s.wavespeed.submissions)
        assert prompts == sorted(f"member {i}" for i, m in enumerate(members)
                                 if m.id not in busy)
        await never_negative(s.world.db)
    record(SUITE, f"{n} members with credits for one clip each send /ref2video at once: "
           "every one acknowledged within 3 s; each accepted one charged exactly once, "
           "any other told to try again at no cost", n, 0, command=COMMAND,
           detail=f"slowest acknowledgement {slowest:.2f} s; all answered in {answered:.0f} s; "
                  f"{outcomes['delivered']} delivered and captured, {outcomes['refunded']} "
                  f"refunded, {len(busy)} told the intake was busy")


# ---- the same start, twice --------------------------------------------------------------------


def redeliver(s: Scene, rec: InteractionRecord) -> None:
    """Discord delivering the same INTERACTION_CREATE again: the same id and token."""
    s.emu.dispatch("INTERACTION_CREATE", rec.payload, intent=None)


async def refused_second_ack(rec: InteractionRecord) -> None:
    """Until Discord has refused the duplicate's acknowledgement (40060: already
    acknowledged), so the duplicate's handler has run as far as it can go."""
    async def seen() -> bool:
        return any(r.code == 40060 for r in rec.rejections)
    await wait_for(seen, 15.0)


async def test_the_same_interaction_delivered_twice_starts_one_job(tmp_path: Path) -> None:
    cases = ("at once", "after its job started")
    async with open_scene(tmp_path, **SETTINGS) as s:
        # Credits for two jobs per command: a duplicate job would be affordable.
        await s.grant(s.alice, 2 * PRICE * REPEATS * len(cases))
        recs: list[InteractionRecord] = []
        for i in range(REPEATS):
            for when in cases:
                rec = await s.emu.invoke("ref2video", user=s.alice, channel=s.channel,
                                         options={"prompt": f"twice {when} {i}",
                                                  "video": s.video()})
                if when == "at once":
                    redeliver(s, rec)
                reply = await rec.wait_response(within=30.0)
                assert QUEUED.search(reply.content), reply.content
                if when != "at once":
                    redeliver(s, rec)
                await refused_second_ack(rec)
                recs.append(rec)
        assert late_acks(recs) == []
        await all_finished(s, 60.0)
        total = REPEATS * len(cases)
        assert await scalar(s.world.db, "SELECT COUNT(*) FROM jobs") == total
        kinds = (await money_rows(s.world.db))[s.alice.id]
        assert sorted(kinds) == ["capture"] * total + ["reserve"] * total
        prompts = sorted(sub.body["prompt"] for sub in s.wavespeed.submissions)
        assert prompts == sorted(f"twice {w} {i}" for i in range(REPEATS) for w in cases)
        # The member saw one answer per command, and nothing from the duplicates.
        assert [sum(m.interaction_id == r.id for m in s.emu.messages) for r in recs] == (
            [1] * total)
        await never_negative(s.world.db)
    record(SUITE, "the same /ref2video interaction delivered twice (a Discord retry: same "
           "id and token), at once or after its job started: one job, one reservation, "
           "one submission", total, 0, command=COMMAND,
           detail=f"{REPEATS} of each")


async def test_confirm_pressed_twice_at_once_starts_one_job(tmp_path: Path) -> None:
    async with open_scene(tmp_path, **SETTINGS) as s:
        await s.grant(s.alice, 2 * PRICE * REPEATS)
        await s.world.services.guild_settings.set_confirm_cost(s.guild.id, True,
                                                               actor=s.admin.id)
        for i in range(REPEATS):
            question = await s.generate(s.alice, f"confirm {i}")
            confirm = custom_ids(question)[0]
            presses = [await s.emu.click(question, confirm, user=s.alice) for _ in range(2)]
            replies = [m.content for m in await answers(presses, 30.0)]
            assert late_acks(presses) == []
            assert sorted(bool(QUEUED.search(r)) for r in replies) == [False, True], replies
            [again] = [r for r in replies if not QUEUED.search(r)]
            assert "already started" in again and "nothing more was charged" in again, again
        await all_finished(s, 60.0)
        assert await scalar(s.world.db, "SELECT COUNT(*) FROM jobs") == REPEATS
        kinds = (await money_rows(s.world.db))[s.alice.id]
        assert sorted(kinds) == ["capture"] * REPEATS + ["reserve"] * REPEATS
        assert sorted(sub.body["prompt"] for sub in s.wavespeed.submissions) == sorted(
            f"confirm {i}" for i in range(REPEATS))
        await never_negative(s.world.db)
    record(SUITE, "Confirm (settings confirm_cost) pressed twice at once: one job, one "
           "reservation, one submission", REPEATS, 0, command=COMMAND,
           detail="the second press is told the job already started, at no cost")
