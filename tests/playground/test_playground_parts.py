"""The playground's parts on their own: the emulator's change hook, the server's ids kept
across runs, --fresh's refusal to delete what is not the playground's, the command line,
commands flattened into forms and form values turned into emulator options."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from discord_emulator.emulator import DiscordEmulator, Perm
from playground.__main__ import parse_args
from playground.app import wipe
from playground.commands import FormError, Upload, leaves, option_values
from playground.world import build_world


async def test_the_emulator_reports_changes_to_listeners() -> None:
    async with DiscordEmulator() as emu:
        seen: list[str] = []
        remove = emu.on_change(seen.append)
        guild = emu.add_guild("g")
        guild.add_text_channel("c")
        assert seen == ["GUILD_CREATE", "CHANNEL_CREATE"]  # dispatched, bot or no bot
        async with aiohttp.ClientSession() as http:
            async with http.put(f"{emu.api_base}/applications/{emu.application_id}/commands",
                                json=[], headers={"Authorization": f"Bot {emu.bot_token}"}):
                pass
            async with http.get(f"{emu.api_base}/users/@me",
                                headers={"Authorization": f"Bot {emu.bot_token}"}):
                pass
        assert seen[2:] == [f"PUT /api/v10/applications/{emu.application_id}/commands"]
        remove()
        guild.add_text_channel("d")
        assert len(seen) == 3

        def broken(what: str) -> None:
            raise RuntimeError("a view's bug")

        emu.on_change(broken)
        guild.add_text_channel("e")  # the change itself still happens
        assert [str(e) for e in emu.internal_errors] == ["a view's bug"]
        emu.internal_errors.clear()


async def test_the_servers_ids_are_kept_across_runs(tmp_path: Path) -> None:
    async with DiscordEmulator() as first:
        one = build_world(first, tmp_path)
    async with DiscordEmulator() as second:
        two = build_world(second, tmp_path)
    assert one.guild.id == two.guild.id
    assert {n: c.id for n, c in one.channels.items()} == {n: c.id for n, c in two.channels.items()}
    assert {n: m.id for n, m in one.members.items()} == {n: m.id for n, m in two.members.items()}
    assert two.moderator.permissions & Perm.MANAGE_GUILD
    assert not two.members["alice"].permissions & Perm.MANAGE_GUILD
    assert two.channels["after-dark"].nsfw
    bot = two.guild.bot_member
    assert not two.channels["no-threads"].permissions_for(bot) & Perm.CREATE_PUBLIC_THREADS
    assert two.channels["clips"].permissions_for(bot) & Perm.CREATE_PUBLIC_THREADS


def test_fresh_deletes_only_a_playgrounds_own_directory(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "work").mkdir(parents=True)
    for name in ("world.json", "bot.log", "playground.sqlite3", "playground.sqlite3-wal"):
        (mine / name).write_text("x")
    wipe(mine)
    assert not mine.exists()
    wipe(mine)  # nothing there: fine
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit, match=r"thesis\.tex"):
        wipe(theirs)
    assert (theirs / "thesis.tex").exists()


def test_the_command_line() -> None:
    config = parse_args([])
    assert (config.port, config.bot.speedup, config.bot.failure_rate, config.fresh) == (
        8765, 10.0, 0.0, False)
    assert config.data_dir == Path("data/playground")
    config = parse_args(["--port", "0", "--speedup", "50", "--failure-rate", "0.25",
                         "--data", "/tmp/x", "--fresh"])
    assert (config.port, config.bot.speedup, config.bot.failure_rate, config.fresh) == (
        0, 50.0, 0.25, True)
    for bad in (["--speedup", "0.5"], ["--failure-rate", "2"], ["--port", "70000"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


SYNCED = [
    {"name": "solo", "description": "no subcommands", "type": 1, "options": [
        {"type": 3, "name": "text", "description": "t", "required": True}]},
    {"name": "top", "description": "d", "type": 1, "default_member_permissions": "32",
     "options": [
         {"type": 1, "name": "plain", "description": "p", "options": []},
         {"type": 2, "name": "group", "description": "g", "options": [
             {"type": 1, "name": "leaf", "description": "l", "options": [
                 {"type": 4, "name": "n", "description": "n", "min_value": 1},
                 {"type": 10, "name": "x", "description": "x"},
                 {"type": 5, "name": "flag", "description": "f"},
                 {"type": 6, "name": "who", "description": "w"},
                 {"type": 7, "name": "where", "description": "c"},
                 {"type": 8, "name": "role", "description": "r"},
                 {"type": 9, "name": "any", "description": "m"},
                 {"type": 11, "name": "file", "description": "a"}]}]}]},
]


def test_commands_become_one_form_per_subcommand() -> None:
    found = {leaf.key: leaf for leaf in leaves(SYNCED)}
    assert list(found) == ["solo", "top plain", "top group leaf"]
    leaf = found["top group leaf"]
    assert (leaf.command, leaf.group, leaf.subcommand, leaf.permissions) == (
        "top", "group", "leaf", 32)
    view = leaf.view()
    assert view["permissions"] == "32"
    assert [o["type_name"] for o in view["options"]] == [
        "integer", "number", "boolean", "user", "channel", "role", "mentionable", "attachment"]
    assert view["options"][0]["min_value"] == 1


async def test_form_values_become_the_emulators_options(tmp_path: Path) -> None:
    async with DiscordEmulator() as emu:
        world = build_world(emu, tmp_path)
        guild = world.guild
        leaf = {lf.key: lf for lf in leaves(SYNCED)}["top group leaf"]
        alice, clips = world.members["alice"], world.channels["clips"]
        options = option_values(emu, guild, leaf, {
            "n": "3", "x": "2.5", "flag": "false", "who": str(alice.id), "where": str(clips.id),
            "role": str(world.moderator_role.id), "any": str(alice.id)},
            {"file": Upload("a.mp4", b"data", "video/mp4")})
        assert options["n"] == 3 and options["x"] == 2.5 and options["flag"] is False
        assert options["who"] is alice and options["where"] is clips
        assert options["role"] is world.moderator_role and options["any"] is alice
        served = emu.served_attachment(int(options["file"]["id"]))
        assert served is not None and served.data == b"data"
        assert option_values(emu, guild, leaf, {"n": ""}, {}) == {}  # empty: left out
        for bad, message in (({"n": "1.5"}, "whole number"), ({"x": "inf"}, "finite"),
                             ({"flag": "yes"}, "true or false"), ({"who": "me"}, "chosen"),
                             ({"role": "1"}, "no such role"), ({"where": "1"}, "no such"),
                             ({"nope": "1"}, "no option")):
            with pytest.raises(FormError, match=message):
                option_values(emu, guild, leaf, bad, {})
