"""The playground's HTTP and websocket API against a real emulator and the real bot.py (in
simulate mode, as a child process): the page and its files, the commands as forms, slash
commands with uploaded files, buttons, the bot's forms, the live channel, ephemeral replies
kept to the member they answer, and balances read from the bot's database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from money.prices import PriceTable
from playground.app import Playground, PlaygroundConfig
from playground.bot_process import BotExited, BotOptions, Endpoint, simulate_env
from playground.credits import CreditReader
from storage.credits import CreditStore
from storage.database import Database
from tests.media import make_mp4
from tests.playground.client import (
    PlaygroundClient,
    State,
    clips,
    labels,
    member,
    member_id,
    messages,
    text_of,
)
from tests.playground.conftest import Bare

REF = make_mp4(seconds=2.5, width=160, height=90)
PRICE = PriceTable().credits_for("1280*720", 5)  # /ref2video's default size and duration


def by_text(found: list[dict[str, Any]], needle: str) -> list[dict[str, Any]]:
    return [m for m in found if needle in text_of(m)]


async def generate(c: PlaygroundClient, who: str = "alice", prompt: str = "a cat surfing",
                   channel: str = "clips") -> dict[str, Any]:
    """Run /ref2video with an uploaded clip and wait until the clip is in a thread."""
    before = len(clips(await c.state(who)))
    status, body = await c.run(who, channel, "ref2video", {"prompt": prompt},
                               files={"video": ("ref.mp4", REF, "video/mp4")})
    assert status == 200, body
    found: list[dict[str, Any]] = await c.wait_for(
        who, lambda s: len(clips(s)) > before and clips(s), within=60.0)
    return found[-1]


async def grant(c: PlaygroundClient, who: str, amount: int) -> None:
    state = await c.state("mod")
    status, body = await c.run("mod", "clips", "credits grant",
                               {"user": member_id(state, who), "amount": amount})
    assert status == 200, body
    await c.wait_for("mod", lambda s: by_text(messages(s, "clips"), "Granted"))


# -- the page, without a bot ---------------------------------------------------------------


async def test_the_page_and_its_files_are_served_with_nothing_from_elsewhere(bare: Bare
                                                                            ) -> None:
    session, base = bare.client.session, bare.client.base
    texts = {}
    for path, kind in (("/", "text/html"), ("/static/app.js", "javascript"),
                       ("/static/style.css", "text/css")):
        async with session.get(base + path) as resp:
            assert resp.status == 200 and kind in resp.content_type, (path, resp.content_type)
            texts[path] = await resp.text()
    assert '<script src="/static/app.js"' in texts["/"]
    # No CDN, no external fonts or scripts: every resource is this server's.
    assert 'src="http' not in texts["/"] and 'href="http' not in texts["/"]
    assert "@import" not in texts["/static/style.css"]
    assert "url(" not in texts["/static/style.css"]
    # Data reaches the page as text only.
    assert "innerHTML" not in texts["/static/app.js"]
    assert "insertAdjacentHTML" not in texts["/static/app.js"]


async def test_other_origins_and_host_names_are_refused(bare: Bare) -> None:
    session, base = bare.client.session, bare.client.base
    async with session.post(base + "/api/click", json={"as": "alice"},
                            headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
    async with session.get(base + "/api/state", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 403  # DNS rebinding
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(base + "/api/live?as=alice",
                                 headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    async with session.get(base + "/api/state?as=nobody") as resp:
        assert resp.status == 400 and "no member" in (await resp.json())["error"]


async def test_attachments_are_served_with_byte_ranges(bare: Bare) -> None:
    session, base = bare.client.session, bare.client.base
    att = bare.emulator.add_attachment("ref.mp4", REF, "video/mp4")
    url = f"{base}/media/{att['id']}/ref.mp4"
    async with session.get(url) as resp:
        assert resp.status == 200 and await resp.read() == REF
        assert resp.headers["Accept-Ranges"] == "bytes"
    async with session.get(url, headers={"Range": "bytes=10-19"}) as resp:
        assert resp.status == 206 and await resp.read() == REF[10:20]
        assert resp.headers["Content-Range"] == f"bytes 10-19/{len(REF)}"
    async with session.get(url, headers={"Range": f"bytes={len(REF)}-"}) as resp:
        assert resp.status == 416
    async with session.get(f"{base}/media/{att['id']}/other.mp4") as resp:
        assert resp.status == 404


async def test_the_sample_reference_is_an_mp4(bare: Bare) -> None:
    async with bare.client.session.get(bare.client.base + "/api/sample-reference") as resp:
        assert resp.status == 200 and resp.content_type == "video/mp4"
        data = await resp.read()
    assert data[4:8] == b"ftyp"


async def test_a_world_without_a_bot_shows_channels_members_and_no_commands(bare: Bare
                                                                           ) -> None:
    state = await bare.client.state("mod")
    names = [c["name"] for c in state["channels"]]
    assert names == ["clips", "after-dark", "no-threads", "audit"]
    flags = {c["name"]: (c["nsfw"], c["bot_can_create_threads"], c["audit"])
             for c in state["channels"]}
    assert flags == {"clips": (False, True, False), "after-dark": (True, True, False),
                     "no-threads": (False, False, False), "audit": (False, True, True)}
    assert [(m["name"], m["moderator"]) for m in state["members"]] == [
        ("alice", False), ("bob", False), ("mod", True)]
    assert state["commands"] == []


# -- with the bot ----------------------------------------------------------------------------


async def test_commands_are_listed_as_forms_and_the_audit_channel_was_set(
        client: PlaygroundClient) -> None:
    state = await client.state("mod")
    commands = {c["key"]: c for c in state["commands"]}
    assert {"ref2video", "credits grant", "credits balance", "admin status",
            "settings channels add", "settings audit_channel"} <= set(commands)
    group = commands["settings channels add"]
    assert (group["command"], group["group"], group["subcommand"]) == (
        "settings", "channels", "add")
    options = {o["name"]: o for o in commands["ref2video"]["options"]}
    assert options["prompt"]["type_name"] == "string" and options["prompt"]["required"]
    assert options["prompt"]["max_length"] == 6000
    assert options["video"]["type_name"] == "attachment" and options["video"]["required"]
    assert options["video2"]["type_name"] == "attachment" and not options["video2"]["required"]
    assert [c["value"] for c in options["duration"]["choices"]] == [5, 10]
    assert options["prompt_expansion"]["type_name"] == "boolean"
    assert options["seed"]["min_value"] == -1
    amount = {o["name"]: o for o in commands["credits grant"]["options"]}["amount"]
    assert amount["type_name"] == "integer" and amount["required"]
    assert commands["admin status"]["permissions"] is not None  # hidden from members
    assert commands["ref2video"]["permissions"] is None

    # Set at start by running /settings audit_channel as the moderator: its private answer
    # is in #audit for the moderator only.
    [answer] = by_text(messages(state, "audit"), "logged in")
    assert answer["ephemeral"] and answer["command"] == {
        "user": "mod", "name": "/settings audit_channel"}
    assert by_text(messages(await client.state("alice"), "audit"), "logged in") == []


async def test_a_clip_from_an_uploaded_file_then_a_reroll(client: PlaygroundClient) -> None:
    await grant(client, "alice", 1000)
    clip = await generate(client, "alice", "a cat surfing a wave")
    alice = await client.state("alice")
    # The private answer to the command is alice's alone; the status message is public.
    [queued] = by_text(messages(alice, "clips"), "Job #1 is queued")
    assert queued["ephemeral"] and queued["command"]["name"] == "/ref2video"
    bob = await client.state("bob")
    assert by_text(messages(bob, "clips"), "Job #1 is queued") == []
    [status] = [m for m in messages(bob, "clips") if m["thread"]]
    assert not status["ephemeral"] and status["embeds"][0]["title"] == "Job #1"
    assert status["thread"]["name"].startswith("#1")

    [video] = clip["attachments"]
    assert video["content_type"] == "video/mp4" and video["url"].startswith("/media/")
    async with client.session.get(client.base + video["url"]) as resp:
        assert resp.status == 200 and (await resp.read())[4:8] == b"ftyp"
    assert labels(clip) == ["Re-roll", "Use as reference"]
    await client.wait_for("alice", lambda s: member(s, "alice")["available"] == 1000 - PRICE
                          and member(s, "alice")["held"] == 0)

    # Re-roll: someone else is refused, privately; the owner is asked to confirm the price.
    status_code, _ = await client.click("bob", clip, "Re-roll")
    assert status_code == 200
    [refusal] = await client.wait_for("bob", lambda s: by_text(messages(s, clip["channel_id"]),
                                                               "Only its owner"))
    assert refusal["ephemeral"]
    status_code, _ = await client.click("alice", clip, "Re-roll")
    assert status_code == 200
    [question] = await client.wait_for(
        "alice", lambda s: [m for m in messages(s, clip["channel_id"])
                            if m["ephemeral"] and "Confirm" in labels(m)])
    assert f"{PRICE} credits" in text_of(question)
    assert by_text(messages(await client.state("alice"), clip["channel_id"]),
                   "Only its owner") == []  # bob's refusal is bob's
    status_code, _ = await client.click("alice", question, "Confirm")
    assert status_code == 200
    await client.wait_for("alice", lambda s: len(clips(s)) == 2, within=60.0)
    await client.wait_for("alice", lambda s: member(s, "alice")["available"] == 1000 - 2 * PRICE
                          and member(s, "alice")["held"] == 0)


async def test_use_as_reference_opens_a_form_for_its_presser_only(client: PlaygroundClient
                                                                  ) -> None:
    await grant(client, "alice", 1000)
    clip = await generate(client, "alice", "a dog on a skateboard")
    status, _ = await client.click("alice", clip, "Use as reference")
    assert status == 200
    [form] = await client.wait_for("alice", lambda s: s["modals"])
    assert form["title"] == "Use this clip as a reference"
    [field] = form["inputs"]
    assert field["custom_id"] == "prompt" and field["paragraph"] and field["required"]
    assert (await client.state("bob"))["modals"] == []

    # Escape: closed without an answer, and gone from the view.
    status, _ = await client.post("/api/modal/close", {"as": "alice",
                                                       "interaction_id": form["interaction_id"]})
    assert status == 200 and (await client.state("alice"))["modals"] == []
    status, body = await client.post("/api/modal", {"as": "alice", "values": {"prompt": "x"},
                                                    "interaction_id": form["interaction_id"]})
    assert status == 404, body

    await client.click("alice", clip, "Use as reference")
    [form] = await client.wait_for("alice", lambda s: s["modals"])
    status, body = await client.post("/api/modal", {"as": "bob", "values": {"prompt": "x"},
                                                    "interaction_id": form["interaction_id"]})
    assert status == 404, body  # not bob's form
    status, body = await client.post("/api/modal", {
        "as": "alice", "interaction_id": form["interaction_id"],
        "values": {"prompt": "the same dog, at night"}})
    assert status == 200, body
    await client.wait_for("alice", lambda s: by_text(messages(s, clip["channel_id"]),
                                                     "Job #2 is queued"))
    assert (await client.state("alice"))["modals"] == []
    await client.wait_for("alice", lambda s: len(clips(s)) == 2, within=60.0)


async def test_the_live_channel_pushes_each_viewer_their_own_view(client: PlaygroundClient
                                                                  ) -> None:
    async def next_state(ws: aiohttp.ClientWebSocketResponse, probe: Any) -> State:
        while True:
            msg = await asyncio.wait_for(ws.receive(), 20.0)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            if data["type"] == "state" and probe(data["state"]):
                state: State = data["state"]
                return state

    live = client.base + "/api/live"
    async with client.session.ws_connect(live + "?as=alice") as alice_ws, \
            client.session.ws_connect(live + "?as=bob") as bob_ws:
        first = await next_state(alice_ws, lambda s: True)
        assert first["viewer"] == member_id(first, "alice")
        await next_state(bob_ws, lambda s: True)

        status, _ = await client.run("alice", "clips", "credits balance")
        assert status == 200
        # Pushed, not polled: the private answer arrives over alice's socket...
        pushed = await next_state(alice_ws, lambda s: by_text(messages(s, "clips"),
                                                              "credits**"))
        [answer] = by_text(messages(pushed, "clips"), "credits**")
        assert answer["ephemeral"] and answer["command"]["name"] == "/credits balance"
        # ...while bob's view never holds it, and bob's unanswered list stays empty.
        bob_now = await client.state("bob")
        assert by_text(messages(bob_now, "clips"), "credits**") == []
        assert bob_now["unanswered"] == []

        # Looking as someone else over the same socket.
        await bob_ws.send_json({"type": "view", "as": "alice"})
        as_alice = await next_state(bob_ws, lambda s: s["viewer"] == member_id(s, "alice"))
        assert by_text(messages(as_alice, "clips"), "credits**") != []


async def test_refusals_are_answered_with_what_to_fix(client: PlaygroundClient) -> None:
    status, body = await client.run("alice", "clips", "ref2video", {"prompt": "no video"})
    assert status == 400 and "required" in body["error"] and "video" in body["error"]
    status, body = await client.run("alice", "clips", "nosuch")
    assert status == 400 and "not a command" in body["error"]
    alice = member_id(await client.state("mod"), "alice")
    status, body = await client.run("mod", "clips", "credits grant",
                                    {"user": alice, "amount": "ten"})
    assert status == 400 and "whole number" in body["error"]
    status, body = await client.run("mod", "clips", "credits grant",
                                    {"user": "123", "amount": "10"})
    assert status == 400 and "no such member" in body["error"]
    status, body = await client.run("alice", "clips", "ref2video",
                                    {"prompt": "x", "seed": "-5"},
                                    files={"video": ("ref.mp4", REF, "video/mp4")})
    assert status == 400 and "seed" in body["error"]
    status, body = await client.post("/api/click", {"as": "alice", "message_id": "1",
                                                    "custom_id": "x"})
    assert status == 404


async def test_autocomplete_asks_the_bot_for_suggestions(client: PlaygroundClient,
                                                         playground: Playground) -> None:
    clips_id = (await client.state("alice"))["channels"][0]["id"]
    status, body = await client.post("/api/autocomplete", {
        "as": "alice", "channel": clips_id, "command": "jobs cancel", "focused": "job",
        "options": {"job": "1"}})
    assert status == 200 and body == {"choices": []}  # alice has no queued job
    [rec] = [r for r in playground.emulator.interactions if r.type == 4]
    assert rec.callback_type == 8 and rec.choices == []  # answered by the bot
    assert (await client.state("alice"))["unanswered"] == []


async def test_a_moderator_command_refused_to_a_member_is_answered_privately(
        client: PlaygroundClient) -> None:
    status, _ = await client.run("alice", "clips", "admin status")
    assert status == 200
    [refusal] = await client.wait_for("alice", lambda s: [
        m for m in messages(s, "clips") if m["ephemeral"] and m["command"]
        and m["command"]["name"] == "/admin status"])
    assert "Manage Server" in text_of(refusal)
    status, _ = await client.run("mod", "clips", "admin status")
    assert status == 200
    [report] = await client.wait_for("mod", lambda s: [
        m for m in messages(s, "clips") if m["command"] and m["command"]["name"] ==
        "/admin status" and m["embeds"]])
    assert report["ephemeral"]


# -- pieces -------------------------------------------------------------------------------------


async def test_balances_are_read_on_a_connection_that_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    reader = CreditReader(path)
    assert await reader.read(1) == {}  # no database yet: nothing, no error
    db = await Database.open(path)
    try:
        await CreditStore(db).grant(1, 42, 500, actor_id=7, reason="test")
        read = await reader.read(1)
        assert (read[42].available, read[42].held) == (500, 0)
        conn = reader.connect()
        try:
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                conn.execute("UPDATE accounts SET balance = 0")
        finally:
            conn.close()
        assert (await CreditStore(db).balance(1, 42)).available == 500
    finally:
        await db.close()


async def test_a_bot_that_stops_while_starting_is_reported_with_its_log(tmp_path: Path
                                                                        ) -> None:
    def refused_token(discord: Endpoint, data_dir: Path, options: BotOptions) -> dict[str, str]:
        return {**simulate_env(discord, data_dir, options), "DISCORD_TOKEN": "not-the-token"}

    pg = Playground(PlaygroundConfig(data_dir=tmp_path / "data", port=0), bot_env=refused_token)
    with pytest.raises(BotExited) as exited:
        await pg.start()
    assert "exited with code 1" in str(exited.value)
    assert "Discord refused the token" in str(exited.value)  # the log's tail
    assert pg.bot is None and pg.server is None  # everything was closed again
