"""The Discord emulator (tests/fakes/discord.py) proven with the real, unmodified discord.py.

A `commands.Bot` logs in against the emulator, reaches on_ready, syncs its command tree and
handles interactions the emulator dispatches; every Discord rule the emulator enforces is
shown to reach the bot as discord.py's own exception.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from discord_emulator.emulator import Channel, DiscordEmulator, Guild, Member, MessageRecord, Role

LIMIT = 64 * 1024  # the test guild's upload limit, small so oversize files stay cheap
NONE = discord.AllowedMentions.none()


class EmuBot(commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.members = intents.presences = intents.message_content = False
        super().__init__(command_prefix=commands.when_mentioned, intents=intents,
                         guild_ready_timeout=0.05, help_command=None)
        self.errors: list[BaseException] = []
        self.go = asyncio.Event()  # lets a test decide when /later follows up

    def failed(self, error: BaseException) -> None:
        self.errors.append(getattr(error, "original", error))

    async def setup_hook(self) -> None:
        tree = self.tree

        async def on_error(interaction: discord.Interaction,
                           error: app_commands.AppCommandError) -> None:
            self.failed(error)

        tree.error(on_error)

        @tree.command(name="render", description="Render a clip from a reference")
        async def render(interaction: discord.Interaction, clip: discord.Attachment,
                         prompt: str) -> None:
            await interaction.response.defer(thinking=True)
            data = await clip.read()
            await interaction.followup.send(f"rendering {prompt}", allowed_mentions=NONE,
                                            file=discord.File(io.BytesIO(data[::-1]), "out.mp4"),
                                            wait=True)
            original = await interaction.edit_original_response(content=f"done: {prompt}")
            thread = await original.create_thread(name=f"render {prompt}")
            await thread.send("your clip", file=discord.File(io.BytesIO(data), "clip.mp4"))

        @tree.command(name="secret", description="Answer only to the caller")
        async def secret(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("shh", ephemeral=True)

        @tree.command(name="slow", description="Answer too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(3.5)
            await interaction.response.send_message("finally")

        @tree.command(name="long", description="Send n characters")
        async def long(interaction: discord.Interaction, n: int) -> None:
            await interaction.response.send_message("x" * n)

        @tree.command(name="upload", description="Follow up with a file of n bytes")
        async def upload(interaction: discord.Interaction, n: int) -> None:
            await interaction.response.defer()
            await interaction.followup.send(file=discord.File(io.BytesIO(bytes(n)), "blob.bin"))

        @tree.command(name="later", description="Follow up when the test says so")
        async def later(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await self.go.wait()
            await interaction.followup.send("here at last")

        @tree.command(name="noop", description="Never answers")
        async def noop(interaction: discord.Interaction) -> None:
            return

        admin = app_commands.Group(name="admin", description="Admin tools")
        credits = app_commands.Group(name="credits", description="Credits", parent=admin)

        @credits.command(name="grant", description="Grant credits")
        async def grant(interaction: discord.Interaction, member: discord.Member,
                        role: discord.Role, where: discord.TextChannel, amount: float,
                        loud: bool = False) -> None:
            parts = [f"{type(x).__name__}:{x.id}" for x in (member, role, where)]
            await interaction.response.send_message(" ".join([*parts, str(amount), str(loud)]),
                                                    allowed_mentions=NONE)

        tree.add_command(admin)

        @tree.command(name="panel", description="Buttons")
        async def panel(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("panel", view=Panel(self))


class Ask(discord.ui.Modal, title="A question"):
    answer: discord.ui.TextInput[Ask] = discord.ui.TextInput(label="Colour", custom_id="answer")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"got {self.answer.value}")


class Panel(discord.ui.View):
    def __init__(self, bot: EmuBot) -> None:
        super().__init__(timeout=60)
        self.bot = bot

    async def on_error(self, interaction: discord.Interaction, error: Exception,
                       item: discord.ui.Item[Any]) -> None:
        self.bot.failed(error)

    @discord.ui.button(label="Go", custom_id="go")
    async def go(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
        await interaction.response.edit_message(content="clicked", view=None)

    @discord.ui.button(label="Ask", custom_id="ask")
    async def ask(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
        await interaction.response.send_modal(Ask(custom_id="ask-modal"))


@dataclass
class World:
    emu: DiscordEmulator
    guild: Guild
    channel: Channel
    no_threads: Channel
    read_only: Channel
    alice: Member
    bob: Member
    role: Role


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    async with DiscordEmulator() as emulator:
        yield emulator


@pytest.fixture
def world(emu: DiscordEmulator) -> World:
    guild = emu.add_guild("Test Guild", filesize_limit=LIMIT)
    role = guild.add_role("artists", mentionable=True)
    return World(
        emu, guild, guild.add_text_channel("general"),
        guild.add_text_channel("no-threads", bot_can_create_threads=False),
        guild.add_text_channel("read-only", bot_can_send=False),
        guild.add_member(None, "alice", roles=[role]), guild.add_member(None, "bob"), role,
    )


@pytest.fixture
async def pointed(emu: DiscordEmulator) -> AsyncIterator[None]:
    """Point discord.py at the emulator the way the bot does: Route.BASE plus the gateway
    URL read from GET /gateway/bot. Both are restored afterwards."""
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    headers = {"Authorization": f"Bot {emu.bot_token}"}
    async with aiohttp.ClientSession() as session, session.get(
        emu.api_base + "/gateway/bot", headers=headers
    ) as response:
        assert response.headers["Content-Type"] == "application/json"
        url = (await response.json())["url"]
    discord.http.Route.BASE = emu.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    yield
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway


@pytest.fixture
async def bot(emu: DiscordEmulator, world: World, pointed: None) -> AsyncIterator[EmuBot]:
    client = EmuBot()
    await client.login(emu.bot_token)
    task = asyncio.create_task(client.connect(reconnect=False))
    await asyncio.wait_for(client.wait_until_ready(), 5)
    await client.tree.sync()
    yield client
    await client.close()
    await asyncio.wait_for(task, 5)
    assert not emu.internal_errors


async def errors_of(bot: EmuBot, emu: DiscordEmulator, n: int = 1) -> list[BaseException]:
    await emu.wait_for(lambda: len(bot.errors) >= n)
    return bot.errors


async def test_bot_logs_in_reaches_ready_and_syncs(bot: EmuBot, world: World) -> None:
    emu = world.emu
    assert bot.user is not None and bot.user.id == emu.application_id
    assert bot.application_id == emu.application_id
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert {c.name for c in guild.text_channels} == {"general", "no-threads", "read-only"}
    assert guild.me is not None and guild.member_count == 4  # bot, owner, alice, bob
    assert guild.owner_id == emu.owner.id
    assert guild.get_role(world.role.id) is not None
    assert not emu.gateway.identifies[0]["intents"] & ((1 << 1) | (1 << 8) | (1 << 15))
    render = emu.command("render")
    assert render is not None and render["application_id"] == str(emu.application_id)
    assert [(o["name"], o["type"]) for o in render["options"]] == [("clip", 11), ("prompt", 3)]
    # A guild sync is recorded separately and wins over the global command.
    bot.tree.copy_global_to(guild=discord.Object(world.guild.id))
    await bot.tree.sync(guild=discord.Object(world.guild.id))
    assert emu.command("secret", world.guild.id) is not None
    rec = await emu.invoke("secret", user=world.alice, channel=world.channel)
    await rec.wait_response()
    assert rec.payload["data"]["guild_id"] == str(world.guild.id)
    assert all(r.status < 400 for r in emu.requests), [r for r in emu.requests if r.status >= 400]


async def test_slash_command_with_attachment_end_to_end(bot: EmuBot, world: World) -> None:
    emu = world.emu
    data = os.urandom(4096)
    clip = emu.add_attachment("ref.mp4", data, "video/mp4")
    rec = await emu.invoke("render", user=world.alice, channel=world.channel,
                           options={"clip": clip, "prompt": "surf"})
    await rec.wait_acked()
    assert rec.callback_type == 5 and not rec.ephemeral and rec.acked_at is not None
    assert rec.acked_at < 3.0
    threads = await emu.wait_for(lambda: [t for t in emu.threads
                                          if emu.channel_messages(t.id)])
    original = await rec.wait_response()
    assert not bot.errors
    # The first follow-up filled the "thinking" message; the edit kept its attachment.
    assert rec.followups == [original]
    assert original.content == "done: surf"
    assert [h["content"] for h in original.history] == ["", "rendering surf"]
    assert [(a.filename, a.data) for a in original.attachments] == [("out.mp4", data[::-1])]
    assert original.attachments[0].content_type == "video/mp4"
    thread = threads[0]
    assert (thread.parent_id, thread.type, thread.starter_message_id, thread.owner_id) == (
        world.channel.id, 11, original.id, emu.application_id)
    assert thread.name == "render surf"
    [posted] = emu.channel_messages(thread.id)
    assert posted.via == "rest" and posted.attachments[0].data == data
    assert [r.path for r in emu.requests if r.path.startswith("/ephemeral-attachments/")]
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.get_thread(thread.id) is not None  # THREAD_CREATE


async def test_ephemeral_reply_has_flag_64(bot: EmuBot, world: World) -> None:
    emu = world.emu
    rec = await emu.invoke("secret", user=world.bob, channel=world.channel)
    message = await rec.wait_response()
    assert rec.callback_type == 4 and rec.ephemeral
    assert message.flags & 64 and message.content == "shh"
    assert message not in emu.channel_messages(world.channel.id, include_ephemeral=False)


async def test_late_ack_is_rejected_and_flagged(bot: EmuBot, world: World) -> None:
    emu = world.emu
    rec = await emu.invoke("slow", user=world.alice, channel=world.channel)
    [error] = await errors_of(bot, emu)
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert rec.late and rec.unacknowledged and rec.acked_at is None
    assert emu.unacknowledged_interactions() == [rec]


async def test_content_over_2000_characters_is_rejected(bot: EmuBot, world: World) -> None:
    emu = world.emu
    ok = await emu.invoke("long", user=world.alice, channel=world.channel, options={"n": 2000})
    assert len((await ok.wait_response()).content) == 2000
    bad = await emu.invoke("long", user=world.alice, channel=world.channel, options={"n": 2001})
    [error] = await errors_of(bot, emu)
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 50035)
    assert "2000" in str(error) and not bad.acked


async def test_file_over_the_guild_limit_gets_413(bot: EmuBot, world: World) -> None:
    emu = world.emu
    ok = await emu.invoke("upload", user=world.alice, channel=world.channel,
                          options={"n": LIMIT})
    assert (await ok.wait_response()).attachments[0].size == LIMIT
    big = await emu.invoke("upload", user=world.alice, channel=world.channel,
                           options={"n": LIMIT + 1})
    [error] = await errors_of(bot, emu)
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (413, 40005)
    assert big.original is not None and big.original.loading
    assert [(r.route, r.status) for r in big.rejections] == [("followup", 413)]


async def test_thread_and_post_permissions_and_validation(bot: EmuBot, world: World) -> None:
    emu = world.emu
    no_threads = bot.get_channel(world.no_threads.id)
    assert isinstance(no_threads, discord.TextChannel)
    message = await no_threads.send("hello")
    with pytest.raises(discord.Forbidden) as denied:
        await message.create_thread(name="nope")
    assert denied.value.code == 50013 and not emu.threads
    read_only = bot.get_channel(world.read_only.id)
    assert isinstance(read_only, discord.TextChannel)
    with pytest.raises(discord.Forbidden) as muted:
        await read_only.send("hi")
    assert muted.value.code == 50013 and not emu.channel_messages(world.read_only.id)
    general = bot.get_channel(world.channel.id)
    assert isinstance(general, discord.TextChannel)
    starter = await general.send("start")
    with pytest.raises(discord.HTTPException) as too_long:
        await starter.create_thread(name="x" * 101)
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    with pytest.raises(discord.HTTPException) as archive:
        await starter.create_thread(name="ok", auto_archive_duration=30)  # type: ignore[arg-type]
    assert (archive.value.status, archive.value.code) == (400, 50035)
    thread = await general.create_thread(name="standalone", type=discord.ChannelType.public_thread)
    assert [(t.name, t.type, t.starter_message_id) for t in emu.threads] == [
        ("standalone", 11, None)]
    assert thread.id == emu.threads[0].id


async def test_forced_429_is_retried_then_succeeds(bot: EmuBot, world: World) -> None:
    emu = world.emu
    emu.rate_limit("POST", r"/channels/\d+/messages$", retry_after=0.2)
    emu.rate_limit("POST", r"/interactions/\d+/[^/]+/callback$", retry_after=0.1)
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("after a 429")
    posts = [r for r in emu.requests if r.method == "POST" and r.path.endswith("/messages")]
    assert [(r.status, r.forced) for r in posts] == [(429, True), (200, False)]
    assert posts[1].at - posts[0].at >= 0.2
    assert emu.message(sent.id).content == "after a 429"
    rec = await emu.invoke("secret", user=world.alice, channel=world.channel)
    await rec.wait_response()  # the webhook adapter retried the callback too
    callbacks = [r.status for r in emu.requests if r.path.endswith("/callback")]
    assert callbacks == [429, 200]


async def test_followup_after_token_expiry_gets_401(bot: EmuBot, world: World) -> None:
    emu = world.emu
    rec = await emu.invoke("later", user=world.alice, channel=world.channel)
    await rec.wait_acked()
    emu.expire_tokens()
    bot.go.set()
    [error] = await errors_of(bot, emu)
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
    assert rec.followups == [] and rec.original is not None and rec.original.loading


async def test_mentions_pinged_follows_allowed_mentions(bot: EmuBot, world: World) -> None:
    emu, alice, role = world.emu, world.alice, world.role
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    content = f"@everyone look {alice.mention} {role.mention}"
    everything = {"everyone", f"user:{alice.id}", f"role:{role.id}"}
    user_obj = discord.Object(alice.id)
    cases: list[tuple[discord.AllowedMentions | None, set[str]]] = [
        (NONE, set()),
        (None, everything),  # no allowed_mentions sent at all: everything pings
        (discord.AllowedMentions(users=[user_obj], everyone=False, roles=False),
         {f"user:{alice.id}"}),
        (discord.AllowedMentions(users=[user_obj]), everything),  # constructor defaults!
    ]
    for allowed, expected in cases:
        if allowed is None:
            sent = await channel.send(content)
        else:
            sent = await channel.send(content, allowed_mentions=allowed)
        record = emu.message(sent.id)
        assert emu.mentions_pinged(record) == expected, allowed
        assert sent.mention_everyone == ("everyone" in expected)
    assert emu.mentions_pinged(_message(content="no ping @ everyone <@x>")) == set()


def _message(content: str) -> MessageRecord:
    return MessageRecord(1, 1, None, 1, "rest", content=content)


async def test_buttons_and_modal_round_trip(bot: EmuBot, world: World) -> None:
    emu = world.emu
    panel = await (await emu.invoke("panel", user=world.alice, channel=world.channel)
                   ).wait_response()
    ask = await emu.click(panel, "ask", user=world.bob)
    await ask.wait_acked()
    assert ask.callback_type == 9 and ask.modal is not None
    assert ask.modal["custom_id"] == "ask-modal"
    submitted = await emu.submit_modal(ask, {"answer": "blue"})
    assert (await submitted.wait_response()).content == "got blue"
    with pytest.raises(ValueError, match="required"):
        await emu.submit_modal(ask, {})
    go = await emu.click(panel, "go", user=world.bob)
    await go.wait_acked()
    assert go.callback_type == 7 and go.original is panel
    assert panel.content == "clicked" and panel.components == []
    assert [h["content"] for h in panel.history] == ["panel"]
    with pytest.raises(LookupError):
        await emu.click(panel, "go", user=world.bob)  # the edit removed the buttons
    assert not bot.errors


async def test_gateway_resume_after_reconnect(bot: EmuBot, world: World) -> None:
    emu = world.emu
    await emu.reconnect_gateway()
    await emu.wait_for(lambda: emu.gateway.resumes == 1)
    rec = await emu.invoke("secret", user=world.alice, channel=world.channel)
    await rec.wait_response()
    assert len(emu.gateway.identifies) == 1 and emu.gateway.heartbeats >= 2


async def test_typed_options_in_a_subcommand_group(bot: EmuBot, world: World) -> None:
    emu = world.emu
    admin = emu.command("admin")
    assert admin is not None and [(o["name"], o["type"]) for o in admin["options"]] == [
        ("credits", 2)]
    rec = await emu.invoke("admin", group="credits", subcommand="grant", user=world.alice,
                           channel=world.channel,
                           options={"member": world.bob, "role": world.role,
                                    "where": world.channel, "amount": 2.5, "loud": True})
    reply = await rec.wait_response()
    assert reply.content == (f"Member:{world.bob.id} Role:{world.role.id} "
                             f"TextChannel:{world.channel.id} 2.5 True")
    options = rec.payload["data"]["options"]
    assert (options[0]["type"], options[0]["options"][0]["type"]) == (2, 1)
    assert [o["type"] for o in options[0]["options"][0]["options"]] == [6, 8, 7, 10, 5]
    with pytest.raises(LookupError, match="needs a subcommand"):
        await emu.invoke("admin", user=world.alice, channel=world.channel)
    assert not bot.errors


async def test_invoke_checks_against_synced_commands(bot: EmuBot, world: World) -> None:
    emu, alice, channel = world.emu, world.alice, world.channel
    with pytest.raises(LookupError, match="not synced"):
        await emu.invoke("nope", user=alice, channel=channel)
    with pytest.raises(LookupError, match="no option 'bogus'"):
        await emu.invoke("long", user=alice, channel=channel, options={"n": 1, "bogus": 2})
    with pytest.raises(TypeError, match="integer"):
        await emu.invoke("long", user=alice, channel=channel, options={"n": "1"})
    with pytest.raises(ValueError, match="required"):
        await emu.invoke("render", user=alice, channel=channel, options={"prompt": "x"})
    assert emu.interactions == []


async def test_raw_callback_contract(bot: EmuBot, world: World) -> None:
    """Checked without discord.py, which refuses a second response before sending it."""
    emu = world.emu
    rec = await emu.invoke("noop", user=world.alice, channel=world.channel)
    url = f"{emu.api_base}/interactions/{rec.id}/{rec.token}/callback?with_response=1"
    body = {"type": 4, "data": {"content": "hi"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body) as first:
            assert first.status == 200
            assert first.headers["Content-Type"] == "application/json"
            answer = await first.json()
        async with session.post(url, json=body) as second:
            assert (second.status, (await second.json())["code"]) == (400, 40060)
        followup = f"{emu.api_base}/webhooks/{emu.application_id}/wrong-token?wait=1"
        async with session.post(followup, json={"content": "x"}) as bad_token:
            assert (bad_token.status, (await bad_token.json())["code"]) == (401, 50027)
        async with session.get(emu.api_base + "/users/@me") as no_auth:
            assert no_auth.status == 401
    assert answer["interaction"]["id"] == str(rec.id)
    assert answer["resource"]["type"] == 4
    assert answer["resource"]["message"]["content"] == "hi"
    assert rec.callback_type == 4 and [r.code for r in rec.rejections] == [40060]


async def test_upload_names_are_made_fit_for_a_url_as_discord_does() -> None:
    async with DiscordEmulator() as emu, aiohttp.ClientSession() as http:
        for name, kept in (("take#1.mp4", "take_1.mp4"), ("a/b.mp4", "a_b.mp4"),
                           ("what?.mp4", "what_.mp4"), ("café ü.mp4", "café_ü.mp4")):
            attachment = emu.add_attachment(name, b"clip", "video/mp4")
            assert attachment["filename"] == kept
            async with http.get(attachment["url"]) as resp:
                assert resp.status == 200 and await resp.read() == b"clip"


async def test_odd_ids_in_paths_are_not_found_not_errors() -> None:
    async with DiscordEmulator() as emu, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bot {emu.bot_token}"}
        for path in ("/guilds/%C2%B9", "/guilds/" + "9" * 5000, "/channels/1/messages/%C2%B9"):
            async with http.get(emu.api_base + path, headers=headers) as resp:
                assert resp.status in (400, 404), (path, resp.status)
        async with http.get(emu.base_url + "/attachments/1/%C2%B9/a.mp4") as resp:
            assert resp.status == 404
        assert emu.internal_errors == []
