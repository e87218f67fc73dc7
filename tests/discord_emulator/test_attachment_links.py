"""Signed, expiring attachment links in the Discord emulator, spoken to over real HTTP: links
expire (by the emulator's clock or all at once), re-fetching a message signs them afresh, a
tampered or unsigned link is a 404, and a declared size may differ from the bytes served."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from discord_emulator.emulator import Channel, DiscordEmulator, Member

GONE = "This content is no longer available."
LINK = re.compile(
    r"^http://127\.0\.0\.1:\d+(?P<path>/(?:media/)?(?:ephemeral-)?attachments/\d+/\d+/[^?]+)"
    r"\?ex=(?P<ex>[0-9a-f]{8})&is=(?P<is>[0-9a-f]{8})&hm=(?P<hm>[0-9a-f]{64})&$")


@dataclass
class Setup:
    emu: DiscordEmulator
    http: aiohttp.ClientSession
    channel: Channel
    alice: Member

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bot {self.emu.bot_token}"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    async with DiscordEmulator() as emu, aiohttp.ClientSession() as http:
        guild = emu.add_guild("Links")
        yield Setup(emu, http, guild.add_text_channel("general"),
                    guild.add_member(None, "alice"))


async def download(s: Setup, url: str) -> tuple[int, bytes]:
    async with s.http.get(url) as resp:
        return resp.status, await resp.read()


async def post_file(s: Setup, name: str, data: bytes) -> dict[str, Any]:
    """The bot posts a message with one file (multipart, as discord.py sends it)."""
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(
        {"content": "clip", "attachments": [{"id": 0, "filename": name}]}))
    form.add_field("files[0]", data, filename=name, content_type="video/mp4")
    async with s.http.post(f"{s.emu.api_base}/channels/{s.channel.id}/messages",
                           headers=s.auth, data=form) as resp:
        assert resp.status == 200
        message: dict[str, Any] = await resp.json()
        return message


async def get_message(s: Setup, message_id: str) -> dict[str, Any]:
    async with s.http.get(f"{s.emu.api_base}/channels/{s.channel.id}/messages/{message_id}",
                          headers=s.auth) as resp:
        assert resp.status == 200
        message: dict[str, Any] = await resp.json()
        return message


def parts(url: str) -> dict[str, str]:
    match = LINK.match(url)
    assert match is not None, url
    return match.groupdict()


async def test_a_fresh_link_is_signed_like_discords_and_downloads(setup: Setup) -> None:
    s = setup
    s.emu.clock = Clock(1_700_000_000.4)
    att = s.emu.add_attachment("ref.mp4", b"clip bytes", "video/mp4")
    url, proxy = parts(att["url"]), parts(att["proxy_url"])
    assert int(url["is"], 16) == 1_700_000_000 and int(url["ex"], 16) == 1_700_086_400
    assert {k: url[k] for k in ("ex", "is", "hm")} == {k: proxy[k] for k in ("ex", "is", "hm")}
    assert proxy["path"] == "/media" + url["path"]
    for link in (att["url"], att["proxy_url"]):
        assert await download(s, link) == (200, b"clip bytes")
    assert s.emu.add_attachment("b.mp4", b"x")["url"] != att["url"]  # each its own signature


async def test_expired_links_404_and_a_refetched_message_has_a_working_one(
        setup: Setup) -> None:
    s = setup
    posted = await post_file(s, "out.mp4", b"the clip")
    old = posted["attachments"][0]["url"]
    assert await download(s, old) == (200, b"the clip")
    assert (await get_message(s, posted["id"]))["attachments"][0]["url"] == old  # still fresh
    s.emu.expire_attachment_links()
    status, body = await download(s, old)
    assert (status, body.decode()) == (404, GONE)
    assert await download(s, posted["attachments"][0]["proxy_url"]) == (404, GONE.encode())
    fresh = (await get_message(s, posted["id"]))["attachments"][0]
    assert fresh["url"] != old
    assert await download(s, fresh["url"]) == (200, b"the clip")
    assert await download(s, fresh["proxy_url"]) == (200, b"the clip")
    # The channel history and the emulator's own record sign afresh as well.
    async with s.http.get(f"{s.emu.api_base}/channels/{s.channel.id}/messages",
                          headers=s.auth) as resp:
        [listed] = await resp.json()
    assert await download(s, listed["attachments"][0]["url"]) == (200, b"the clip")
    record = s.emu.message(int(posted["id"])).attachments[0]
    assert await download(s, record.url) == (200, b"the clip")
    assert await download(s, old) == (404, GONE.encode())  # old links stay dead


async def test_links_expire_after_their_lifetime_on_the_emulators_clock() -> None:
    async with DiscordEmulator(attachment_link_ttl=600) as emu, \
            aiohttp.ClientSession() as http:
        clock = emu.clock = Clock(1_800_000_000.0)
        att = emu.add_attachment("ref.mp4", b"bytes", "video/mp4")
        assert int(parts(att["url"])["ex"], 16) == 1_800_000_600
        clock.now += 599
        async with http.get(att["url"]) as resp:
            assert resp.status == 200
        clock.now += 1
        async with http.get(att["url"]) as resp:
            assert resp.status == 404 and await resp.text() == GONE
        record = emu.served_attachment(int(att["id"]))
        assert record is not None
        renewed = record.payload()["url"]
        assert int(parts(renewed)["is"], 16) == 1_800_000_600
        async with http.get(renewed) as resp:
            assert resp.status == 200 and await resp.read() == b"bytes"


async def test_a_link_past_half_its_life_is_renewed_in_the_next_payload(setup: Setup) -> None:
    s = setup
    clock = s.emu.clock = Clock(1_700_000_000.0)
    posted = await post_file(s, "out.mp4", b"the clip")
    first = posted["attachments"][0]["url"]
    clock.now += 43_199
    assert (await get_message(s, posted["id"]))["attachments"][0]["url"] == first
    clock.now += 2  # under half a day left: a new link, and the old one still works
    renewed = (await get_message(s, posted["id"]))["attachments"][0]["url"]
    assert renewed != first and int(parts(renewed)["is"], 16) == 1_700_043_201
    assert await download(s, first) == (200, b"the clip")
    assert await download(s, renewed) == (200, b"the clip")


def tampered(url: str, **changes: str) -> str:
    link = yarl.URL(url)
    return str(link.with_query({**link.query, **changes})) + "&"


async def test_tampered_unsigned_or_misplaced_links_404(setup: Setup) -> None:
    s = setup
    att = s.emu.add_attachment("ref.mp4", b"bytes", "video/mp4")
    url = att["url"]
    query = parts(url)
    flipped = ("0" if query["hm"][0] != "0" else "1") + query["hm"][1:]
    later = f"{int(query['ex'], 16) + 86_400:08x}"
    bare = url.split("?", 1)[0]
    for bad in (
        tampered(url, hm=flipped),
        tampered(url, hm=query["hm"].upper()),
        tampered(url, ex=later),  # a longer life is not signed
        tampered(url, **{"is": f"{int(query['is'], 16) - 1:08x}"}),
        bare,  # unsigned
        bare + f"?ex={query['ex']}&is={query['is']}&",  # no hm
        url.replace("/ref.mp4?", "/other.mp4?"),
        url.replace("/ephemeral-attachments/", "/attachments/"),
        url.replace(f"/{s.emu.application_id}/", "/1/"),
    ):
        status, body = await download(s, bad)
        assert (status, body.decode()) == (404, GONE), bad
    assert await download(s, url) == (200, b"bytes")
    assert s.emu.forget_attachment(int(att["id"]))
    assert await download(s, url) == (404, GONE.encode())  # forgotten: gone, signed or not


async def test_a_declared_size_shows_in_the_payload_not_in_the_bytes(setup: Setup) -> None:
    s = setup
    declared = 3 * 1024 * 1024 * 1024
    att = s.emu.add_attachment("huge.mp4", b"tiny", "video/mp4", declared_size=declared)
    assert att["size"] == declared
    assert s.emu.add_attachment("true.mp4", b"tiny")["size"] == 4
    assert await download(s, att["url"]) == (200, b"tiny")


class LinkBot(discord.Client):
    """Unmodified discord.py: /check reads its attachment and answers with a file."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[tuple[int, bytes]] = []

    async def setup_hook(self) -> None:
        @self.tree.command(name="check", description="Read a reference")
        async def check(interaction: discord.Interaction, clip: discord.Attachment) -> None:
            self.seen.append((clip.size, await clip.read()))
            await interaction.response.send_message(
                "ok", file=discord.File(io.BytesIO(b"reply clip"), "out.mp4"))


@pytest.fixture
async def bot(setup: Setup) -> AsyncIterator[LinkBot]:
    emu = setup.emu
    old_base, old_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = emu.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    client = LinkBot()
    try:
        await client.login(emu.bot_token)
        task = asyncio.create_task(client.connect(reconnect=False))
        await asyncio.wait_for(client.wait_until_ready(), 5)
        await client.tree.sync()
        yield client
        await client.close()
        await asyncio.wait_for(task, 5)
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway
    assert not emu.internal_errors


async def test_discord_py_reads_fresh_links_and_refetches_expired_ones(
        setup: Setup, bot: LinkBot) -> None:
    s = setup
    declared = 50 * 1024 * 1024
    att = s.emu.add_attachment("ref.mp4", b"tiny", "video/mp4", declared_size=declared)
    s.emu.expire_attachment_links()
    assert (await download(s, att["url"]))[0] == 404
    # The interaction is made now: resolved.attachments has a working link and the
    # declared size.
    rec = await s.emu.invoke("check", user=s.alice, channel=s.channel, options={"clip": att})
    reply = await rec.wait_response()
    resolved = rec.payload["data"]["resolved"]["attachments"][att["id"]]
    assert resolved["size"] == declared and resolved["url"] != att["url"]
    assert bot.seen == [(declared, b"tiny")]
    channel = bot.get_channel(s.channel.id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.fetch_message(reply.id)
    assert await message.attachments[0].read() == b"reply clip"
    s.emu.expire_attachment_links()
    with pytest.raises(discord.NotFound):
        await message.attachments[0].read()
    again = await channel.fetch_message(reply.id)
    assert await again.attachments[0].read() == b"reply clip"
