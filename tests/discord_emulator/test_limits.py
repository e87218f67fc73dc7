"""The Discord emulator refuses what real Discord refuses: command syncs, messages (create,
edit, interaction callbacks, follow-ups), modals and autocomplete results outside Discord's
documented limits get 400 code 50035 with an `errors` tree pointing at the bad field.

Most cases go over raw HTTP (exact status, code and error path); the ones the bot meets in
practice also through discord.py. Also here: enforce_nonce deduplication and
`fail_after_commit`, the lost-reply fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from discord_emulator.emulator import Channel, DiscordEmulator, Guild, InteractionRecord, Member

INT53 = 2**53 - 1


@dataclass
class Api:
    """Raw HTTP against the emulator, as the bot (bot token on REST)."""

    emu: DiscordEmulator
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bot {self.emu.bot_token}"}
        async with self.session.request(method, self.emu.api_base + path, json=body,
                                        headers=headers) as response:
            if response.status == 204:
                return 204, None
            assert response.headers["Content-Type"] == "application/json"
            return response.status, await response.json()

    async def sync(self, commands: Any, guild: int | None = None) -> tuple[int, Any]:
        scope = f"/guilds/{guild}" if guild is not None else ""
        return await self.call("PUT", f"/applications/{self.emu.application_id}{scope}/commands",
                               commands)

    async def callback(self, rec: InteractionRecord, body: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/interactions/{rec.id}/{rec.token}/callback"
                               "?with_response=1", body)


def error_path(answer: dict[str, Any]) -> list[str]:
    """The path to the first leaf of a 50035 `errors` tree."""
    path: list[str] = []
    node = answer["errors"]
    while "_errors" not in node:
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return path


def refused(status: int, answer: Any, *path: str | int) -> None:
    assert (status, answer.get("code")) == (400, 50035), answer
    assert error_path(answer) == [str(p) for p in path], answer


# ---- fixtures ------------------------------------------------------------------------------


class LimitsClient(discord.Client):
    """A plain discord.py client with a command that never answers on its own (the tests
    answer over raw HTTP) and one whose autocompletes offer `self.offer` (None: fail, so
    that discord.py answers nothing)."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.offer: list[app_commands.Choice[Any]] | None = []

        @self.tree.command(name="noop", description="Never answers")
        async def noop(interaction: discord.Interaction) -> None:
            return

        @self.tree.command(name="pick", description="Pick a job")
        async def pick(interaction: discord.Interaction, job: int, word: str = "") -> None:
            return

        @pick.autocomplete("job")
        async def jobs(interaction: discord.Interaction, current: str) -> list[Any]:
            return self.offered()

        @pick.autocomplete("word")
        async def words(interaction: discord.Interaction, current: str) -> list[Any]:
            return self.offered()

    def offered(self) -> list[app_commands.Choice[Any]]:
        if self.offer is None:
            raise RuntimeError("no answer this time")
        return self.offer


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        yield emulator
        assert emulator.internal_errors == []


@pytest.fixture
def guild(emu: DiscordEmulator) -> Guild:
    return emu.add_guild("Limits")


@pytest.fixture
def channel(guild: Guild) -> Channel:
    return guild.add_text_channel("general")


@pytest.fixture
def alice(guild: Guild) -> Member:
    return guild.add_member(None, "alice")


@pytest.fixture
async def api(emu: DiscordEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(emu, session)


@pytest.fixture
async def pointed(emu: DiscordEmulator) -> AsyncIterator[None]:
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = emu.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@pytest.fixture
async def client(emu: DiscordEmulator, channel: Channel, alice: Member, pointed: None
                 ) -> AsyncIterator[LimitsClient]:
    bot = LimitsClient()
    await bot.login(emu.bot_token)
    task = asyncio.create_task(bot.connect(reconnect=False))
    await asyncio.wait_for(bot.wait_until_ready(), 5)
    await bot.tree.sync()
    yield bot
    await bot.close()
    await asyncio.wait_for(task, 5)


def text_channel(client: discord.Client, channel: Channel) -> discord.PartialMessageable:
    return client.get_partial_messageable(channel.id, guild_id=channel.guild.id)


# ---- command sync --------------------------------------------------------------------------


def command(*options: dict[str, Any], name: str = "cmd", **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": "A command", "type": 1, "options": list(options),
            **fields}


def option(kind: int = 3, name: str = "opt", **fields: Any) -> dict[str, Any]:
    return {"type": kind, "name": name, "description": "An option", **fields}


def choices(n: int) -> list[dict[str, str]]:
    return [{"name": f"c{i}", "value": str(i)} for i in range(n)]


async def test_integer_max_value_2_53_is_refused_through_discord_py(
    emu: DiscordEmulator, pointed: None
) -> None:
    """The bug /jobs cancel had: Range[int, 1, 2**53] makes Discord refuse the whole sync."""

    async def sync(*, fixed: bool) -> None:
        client = discord.Client(intents=discord.Intents.none())
        tree = app_commands.CommandTree(client)
        if fixed:
            @tree.command(name="cancel", description="Cancel a job")
            async def cancel(interaction: discord.Interaction,
                             job: app_commands.Range[int, 1, 2**53 - 1]) -> None:
                return
        else:
            @tree.command(name="cancel", description="Cancel a job")
            async def cancel_bad(interaction: discord.Interaction,
                                 job: app_commands.Range[int, 1, 2**53]) -> None:
                return

        @tree.command(name="other", description="Innocent bystander")
        async def other(interaction: discord.Interaction) -> None:
            return

        await client.login(emu.bot_token)
        try:
            await tree.sync()
        finally:
            await client.close()

    with pytest.raises(discord.HTTPException) as too_big:
        await sync(fixed=False)
    assert (too_big.value.status, too_big.value.code) == (400, 50035)
    assert "max_value" in str(too_big.value)
    assert emu.commands[None] == []  # refused whole: not even /other exists
    await sync(fixed=True)
    cancel = emu.command("cancel")
    assert cancel is not None and cancel["options"][0]["max_value"] == 2**53 - 1
    assert emu.command("other") is not None


BAD_COMMANDS: list[tuple[str, Any, tuple[str | int, ...]]] = [
    ("int max 2^53", [command(option(4, max_value=2**53))], (0, "options", 0, "max_value")),
    ("int min -2^53", [command(option(4, min_value=-(2**53)))], (0, "options", 0, "min_value")),
    ("int bound a float", [command(option(4, max_value=1.5))], (0, "options", 0, "max_value")),
    ("number over 2^53", [command(option(10, max_value=2**53 + 2))],
     (0, "options", 0, "max_value")),
    ("min over max", [command(option(4, min_value=5, max_value=4))],
     (0, "options", 0, "min_value")),
    ("number min over max", [command(option(10, min_value=0.5, max_value=0.25))],
     (0, "options", 0, "min_value")),
    ("min_length -1", [command(option(3, min_length=-1))], (0, "options", 0, "min_length")),
    ("min_length 6001", [command(option(3, min_length=6001))], (0, "options", 0, "min_length")),
    ("max_length 0", [command(option(3, max_length=0))], (0, "options", 0, "max_length")),
    ("max_length 6001", [command(option(3, max_length=6001))], (0, "options", 0, "max_length")),
    ("26 choices", [command(option(3, choices=choices(26)))], (0, "options", 0, "choices")),
    ("empty choice name", [command(option(3, choices=[{"name": "", "value": "v"}]))],
     (0, "options", 0, "choices", 0, "name")),
    ("choice name 101", [command(option(3, choices=[{"name": "n" * 101, "value": "v"}]))],
     (0, "options", 0, "choices", 0, "name")),
    ("string choice value 101", [command(option(3, choices=[{"name": "n", "value": "v" * 101}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("int choice for a string", [command(option(3, choices=[{"name": "n", "value": 1}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("string choice for an int", [command(option(4, choices=[{"name": "n", "value": "1"}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("float choice for an int", [command(option(4, choices=[{"name": "n", "value": 1.5}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("bool choice for a number", [command(option(10, choices=[{"name": "n", "value": True}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("int choice 2^53", [command(option(4, choices=[{"name": "n", "value": 2**53}]))],
     (0, "options", 0, "choices", 0, "value")),
    ("localized choice name 101", [command(option(3, choices=[
        {"name": "n", "value": "v", "name_localizations": {"de": "n" * 101}}]))],
     (0, "options", 0, "choices", 0, "name_localizations", "de")),
    ("autocomplete with choices", [command(option(3, autocomplete=True, choices=choices(1)))],
     (0, "options", 0, "autocomplete")),
    ("name 33", [command(name="n" * 33)], (0, "name")),
    ("empty name", [command(name="")], (0, "name")),
    ("uppercase name", [command(name="Cmd")], (0, "name")),
    ("name with a space", [command(name="my cmd")], (0, "name")),
    ("name with a dot", [command(name="my.cmd")], (0, "name")),
    ("option name uppercase", [command(option(name="Opt"))], (0, "options", 0, "name")),
    ("empty description", [command(description="")], (0, "description")),
    ("no description", [{"name": "cmd", "type": 1}], (0, "description")),
    ("description 101", [command(description="d" * 101)], (0, "description")),
    ("option description 101", [command(option(description="d" * 101))],
     (0, "options", 0, "description")),
    ("user command name 33", [{"name": "N" * 33, "type": 2}], (0, "name")),
    ("user command description 101", [{"name": "Look", "type": 2, "description": "d" * 101}],
     (0, "description")),
    ("26 options", [command(*[option(name=f"o{i}") for i in range(26)])], (0, "options")),
    ("26 subcommands", [command(*[option(1, name=f"s{i}") for i in range(26)])],
     (0, "options")),
    ("group holding a string", [command(option(2, name="g", options=[option(3)]))],
     (0, "options", 0, "options", 0, "type")),
    ("subcommand holding a subcommand", [command(option(1, name="s", options=[option(1)]))],
     (0, "options", 0, "options", 0, "type")),
    ("subcommand mixed with a value", [command(option(1, name="s"), option(3))],
     (0, "options")),
    ("option type 12", [command(option(12))], (0, "options", 0, "type")),
    ("command type 5", [command(type=5)], (0, "type")),
    ("duplicate command", [command(), command()], (1, "name")),
    ("duplicate option", [command(option(), option())], (0, "options", 1, "name")),
    ("required after optional", [command(option(name="a"), option(name="b", required=True))],
     (0, "options", 1, "required")),
    ("unknown locale", [command(name_localizations={"xx": "cmd"})],
     (0, "name_localizations", "xx")),
    ("localized name uppercase", [command(name_localizations={"de": "Befehl"})],
     (0, "name_localizations", "de")),
    ("localized name 33", [command(name_localizations={"fr": "n" * 33})],
     (0, "name_localizations", "fr")),
    ("localized description 101", [command(description_localizations={"ja": "d" * 101})],
     (0, "description_localizations", "ja")),
    ("empty localized description", [command(description_localizations={"ja": ""})],
     (0, "description_localizations", "ja")),
    ("option localized description 101",
     [command(option(description_localizations={"es-ES": "d" * 101}))],
     (0, "options", 0, "description_localizations", "es-ES")),
    ("permissions not digits", [command(default_member_permissions="0x20")],
     (0, "default_member_permissions")),
    ("permissions over 2^54-1", [command(default_member_permissions=str(2**54))],
     (0, "default_member_permissions")),
    ("negative permissions", [command(default_member_permissions=-1)],
     (0, "default_member_permissions")),
    ("empty contexts", [command(contexts=[])], (0, "contexts")),
    ("context 3", [command(contexts=[0, 3])], (0, "contexts", 1)),
    ("repeated context", [command(contexts=[0, 0])], (0, "contexts")),
    ("integration type 2", [command(integration_types=[2])], (0, "integration_types", 0)),
    ("channel type 99", [command(option(7, channel_types=[0, 99]))],
     (0, "options", 0, "channel_types", 1)),
    ("nsfw not a bool", [command(nsfw="yes")], (0, "nsfw")),
    ("131 commands", [command(name=f"c{i}") for i in range(131)], ()),
    ("not a list", {"name": "cmd"}, ()),
]


@pytest.mark.parametrize(("body", "path"), [(b, p) for _, b, p in BAD_COMMANDS],
                         ids=[i for i, _, _ in BAD_COMMANDS])
async def test_sync_outside_the_limits_is_refused(api: Api, body: Any,
                                                  path: tuple[str | int, ...]) -> None:
    status, answer = await api.sync(body)
    refused(status, answer, *path)
    assert api.emu.commands[None] == []


def _at_size(size: int) -> dict[str, Any]:
    """A command whose names, descriptions and choice names and values add up to `size`
    (7911 + 3 + the last option's description, which gets the rest)."""
    full = [{"name": "n" * 100, "value": "v" * 100}] * 10  # 2000 characters
    opts = [option(3, name=f"o{i}", description="d" * 100, choices=full) for i in range(3)]
    opts.append(option(3, name="o3", description="d" * 100, choices=full[:7]))
    used = (3 + 100) + 3 * (2 + 100 + 2000) + (2 + 100 + 1400)
    opts.append(option(3, name="pad", description="d" * (size - used - 3)))
    return command(*opts, name="big", description="d" * 100)


async def test_combined_command_size_is_capped_at_8000(api: Api) -> None:
    status, answer = await api.sync([_at_size(8001)])
    refused(status, answer, 0)
    assert "8000" in answer["errors"]["0"]["_errors"][0]["message"]
    assert (await api.sync([_at_size(8000)]))[0] == 200
    # Only the longest of a field and its localizations counts: two more characters in
    # one localization make 8002...
    longer = _at_size(8000)
    pad = longer["options"][-1]
    pad["description_localizations"] = {"de": "d" * (len(pad["description"]) + 2), "fr": "d"}
    status, answer = await api.sync([longer])
    refused(status, answer, 0)
    # ...while localizations no longer than the default add nothing.
    pad["description_localizations"] = {"de": pad["description"], "fr": "d"}
    assert (await api.sync([longer]))[0] == 200


async def test_command_counts_per_type(api: Api) -> None:
    chat = [command(name=f"c{i}") for i in range(100)]
    users = [{"name": f"User {i}", "type": 2} for i in range(15)]
    messages = [{"name": f"Message {i}", "type": 3} for i in range(15)]
    status, answer = await api.sync(chat + users + messages)
    assert status == 200, answer
    assert len(api.emu.commands[None]) == 130
    for too_many in ([*chat, command(name="c100")], [*users, {"name": "User 15", "type": 2}],
                     [*messages, {"name": "Message 15", "type": 3}]):
        status, answer = await api.sync(too_many)
        assert (status, answer["code"]) == (400, 30032), answer
    assert len(api.emu.commands[None]) == 130  # the last accepted overwrite stands


async def test_primary_entry_point_is_global_only(api: Api, guild: Guild) -> None:
    entry = {"name": "launch", "type": 4, "description": "", "handler": 2}
    status, answer = await api.sync([entry], guild=guild.id)
    refused(status, answer, 0, "type")
    assert (await api.sync([entry]))[0] == 200
    status, answer = await api.sync([entry, {**entry, "name": "launch2"}])
    assert (status, answer["code"]) == (400, 30032)


GOOD_COMMANDS: list[tuple[str, Any]] = [
    ("int bounds 2^53-1", [command(option(4, min_value=-INT53, max_value=INT53))]),
    ("number bounds 2^53", [command(option(10, min_value=-(2**53), max_value=2**53))]),
    ("number fractional bounds", [command(option(10, min_value=0.25, max_value=0.5))]),
    ("min equals max", [command(option(4, min_value=3, max_value=3))]),
    ("length bounds", [command(option(3, min_length=0, max_length=6000)),
                       command(option(3, min_length=6000, max_length=6000), name="c2")]),
    ("25 choices of 100", [command(option(3, choices=[
        {"name": f"{i:02}" + "n" * 98, "value": f"{i:02}" + "v" * 98} for i in range(25)]))]),
    ("int choices at the bounds", [command(option(4, choices=[
        {"name": "low", "value": -INT53}, {"name": "high", "value": INT53}]))]),
    ("number choices", [command(option(10, choices=[{"name": "half", "value": 0.5},
                                                     {"name": "one", "value": 1}]))]),
    ("autocomplete with min and max", [command(option(4, autocomplete=True, min_value=1,
                                                      max_value=INT53))]),
    ("name 32 and description 100", [command(name="n" * 32, description="d" * 100)]),
    ("unicode names", [command(name="ünïcödé-名前_'", description="ok"),
                       command(name="हिन्दी", description="ok"),
                       command(name="ภาษาไทย", description="ok")]),
    ("25 options", [command(*[option(name=f"o{i}") for i in range(25)])]),
    ("group of subcommands", [command(option(2, name="g", options=[
        option(1, name=f"s{i}", options=[option(3, name="v", required=True)])
        for i in range(25)]))]),
    ("localized", [command(option(name_localizations={"de": "wahl", "pt-BR": "opção"},
                                  description_localizations={"de": "d" * 100}),
                           name_localizations={"en-GB": "cmd", "zh-CN": "命令"},
                           description_localizations={"fr": "d" * 100})]),
    ("permissions as a string", [command(default_member_permissions=str(2**54 - 1))]),
    ("permissions as an integer", [command(default_member_permissions=32)]),
    ("no permissions", [command(default_member_permissions=None)]),
    ("contexts", [command(contexts=[0, 1, 2], integration_types=[0, 1])]),
    ("user and message commands", [{"name": "Look At This", "type": 2},
                                   {"name": "Quote It!", "type": 3, "description": ""}]),
    ("null type is chat input", [command(type=None)]),
    ("empty overwrite", []),
]


@pytest.mark.parametrize("body", [b for _, b in GOOD_COMMANDS],
                         ids=[i for i, _ in GOOD_COMMANDS])
async def test_sync_within_the_limits_is_accepted(api: Api, body: Any) -> None:
    status, answer = await api.sync(body)
    assert status == 200, answer
    assert [c["name"] for c in answer] == [c["name"] for c in body]


# ---- messages: embeds, components, nonce, allowed_mentions ---------------------------------


def embed(**fields: Any) -> dict[str, Any]:
    return {"type": "rich", **fields}


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def button(custom_id: str | None = "b", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": 2, "style": 1, "label": "Go", **fields}
    if custom_id is not None:
        data["custom_id"] = custom_id
    return data


def select(custom_id: str = "s", n: int = 2, **fields: Any) -> dict[str, Any]:
    return {"type": 3, "custom_id": custom_id,
            "options": [{"label": f"L{i}", "value": f"v{i}"} for i in range(n)], **fields}


def field(name: str = "n", value: str = "v") -> dict[str, str]:
    return {"name": name, "value": value}


BAD_MESSAGES: list[tuple[str, dict[str, Any], tuple[str | int, ...]]] = [
    ("content 2001", {"content": "x" * 2001}, ("content",)),
    ("11 embeds", {"embeds": [embed(title="t")] * 11}, ("embeds",)),
    ("title 257", {"embeds": [embed(title="t" * 257)]}, ("embeds", 0, "title")),
    ("description 4097", {"embeds": [embed(description="d" * 4097)]},
     ("embeds", 0, "description")),
    ("26 fields", {"embeds": [embed(fields=[field()] * 26)]}, ("embeds", 0, "fields")),
    ("field name 257", {"embeds": [embed(fields=[field(name="n" * 257)])]},
     ("embeds", 0, "fields", 0, "name")),
    ("field value 1025", {"embeds": [embed(fields=[field(), field(value="v" * 1025)])]},
     ("embeds", 0, "fields", 1, "value")),
    ("empty field name", {"embeds": [embed(fields=[field(name="")])]},
     ("embeds", 0, "fields", 0, "name")),
    ("blank field value", {"embeds": [embed(fields=[field(value=" \n ")])]},
     ("embeds", 0, "fields", 0, "value")),
    ("field without a value", {"embeds": [embed(fields=[{"name": "n"}])]},
     ("embeds", 0, "fields", 0, "value")),
    ("footer 2049", {"embeds": [embed(footer={"text": "f" * 2049})]},
     ("embeds", 0, "footer", "text")),
    ("author 257", {"embeds": [embed(author={"name": "a" * 257})]},
     ("embeds", 0, "author", "name")),
    ("total 6001 in one embed", {"embeds": [embed(description="d" * 4096, title="t" * 256,
                                                  footer={"text": "f" * 1649})]}, ("embeds",)),
    ("total 6001 over embeds", {"embeds": [embed(description="d" * 3000),
                                           embed(description="d" * 3000, title="t")]},
     ("embeds",)),
    ("color 2^24", {"embeds": [embed(title="t", color=2**24)]}, ("embeds", 0, "color")),
    ("url 2049", {"embeds": [embed(title="t", url="https://x/" + "u" * 2039)]},
     ("embeds", 0, "url")),
    ("6 rows", {"content": "x", "components": [row(button(f"b{i}")) for i in range(6)]},
     ("components",)),
    ("6 buttons", {"content": "x", "components": [row(*[button(f"b{i}") for i in range(6)])]},
     ("components", 0, "components")),
    ("button and select", {"content": "x", "components": [row(button(), select())]},
     ("components", 0, "components")),
    ("two selects", {"content": "x", "components": [row(select("s1"), select("s2"))]},
     ("components", 0, "components")),
    ("empty row", {"content": "x", "components": [row()]}, ("components", 0, "components")),
    ("button at the top", {"content": "x", "components": [button()]},
     ("components", 0, "type")),
    ("text input in a message", {"content": "x", "components": [row(
        {"type": 4, "custom_id": "t", "style": 1, "label": "L"})]},
     ("components", 0, "components", 0, "type")),
    ("label 81", {"content": "x", "components": [row(button(label="l" * 81))]},
     ("components", 0, "components", 0, "label")),
    ("custom_id 101", {"content": "x", "components": [row(button("c" * 101))]},
     ("components", 0, "components", 0, "custom_id")),
    ("empty custom_id", {"content": "x", "components": [row(button(""))]},
     ("components", 0, "components", 0, "custom_id")),
    ("button without custom_id", {"content": "x", "components": [row(button(None))]},
     ("components", 0, "components", 0, "custom_id")),
    ("duplicate custom_id", {"content": "x", "components": [row(button("a")),
                                                            row(button("b"), button("a"))]},
     ("components", 1, "components", 1, "custom_id")),
    ("duplicate across button and select", {"content": "x", "components": [
        row(button("same")), row(select("same"))]},
     ("components", 1, "components", 0, "custom_id")),
    ("link with custom_id", {"content": "x", "components": [row(button(
        "b", style=5, url="https://example.com"))]},
     ("components", 0, "components", 0, "custom_id")),
    ("link without url", {"content": "x", "components": [row(button(None, style=5))]},
     ("components", 0, "components", 0, "url")),
    ("non-link with url", {"content": "x", "components": [row(button(
        url="https://example.com"))]}, ("components", 0, "components", 0, "url")),
    ("link url 513", {"content": "x", "components": [row(button(
        None, style=5, url="https://x/" + "u" * 503))]},
     ("components", 0, "components", 0, "url")),
    ("button style 7", {"content": "x", "components": [row(button(style=7))]},
     ("components", 0, "components", 0, "style")),
    ("select without options", {"content": "x", "components": [row(select(n=0))]},
     ("components", 0, "components", 0, "options")),
    ("select with 26 options", {"content": "x", "components": [row(select(n=26))]},
     ("components", 0, "components", 0, "options")),
    ("option label 101", {"content": "x", "components": [row(select(options=[
        {"label": "l" * 101, "value": "v"}]))]},
     ("components", 0, "components", 0, "options", 0, "label")),
    ("option value 101", {"content": "x", "components": [row(select(options=[
        {"label": "l", "value": "v" * 101}]))]},
     ("components", 0, "components", 0, "options", 0, "value")),
    ("option description 101", {"content": "x", "components": [row(select(options=[
        {"label": "l", "value": "v", "description": "d" * 101}]))]},
     ("components", 0, "components", 0, "options", 0, "description")),
    ("max_values 26", {"content": "x", "components": [row(select(max_values=26))]},
     ("components", 0, "components", 0, "max_values")),
    ("max_values 0", {"content": "x", "components": [row(select(max_values=0))]},
     ("components", 0, "components", 0, "max_values")),
    ("min over max values", {"content": "x", "components": [row(select(min_values=2,
                                                                       max_values=1))]},
     ("components", 0, "components", 0, "min_values")),
    ("placeholder 151", {"content": "x", "components": [row(select(placeholder="p" * 151))]},
     ("components", 0, "components", 0, "placeholder")),
    ("user select custom_id 101", {"content": "x", "components": [row(
        {"type": 5, "custom_id": "u" * 101})]},
     ("components", 0, "components", 0, "custom_id")),
    ("nonce 26 characters", {"content": "x", "nonce": "n" * 26}, ("nonce",)),
    ("nonce over int64", {"content": "x", "nonce": 2**63}, ("nonce",)),
    ("nonce a float", {"content": "x", "nonce": 1.5}, ("nonce",)),
    ("parse twice", {"content": "x", "allowed_mentions": {"parse": ["users", "users"]}},
     ("allowed_mentions", "parse")),
    ("parse unknown", {"content": "x", "allowed_mentions": {"parse": ["here"]}},
     ("allowed_mentions", "parse", 0)),
    ("parse users and users", {"content": "x", "allowed_mentions": {"parse": ["users"],
                                                                    "users": ["1"]}},
     ("allowed_mentions",)),
    ("101 users", {"content": "x", "allowed_mentions": {"users": [str(i) for i in range(101)]}},
     ("allowed_mentions", "users")),
    ("user not a snowflake", {"content": "x", "allowed_mentions": {"users": ["alice"]}},
     ("allowed_mentions", "users", 0)),
    ("repeated role", {"content": "x", "allowed_mentions": {"roles": ["5", 5]}},
     ("allowed_mentions", "roles")),
    ("v2 with content", {"content": "x", "flags": 1 << 15, "components": [
        {"type": 10, "content": "hi"}]}, ("content",)),
]


@pytest.mark.parametrize(("payload", "path"), [(b, p) for _, b, p in BAD_MESSAGES],
                         ids=[i for i, _, _ in BAD_MESSAGES])
async def test_channel_message_outside_the_limits_is_refused(
    api: Api, channel: Channel, payload: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    status, answer = await api.call("POST", f"/channels/{channel.id}/messages", payload)
    refused(status, answer, *path)
    assert api.emu.channel_messages(channel.id) == []


GOOD_MESSAGES: list[tuple[str, dict[str, Any]]] = [
    ("content 2000", {"content": "x" * 2000}),
    ("embed at the bounds", {"embeds": [embed(title="t" * 256, description="d" * 4096,
                                              footer={"text": "f" * 1648})]}),
    ("total exactly 6000 over two embeds", {"embeds": [  # 256 + 1000 + 3 * 1280 + 256 + 648
        embed(title="t" * 256, description="d" * 1000,
              fields=[field("n" * 256, "v" * 1024)] * 3, author={"name": "a" * 256}),
        embed(footer={"text": "f" * 648})]}),
    ("whitespace is trimmed", {"embeds": [embed(title="  " + "t" * 256 + "\n",
                                                fields=[field(" n ", "\tv" + " " * 2000)])]}),
    ("zero-width field value", {"embeds": [embed(fields=[field("\u200b", "\u200b")])]}),
    ("10 embeds, 25 fields", {"embeds": [embed(fields=[field()] * 25)] * 10}),
    ("5 rows of 5 buttons", {"content": "x", "components": [
        row(*[button(f"{r}-{b}" + "c" * 97, label="l" * 80) for b in range(5)])
        for r in range(5)]}),
    ("link and select rows", {"content": "x", "components": [
        row(button(None, style=5, url="https://example.com/" + "u" * 492)),
        row(select("s" * 100, n=25, placeholder="p" * 150, min_values=0, max_values=25)),
        row({"type": 5, "custom_id": "users", "max_values": 25}),
        row({"type": 8, "custom_id": "channels", "channel_types": [0, 11]})]}),
    ("buttons with emoji only", {"content": "x", "components": [row(
        {"type": 2, "style": 2, "custom_id": "e", "emoji": {"name": "🎬"}})]}),
    ("nonce 25 characters", {"content": "x", "nonce": "n" * 25}),
    ("integer nonce", {"content": "x", "nonce": -(2**63)}),
    ("users as integers", {"content": "x", "allowed_mentions": {"parse": [],
                                                                "users": [1, 2],
                                                                "replied_user": False}}),
    ("components v2", {"flags": 1 << 15, "components": [
        {"type": 10, "content": "hello"},
        {"type": 17, "components": [{"type": 10, "content": "in a box"},
                                    row(button("in-box"))]}]}),
]


@pytest.mark.parametrize("payload", [b for _, b in GOOD_MESSAGES],
                         ids=[i for i, _ in GOOD_MESSAGES])
async def test_channel_message_within_the_limits_is_accepted(
    api: Api, channel: Channel, payload: dict[str, Any]
) -> None:
    status, answer = await api.call("POST", f"/channels/{channel.id}/messages", payload)
    assert status == 200, answer
    assert len(api.emu.channel_messages(channel.id)) == 1


async def test_an_edit_is_held_to_the_same_limits(api: Api, channel: Channel) -> None:
    status, sent = await api.call("POST", f"/channels/{channel.id}/messages",
                                  {"content": "hi", "embeds": [embed(title="t")]})
    assert status == 200
    path = f"/channels/{channel.id}/messages/{sent['id']}"
    for bad, where in (({"embeds": [embed(fields=[field(value="")])]},
                        ("embeds", 0, "fields", 0, "value")),
                       ({"components": [row(button("a"), button("a"))]},
                        ("components", 0, "components", 1, "custom_id"))):
        status, answer = await api.call("PATCH", path, bad)
        refused(status, answer, *where)
    msg = api.emu.message(int(sent["id"]))
    assert msg.embeds == [embed(title="t")] and msg.history == []
    status, answer = await api.call("PATCH", path, {"embeds": [embed(title="t" * 256)]})
    assert status == 200, answer


async def test_discord_py_sees_an_oversized_embed_refused(
    client: LimitsClient, channel: Channel
) -> None:
    general = text_channel(client, channel)
    bad = discord.Embed(title="status").add_field(name="Prompt", value="> " + "x" * 1023)
    with pytest.raises(discord.HTTPException) as refusal:
        await general.send(embed=bad)
    assert (refusal.value.status, refusal.value.code) == (400, 50035)
    assert "embeds.0.fields.0.value" in str(refusal.value)
    ok = discord.Embed(title="status").add_field(name="Prompt", value="> " + "x" * 1022)
    assert (await general.send(embed=ok)).embeds[0].fields[0].value == "> " + "x" * 1022


# ---- interaction callbacks, follow-ups and @original ----------------------------------------


async def test_callbacks_follow_ups_and_original_edits_are_checked(
    client: LimitsClient, api: Api, channel: Channel, alice: Member
) -> None:
    emu = api.emu
    too_long = {"embeds": [embed(description="d" * 4097)]}
    rec = await emu.invoke("noop", user=alice, channel=channel)
    status, answer = await api.callback(rec, {"type": 4, "data": too_long})
    refused(status, answer, "embeds", 0, "description")
    status, answer = await api.callback(rec, {"type": 5})
    assert status == 200 and rec.original is not None and rec.original.loading
    webhook = f"/webhooks/{emu.application_id}/{rec.token}"
    status, answer = await api.call("POST", webhook + "?wait=1", {
        "content": "x", "components": [row(*[button(f"b{i}") for i in range(6)])]})
    refused(status, answer, "components", 0, "components")
    status, answer = await api.call("POST", webhook + "?wait=1", {"content": "done"})
    assert status == 200 and rec.original.content == "done"
    status, answer = await api.call("PATCH", webhook + "/messages/@original",
                                    {"embeds": [embed(fields=[field()] * 26)]})
    refused(status, answer, "embeds", 0, "fields")
    status, answer = await api.call("POST", webhook + "?wait=1",
                                    {"content": "x", "embeds": [embed(title="t" * 257)]})
    refused(status, answer, "embeds", 0, "title")
    assert [(r.route, r.status) for r in rec.rejections] == [
        ("callback", 400), ("followup", 400), ("original", 400), ("followup", 400)]
    assert rec.original.content == "done" and rec.followups == [rec.original]


async def test_update_message_callback_is_checked(
    client: LimitsClient, api: Api, channel: Channel, alice: Member
) -> None:
    emu = api.emu
    status, sent = await api.call("POST", f"/channels/{channel.id}/messages",
                                  {"content": "panel", "components": [row(button("go"))]})
    assert status == 200
    panel = emu.message(int(sent["id"]))
    rec = await emu.click(panel, "go", user=alice)
    status, answer = await api.callback(rec, {"type": 7, "data": {
        "components": [row(button("go", label="l" * 81))]}})
    refused(status, answer, "components", 0, "components", 0, "label")
    assert panel.components == [row(button("go"))] and not rec.acked
    status, answer = await api.callback(rec, {"type": 7, "data": {"content": "pressed",
                                                                  "components": []}})
    assert status == 200 and panel.content == "pressed"


# ---- modals --------------------------------------------------------------------------------


def text_input(custom_id: str = "t", **fields: Any) -> dict[str, Any]:
    return {"type": 4, "custom_id": custom_id, "style": 1, "label": "Label", **fields}


def modal(*components: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": 9, "data": {"custom_id": "m", "title": "Title",
                                "components": list(components), **fields}}


BAD_MODALS: list[tuple[str, dict[str, Any], tuple[str | int, ...]]] = [
    ("no title", modal(row(text_input()), title=None), ("data", "title")),
    ("title 46", modal(row(text_input()), title="t" * 46), ("data", "title")),
    ("custom_id 101", modal(row(text_input()), custom_id="m" * 101), ("data", "custom_id")),
    ("no components", modal(), ("data", "components")),
    ("6 rows", modal(*[row(text_input(f"t{i}")) for i in range(6)]), ("data", "components")),
    ("two inputs in a row", modal(row(text_input("a"), text_input("b"))),
     ("data", "components", 0, "components")),
    ("button in a modal", modal(row(button())), ("data", "components", 0, "components", 0,
                                                 "type")),
    ("input custom_id 101", modal(row(text_input("t" * 101))),
     ("data", "components", 0, "components", 0, "custom_id")),
    ("input without custom_id", modal(row({"type": 4, "style": 1, "label": "L"})),
     ("data", "components", 0, "components", 0, "custom_id")),
    ("input label 46", modal(row(text_input(label="l" * 46))),
     ("data", "components", 0, "components", 0, "label")),
    ("input without label", modal(row(text_input(label=None))),
     ("data", "components", 0, "components", 0, "label")),
    ("style 3", modal(row(text_input(style=3))),
     ("data", "components", 0, "components", 0, "style")),
    ("min_length 4001", modal(row(text_input(min_length=4001))),
     ("data", "components", 0, "components", 0, "min_length")),
    ("max_length 0", modal(row(text_input(max_length=0))),
     ("data", "components", 0, "components", 0, "max_length")),
    ("max_length 4001", modal(row(text_input(max_length=4001))),
     ("data", "components", 0, "components", 0, "max_length")),
    ("placeholder 101", modal(row(text_input(placeholder="p" * 101))),
     ("data", "components", 0, "components", 0, "placeholder")),
    ("value 4001", modal(row(text_input(value="v" * 4001))),
     ("data", "components", 0, "components", 0, "value")),
    ("duplicate inputs", modal(row(text_input("same")), row(text_input("same"))),
     ("data", "components", 1, "components", 0, "custom_id")),
    ("label text 46", modal({"type": 18, "label": "l" * 46, "component": text_input()}),
     ("data", "components", 0, "label")),
    ("label description 101", modal({"type": 18, "label": "L", "description": "d" * 101,
                                     "component": text_input()}),
     ("data", "components", 0, "description")),
    ("disabled select in a label", modal({"type": 18, "label": "L",
                                          "component": select(disabled=True)}),
     ("data", "components", 0, "component", "disabled")),
]


@pytest.mark.parametrize(("body", "path"), [(b, p) for _, b, p in BAD_MODALS],
                         ids=[i for i, _, _ in BAD_MODALS])
async def test_modal_outside_the_limits_is_refused(
    client: LimitsClient, api: Api, channel: Channel, alice: Member, body: dict[str, Any],
    path: tuple[str | int, ...]
) -> None:
    rec = await api.emu.invoke("noop", user=alice, channel=channel)
    status, answer = await api.callback(rec, body)
    refused(status, answer, *path)
    assert rec.modal is None and not rec.acked


GOOD_MODALS: list[tuple[str, dict[str, Any]]] = [
    ("5 rows at the bounds", modal(*[row(text_input(
        f"{i}" + "t" * 99, label="l" * 45, style=2, min_length=4000, max_length=4000,
        placeholder="p" * 100, value="v" * 4000, required=False)) for i in range(5)],
        title="t" * 45, custom_id="m" * 100)),
    ("labels", modal({"type": 10, "content": "Read this"},
                     {"type": 18, "label": "Prompt", "description": "d" * 100,
                      "component": {"type": 4, "custom_id": "p", "style": 2}},
                     {"type": 18, "label": "Pick", "component": select()})),
]


@pytest.mark.parametrize("body", [b for _, b in GOOD_MODALS], ids=[i for i, _ in GOOD_MODALS])
async def test_modal_within_the_limits_is_accepted(
    client: LimitsClient, api: Api, channel: Channel, alice: Member, body: dict[str, Any]
) -> None:
    rec = await api.emu.invoke("noop", user=alice, channel=channel)
    status, answer = await api.callback(rec, body)
    assert status == 200, answer
    assert rec.callback_type == 9 and rec.modal == body["data"]


# ---- autocomplete --------------------------------------------------------------------------


async def test_autocomplete_round_trip_through_discord_py(
    client: LimitsClient, emu: DiscordEmulator, channel: Channel, alice: Member
) -> None:
    client.offer = [app_commands.Choice(name=f"#{i} " + "n" * 96, value=i) for i in range(25)]
    rec = await emu.autocomplete("pick", user=alice, channel=channel, focused="job",
                                 options={"job": "1"})
    await rec.wait_acked()
    assert rec.type == 4 and rec.callback_type == 8 and rec.original is None
    assert rec.choices == [{"name": c.name, "value": c.value} for c in client.offer]
    [focused] = rec.payload["data"]["options"]
    assert focused == {"name": "job", "type": 4, "value": "1", "focused": True}
    # A string option's choices; "job" (required) may be missing while typing "word".
    client.offer = [app_commands.Choice(name="surf", value="w" * 100)]
    words = await emu.autocomplete("pick", user=alice, channel=channel, focused="word",
                                   options={"word": "su"})
    await words.wait_acked()
    assert words.choices == [{"name": "surf", "value": "w" * 100}]


BAD_AUTOCOMPLETE: list[tuple[str, str, list[Any], tuple[str | int, ...]]] = [
    ("26 choices", "job", [app_commands.Choice(name=str(i), value=i) for i in range(26)],
     ("data", "choices")),
    ("name 101", "job", [app_commands.Choice(name="n" * 101, value=1)],
     ("data", "choices", 0, "name")),
    ("empty name", "job", [app_commands.Choice(name="", value=1)],
     ("data", "choices", 0, "name")),
    ("string for an integer", "job", [app_commands.Choice(name="one", value="1")],
     ("data", "choices", 0, "value")),
    ("integer 2^53", "job", [app_commands.Choice(name="big", value=2**53)],
     ("data", "choices", 0, "value")),
    ("integer for a string", "word", [app_commands.Choice(name="one", value=1)],
     ("data", "choices", 0, "value")),
    ("string value 101", "word", [app_commands.Choice(name="long", value="v" * 101)],
     ("data", "choices", 0, "value")),
]


@pytest.mark.parametrize(("focused", "offer", "path"),
                         [(f, o, p) for _, f, o, p in BAD_AUTOCOMPLETE],
                         ids=[i for i, _, _, _ in BAD_AUTOCOMPLETE])
async def test_autocomplete_outside_the_limits_is_refused(
    client: LimitsClient, api: Api, channel: Channel, alice: Member, focused: str,
    offer: list[Any], path: tuple[str | int, ...]
) -> None:
    client.offer = offer
    rec = await api.emu.autocomplete("pick", user=alice, channel=channel, focused=focused,
                                     options={focused: "1"})
    await api.emu.wait_for(lambda: rec.rejections)
    assert [(r.route, r.status, r.code) for r in rec.rejections] == [("callback", 400, 50035)]
    assert not rec.acked and rec.choices is None
    # The same body over raw HTTP, to see the error path.
    raw = {"type": 8, "data": {"choices": [c.to_dict() for c in offer]}}
    status, answer = await api.callback(rec, raw)
    refused(status, answer, *path)


async def test_autocomplete_and_other_callback_types_do_not_mix(
    client: LimitsClient, api: Api, channel: Channel, alice: Member
) -> None:
    emu = api.emu
    command = await emu.invoke("noop", user=alice, channel=channel)
    status, answer = await api.callback(command, {"type": 8, "data": {"choices": []}})
    refused(status, answer, "type")
    with pytest.raises(LookupError, match="autocomplete"):
        await emu.autocomplete("pick", user=alice, channel=channel, focused="nope",
                               options={"nope": ""})
    client.offer = None  # discord.py answers nothing; the test does
    typing = await emu.autocomplete("pick", user=alice, channel=channel, focused="job",
                                    options={"job": ""})
    await asyncio.sleep(0.2)
    for kind in (4, 5, 9):
        status, answer = await api.callback(typing, {"type": kind, "data": {"content": "x"}})
        refused(status, answer, "type")
    status, answer = await api.callback(typing, {"type": 8, "data": {"choices": None}})
    assert status == 200 and typing.choices == []


# ---- enforce_nonce -------------------------------------------------------------------------


async def test_enforce_nonce_returns_the_earlier_message(
    client: LimitsClient, emu: DiscordEmulator, channel: Channel
) -> None:
    general = text_channel(client, channel)
    first = await general.send("once", nonce="job-1-delivery")
    again = await general.send("once more", nonce="job-1-delivery")
    assert again.id == first.id and again.content == "once" and again.nonce == "job-1-delivery"
    assert [m.content for m in emu.channel_messages(channel.id)] == ["once"]
    posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [(r.status, r.deduplicated) for r in posts] == [(200, False), (200, True)]
    # discord.py's own random nonce differs each time: two messages.
    await general.send("a")
    await general.send("a")
    assert [m.content for m in emu.channel_messages(channel.id)] == ["once", "a", "a"]


async def test_enforce_nonce_scope(api: Api, channel: Channel, guild: Guild) -> None:
    emu = api.emu
    other = guild.add_text_channel("other")

    async def post(where: Channel, nonce: Any, enforce: bool = True) -> str:
        status, answer = await api.call("POST", f"/channels/{where.id}/messages",
                                        {"content": "x", "nonce": nonce,
                                         "enforce_nonce": enforce})
        assert status == 200, answer
        return str(answer["id"])

    first = await post(channel, "n1")
    assert await post(channel, "n1") == first
    plain = await post(channel, "p", enforce=False)
    assert await post(channel, "p", enforce=False) != plain  # only with enforce_nonce
    assert await post(other, "n1") != first  # per channel
    assert await post(channel, "n2") != first
    number = await post(channel, 12345)
    assert await post(channel, 12345) == number
    status, _ = await api.call("DELETE", f"/channels/{channel.id}/messages/{first}")
    assert status == 204
    assert await post(channel, "n1") != first  # a deleted message is not returned
    emu.nonce_window = 0.05
    fresh = await post(channel, "n3")
    await asyncio.sleep(0.1)
    assert await post(channel, "n3") != fresh  # the window has passed


async def test_deduplicated_post_is_still_validated_and_creates_no_upload(
    api: Api, channel: Channel
) -> None:
    body = {"content": "x", "nonce": "same", "enforce_nonce": True}
    status, _ = await api.call("POST", f"/channels/{channel.id}/messages", body)
    assert status == 200
    status, answer = await api.call("POST", f"/channels/{channel.id}/messages",
                                    {**body, "content": "y" * 2001})
    refused(status, answer, "content")
    assert len(api.emu.channel_messages(channel.id)) == 1


# ---- fail_after_commit ---------------------------------------------------------------------


async def test_lost_reply_is_retried_and_enforce_nonce_avoids_a_double_post(
    client: LimitsClient, emu: DiscordEmulator, channel: Channel
) -> None:
    emu.fail_after_commit("POST", r"/channels/\d+/messages$")
    sent = await text_channel(client, channel).send("the clip")
    [posted] = emu.channel_messages(channel.id)
    assert sent.id == posted.id
    posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [(r.status, r.reply_lost, r.deduplicated) for r in posts] == [
        (500, True, False), (200, False, True)]


async def test_every_retry_lost_still_posts_once(
    client: LimitsClient, emu: DiscordEmulator, channel: Channel
) -> None:
    """discord.py waits 1 s, then 3 s between tries: two lost replies, then the answer."""
    emu.fail_after_commit("POST", r"/channels/\d+/messages$", 524, times=2)
    sent = await text_channel(client, channel).send("the clip")
    assert [m.id for m in emu.channel_messages(channel.id)] == [sent.id]
    posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [(r.status, r.reply_lost, r.deduplicated) for r in posts] == [
        (524, True, False), (524, True, True), (200, False, True)]


async def test_lost_reply_that_discord_py_does_not_retry(
    client: LimitsClient, emu: DiscordEmulator, channel: Channel
) -> None:
    emu.fail_after_commit("POST", r"/channels/\d+/messages$", status=503)
    with pytest.raises(discord.DiscordServerError) as lost:
        await text_channel(client, channel).send("posted anyway")
    assert lost.value.status == 503
    assert [m.content for m in emu.channel_messages(channel.id)] == ["posted anyway"]


async def test_fail_after_commit_counts_only_successes(api: Api, channel: Channel) -> None:
    emu = api.emu
    emu.fail_after_commit("POST", r"/channels/\d+/messages$", 502, times=2)
    path = f"/channels/{channel.id}/messages"
    status, answer = await api.call("POST", path, {"content": "x" * 2001})
    refused(status, answer, "content")  # refused requests are answered as they are
    for _ in range(2):
        status, answer = await api.call("POST", path, {"content": "kept"})
        assert (status, answer) == (502, {"message": "502: Bad Gateway", "code": 0})
    status, answer = await api.call("POST", path, {"content": "kept"})
    assert status == 200
    assert [m.content for m in emu.channel_messages(channel.id)] == ["kept"] * 3
    assert [r.reply_lost for r in emu.requests] == [False, True, True, False]


async def test_lost_callback_reply_then_the_retry_is_already_acknowledged(
    client: LimitsClient, api: Api, channel: Channel, alice: Member
) -> None:
    emu = api.emu
    emu.fail_after_commit("POST", r"/callback$", times=99)
    rec = await emu.invoke("noop", user=alice, channel=channel)
    status, answer = await api.callback(rec, {"type": 4, "data": {"content": "hello"}})
    assert status == 500 and rec.acked and rec.original is not None
    assert rec.original.content == "hello"
    status, answer = await api.callback(rec, {"type": 4, "data": {"content": "hello"}})
    assert (status, answer["code"]) == (400, 40060)
    # A follow-up has no nonce: a retry after a lost reply posts it twice.
    emu.fail_after_commit("POST", r"/webhooks/\d+/[^/]+$")
    webhook = f"/webhooks/{emu.application_id}/{rec.token}?wait=1"
    assert (await api.call("POST", webhook, {"content": "more"}))[0] == 500
    assert (await api.call("POST", webhook, {"content": "more"}))[0] == 200
    assert [m.content for m in rec.followups] == ["more", "more"]
