"""The Discord emulator's gateway: one websocket endpoint speaking JSON text frames.

HELLO on connect, heartbeat ACKs, IDENTIFY -> READY + one GUILD_CREATE per guild (GUILDS
intent), RESUME -> missed events replayed + RESUMED, INVALID_SESSION for an unknown session,
and Discord's close codes for the mistakes a client can make. Faults on demand: op 7
RECONNECT, op 9 INVALID_SESSION on a live session (resumable or not), and a dropped
connection (a close code, or the TCP connection cut). Events dispatched while no
connection is attached stay in the session's log and are replayed on RESUME.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from discord_emulator.model import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    PRIVILEGED_INTENTS,
    GatewayFrame,
    Guild,
    User,
)

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, REQUEST_MEMBERS = 0, 1, 2, 6, 7, 8
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11


class GatewayHost(Protocol):
    bot: User
    bot_token: str
    privileged_intents: int
    application_id: int
    guilds: dict[int, Guild]


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[dict[str, Any] | _Close] = field(default_factory=asyncio.Queue)
    session: Session | None = None
    transport: asyncio.Transport | None = None  # to cut the TCP connection (drop)


@dataclass(eq=False)
class Session:
    id: str
    intents: int
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, for RESUME
    conn: _Connection | None = None


class Gateway:
    def __init__(self, host: GatewayHost, *, heartbeat_interval_ms: int) -> None:
        self.host = host
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.url = ""  # set by the emulator once it knows its port
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None  # the last identified session
        self.frames: list[GatewayFrame] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes = 0
        self.heartbeats = 0
        self._connections: set[_Connection] = set()

    # -- sending -------------------------------------------------------------------------

    def _send(self, conn: _Connection, frame: dict[str, Any]) -> None:
        self.frames.append(GatewayFrame("out", frame["op"], frame.get("t"), frame.get("s")))
        conn.outbox.put_nowait(frame)

    def _close(self, conn: _Connection, code: int, reason: str) -> None:
        conn.outbox.put_nowait(_Close(code, reason))

    def _dispatch_to(self, session: Session, event: str, data: Any) -> None:
        session.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.conn is not None:
            self._send(session.conn, frame)
        else:
            self.frames.append(GatewayFrame("out", DISPATCH, event, session.seq))

    def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None) -> bool:
        """Send an event to the connected bot if it asked for `intent`; False if it did not."""
        session = self.current
        if session is None or (intent is not None and not session.intents & intent):
            return False
        self._dispatch_to(session, event, data)
        return True

    def reconnect(self) -> None:
        """Ask the bot to reconnect (op 7), as Discord does before moving a session."""
        if self.current is None or self.current.conn is None:
            raise RuntimeError("no bot is connected to the gateway")
        self._send(self.current.conn, {"op": RECONNECT, "d": None})

    def _connected(self) -> tuple[Session, _Connection]:
        session = self.current
        if session is None or session.conn is None:
            raise RuntimeError("no bot is connected to the gateway")
        return session, session.conn

    def invalidate_session(self, *, resumable: bool) -> None:
        """Op 9 INVALID_SESSION on the live connection, as Discord sends when it has
        invalidated an active session. `d` says whether it may be resumed: true, the client
        reconnects and RESUMEs it (missed events are replayed); false, the session is gone
        (a RESUME of it gets op 9 d=false), the client must IDENTIFY again, and events
        dispatched before it has are lost, as on Discord."""
        session, conn = self._connected()
        if not resumable:
            self.sessions.pop(session.id, None)
            self.current = None
            session.conn = None  # nothing more is sent on the dead session
        self._send(conn, {"op": INVALID_SESSION, "d": resumable})

    def drop(self, *, code: int | None = None) -> None:
        """End the live connection as a network fault or a gateway restart does, keeping the
        session resumable: with `code`, a close frame carrying it (4000 "Unknown error" lets
        the client resume); None cuts the TCP connection with no close frame."""
        _, conn = self._connected()
        if code is None:
            if conn.transport is not None:
                conn.transport.abort()
            return
        self._close(conn, code, "Unknown error" if code == 4000 else "closed by the emulator")

    async def close(self) -> None:
        for conn in list(self._connections):
            await conn.ws.close(code=1001, message=b"emulator shutting down")

    # -- receiving -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, transport=request.transport)
        self._connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        if request.query.get("v") != "10":
            self._close(conn, 4012, "Invalid API version")
        elif request.query.get("encoding", "json") != "json":
            self._close(conn, 4002, "Only encoding=json is emulated")
        else:
            self._send(conn, {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms,
                                                 "_trace": ["emulator"]}})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    self._close(conn, 4002, "Decode error")
                    continue
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    self._close(conn, 4002, "Decode error")
                    continue
                self.frames.append(GatewayFrame("in", op, None, None))
                self._on_frame(conn, op, frame.get("d"))
        finally:
            self._connections.discard(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, conn: _Connection) -> None:
        while True:
            item = await conn.outbox.get()
            if conn.ws.closed:
                return
            if isinstance(item, _Close):
                await conn.ws.close(code=item.code, message=item.reason.encode())
                return
            await conn.ws.send_str(json.dumps(item))

    def _on_frame(self, conn: _Connection, op: int, data: Any) -> None:
        if op == HEARTBEAT:
            self.heartbeats += 1
            self._send(conn, {"op": HEARTBEAT_ACK, "d": None})
        elif op == IDENTIFY:
            self._identify(conn, data)
        elif op == RESUME:
            self._resume(conn, data)
        elif conn.session is None:
            self._close(conn, 4003, "Not authenticated")
        elif op == REQUEST_MEMBERS:
            self._request_members(conn.session, data)
        elif op not in (3, 4):  # presence and voice state updates are accepted and ignored
            self._close(conn, 4001, f"Unknown opcode {op}")

    def _identify(self, conn: _Connection, data: Any) -> None:
        if conn.session is not None:
            self._close(conn, 4005, "Already authenticated")
            return
        if not isinstance(data, dict) or data.get("token") != self.host.bot_token:
            self._close(conn, 4004, "Authentication failed")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            self._close(conn, 4013, "Invalid intent(s)")
            return
        if intents & PRIVILEGED_INTENTS & ~self.host.privileged_intents:
            self._close(conn, 4014, "Disallowed intent(s)")
            return
        self.identifies.append(data)
        session = Session(secrets.token_hex(16), intents, conn=conn)
        conn.session = session
        self.sessions[session.id] = session
        self.current = session
        guilds = list(self.host.guilds.values())
        self._dispatch_to(session, "READY", {
            "v": 10, "user": {**self.host.bot.payload(), "verified": True, "mfa_enabled": False,
                              "flags": 0},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id, "session_type": "normal",
            "resume_gateway_url": self.url,
            "application": {"id": str(self.host.application_id), "flags": 0},
            "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
            "geo_ordered_rtc_regions": [], "user_settings": {}, "_trace": ["emulator"],
        })
        if intents & INTENT_GUILDS:
            for guild in guilds:
                self._dispatch_to(session, "GUILD_CREATE", guild.payload())

    def _resume(self, conn: _Connection, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or data.get("token") != self.host.bot_token:
            self._send(conn, {"op": INVALID_SESSION, "d": False})
            return
        if session.conn is not None and session.conn is not conn:
            self._close(session.conn, 4009, "Session superseded by a resume")
        session.conn = conn
        conn.session = session
        self.current = session
        seq = data.get("seq") or 0
        for frame in session.log:
            if frame["s"] > seq:
                self._send(conn, frame)
        self.resumes += 1
        self._dispatch_to(session, "RESUMED", {"_trace": ["emulator"]})

    def _request_members(self, session: Session, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        guild = self.host.guilds.get(int(data.get("guild_id") or 0))
        if guild is None or not session.intents & INTENT_GUILD_MEMBERS:
            return
        self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", {
            "guild_id": str(guild.id), "members": [m.payload() for m in guild.members.values()],
            "chunk_index": 0, "chunk_count": 1, "nonce": data.get("nonce"), "not_found": [],
        })


__all__ = ["Gateway", "Session"]
