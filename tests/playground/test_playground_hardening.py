"""The playground's page server against what a careless or hostile request does, without a
bot: uploads of refused commands are not kept, nor more uploads than the budget, nor more
than two at once; a form too large is a JSON 413 naming the limit; odd ids are a 400, never
a 500; every response forbids framing and sniffing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from config.settings import Settings
from playground.credits import CreditReader
from playground.server import (
    MAX_UPLOAD,
    MAX_UPLOADS_IN_FLIGHT,
    SECURITY_HEADERS,
    SMALL_FORM,
    PlaygroundServer,
)
from tests.media import make_mp4
from tests.playground.conftest import Bare

MiB = 1024 * 1024
CLIP_COMMAND = {
    "id": "1", "name": "clip", "type": 1, "description": "a command taking a file",
    "options": [
        {"type": 11, "name": "video", "description": "v", "required": True},
        {"type": 4, "name": "count", "description": "c", "min_value": 1, "max_value": 3},
    ],
}


def with_clip_command(bare: Bare) -> list[int]:
    """Sync /clip for `bare`'s emulator, as a bot would; the ids of the attachments the
    emulator is asked to keep from then on."""
    bare.emulator.commands[None] = [CLIP_COMMAND]
    stored: list[int] = []
    add = bare.emulator.add_attachment

    def spy(filename: str, data: bytes, content_type: str | None = None, *,
            declared_size: int | None = None) -> dict[str, Any]:
        payload = add(filename, data, content_type, declared_size=declared_size)
        stored.append(int(payload["id"]))
        return payload

    bare.emulator.add_attachment = spy  # type: ignore[method-assign]
    return stored


def without_a_bot(bare: Bare) -> None:
    """Commands the emulator takes are dispatched to no one (there is no bot to identify
    on its gateway): they are answered with an interaction id and go nowhere."""
    async def dispatched(command: str, **kwargs: Any) -> Any:
        return SimpleNamespace(id=bare.emulator.next_id())

    bare.emulator.invoke = dispatched  # type: ignore[method-assign]


async def run_clip(bare: Bare, options: dict[str, str], data: bytes = b"video bytes"
                   ) -> tuple[int, Any]:
    return await bare.client.run("alice", str(bare.world.channels["clips"].id), "clip",
                                 options, files={"video": ("ref.mp4", data, "video/mp4")})


# -- uploads ---------------------------------------------------------------------------------


async def test_the_files_of_a_refused_command_are_not_kept(bare: Bare) -> None:
    stored = with_clip_command(bare)
    # Refused by the form's own checks: the file is never stored.
    status, body = await run_clip(bare, {"count": "two"})
    assert status == 400 and "whole number" in body["error"]
    assert stored == []
    # Refused by the emulator (out of range, as Discord's client would): stored, then
    # forgotten.
    status, body = await run_clip(bare, {"count": "9"})
    assert status == 400 and "count" in body["error"]
    [refused] = stored
    assert bare.emulator.served_attachment(refused) is None
    assert bare.server.uploads.kept == [] and bare.server.uploads.total == 0
    # Taken: kept for the bot to download.
    without_a_bot(bare)
    status, body = await run_clip(bare, {"count": "2"})
    assert status == 200, body
    kept = stored[-1]
    assert bare.emulator.served_attachment(kept) is not None
    assert bare.server.uploads.kept == [kept]


async def test_uploads_beyond_the_budget_are_forgotten_oldest_first(bare: Bare) -> None:
    stored = with_clip_command(bare)
    without_a_bot(bare)
    bare.server.uploads.budget = 2500
    for _ in range(3):
        status, body = await run_clip(bare, {}, data=bytes(1000))
        assert status == 200, body
    assert bare.server.uploads.kept == stored[1:] and bare.server.uploads.total == 2000
    assert bare.emulator.served_attachment(stored[0]) is None


async def test_at_most_two_uploads_are_received_at_once(bare: Bare) -> None:
    with_clip_command(bare)
    without_a_bot(bare)
    url = bare.client.base + "/api/run"
    session = bare.client.session
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:  # sent chunked: of unknown length
        yield b"--b\r\n"
        await go_on.wait()
        yield b"not a form--\r\n"

    async def slow_upload() -> int:
        async with session.post(url, data=slow_body(), headers={
                "Content-Type": "multipart/form-data; boundary=b"}) as resp:
            return resp.status

    slow = [asyncio.create_task(slow_upload()) for _ in range(MAX_UPLOADS_IN_FLIGHT)]
    try:
        await bare.emulator.wait_for(
            lambda: bare.server.uploads_in_flight == MAX_UPLOADS_IN_FLIGHT, within=5.0)
        form = aiohttp.FormData()
        form.add_field("as", "alice")
        form.add_field("video", bytes(SMALL_FORM), filename="ref.mp4",
                       content_type="video/mp4")
        async with session.post(url, data=form) as resp:
            assert resp.status == 429 and resp.content_type == "application/json"
            assert "already under way" in (await resp.json())["error"]
        # A command without files is no upload: still taken at once.
        status, body = await bare.client.run("alice", "clips", "nosuch")
        assert status == 400 and "not a command" in body["error"]
    finally:
        go_on.set()
        statuses = await asyncio.wait_for(asyncio.gather(*slow), 10.0)
    assert all(s == 400 for s in statuses), statuses  # received, then found to be no form
    assert bare.server.uploads_in_flight == 0
    status, body = await run_clip(bare, {}, data=bytes(SMALL_FORM + 1))
    assert status == 200, body


def test_the_upload_limit_covers_what_the_bot_accepts() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    video, audio = defaults["max_video_bytes"], defaults["max_audio_bytes"]
    assert isinstance(video, int) and isinstance(audio, int)
    assert 2 * video + audio < MAX_UPLOAD  # video, video2 and audio


async def _raw_post(port: int, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    """A POST to /api/run that sends only `body` whatever Content-Length says; the answer's
    status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in {
            "Host": f"127.0.0.1:{port}", **headers}.items())
        writer.write(f"POST /api/run HTTP/1.1\r\n{head}\r\n".encode() + body)
        await writer.drain()
        status = int((await asyncio.wait_for(reader.readline(), 5.0)).split()[1])
        length = 0
        while (line := await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-type":
                assert "application/json" in value
            if name.lower() == "content-length":
                length = int(value)
        return status, json.loads(await asyncio.wait_for(reader.readexactly(length), 5.0))
    finally:
        writer.close()


async def test_a_form_too_large_is_a_json_413_naming_the_limit(bare: Bare, tmp_path: Path
                                                              ) -> None:
    # Said up front: refused before a byte of it is read.
    status, body = await _raw_post(bare.server.port, {
        "Content-Type": "multipart/form-data; boundary=b",
        "Content-Length": str(MAX_UPLOAD + 1)}, b"--b\r\n")
    assert status == 413 and f"at most {MAX_UPLOAD // MiB} MiB" in body["error"]
    # Sent chunked: refused once the server has read that much.
    small = PlaygroundServer(bare.emulator, bare.world, CreditReader(tmp_path / "none"),
                             sample=make_mp4, max_upload=MiB)
    await small.start()
    try:
        async def body_chunks() -> AsyncIterator[bytes]:
            yield (b'--b\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n'
                   b"Content-Type: video/mp4\r\n\r\n")
            for _ in range(3):
                yield bytes(MiB // 2)
            yield b"\r\n--b--\r\n"

        async with bare.client.session.post(
                small.url + "api/run", data=body_chunks(),
                headers={"Content-Type": "multipart/form-data; boundary=b"}) as resp:
            assert resp.status == 413 and resp.content_type == "application/json"
            assert "at most 1 MiB" in (await resp.json())["error"]
    finally:
        await small.close()
    state = await bare.client.state()
    assert state["max_upload"] == MAX_UPLOAD  # for the page to check before sending


# -- ids and values --------------------------------------------------------------------------

ODD = ["¹", "１２", "1" * 5000, "1" * 21, "-1", " 1", "1_0", "0x1", ""]


@pytest.mark.parametrize("odd", ODD, ids=lambda o: f"{o[:4]!r}x{len(o)}")
async def test_odd_ids_are_a_400_never_a_500(bare: Bare, odd: str) -> None:
    session, base = bare.client.session, bare.client.base
    clips = str(bare.world.channels["clips"].id)
    answers: list[tuple[str, int, str]] = []

    async def record(what: str, resp: aiohttp.ClientResponse) -> None:
        answers.append((what, resp.status, resp.content_type))

    async with session.get(f"{base}/media/{odd or '0'}/x.mp4") as resp:
        await record("media", resp)
    async with session.get(f"{base}/api/state", params={"as": odd}) as resp:
        await record("state", resp)
    for path, body in (
            ("/api/click", {"as": "alice", "message_id": odd, "custom_id": "x"}),
            ("/api/modal", {"as": "alice", "interaction_id": odd, "values": {}}),
            ("/api/modal/close", {"as": "alice", "interaction_id": odd}),
            ("/api/autocomplete", {"as": "alice", "channel": odd, "command": "x",
                                   "focused": "y"}),
            ("/api/click", {"as": odd, "message_id": "1", "custom_id": "x"})):
        async with session.post(base + path, json=body) as resp:
            await record(path, resp)
    form = aiohttp.FormData({"as": "alice", "channel": odd, "command": "x", "options": "{}"})
    async with session.post(f"{base}/api/run", data=form) as resp:
        await record("run", resp)
    form = aiohttp.FormData({"as": odd, "channel": clips, "command": "x", "options": "{}"})
    async with session.post(f"{base}/api/run", data=form) as resp:
        await record("run as", resp)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(f"{base}/api/live?as={odd}")
    answers.append(("live", refused.value.status, "application/json"))
    assert all(status in (400, 404) and kind == "application/json"
               for _, status, kind in answers), answers
    if odd in ("¹", "1" * 5000):  # these crashed int()
        assert any(status == 400 for _, status, _ in answers)


async def test_an_odd_view_request_on_the_live_channel_changes_nothing(bare: Bare) -> None:
    async with bare.client.session.ws_connect(bare.client.base + "/api/live?as=alice") as ws:
        first = json.loads((await asyncio.wait_for(ws.receive(), 5.0)).data)
        for odd in ("¹", "1" * 5000, 10 ** 30):
            await ws.send_json({"type": "view", "as": odd})
        await ws.send_str('{"type": "view", "as": ' + "1" * 5000 + "}")  # int() refuses it
        await ws.send_json({"type": "view", "as": "bob"})
        bob = json.loads((await asyncio.wait_for(ws.receive(), 5.0)).data)
    assert first["state"]["viewer"] == str(bare.world.members["alice"].id)
    assert bob["state"]["viewer"] == str(bare.world.members["bob"].id)


async def test_a_stray_value_error_in_a_handler_is_a_json_400(bare: Bare,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise ValueError("a value nobody checked")

    monkeypatch.setattr(bare.server.viewer, "snapshot", broken)
    async with bare.client.session.get(bare.client.base + "/api/state?as=alice") as resp:
        assert resp.status == 400 and await resp.json() == {"error": "a value nobody checked"}


# -- headers ---------------------------------------------------------------------------------


async def test_every_response_forbids_framing_sniffing_and_embedding(bare: Bare) -> None:
    session, base = bare.client.session, bare.client.base
    att = bare.emulator.add_attachment("ref.mp4", make_mp4(), "video/mp4")
    paths = ["/", "/static/app.js", "/static/style.css", "/api/state?as=alice",
             f"/media/{att['id']}/ref.mp4", "/api/sample-reference", "/nothing-here",
             "/api/state?as=nobody"]
    for path in paths:
        async with session.get(base + path) as resp:
            for name, value in SECURITY_HEADERS.items():
                assert resp.headers.get(name) == value, (path, name, resp.headers.get(name))
    async with session.get(base + f"/media/{att['id']}/ref.mp4",
                           headers={"Range": "bytes=0-9"}) as resp:
        assert resp.status == 206
        assert resp.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    async with session.post(base + "/api/click", json={"as": "alice"},
                            headers={"Origin": "http://evil.example"}) as resp:
        assert resp.status == 403 and resp.headers["X-Frame-Options"] == "DENY"
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp


async def test_the_page_needs_nothing_its_policy_forbids(bare: Bare) -> None:
    async with bare.client.session.get(bare.client.base + "/") as resp:
        html = await resp.text()
    # No inline script or style, no inline event handlers: the CSP would block them.
    assert "<style" not in html and " style=" not in html
    scripts = html.count("<script")
    assert scripts == html.count("<script src=") == 1
    for attribute in ("onclick=", "onload=", "onerror=", "onsubmit=", "onchange="):
        assert attribute not in html.lower()
