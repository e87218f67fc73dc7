"""The real bot's command tree passes the emulator's (that is, Discord's) sync limits.

A bulk overwrite with one invalid option is refused whole, so a bad bound anywhere would
leave the bot with no commands at all. The bot syncs in Ref2VideoBot._sync_commands (from
setup_hook, during login), globally or to DISCORD_GUILD_ID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import DiscordEmulator
from discord_emulator.interactions import validate_commands
from tests.bot_world import BotWorld
from tests.fakes.wavespeed import FakeWaveSpeed

COMMANDS = {"admin", "credits", "jobs", "ref2video", "settings"}


def _options(command: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for option in command.get("options", []):
        found.append(option)
        found += _options(option)
    return found


@pytest.mark.parametrize("guild_scoped", [False, True], ids=["global", "guild"])
async def test_the_bots_command_tree_is_accepted(tmp_path: Path, guild_scoped: bool) -> None:
    async with DiscordEmulator() as emu, FakeWaveSpeed() as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        alice = guild.add_member(None, "alice")
        overrides = {"discord_guild_id": guild.id} if guild_scoped else {}
        world = BotWorld(tmp_path, emu, wavespeed, **overrides)
        try:
            await world.start()  # a refused sync raises discord.HTTPException from login()
            puts = [r for r in emu.requests if r.method == "PUT" and r.path.endswith("/commands")]
            assert [(r.status, r.code) for r in puts] == [(200, None)]
            scope = guild.id if guild_scoped else None
            assert {c["name"] for c in emu.commands[scope]} == COMMANDS
            validate_commands(puts[0].json, guild=guild_scoped)  # again, to be explicit
            jobs = emu.command("jobs", scope)
            assert jobs is not None
            job = next(o for o in _options(jobs) if o["name"] == "job")
            assert (job["min_value"], job["max_value"], job["autocomplete"]) == (
                1, 2**53 - 1, True)
            # The bot's autocomplete answer for /jobs cancel is within the limits too.
            typing = await emu.autocomplete("jobs", subcommand="cancel", focused="job",
                                            options={"job": ""}, user=alice, channel=channel)
            await typing.wait_acked()
            assert typing.callback_type == 8 and typing.choices == []
        finally:
            await world.stop()
        assert emu.internal_errors == []
