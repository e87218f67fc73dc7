"""A server's rules applied to /ref2video end to end: each refusal is private, names the
reason and what would work, and charges and submits nothing. Allowances are granted lazily,
once per period."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.guild_settings import GuildSettingsStore
from tests.e2e.scene import Scene, job_done, open_scene


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, complete_after=0.05) as s:
        yield s

def rules(s: Scene) -> GuildSettingsStore:
    return s.world.services.guild_settings


async def assert_refused(s: Scene, words: str, *, prompt: str = "a cat surfing",
                         submissions: int = 0) -> str:
    """Refused privately, nothing charged or submitted or posted, and the refusal is in the
    server's audit channel."""
    audit = s.guild.add_text_channel("audit-log")
    await rules(s).set_audit_channel(s.guild.id, audit.id, actor=s.admin.id)
    before = await s.world.ledger_count()
    public = len(s.emu.channel_messages(s.channel.id, include_ephemeral=False))
    reply = await s.generate(s.alice, prompt)
    assert reply.ephemeral and words in reply.content, reply.content
    assert "charged" in reply.content
    await asyncio.sleep(0.1)
    assert len(s.wavespeed.submissions) == submissions
    assert await s.world.ledger_count() == before
    assert len(s.emu.channel_messages(s.channel.id, include_ephemeral=False)) == public
    logged = await s.emu.wait_for(lambda: s.emu.channel_messages(audit.id), within=5.0)
    assert f"/ref2video by <@{s.alice.id}>" in logged[-1].content
    assert "refused" in logged[-1].content and prompt not in logged[-1].content
    return reply.content


async def test_paused_server_refuses_with_its_message(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await rules(s).set_paused(s.guild.id, True, "Back after maintenance at 18:00",
                              actor=s.admin.id)
    await assert_refused(s, "Back after maintenance at 18:00")


async def test_wrong_channel_names_the_channels_that_work(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    other = s.guild.add_text_channel("generate-here")
    await rules(s).add_channel(s.guild.id, other.id, actor=s.admin.id)
    await assert_refused(s, f"<#{other.id}>")


async def test_required_and_blocked_roles(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    creators = s.guild.add_role("creators")
    await rules(s).set_roles(s.guild.id, required=creators.id, actor=s.admin.id)
    await assert_refused(s, f"<@&{creators.id}>")
    muted = s.guild.add_role("muted")
    await rules(s).set_roles(s.guild.id, required=None, blocked=muted.id, actor=s.admin.id)
    s.alice.roles.append(muted)
    await assert_refused(s, f"<@&{muted.id}>")


async def test_blocked_prompt_is_refused_without_echoing_it(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await rules(s).add_pattern(s.guild.id, "dragon", "word", actor=s.admin.id)
    text = await assert_refused(s, "does not allow", prompt="a huge Dragon over the city")
    assert "dragon" not in text.lower()


async def test_daily_job_limit(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await rules(s).set_limits(s.guild.id, daily_jobs=1, actor=s.admin.id)
    await s.generate(s.alice)
    await job_done(s, 1)
    await assert_refused(s, "resets", submissions=1)


async def test_cooldown(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await rules(s).set_limits(s.guild.id, cooldown_seconds=3600, actor=s.admin.id)
    await s.generate(s.alice)
    await job_done(s, 1)
    await assert_refused(s, "cooldown", submissions=1)


async def test_daily_spend_cap(scene: Scene) -> None:
    s = scene
    await s.grant(s.alice, 500)
    await rules(s).set_limits(s.guild.id, daily_spend_cap_cents=100, actor=s.admin.id)
    await s.generate(s.alice)  # 720p 5 s = 100 credits = $1.00: exactly the cap
    await job_done(s, 1)
    await assert_refused(s, "spending cap of $1.00", submissions=1)


async def test_allowance_is_granted_once_however_many_commands(scene: Scene) -> None:
    s = scene
    await rules(s).set_allowance(s.guild.id, amount=200, period="day", cap=200,
                                 actor=s.admin.id)
    replies = await asyncio.gather(*(s.generate(s.alice, f"clip {i}") for i in range(3)))
    queued = [r for r in replies if "is queued" in r.content]
    refused = [r for r in replies if "costs 100 credits" in r.content]
    assert (len(queued), len(refused)) == (2, 1), [r.content for r in replies]
    async with s.world.db.reading() as conn, conn.execute(
        "SELECT COUNT(*), SUM(delta_balance) FROM ledger WHERE kind = 'grant'") as cur:
        row = await cur.fetchone()
    assert row is not None and tuple(row) == (1, 200)


async def test_the_audit_channel_records_jobs_credits_and_refusals(scene: Scene) -> None:
    s = scene
    audit = s.guild.add_text_channel("audit")
    await rules(s).set_audit_channel(s.guild.id, audit.id, actor=s.admin.id)
    await s.grant(s.alice, 500)
    await s.generate(s.alice, "@everyone a cat")
    await job_done(s, 1)
    await rules(s).add_pattern(s.guild.id, "dragon", "word", actor=s.admin.id)
    assert "does not allow" in (await s.generate(s.alice, "a dragon")).content

    def posted() -> list[str]:
        return [m.content for m in s.emu.channel_messages(audit.id)]

    await s.emu.wait_for(lambda: len(posted()) >= 3, within=5.0)
    lines = posted()
    assert any(f"<@{s.admin.id}> granted 500 credits to <@{s.alice.id}>" in t for t in lines)
    assert any("Job #1" in t and "delivered, 100 credits ($1.00) charged" in t for t in lines)
    assert any("refused: blocked_prompt" in t and "dragon" in t for t in lines)
    for message in s.emu.channel_messages(audit.id):
        assert s.emu.mentions_pinged(message) == set()


async def test_low_wavespeed_balance_is_shown_and_warned_once(scene: Scene) -> None:
    s = scene
    audit = s.guild.add_text_channel("audit")
    await rules(s).set_audit_channel(s.guild.id, audit.id, actor=s.admin.id)
    watch = s.world.services.balance
    s.wavespeed.balance_usd = 4.5  # below the default warning level of $10
    await watch.check()
    await watch.check()  # still low: no second warning

    def warnings() -> list[str]:
        return [m.content for m in s.emu.channel_messages(audit.id) if "balance" in m.content]

    await s.emu.wait_for(lambda: warnings(), within=5.0)
    assert len(warnings()) == 1 and "$4.50" in warnings()[0]
    rec = await s.emu.invoke("admin", subcommand="status", user=s.admin, channel=s.channel)
    shown = (await rec.wait_response()).embeds[0]
    assert any("$4.50" in f["value"] and "below" in f["value"] for f in shown["fields"])
    s.wavespeed.balance_usd = 50.0
    await watch.check()
    s.wavespeed.balance_usd = 3.0
    await watch.check()  # fell again after recovering: warned again
    await s.emu.wait_for(lambda: len(warnings()) == 2, within=5.0)


async def test_withhold_policy_keeps_flagged_clips_out_of_age_restricted_channels(
    scene: Scene
) -> None:
    from tests.fakes.wavespeed import TaskBehaviour

    s = scene
    adults = s.guild.add_text_channel("after-dark", nsfw=True)
    await rules(s).set_nsfw(s.guild.id, policy="withhold", actor=s.admin.id)
    await s.grant(s.alice, 500)
    s.wavespeed.queue_tasks(TaskBehaviour.nsfw())
    rec = await s.emu.invoke("ref2video", user=s.alice, channel=adults,
                             options={"prompt": "a cat", "video": s.video()})
    await rec.wait_response(within=10.0)
    job = await job_done(s, 1, "failed")
    assert job.failure_code == "withheld"
    assert not any(m.attachments for m in s.thread_messages())
    assert await s.world.balance(s.guild.id, s.alice.id) == (500, 0)


async def test_next_days_allowance_appears_once(scene: Scene) -> None:
    import time

    s = scene
    await rules(s).set_allowance(s.guild.id, amount=200, period="day", cap=200,
                                 actor=s.admin.id)
    looked = await s.emu.invoke("credits", subcommand="balance", user=s.alice,
                                channel=s.channel)
    assert "200 credits" in (await looked.wait_response()).content  # granted on first look
    first = await s.generate(s.alice, "day one")  # 0 credits before: the allowance pays
    assert "Job #1 is queued" in first.content
    await job_done(s, 1)
    assert await s.world.balance(s.guild.id, s.alice.id) == (100, 0)
    s.world.services.gatekeeper.clock = lambda: time.time() + 86_400  # tomorrow
    replies = await asyncio.gather(*(s.generate(s.alice, f"day two {i}") for i in range(4)))
    assert sum("is queued" in r.content for r in replies) == 2  # topped up to 200 = 2 jobs
    async with s.world.db.reading() as conn, conn.execute(
        "SELECT delta_balance FROM ledger WHERE kind = 'grant' ORDER BY id") as cur:
        grants = [r[0] for r in await cur.fetchall()]
    assert grants == [200, 100]  # one grant a day; day two's tops 100 up to 200
