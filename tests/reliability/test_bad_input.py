"""Bad input costs nothing and says what is wrong (issue 13, bad input): every option of
every slash command, and the Use as reference form, at and beyond its limits, through the
real bot, the Discord emulator and the fake WaveSpeed (the rows are in bad_input_cases.py).

Each refused row gets a private answer within Discord's 3 s that names the problem and the
fix, pings nobody (allowed_mentions parses nothing), and changes nothing: every balance and
the ledger, reservations, jobs, offers, kept media and server settings in the database are
as before, and the fake WaveSpeed got no submission and no upload. Where Discord itself
refuses a value (outside the choices, range or length the command declared), the row
checks the emulator refuses it, then sends it past those checks, as a forged interaction
would, and checks the bot refuses it the same way. The accepted rows sit exactly at each
limit, so the table proves both sides of every boundary, and what they send WaveSpeed is
what the member typed. No message the bot posts for any row pings anyone but the member
who asked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import Member, MessageRecord
from tests.e2e.scene import job_done, open_scene
from tests.reliability import scale
from tests.reliability.bad_input_cases import (
    ADMIN,
    CREDITS,
    JOBS,
    PROMPT_LIMIT,
    REF2VIDEO,
    SEED_MAX,
    SETTINGS,
    VIDEO_LIMIT,
    Bench,
    Case,
    mentions,
)
from tests.reliability.scale import record, size

SUITE = "bad input"
COMMAND = "scripts/run-tests tests/reliability/test_bad_input.py" + (
    " --soak" if scale.SOAK else "")
# The whole table, again and again in one scene: state left by earlier rounds (jobs,
# grants, blocklist entries) must not let a bad row through.
ROUNDS = size(ci=1, soak=5)
# What a refused row must leave as it was: money and everything a command can change.
FROZEN_TABLES = ("reservations", "guild_settings", "guild_channels", "guild_blocklist",
                 "allowance_grants")
COUNTED_TABLES = ("ledger", "jobs", "start_offers", "stored_media")


@asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    # Many accepted rows run one after another: the per-member job limit is not what is
    # tested here. References may be up to VIDEO_LIMIT bytes, so a real file can sit at it.
    async with open_scene(tmp_path, user_max_active_jobs=100,
                          max_video_bytes=VIDEO_LIMIT) as s:
        s.wavespeed.reference_check = None  # WaveSpeed's own decode is not under test here
        role = s.guild.add_role("vip", mentionable=True)
        audit = s.guild.add_text_channel("audit")
        b = Bench(s, role, audit)
        # The audit channel is on, so its lines are checked for pings as well.
        rec = await s.emu.invoke("settings", subcommand="audit_channel", user=s.admin,
                                 channel=s.channel, options={"channel": audit})
        assert "logged" in (await rec.wait_response(within=15.0)).content
        await s.grant(s.alice, 1_000_000)
        yield b


async def state(b: Bench) -> dict[str, Any]:
    """Everything a refused row must not change."""
    seen: dict[str, Any] = {}
    async with b.s.world.db.reading() as conn:
        # Every balance and hold; reading a balance may open an empty account, which is
        # no money.
        async with conn.execute("SELECT guild_id, user_id, balance, held FROM accounts "
                                "WHERE balance != 0 OR held != 0 ORDER BY rowid") as cur:
            seen["accounts"] = [tuple(r) for r in await cur.fetchall()]
        for table in FROZEN_TABLES:
            async with conn.execute(f"SELECT * FROM {table} ORDER BY rowid") as cur:  # noqa: S608
                # Who touched the settings last is bookkeeping, not a setting (a remove
                # that found nothing still records the moderator who asked).
                names = [d[0] for d in cur.description]
                seen[table] = [tuple(v for n, v in zip(names, r, strict=True)
                                     if n not in ("updated_at", "updated_by"))
                               for r in await cur.fetchall()]
        for table in COUNTED_TABLES:
            async with conn.execute(f"SELECT COUNT(*) FROM {table}") as cur:  # noqa: S608
                row = await cur.fetchone()
                seen[table] = row[0] if row else 0
    seen["submissions"] = len(b.s.wavespeed.submissions)
    seen["uploads"] = len(b.s.wavespeed.uploads)
    seen["upload requests"] = len(b.s.wavespeed.requests_to("/media/upload/binary"))
    return seen


def member(b: Bench, who: str) -> Member:
    return {"alice": b.s.alice, "bob": b.s.bob, "admin": b.s.admin}[who]


def assert_pings_nobody(b: Bench, since: int, asker: Member, reply: MessageRecord,
                        what: str) -> None:
    """The answer parses no mention at all; nothing else posted since `since` pings anyone
    but the member who asked (a delivered clip may ping its owner)."""
    assert reply.allowed_mentions is not None, what
    assert not reply.allowed_mentions.get("parse"), (what, reply.allowed_mentions)
    assert b.s.emu.mentions_pinged(reply) == set(), what
    for m in b.s.emu.messages[since:]:
        assert b.s.emu.mentions_pinged(m) <= {f"user:{asker.id}"}, (what, m.content)


async def run_row(b: Bench, case: Case) -> MessageRecord:
    s = b.s
    asker = member(b, case.user)
    before = await state(b)
    since = len(s.emu.messages)
    options = case.options(b)
    if case.discord:  # Discord refuses it before the bot sees it...
        dispatched = len(s.emu.interactions)
        with pytest.raises(ValueError, match=r"must be|bad length"):
            await s.emu.invoke(case.command, subcommand=case.subcommand, group=case.group,
                               user=asker, channel=s.channel, options=options)
        assert len(s.emu.interactions) == dispatched, case.what
    # ...and the bot refuses it too when it comes anyway.
    rec = await s.emu.invoke(case.command, subcommand=case.subcommand, group=case.group,
                             user=asker, channel=s.channel, options=options,
                             unchecked=case.discord or case.forged)
    await rec.wait_acked(within=15.0)
    assert rec.acked_at is not None and rec.acked_at < 3.0 and not rec.late, rec.describe()
    reply = await rec.wait_response(within=30.0)
    assert reply.ephemeral, case.what
    assert_pings_nobody(b, since, asker, reply, case.what)
    text = reply.content + " ".join(str(e) for e in reply.embeds)
    if case.says:
        for words in case.says:
            assert words in text, (case.what, words, text)
        assert "went wrong" not in text, (case.what, text)  # an answer, not a bug report
        assert await state(b) == before, case.what
        return reply
    assert case.ok in text and "went wrong" not in text, (case.what, text)
    if case.command == "ref2video":
        await accepted_job(b, case, options, reply)
    if case.after is not None:
        await case.after(b, reply)
    return reply


async def accepted_job(b: Bench, case: Case, options: dict[str, Any], reply: MessageRecord
                       ) -> None:
    """An accepted /ref2video row: its job is delivered and WaveSpeed got what was typed."""
    found = re.search(r"Job #(\d+) is queued", reply.content)
    assert found, (case.what, reply.content)
    job_id = int(found[1])
    await job_done(b.s, job_id)
    body = b.s.wavespeed.submissions[-1].body
    assert body["prompt"] == options["prompt"].strip(), case.what
    negative = (options.get("negative_prompt") or "").strip() or None
    assert body.get("negative_prompt") == negative, case.what
    assert body["seed"] == options.get("seed", -1), case.what
    assert body["size"] == options.get("size", "1280*720"), case.what
    assert body["duration"] == options.get("duration", 5), case.what
    assert len(body["videos"]) == 1 + ("video2" in options), case.what
    assert ("audio" in body) == ("audio" in options), case.what
    assert await b.s.world.ledger_kinds(job_id) == ["reserve", "capture"], case.what


async def run_table(b: Bench, cases: Sequence[Case]) -> int:
    checked = 0
    for _round in range(ROUNDS):
        for case in cases:
            await run_row(b, case)
            checked += 1
    return checked


def refused(cases: Sequence[Case]) -> int:
    return sum(1 for c in cases if c.says)


async def test_ref2video(tmp_path: Path) -> None:
    mention_row = Case("prompt with @everyone, @here, a role and a member mention (accepted, "
                       "pings nobody)", "ref2video",
                       options=lambda b: {"prompt": mentions(b), "video": b.video()},
                       ok="is queued")
    cases = [*REF2VIDEO, mention_row]
    async with bench(tmp_path) as b:
        checked = await run_table(b, cases)
        # The accepted boundary rows really were at the boundary.
        prompts = [sub.body["prompt"] for sub in b.s.wavespeed.submissions]
        assert "c" * PROMPT_LIMIT in prompts
        assert SEED_MAX in [sub.body["seed"] for sub in b.s.wavespeed.submissions]
        assert mentions(b) in prompts  # sent as typed: escaping is for Discord only
    record(SUITE, "/ref2video: prompt and negative_prompt empty, blank, invisible-only, at "
           "and over MAX_PROMPT_CHARS, over 6,000 and 100,000 characters, control "
           "characters, lone surrogates, line separators, zero-width and right-to-left "
           "characters, mentions; video, video2 and audio zero-byte, wrong type, renamed, "
           "at and over their size limits; size, duration and shot_type off their choices; "
           "seed -2, -1, 2^31-1, 2^31, 2^63: each refused at no cost or accepted at the "
           "limit", checked, 0, command=COMMAND,
           detail=f"{refused(cases)} refused and {len(cases) - refused(cases)} accepted rows "
           f"x {ROUNDS} round(s); values Discord refuses also sent past it")


async def test_credits(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        checked = await run_table(b, CREDITS)
        # Bob's balance was set to 0 by a row; the granted boundary amounts arrived whole.
        assert await b.s.world.balance(b.s.guild.id, b.s.bob.id) == (0, 0)
        alice, _held = await b.s.world.balance(b.s.guild.id, b.s.alice.id)
        assert alice == 1_000_000 + ROUNDS * (1 + 10_000_000 + 5 + 3)
    record(SUITE, "/credits grant, revoke, set, balance, history: amounts 0, -1, -2^63, "
           "MAX_AMOUNT + 1, 2^53, 2^63, more than the balance, reasons empty and over 200 "
           "characters or holding mentions, pages 0 and over the range, and members "
           "without Manage Server: each refused at no cost or accepted at the limit",
           checked, 0, command=COMMAND,
           detail=f"{refused(CREDITS)} refused and {len(CREDITS) - refused(CREDITS)} "
           f"accepted rows x {ROUNDS} round(s)")


async def test_jobs(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        await b.s.generate(b.s.alice, "the job others may not cancel")
        await job_done(b.s, 1)
        checked = await run_table(b, JOBS)
    record(SUITE, "/jobs cancel: job 0, -1, 2^53, 2^63, 2^53-1, one that does not exist, "
           "someone else's, one already delivered: each refused at no cost", checked, 0,
           command=COMMAND, detail=f"{len(JOBS)} rows x {ROUNDS} round(s)")


async def test_settings(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        checked = await run_table(b, SETTINGS)
        store = b.s.world.services.guild_settings
        entries = [e.pattern for e in await store.patterns(b.s.guild.id)]
        assert "p" * 200 in entries and "@everyone" in entries and len(entries) == 2
    record(SUITE, "/settings limits, nsfw, allowance, blocklist add/remove/list, role: "
           "values under and over each range, NaN and infinity, off-choice values, "
           "patterns empty, too long, invisible-only or not compiling, @everyone as a role, "
           "members without Manage Server: each refused with nothing changed or accepted "
           "at the limit", checked, 0, command=COMMAND,
           detail=f"{refused(SETTINGS)} refused and {len(SETTINGS) - refused(SETTINGS)} "
           f"accepted rows x {ROUNDS} round(s)")


async def paused_with_mentions(b: Bench, reply: MessageRecord) -> None:
    """A pause message full of mentions reaches the members it refuses, pinging nobody."""
    s = b.s
    before = await state(b)
    since = len(s.emu.messages)
    told = await s.generate(s.alice, "a cat while paused")
    assert "no new clips tonight" in told.content and "Nothing was charged" in told.content
    assert_pings_nobody(b, since, s.alice, told, "the pause message")
    assert await state(b) == before
    rec = await s.emu.invoke("admin", subcommand="resume", user=s.admin, channel=s.channel)
    assert "resumed" in (await rec.wait_response(within=15.0)).content


async def test_admin(tmp_path: Path) -> None:
    def message(b: Bench) -> dict[str, Any]:
        return {"message": f"@everyone <@&{b.role.id}> no new clips tonight"}

    cases = [*ADMIN, Case("pause with @everyone and a role in its message (accepted; members "
                          "refused with it, pinging nobody)", "admin", "pause", user="admin",
                          options=message, ok="paused", after=paused_with_mentions)]
    async with bench(tmp_path) as b:
        checked = await run_table(b, cases)
    record(SUITE, "/admin pause, resume, status: messages empty, over 500 and 100,000 "
           "characters or holding mentions, resuming when not paused, members without "
           "Manage Server: each refused with nothing changed or accepted at the limit",
           checked, 0, command=COMMAND,
           detail=f"{refused(cases)} refused and {len(cases) - refused(cases)} accepted rows "
           f"x {ROUNDS} round(s)")


async def test_use_as_reference_form(tmp_path: Path) -> None:
    """The form's prompt goes through the same checks; Discord would cap its length at the
    text input's max_length, which the emulator does not enforce on a submission: so these
    are the forged submissions, and the bot's own check is what refuses them."""
    forms: list[tuple[str, str, tuple[str, ...]]] = [
        ("over MAX_PROMPT_CHARS", "f" * (PROMPT_LIMIT + 1),
         (f"`prompt` is {PROMPT_LIMIT + 1} characters; the limit is {PROMPT_LIMIT}",
          "Shorten it")),
        ("100,000 characters", "f" * 100_000, ("`prompt` is 100000 characters",)),
        ("only zero-width characters", "\u200b\ufeff", ("`prompt` is empty",)),
        ("with NUL", "a cat\x00", ("U+0000", "Remove it")),
        ("with ESC", "a cat\x1b[2J", ("U+001B", "Remove it")),
        ("at MAX_PROMPT_CHARS (accepted)", "f" * PROMPT_LIMIT, ()),
        ("with mentions (accepted, pings nobody)", "@everyone <@&{role}> at night", ()),
    ]
    checked = 0
    async with bench(tmp_path) as b:
        s = b.s
        await s.generate(s.alice, "the clip to reuse")
        await job_done(s, 1)
        [clip] = [m for m in s.thread_messages() if m.attachments]
        for _round in range(ROUNDS):
            for what, prompt, says in forms:
                prompt = prompt.replace("{role}", str(b.role.id))
                before = await state(b)
                opened = await s.emu.click(clip, "r2v:reuse:1", user=s.alice)
                await opened.wait_acked(within=15.0)
                assert opened.modal is not None and opened.acked_at is not None
                assert opened.acked_at < 3.0
                since = len(s.emu.messages)
                sent = await s.emu.submit_modal(opened, {"prompt": prompt})
                await sent.wait_acked(within=15.0)
                assert sent.acked_at is not None and sent.acked_at < 3.0, sent.describe()
                reply = await sent.wait_response(within=30.0)
                assert reply.ephemeral, what
                assert_pings_nobody(b, since, s.alice, reply, what)
                if says:
                    for words in says:
                        assert words in reply.content, (what, reply.content)
                    assert await state(b) == before, what
                else:
                    found = re.search(r"Job #(\d+) is queued", reply.content)
                    assert found, (what, reply.content)
                    await job_done(s, int(found[1]))
                    assert s.wavespeed.submissions[-1].body["prompt"] == prompt, what
                checked += 1
    record(SUITE, "Use as reference form: prompts over MAX_PROMPT_CHARS and of 100,000 "
           "characters, invisible-only, with control characters or mentions: each refused "
           "at no cost or accepted at the limit", checked, 0, command=COMMAND,
           detail=f"{len(forms)} rows x {ROUNDS} round(s); forged past the form's "
           "max_length")
