"""The playground's parts on their own: the emulator's change hook, the server's ids kept
across runs, --fresh's refusal to delete what is not the playground's, the command line,
commands flattened into forms and form values turned into emulator options."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from discord_emulator.emulator import DiscordEmulator, Perm
from playground.__main__ import parse_args
from playground.app import StartRefused, wipe
from playground.commands import FormError, Upload, is_snowflake, leaves, option_values
from playground.uploads import Uploads
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
    # Ids are time-based (milliseconds): a second emulator started in the millisecond the
    # first one's last ids were made in would make those same ids again, for its own bot
    # and owner. Runs of the playground are seconds apart.
    await asyncio.sleep(0.005)
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


def test_fresh_deletes_only_a_playgrounds_own_files(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "work").mkdir(parents=True)
    for name in ("world.json", "bot.log", "playground.sqlite3", "playground.sqlite3-wal",
                 ".playground.lock", "work/job-1.mp4", "work/job-2-late.mp4.part"):
        (mine / name).write_text("x")
    wipe(mine)
    # Only the known entries went, one by one; the directory and its lock file stay.
    assert [p.name for p in mine.iterdir()] == [".playground.lock"]
    wipe(mine)  # nothing left of the playground's: fine
    wipe(tmp_path / "absent")  # nothing there: fine
    assert not (tmp_path / "absent").exists()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_fresh_refuses_a_directory_that_is_not_a_playgrounds(tmp_path: Path) -> None:
    def refused(build: dict[str, str | None], match: str) -> None:
        """`build`: path -> text (a file), or None (a directory); nothing may change."""
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        for name, text in build.items():
            path = root / name
            if text is None:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        before = _tree(root)
        with pytest.raises(StartRefused, match=match):
            wipe(root)
        assert _tree(root) == before

    # A stranger's file beside the playground's.
    refused({"world.json": "{}", "thesis.tex": "years of work"}, r"thesis\.tex")
    # Names the playground uses, but no marker: someone else's folder.
    refused({"bot.log": "mine", "work/notes.txt": "mine"}, "no world.json")
    # The marker, but a folder of the user's named like one of the playground's files...
    refused({"world.json": "{}", "bot.log/chapter1.txt": "mine"}, "bot.log")
    # ...or their own files in a folder named work.
    refused({"world.json": "{}", "work/thesis.tex": "mine", "work/job-1.mp4": "x"},
            r"work/thesis\.tex")
    refused({"world.json": "{}", "work/job-x.mp4": "x"}, r"work/job-x\.mp4")
    refused({"world.json": None}, "no world.json")  # a directory is no marker

    # Symbolic links are never followed: their targets are not the playground's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "job-1.mp4").write_text("someone's clip")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "world.json").write_text("{}")
    (linked / "work").symlink_to(elsewhere)
    with pytest.raises(StartRefused, match="work"):
        wipe(linked)
    assert (elsewhere / "job-1.mp4").exists() and (linked / "world.json").exists()
    (linked / "work").unlink()
    (linked / "bot.log").symlink_to(elsewhere / "job-1.mp4")
    with pytest.raises(StartRefused, match=r"bot\.log"):
        wipe(linked)
    assert (elsewhere / "job-1.mp4").read_text() == "someone's clip"


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
        for bad, message in (({"n": "1.5"}, "whole number"), ({"x": "1e999"}, "finite"),
                             ({"flag": "yes"}, "true or false"), ({"who": "me"}, "chosen"),
                             ({"role": "1"}, "no such role"), ({"where": "1"}, "no such"),
                             ({"nope": "1"}, "no option")):
            with pytest.raises(FormError, match=message):
                option_values(emu, guild, leaf, bad, {})


ODD_IDS = ("¹", "²³", "１２", "٣", "1" * 5000, "1" * 21, "-1", " 1", "1_0", "", "0x1")


async def test_odd_ids_and_numbers_are_refused_as_form_errors(tmp_path: Path) -> None:
    # str.isdigit() holds for "¹", which int() refuses, and for "１２" and "٣", which int()
    # takes; int() refuses more than 4300 digits, and takes " 5" and "1_000".
    assert is_snowflake("1") and is_snowflake("1" * 20)
    assert not any(is_snowflake(odd) for odd in ODD_IDS)
    async with DiscordEmulator() as emu:
        world = build_world(emu, tmp_path)
        guild = world.guild
        leaf = {lf.key: lf for lf in leaves(SYNCED)}["top group leaf"]
        for odd in ODD_IDS:
            if odd:  # empty: left out
                for option in ("who", "where", "role", "any"):
                    with pytest.raises(FormError):
                        option_values(emu, guild, leaf, {option: odd}, {})
            with pytest.raises(KeyError):
                world.member(odd)
        for odd in (" 5", "5 ", "1_000", "+5", "٣", "１２", "1" * 5000, "5.0", "1e3", "- 5"):
            with pytest.raises(FormError, match=r"^n "):
                option_values(emu, guild, leaf, {"n": odd}, {})
        for odd in ("1_0.5", " 2.5", "2.5 ", "nan", "inf", "-Infinity", "٣.٥", "0x10", "1e",
                    ".", "1" * 5000, "--1", "1,5"):
            with pytest.raises(FormError, match=r"^x "):
                option_values(emu, guild, leaf, {"x": odd}, {})
        assert option_values(emu, guild, leaf, {"n": "-3", "x": ".5"}, {}) == {"n": -3, "x": 0.5}
        for fine, value in (("2.5", 2.5), ("-0.25", -0.25), ("1e3", 1000.0), ("7", 7.0),
                            ("3.", 3.0)):
            assert option_values(emu, guild, leaf, {"x": fine}, {}) == {"x": value}


async def test_a_form_refused_stores_none_of_its_files(tmp_path: Path) -> None:
    async with DiscordEmulator() as emu:
        world = build_world(emu, tmp_path)
        leaf = {lf.key: lf for lf in leaves(SYNCED)}["top group leaf"]
        stored: list[Upload] = []

        def store(upload: Upload) -> dict[str, Any]:
            stored.append(upload)
            return emu.add_attachment(upload.filename, upload.data, upload.content_type)

        files = {"file": Upload("a.mp4", b"data", "video/mp4")}
        for bad in ({"n": "ten"}, {"flag": "yes"}, {"who": "123"}, {"where": "1"}):
            with pytest.raises(FormError):
                option_values(emu, world.guild, leaf, bad, files, store=store)
        assert stored == []
        options = option_values(emu, world.guild, leaf, {"n": "2"}, files, store=store)
        assert list(options) == ["n", "file"] and stored == [files["file"]]


async def test_uploads_beyond_the_budget_forget_the_oldest() -> None:
    async with DiscordEmulator() as emu:
        uploads = Uploads(emu, budget=1000)
        payloads = [uploads.store(Upload(f"{n}.mp4", bytes(400), "video/mp4"))
                    for n in range(3)]
        ids = [int(p["id"]) for p in payloads]
        assert uploads.kept == ids[1:] and uploads.total == 800
        assert emu.served_attachment(ids[0]) is None
        assert all(emu.served_attachment(i) is not None for i in ids[1:])
        async with aiohttp.ClientSession() as http:  # the bot's download of it fails
            async with http.get(payloads[0]["url"]) as resp:
                assert resp.status == 404
            async with http.get(payloads[1]["url"]) as resp:
                assert resp.status == 200
        big = int(uploads.store(Upload("big.mp4", bytes(5000), "video/mp4"))["id"])
        assert uploads.kept == [big]  # the newest is kept, even alone beyond the budget
        uploads.forget([big])
        assert uploads.kept == [] and uploads.total == 0 and emu.served_attachment(big) is None
        assert emu.forget_attachment(big) is False  # already gone
