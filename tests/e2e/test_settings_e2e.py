"""/settings and /admin end to end: a moderator changes every setting through the Discord
emulator and the real bot, and the stored settings, `/settings show` and `/admin status`
say so; members without Manage Server change nothing; settings survive a restart and
stay in their own server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import Channel, Member, MessageRecord, Perm
from storage.guild_settings import GuildSettings
from tests.e2e.scene import Scene, job_done, open_scene

ZWSP = "\u200b"


@pytest.fixture
async def scene(tmp_path: Path) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path) as s:
        yield s

async def ask(s: Scene, command: str, subcommand: str, *, group: str | None = None,
              by: Member | None = None, at: Channel | None = None,
              **options: Any) -> MessageRecord:
    """Run a command (by the moderator in #clips unless told) and return its answer, which
    must be private and ping no one."""
    rec = await s.emu.invoke(command, subcommand=subcommand, group=group,
                             user=by or s.admin, channel=at or s.channel, options=options)
    reply = await rec.wait_response()
    assert reply.ephemeral, reply.content
    assert s.emu.mentions_pinged(reply) == set()
    return reply


def text(message: MessageRecord) -> str:
    """Everything a reader sees: the content and every embed's text."""
    parts = [message.content or ""]
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
        parts.append(embed.get("footer", {}).get("text", ""))
    return "\n".join(parts)


def descriptions(node: dict[str, Any]) -> list[str]:
    """The description of a synced command and of everything in it."""
    return [node["description"], *(d for o in node.get("options", []) for d in descriptions(o))]


async def show(s: Scene, **where: Any) -> str:
    return text(await ask(s, "settings", "show", **where))


async def stored(s: Scene, guild_id: int | None = None) -> GuildSettings:
    return await s.world.services.guild_settings.get(guild_id or s.guild.id)


async def patterns(s: Scene, guild_id: int | None = None) -> list[tuple[str, str]]:
    entries = await s.world.services.guild_settings.patterns(guild_id or s.guild.id)
    return [(e.pattern, e.kind) for e in entries]


# ---- a moderator sets everything ---------------------------------------------------------

async def test_a_moderator_sets_each_setting_and_show_reflects_it(scene: Scene) -> None:
    s = scene
    assert "Never: these are the defaults" in await show(s)
    audit = s.guild.add_text_channel("audit")
    more = s.guild.add_text_channel("more-clips")
    artists, muted, vip = (s.guild.add_role(n) for n in ("artists", "muted", "vip"))

    reply = await ask(s, "settings", "add", group="channels", channel=s.channel)
    assert "is now allowed" in reply.content and "Until now it worked everywhere" in reply.content
    assert "cannot post" not in reply.content
    await ask(s, "settings", "add", group="channels", channel=more)
    reply = await ask(s, "settings", "remove", group="channels", channel=more)
    assert "removed" in reply.content and f"Only <#{s.channel.id}>" in reply.content
    assert "required any more" not in (
        await ask(s, "settings", "required", group="role", role=artists)).content
    await ask(s, "settings", "blocked", group="role", role=muted)
    reply = await ask(s, "settings", "add", group="blocklist", pattern="  Bad   WORD ")
    assert "Added the word entry" in reply.content and "bad word" in reply.content
    await ask(s, "settings", "add", group="blocklist", pattern=r"fo+\d", kind="regex")
    reply = await ask(s, "settings", "limits", daily_jobs=5, cooldown_seconds=90,
                      concurrent_jobs=2, daily_spend_cap_usd=12.5)
    assert "Limits updated" in reply.content and "$12.50" in reply.content
    await ask(s, "settings", "nsfw", policy="withhold", charge="charge")
    reply = await ask(s, "settings", "allowance", amount=200, period="week", role=vip)
    assert "tops them up rather than stacking" in reply.content
    reply = await ask(s, "settings", "audit_channel", channel=audit)
    assert f"<#{audit.id}>" in reply.content
    await ask(s, "settings", "confirm_cost", enabled=True)
    await ask(s, "admin", "pause", message="maintenance until 6pm")

    gs = await stored(s)
    assert gs == GuildSettings(
        guild_id=s.guild.id, channel_ids=frozenset({s.channel.id}),
        required_role_id=artists.id, blocked_role_id=muted.id, daily_jobs=5,
        cooldown_seconds=90, concurrent_jobs=2, daily_spend_cap_cents=1250,
        nsfw_policy="withhold", nsfw_charge=True, allowance_amount=200,
        allowance_period="week", allowance_role_id=vip.id, allowance_cap=200,
        audit_channel_id=audit.id, confirm_cost=True, paused=True,
        pause_message="maintenance until 6pm", updated_at=gs.updated_at,
        updated_by=s.admin.id)
    assert gs.updated_at is not None
    assert await patterns(s) == [("bad word", "word"), (r"fo+\d", "regex")]

    shown = await show(s)
    for expected in (
        "Generation: **Paused**: new jobs are refused; started ones finish. Members are told: "
        "maintenance until 6pm", f"Only <#{s.channel.id}> (and threads",
        f"Required: <@&{artists.id}>", f"Blocked: <@&{muted.id}>",
        "Jobs per member per day: 5", "Cooldown between a member's jobs: 90 s",
        "Unfinished jobs per member: 2", "Server spend per day: $12.50",
        "Policy `withhold`", "withheld clip is charged",
        f"200 credits per week (UTC) for members with <@&{vip.id}>",
        f"Audit channel: <#{audit.id}>", "Confirm cost: on", "Blocklist: 2 entries",
        f"Last changed: <t:{int(gs.updated_at)}:R> by <@{s.admin.id}>",
    ):
        assert expected in shown, (expected, shown)
    assert str(more.id) not in shown


async def test_only_the_given_options_change_and_empty_options_clear(scene: Scene) -> None:
    s = scene
    role = s.guild.add_role("artists")
    await ask(s, "settings", "limits", daily_jobs=5, cooldown_seconds=600, concurrent_jobs=1,
              daily_spend_cap_usd=20)
    await ask(s, "settings", "add", group="channels")  # no channel: this one
    await ask(s, "settings", "required", group="role", role=role)
    await ask(s, "settings", "nsfw", charge="refund")
    await ask(s, "settings", "allowance", amount=100)
    await ask(s, "settings", "audit_channel", channel=s.channel)

    reply = await ask(s, "settings", "limits", cooldown_seconds=0, daily_spend_cap_usd=0.5)
    assert "no clip fits under this cap; the cheapest is $1.00" in reply.content
    reply = await ask(s, "settings", "nsfw", charge="default")
    assert "bot default: NSFW_CHARGE=false" in reply.content
    await ask(s, "settings", "allowance", period="week")
    gs = await stored(s)
    assert (gs.daily_jobs, gs.cooldown_seconds, gs.concurrent_jobs,
            gs.daily_spend_cap_cents) == (5, 0, 1, 50)
    await ask(s, "settings", "limits", daily_jobs=0, concurrent_jobs=0)
    gs = await stored(s)
    assert (gs.daily_jobs, gs.concurrent_jobs, gs.daily_spend_cap_cents) == (None, None, 50)
    assert (gs.nsfw_policy, gs.nsfw_charge) == ("spoiler", None)
    assert (gs.allowance_amount, gs.allowance_cap, gs.allowance_period,
            gs.allowance_role_id) == (100, 100, "week", None)
    assert gs.channel_ids == frozenset({s.channel.id}) and gs.required_role_id == role.id

    assert "No role is required" in (await ask(s, "settings", "required", group="role")).content
    assert "every channel" in (await ask(s, "settings", "clear", group="channels")).content
    assert "off" in (await ask(s, "settings", "audit_channel")).content
    assert "Off" in (await ask(s, "settings", "allowance", amount=0)).content
    gs = await stored(s)
    assert (gs.required_role_id, gs.channel_ids, gs.audit_channel_id,
            gs.allowance_amount) == (None, frozenset(), None, 0)
    shown = await show(s)
    assert "Every channel (no list)" in shown and "Required: none" in shown
    assert "Allowance: Off" in shown and "Audit channel: off" in shown


async def test_roles_that_cannot_work_are_refused_with_the_fix(scene: Scene) -> None:
    s = scene
    muted = s.guild.add_role("muted")
    reply = await ask(s, "settings", "required", group="role", role=s.guild.everyone)
    assert "cannot be the required role" in reply.content and "leave `role` out" in reply.content
    await ask(s, "settings", "blocked", group="role", role=muted)
    reply = await ask(s, "settings", "required", group="role", role=muted)
    assert "already the blocked role" in reply.content and "Clear that one first" in reply.content
    gs = await stored(s)
    assert (gs.required_role_id, gs.blocked_role_id) == (None, muted.id)


async def test_a_channel_the_bot_cannot_post_in_is_flagged(scene: Scene) -> None:
    s = scene
    mute = s.guild.add_text_channel("read-only", bot_can_send=False)
    reply = await ask(s, "settings", "audit_channel", channel=mute)
    assert "I cannot post in" in reply.content and "Send Messages" in reply.content
    assert (await stored(s)).audit_channel_id == mute.id


# ---- members without Manage Server -------------------------------------------------------

async def test_members_without_manage_server_are_refused_and_nothing_changes(
    scene: Scene
) -> None:
    s = scene
    role = s.guild.add_role("artists")
    attempts: list[tuple[str, str | None, str, dict[str, Any]]] = [
        ("settings", None, "show", {}),
        ("settings", "channels", "add", {"channel": s.channel}),
        ("settings", "channels", "remove", {"channel": s.channel}),
        ("settings", "channels", "clear", {}),
        ("settings", "role", "required", {"role": role}),
        ("settings", "role", "blocked", {"role": role}),
        ("settings", "blocklist", "add", {"pattern": "cat"}),
        ("settings", "blocklist", "remove", {"pattern": "cat"}),
        ("settings", "blocklist", "list", {}),
        ("settings", None, "limits", {"daily_jobs": 1}),
        ("settings", None, "nsfw", {"policy": "withhold"}),
        ("settings", None, "allowance", {"amount": 1000}),
        ("settings", None, "audit_channel", {"channel": s.channel}),
        ("settings", None, "confirm_cost", {"enabled": True}),
        ("admin", None, "pause", {"message": "gone"}),
        ("admin", None, "resume", {}),
        ("admin", None, "status", {}),
    ]
    for command, group, sub, options in attempts:
        reply = await ask(s, command, sub, group=group, by=s.alice, **options)
        assert "You need the **Manage Server** permission" in reply.content, (sub, reply.content)
    assert await stored(s) == GuildSettings(guild_id=s.guild.id)
    assert await patterns(s) == []

    for name in ("settings", "admin"):  # hidden from members by default, server-only
        synced = s.emu.command(name)
        assert synced is not None
        assert int(synced["default_member_permissions"]) == 1 << 5  # MANAGE_GUILD
        assert synced["contexts"] == [0]
        assert all(d.strip() and d != "…" for d in descriptions(synced))  # "…": discord.py's


# ---- the blocklist -----------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "reason"), [
    ("(unclosed", "is not a valid regular expression: missing ), unterminated subpattern"),
    (r"(.+)\1b", "uses a backreference (such as `\\1` or `(?P=name)`), which is not supported"),
    ("(?<!a)b", "uses lookahead or lookbehind"),
    ("a*", "can match empty text"),
])
async def test_an_invalid_regex_is_refused_with_the_reason(
    scene: Scene, pattern: str, reason: str
) -> None:
    s = scene
    reply = await ask(s, "settings", "add", group="blocklist", pattern=pattern, kind="regex")
    assert reply.content.startswith("Not added:") and reason in reply.content, reply.content
    assert await patterns(s) == []
    assert (await stored(s)).updated_at is None


async def test_the_list_escapes_backticks_and_remove_takes_what_it_shows(scene: Scene) -> None:
    s = scene
    await ask(s, "settings", "add", group="blocklist", pattern="x```y", kind="regex")
    await ask(s, "settings", "add", group="blocklist", pattern="cat")
    reply = await ask(s, "settings", "add", group="blocklist", pattern="CAT")
    assert "already has the word entry" in reply.content
    listing = (await ask(s, "settings", "list", group="blocklist")).embeds[0]["description"]
    assert listing.count("```") == 2 and f"x`{ZWSP}`{ZWSP}`{ZWSP}y" in listing
    assert "word  cat" in listing

    copied = f"x`{ZWSP}`{ZWSP}`{ZWSP}y"
    assert "Removed the entry" in (
        await ask(s, "settings", "remove", group="blocklist", pattern=copied)).content
    reply = await ask(s, "settings", "remove", group="blocklist", pattern="dog")
    assert "has no entry" in reply.content and "/settings blocklist list" in reply.content
    assert await patterns(s) == [("cat", "word")]


# ---- restarts and servers ----------------------------------------------------------------

async def test_settings_survive_a_restart_and_stay_in_their_server(scene: Scene) -> None:
    s = scene
    other = s.emu.add_guild("Other Club")
    elsewhere = other.add_text_channel("general")
    other_mod = other.add_member(None, "other-mod", permissions=Perm.ALL)
    await ask(s, "settings", "add", group="channels", channel=s.channel)
    await ask(s, "settings", "limits", daily_jobs=3, daily_spend_cap_usd=5)
    await ask(s, "settings", "add", group="blocklist", pattern="spoilers")
    await ask(s, "admin", "pause", message="back soon")
    await ask(s, "settings", "limits", daily_jobs=7, by=other_mod, at=elsewhere)
    first, second = await stored(s), await stored(s, other.id)

    await s.world.restart()

    assert await stored(s) == first and await stored(s, other.id) == second
    assert await patterns(s) == [("spoilers", "word")] and await patterns(s, other.id) == []
    assert first.paused and first.daily_jobs == 3 and first.daily_spend_cap_cents == 500
    assert second == GuildSettings(guild_id=other.id, daily_jobs=7,
                                   updated_at=second.updated_at, updated_by=other_mod.id)
    shown = await show(s, by=other_mod, at=elsewhere)
    assert "Generation: Running: new jobs are accepted" in shown and "Every channel" in shown
    assert "Jobs per member per day: 7" in shown and "Blocklist: 0 entries" in shown
    assert "Members are told: back soon" in await show(s)


# ---- /admin ------------------------------------------------------------------------------

async def test_pause_then_status_shows_paused_and_resume_undoes_it(scene: Scene) -> None:
    s = scene
    reply = await ask(s, "admin", "pause", message="new model <@&1> tomorrow")
    assert "Generation is paused" in reply.content and "/admin resume" in reply.content
    status = await ask(s, "admin", "status")
    assert "**Paused**" in text(status) and "new model <@&1> tomorrow" in text(status)
    reply = await ask(s, "admin", "pause")
    assert "already paused" in reply.content
    assert (await stored(s)).pause_message is None

    assert "resumed" in (await ask(s, "admin", "resume")).content
    assert not (await stored(s)).paused
    assert "Running" in text(await ask(s, "admin", "status"))
    assert "not paused" in (await ask(s, "admin", "resume")).content


async def test_status_counts_a_delivered_jobs_spend(scene: Scene) -> None:
    s = scene
    before = text(await ask(s, "admin", "status"))
    assert "Today (UTC): 0 jobs · 0 credits ($0.00)" in before
    await s.grant(s.alice, 500)
    await s.generate(s.alice)
    await job_done(s, 1)
    await ask(s, "settings", "limits", daily_spend_cap_usd=20)
    status = text(await ask(s, "admin", "status"))
    assert "Today (UTC): 1 job · 100 credits ($1.00) of the daily cap of $20.00" in status
    assert "This month (UTC): 1 job · 100 credits ($1.00)" in status
    assert "0 queued · 0 running" in status
