"""The playground's web server (aiohttp, 127.0.0.1 only): the page, its JSON API and the live
channel, a websocket that pushes each viewer's state whenever the emulator reports a change
(and at least every second, for credits and for interactions that went unanswered).

    GET  /                      the page (static/index.html; static/app.js, static/style.css)
    GET  /api/state?as=ID       what member ID (or name) sees, as views.Viewer.snapshot
    GET  /api/live?as=ID        websocket: {"type": "state", "state": ...} on every change;
                                send {"type": "view", "as": ID} to look as someone else
    POST /api/run               a form: as, channel, command ("credits grant"), options
                                (JSON: option name -> text value), and one file per
                                attachment option, named by the option
    POST /api/autocomplete      JSON: as, channel, command, focused, options (as typed):
                                {"choices": [{"name", "value"}...]}, the bot's suggestions
    POST /api/click             JSON: as, message_id, custom_id[, values]
    POST /api/modal             JSON: as, interaction_id, values (custom_id -> text)
    POST /api/modal/close       JSON: as, interaction_id (Escape, or Cancel)
    GET  /api/sample-reference  a short MP4 to use as a reference video
    GET  /media/{id}/{name}     an attachment's bytes (byte ranges, for <video>)

Errors are JSON `{"error": message}` with a 4xx status. Requests whose Host is not this
server's loopback address, and cross-origin POSTs and websockets, are refused (403): other
web pages open in the same browser must not drive the playground. Nor may they frame it
(X-Frame-Options, CSP frame-ancestors) or embed its media (Cross-Origin-Resource-Policy);
every response carries those headers and a Content-Security-Policy that allows only this
server's own scripts and styles.

A command's form is at most MAX_UPLOAD bytes (413 beyond), and at most
MAX_UPLOADS_IN_FLIGHT forms carrying files are received at once (429 beyond). Uploads are
kept in the emulator within a byte budget (playground/uploads.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from discord_emulator.emulator import DiscordEmulator, Member
from discord_emulator.model import ApiError
from discord_layer.owned_task import OwnedTask
from playground.commands import Upload, find_leaf, is_snowflake, option_values
from playground.credits import CreditReader, Credits
from playground.uploads import Uploads
from playground.views import Viewer, ViewState
from playground.world import PlaygroundWorld

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MiB = 1024 * 1024
# What the bot accepts at most in one /ref2video (two reference videos of 100 MiB and 20 MiB
# of audio: config/settings.py's MAX_VIDEO_BYTES and MAX_AUDIO_BYTES), plus the form's
# other fields and its multipart framing.
BOT_MAX_FILES = 2 * 100 * MiB + 20 * MiB
MAX_UPLOAD = BOT_MAX_FILES + 4 * MiB
MAX_UPLOADS_IN_FLIGHT = 2
SMALL_FORM = 256 * 1024  # a form body beyond this (or of unknown length) counts as an upload
HOST = "127.0.0.1"
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "img-src 'self' data:; media-src 'self' blob:; "
                               "object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
TICK_SECONDS = 1.0  # pushes at least this often: credits change without a Discord request
DEBOUNCE_SECONDS = 0.05  # a burst of edits becomes one push
AUTOCOMPLETE_SECONDS = 3.5  # the bot has Discord's 3 s to suggest
SampleMaker = Callable[[], bytes]


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def listening_socket(port: int, host: str = HOST) -> socket.socket:
    """A socket bound to host:`port` (0: any free port) and listening, for the page; OSError
    (EADDRINUSE, most often) if it cannot be had. Taken before anything else starts, so a
    taken port fails at once; connections wait in its backlog until the page is served."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def too_large(limit: int) -> str:
    return (f"the files are too large: a command takes at most {limit / MiB:.0f} MiB of "
            f"uploads in all (the bot accepts reference videos up to 100 MiB each and "
            f"audio up to 20 MiB)")


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    viewer: Member
    last: str | None = None  # the state last sent, to send only changes
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class LiveHub:
    """Pushes each connected page its viewer's state when it changed."""

    def __init__(self, snapshot: Callable[[Member, Mapping[int, Credits]], dict[str, Any]],
                 read_credits: Callable[[], Awaitable[dict[int, Credits]]]) -> None:
        self._snapshot = snapshot
        self._read_credits = read_credits
        self.credits: dict[int, Credits] = {}
        self._clients: set[_Client] = set()
        self._changed = asyncio.Event()
        self._loop = OwnedTask("playground-live", self._run)

    def poke(self, what: str = "") -> None:
        """The emulator's change hook (and ours): a push follows shortly."""
        self._changed.set()

    def state_text(self, viewer: Member) -> str:
        return json.dumps({"type": "state", "state": self._snapshot(viewer, self.credits)})

    async def refresh_credits(self) -> None:
        self.credits = await self._read_credits()

    async def push(self, client: _Client, text: str | None = None) -> None:
        text = self.state_text(client.viewer) if text is None else text
        async with client.lock:
            if text == client.last or client.ws.closed:
                return
            client.last = text
            with contextlib.suppress(ConnectionError, RuntimeError):  # a page going away
                await client.ws.send_str(text)

    async def push_all(self) -> None:
        texts: dict[int, str] = {}  # one snapshot per viewer, however many pages show it
        for client in list(self._clients):
            viewer = client.viewer
            if viewer.id not in texts:
                texts[viewer.id] = self.state_text(viewer)
            await self.push(client, texts[viewer.id])

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), TICK_SECONDS)
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self._changed.clear()
            try:
                await self.refresh_credits()
                await self.push_all()
            except Exception:  # keep the live channel alive through one bad round
                log.exception("pushing the playground's state failed")

    def start(self) -> None:
        self._loop.start()

    def add(self, client: _Client) -> None:
        self._clients.add(client)

    def remove(self, client: _Client) -> None:
        self._clients.discard(client)

    async def close(self) -> None:
        await self._loop.close()
        for client in list(self._clients):
            await client.ws.close()


class PlaygroundServer:
    def __init__(self, emulator: DiscordEmulator, world: PlaygroundWorld,
                 credits: CreditReader, *, sample: SampleMaker,
                 about: Mapping[str, Any] | None = None, max_upload: int = MAX_UPLOAD,
                 uploads: Uploads | None = None) -> None:
        self.emulator = emulator
        self.max_upload = max_upload
        self.uploads = uploads or Uploads(emulator)
        self.uploads_in_flight = 0
        self.world = world
        self.credits = credits
        self.about = dict(about or {})
        self._sample = sample
        self._sample_bytes: bytes | None = None
        self.view_state = ViewState()
        self.viewer = Viewer(emulator, world, self.view_state)
        self.hub = LiveHub(self._snapshot, lambda: credits.read(world.guild.id))
        self._remove_hook: Callable[[], None] | None = None
        self._runner: web.AppRunner | None = None
        self.host = HOST
        self.port = 0
        self.url = ""

    def _snapshot(self, viewer: Member, credits: Mapping[int, Credits]) -> dict[str, Any]:
        return {**self.viewer.snapshot(viewer, credits), "about": self.about,
                "max_upload": self.max_upload}

    # -- lifecycle -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=self.max_upload)
        app.on_response_prepare.append(self._security_headers)
        r = app.router
        r.add_get("/", self._index)
        r.add_static("/static", STATIC, append_version=False)
        r.add_get("/api/state", self._state)
        r.add_get("/api/live", self._live)
        r.add_post("/api/run", self._run)
        r.add_post("/api/autocomplete", self._autocomplete)
        r.add_post("/api/click", self._click)
        r.add_post("/api/modal", self._modal)
        r.add_post("/api/modal/close", self._modal_close)
        r.add_get("/api/sample-reference", self._sample_reference)
        r.add_get("/media/{id}/{name}", self._media)
        return app

    async def start(self, port: int = 0, *, sock: socket.socket | None = None) -> str:
        """Serve on 127.0.0.1:`port` (0: any free port), or on `sock` (from
        listening_socket, which is then the server's); returns the page's URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite = (web.SockSite(self._runner, sock) if sock is not None
                              else web.TCPSite(self._runner, self.host, port))
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{self.host}:{self.port}/"
        await self.hub.refresh_credits()
        self._remove_hook = self.emulator.on_change(self.hub.poke)
        self.hub.start()
        return self.url

    async def close(self) -> None:
        if self._remove_hook is not None:
            self._remove_hook()
            self._remove_hook = None
        await self.hub.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- plumbing --------------------------------------------------------------------------

    def _local(self, netloc: str) -> bool:
        return netloc in (f"127.0.0.1:{self.port}", f"localhost:{self.port}")

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        # DNS rebinding: a page from elsewhere whose name resolves to 127.0.0.1.
        if not self._local(request.host):
            return _error(403, "this playground answers only on 127.0.0.1")
        origin = request.headers.get("Origin")
        cross = origin is not None and not self._local(urlsplit(origin).netloc)
        if cross and (request.method != "GET" or request.path == "/api/live"):
            return _error(403, "cross-origin requests are refused")
        try:
            return await handler(request)
        except RequestError as exc:
            return _error(exc.status, str(exc))
        except web.HTTPRequestEntityTooLarge:  # a body beyond client_max_size
            return _error(413, too_large(self.max_upload))
        except HttpProcessingError as exc:  # a body that is no form (bad multipart)
            return _error(400, f"the request could not be read: {exc.message}")
        except ValueError as exc:  # FormError, and any value a handler could not take
            return _error(400, str(exc) or "a value in the request is not valid")

    async def _security_headers(self, request: web.Request,
                                response: web.StreamResponse) -> None:
        """On every response, files and errors too: no framing by other pages (clicks
        hijacked), only this server's scripts, no MIME sniffing, no Referer, and media
        that other sites cannot embed."""
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    def _member(self, raw: Any) -> Member:
        try:
            return self.world.member(str(raw))
        except (KeyError, ValueError):
            raise RequestError(400, f"no member {raw!r}: choose alice, bob or mod") from None

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise RequestError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        """The emulator refuses what Discord's client would not send (a required option
        missing, a value out of range, a disabled button...): a 400 the page shows."""
        try:
            yield
        except (LookupError, TypeError, ValueError) as exc:
            raise RequestError(400, str(exc).strip("'\"")) from None

    def _id(self, raw: Any, what: str) -> int:
        text = str(raw)
        if not is_snowflake(text):
            raise RequestError(400, f"{what} must be an id")
        return int(text)

    # -- the page and its state ------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html",
                                headers={"Cache-Control": "no-cache"})

    async def _state(self, request: web.Request) -> web.StreamResponse:
        viewer = self._member(request.query.get("as", "alice"))
        return web.json_response(self._snapshot(viewer, self.hub.credits))

    async def _live(self, request: web.Request) -> web.StreamResponse:
        viewer = self._member(request.query.get("as", "alice"))
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        client = _Client(ws, viewer)
        self.hub.add(client)
        try:
            await self.hub.push(client)
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                    wanted = self._member(data["as"]) if data.get("type") == "view" else None
                except (ValueError, KeyError, TypeError, AttributeError, RequestError):
                    continue  # a frame we do not understand changes nothing
                if wanted is not None:
                    client.viewer = wanted
                    await self.hub.push(client)
        finally:
            self.hub.remove(client)
        return ws

    # -- actions -----------------------------------------------------------------------------

    async def _run(self, request: web.Request) -> web.StreamResponse:
        """Run a slash command as a member in a channel or thread."""
        length = request.content_length
        if length is not None and length > self.max_upload:
            raise RequestError(413, too_large(self.max_upload))
        upload = length is None or length > SMALL_FORM
        if upload:
            if self.uploads_in_flight >= MAX_UPLOADS_IN_FLIGHT:
                raise RequestError(429, f"{self.uploads_in_flight} uploads are already under "
                                        f"way: send this one once they are done")
            self.uploads_in_flight += 1
        try:
            return await self._run_form(request)
        finally:
            if upload:
                self.uploads_in_flight -= 1

    async def _run_form(self, request: web.Request) -> web.StreamResponse:
        fields: dict[str, str] = {}
        files: dict[str, Upload] = {}
        for name, value in (await request.post()).items():
            if isinstance(value, str):
                fields[name] = value
            elif isinstance(value, web.FileField):
                data = await asyncio.to_thread(value.file.read)
                if value.filename and data:  # an empty file input sends an empty part
                    ctype = value.content_type
                    files[name] = Upload(value.filename, data, None if ctype in (
                        "", "application/octet-stream") else ctype)
        member = self._member(fields.get("as"))
        try:
            channel = self.emulator.channel_of(self._id(fields.get("channel"), "channel"))
        except ApiError:
            raise RequestError(404, "no such channel") from None
        if channel.guild is not self.world.guild:
            raise RequestError(400, "that channel is not in the playground's server")
        leaf = find_leaf(self.emulator, self.world.guild, fields.get("command", ""))
        try:
            raw_values = json.loads(fields.get("options") or "{}")
        except ValueError:
            raise RequestError(400, "options must be a JSON object") from None
        if not isinstance(raw_values, dict):
            raise RequestError(400, "options must be a JSON object")
        values = {str(k): str(v) for k, v in raw_values.items() if v is not None}
        stored: list[int] = []

        def store(file: Upload) -> dict[str, Any]:
            payload = self.uploads.store(file)
            stored.append(int(payload["id"]))
            return payload

        options = option_values(self.emulator, self.world.guild, leaf, values, files,
                                store=store)
        try:
            with self._refusals():
                rec = await self.emulator.invoke(leaf.command, group=leaf.group,
                                                 subcommand=leaf.subcommand, user=member,
                                                 channel=channel, options=options)
        except BaseException:  # refused: nobody will ever download these
            self.uploads.forget(stored)
            raise
        self.hub.poke()
        return web.json_response({"interaction_id": str(rec.id)})

    async def _autocomplete(self, request: web.Request) -> web.StreamResponse:
        """The bot's suggestions for what a member has typed into an autocomplete option."""
        body = await self._json(request)
        member = self._member(body.get("as"))
        try:
            channel = self.emulator.channel_of(self._id(body.get("channel"), "channel"))
        except ApiError:
            raise RequestError(404, "no such channel") from None
        leaf = find_leaf(self.emulator, self.world.guild, str(body.get("command", "")))
        focused = str(body.get("focused", ""))
        raw = body.get("options")
        values = {str(k): str(v) for k, v in (raw if isinstance(raw, dict) else {}).items()}
        typed = values.pop(focused, "")
        options = option_values(self.emulator, self.world.guild, leaf, values, {},
                                lenient=True)
        options[focused] = typed  # as typed so far: Discord sends it unchecked
        with self._refusals():
            rec = await self.emulator.autocomplete(
                leaf.command, group=leaf.group, subcommand=leaf.subcommand, user=member,
                channel=channel, focused=focused, options=options)
        with contextlib.suppress(TimeoutError):  # unanswered: no suggestions, as in Discord
            await self.emulator.wait_for(lambda: rec.choices is not None or rec.late,
                                         within=AUTOCOMPLETE_SECONDS)
        return web.json_response({"choices": rec.choices or []})

    async def _click(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        member = self._member(body.get("as"))
        try:
            message = self.emulator.message(self._id(body.get("message_id"), "message_id"))
        except KeyError:
            raise RequestError(404, "no such message") from None
        if message.deleted or not self.viewer.visible(message, member):
            raise RequestError(404, "no such message")
        values = body.get("values")
        if values is not None and not (
            isinstance(values, list) and all(isinstance(v, str) for v in values)
        ):
            raise RequestError(400, "values must be a list of strings")
        with self._refusals():
            rec = await self.emulator.click(message, str(body.get("custom_id", "")),
                                            user=member, values=values)
        self.hub.poke()
        return web.json_response({"interaction_id": str(rec.id)})

    def _open_modal(self, body: Mapping[str, Any], member: Member) -> Any:
        rec = self.emulator.interaction(self._id(body.get("interaction_id"), "interaction_id"))
        if (rec is None or rec.modal is None or rec.user_id != member.id
                or rec.id in self.view_state.closed_modals):
            raise RequestError(404, "no such open form")
        return rec

    async def _modal(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        member = self._member(body.get("as"))
        opened = self._open_modal(body, member)
        values = body.get("values")
        if not isinstance(values, dict):
            raise RequestError(400, "values must be an object")
        with self._refusals():
            rec = await self.emulator.submit_modal(
                opened, {str(k): str(v) for k, v in values.items()}, user=member)
        self.view_state.closed_modals.add(opened.id)
        self.hub.poke()
        return web.json_response({"interaction_id": str(rec.id)})

    async def _modal_close(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        opened = self._open_modal(body, self._member(body.get("as")))
        self.view_state.closed_modals.add(opened.id)
        self.hub.poke()
        return web.json_response({"closed": str(opened.id)})

    async def _sample_reference(self, request: web.Request) -> web.StreamResponse:
        if self._sample_bytes is None:
            self._sample_bytes = await asyncio.to_thread(self._sample)
        return web.Response(body=self._sample_bytes, content_type="video/mp4", headers={
            "Content-Disposition": 'inline; filename="sample-reference.mp4"'})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        att = self.emulator.served_attachment(self._id(request.match_info["id"], "id"))
        if att is None or att.filename != request.match_info["name"]:
            raise RequestError(404, "no such attachment")
        return ranged(request, att.data, att.content_type or "application/octet-stream")


def ranged(request: web.Request, data: bytes, content_type: str) -> web.Response:
    """`data`, or the one byte range asked for: <video> seeks and Chromium probes with
    ranges, and expects 206 answers."""
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    size = len(data)
    try:
        wanted = request.http_range
    except ValueError:
        wanted = slice(None, None)
    if wanted.start is None and wanted.stop is None:
        return web.Response(body=data, content_type=content_type, headers=headers)
    start, stop = wanted.start, wanted.stop
    if start is None:  # not produced by aiohttp, but harmless
        start = 0
    if start < 0:  # "bytes=-N": the last N bytes
        start = max(0, size + start)
    stop = size if stop is None else min(stop, size)
    if start >= size or start >= stop:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return web.Response(status=206, body=data[start:stop], content_type=content_type,
                        headers=headers)
