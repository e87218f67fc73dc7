"""One server's blocklist cannot hold up another: with twenty hostile regexes in server A's
blocklist, members of A send long prompts and, while those are checked, members of B send
the same; every command in both servers is acknowledged within Discord's deadline, A's
prompts are refused with nothing charged and B's jobs start."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest

from admission import blocklist
from discord_emulator.emulator import Channel, Guild, InteractionRecord, Member, Perm
from tests.e2e.scene import Scene, job_done, open_scene

PROMPT_CHARS = 1500  # the default MAX_PROMPT_CHARS

# Regexes Python's `re` accepted, stored by an older version; RE2 refuses them, so they are
# put straight into the database. Backtracking, each takes seconds on prompts like these.
STORED_BY_OLDER_VERSION = [
    r"(.+)\1b", r"(?=a)(a+)+b", r"(?<!x)(a|aa)*c", r"(\w+)\s\1", r"(?P<w>a+)(?P=w)z",
    r"(?!q)(.*a){20}q", r"(?<=b)(x+x+)+z", r"(a*)*\Z",
]
# Regexes RE2 accepts (added as a moderator would), just as hostile to a backtracking engine.
ACCEPTED = [
    r"(a|aa)*b", r"(a+)+c", r"(.*a){25}z", r"(x+x+)+y", r"(.*.*)*=", r"(\w+\s?)*!",
    r"(a|a)*d", r"(?:a|b|ab|ba)+e", r"(?:a?){999}a{999}q", r"(a{30}){30}w",
    r"[ab]*a[ab]{20}f", r"n++[i1]++g++",
]
# Each blocked in A by one of ACCEPTED, after a long run that makes backtracking explode:
# with Python's `re`, `(.+)\1b` alone took seconds on each of them.
PROMPTS = ["x" * (PROMPT_CHARS - 1) + "y", "a" * (PROMPT_CHARS - 1) + "c",
           "a" * (PROMPT_CHARS - 1) + "d"]


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        yield s


async def grant(s: Scene, by: Member, channel: Channel, member: Member, amount: int) -> None:
    rec = await s.emu.invoke("credits", subcommand="grant", user=by, channel=channel,
                             options={"user": member, "amount": amount})
    assert "Granted" in (await rec.wait_response()).content


def at_once(invoke: Coroutine[Any, Any, InteractionRecord]) -> InteractionRecord:
    """Run `DiscordEmulator.invoke`, which only dispatches and never waits, right here: the
    interaction's 3 s start now, even if the event loop is busy (as Discord's would)."""
    try:
        invoke.send(None)
    except StopIteration as done:
        return cast(InteractionRecord, done.value)
    raise AssertionError("DiscordEmulator.invoke waited")


async def ledger_rows(s: Scene, guild: Guild) -> int:
    async with s.world.db.reading() as conn, conn.execute(
        "SELECT COUNT(*) FROM ledger WHERE guild_id = ?", (guild.id,)
    ) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def hostile_blocklist(s: Scene) -> None:
    """Server A's: the older version's entries straight into the table, the rest added."""
    assert len(STORED_BY_OLDER_VERSION) + len(ACCEPTED) == 20
    async with s.world.db.transaction() as conn:
        await conn.execute("INSERT INTO guild_settings (guild_id, updated_at) VALUES (?, 0)",
                           (s.guild.id,))
        await conn.executemany(
            "INSERT INTO guild_blocklist (guild_id, pattern, kind, added_by, added_at)"
            " VALUES (?, ?, 'regex', ?, 0)",
            [(s.guild.id, p, s.admin.id) for p in STORED_BY_OLDER_VERSION])
    store = s.world.services.guild_settings
    for pattern in ACCEPTED:
        assert await store.add_pattern(s.guild.id, pattern, "regex", actor=s.admin.id)


async def test_a_hostile_blocklist_in_one_server_delays_no_one(
    scene: Scene, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scene
    other = s.emu.add_guild("Other Club")
    elsewhere = other.add_text_channel("clips")
    other_mod = other.add_member(None, "other-mod", permissions=Perm.ALL)
    carol = s.guild.add_member(None, "carol")
    ours = [s.alice, s.bob, carol]
    theirs = [other.add_member(None, name) for name in ("dave", "erin", "frank")]
    for member in ours:
        await grant(s, s.admin, s.channel, member, 500)
    for member in theirs:
        await grant(s, other_mod, elsewhere, member, 500)
    await hostile_blocklist(s)
    await s.world.services.guild_settings.add_pattern(other.id, "dragon", "word",
                                                      actor=other_mod.id)
    rows_before = await ledger_rows(s, s.guild)
    acked_before = len(s.emu.interactions)
    loop, loop_thread = asyncio.get_running_loop(), threading.get_ident()
    in_b: list[InteractionRecord] = []
    b_started = threading.Event()
    caplog.set_level(logging.INFO, logger="admission.gatekeeper")

    def send(members: list[Member], channel: Channel) -> list[InteractionRecord]:
        """All at once: the same long prompts in both servers, and as negative prompts."""
        return [at_once(s.emu.invoke("ref2video", user=member, channel=channel,
                                     options={"prompt": prompt, "video": s.video(),
                                              "negative_prompt": "a" * PROMPT_CHARS}))
                for member, prompt in zip(members, PROMPTS, strict=True)]

    def b_sends() -> None:
        in_b.extend(send(theirs, elsewhere))

    normalize = blocklist.normalize_prompt

    def b_sends_while_a_is_checked(text: str) -> str:
        """B's members send their commands the moment A's first prompt is being checked
        (the emulator is not thread-safe: from another thread, via the loop)."""
        if not b_started.is_set():
            b_started.set()
            if threading.get_ident() == loop_thread:
                b_sends()
            else:
                loop.call_soon_threadsafe(b_sends)
        return normalize(text)

    monkeypatch.setattr(blocklist, "normalize_prompt", b_sends_while_a_is_checked)
    in_a = send(ours, s.channel)
    await s.emu.wait_for(lambda: len(in_b) == len(theirs), within=30.0)
    everyone = in_a + in_b
    await s.emu.wait_for(lambda: all(r.acked or r.late for r in everyone), within=30.0)

    assert len(s.emu.interactions) == acked_before + len(everyone)
    assert [r.describe() for r in s.emu.interactions if r.late or not r.acked] == []
    assert s.emu.unacknowledged_interactions() == []
    replies = await asyncio.gather(*(r.wait_response(within=30.0) for r in everyone))
    for reply in replies[:3]:  # server A: refused, privately, without echoing the prompt
        assert reply.ephemeral and "does not allow" in reply.content, reply.content
        assert "nothing was started or charged" in reply.content
        assert all(p[:20] not in reply.content for p in PROMPTS)
    refused = {r.getMessage().partition("refused ")[2] for r in caplog.records
               if r.name == "admission.gatekeeper" and "refused" in r.msg}
    assert refused == {"(prompt matched regex entry '(x+x+)+y')",  # for the moderators
                       "(prompt matched regex entry '(a+)+c')",
                       "(prompt matched regex entry '(a|a)*d')"}
    for member in ours:
        assert await s.world.balance(s.guild.id, member.id) == (500, 0)
    assert await ledger_rows(s, s.guild) == rows_before
    for reply in replies[3:]:  # server B: the same prompts start jobs
        assert reply.ephemeral and "is queued" in reply.content, reply.content
    jobs = [await job_done(s, job_id) for job_id in (1, 2, 3)]
    assert {(j.guild_id, j.user_id) for j in jobs} == {(other.id, m.id) for m in theirs}
    assert sorted(sub.body["prompt"] for sub in s.wavespeed.submissions) == sorted(PROMPTS)
    skipped = [r.getMessage() for r in caplog.records if "skipping blocklist entry" in r.msg]
    assert {p for p in STORED_BY_OLDER_VERSION if any(repr(p) in m for m in skipped)} == set(
        STORED_BY_OLDER_VERSION)


async def test_the_prompt_check_runs_off_the_event_loop(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scene
    seen_in: list[int] = []
    normalize = blocklist.normalize_prompt

    def recording(text: str) -> str:  # every prompt the blocklist reads goes through here
        seen_in.append(threading.get_ident())
        return normalize(text)

    monkeypatch.setattr(blocklist, "normalize_prompt", recording)
    await s.grant(s.alice, 500)
    await s.world.services.guild_settings.add_pattern(s.guild.id, "dragon", "word",
                                                      actor=s.admin.id)
    assert "does not allow" in (await s.generate(s.alice, "a red dragon")).content
    assert "is queued" in (await s.generate(s.alice, "a red fox", negative_prompt="blur")
                           ).content
    loop_thread = threading.get_ident()  # the bot runs in this test's event loop
    # The dragon once (refused before its files are fetched); the fox's prompt and negative
    # prompt three times: before it queues for the intake, once its intake slot is held
    # (before the files are fetched), and again as the job is admitted.
    assert len(seen_in) == 7 and loop_thread not in seen_in
