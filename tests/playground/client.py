"""A test's view of a running playground: its HTTP API through aiohttp, as the page uses it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

State = dict[str, Any]


class PlaygroundClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/")

    async def state(self, who: str = "alice") -> State:
        async with self.session.get(f"{self.base}/api/state", params={"as": who}) as resp:
            assert resp.status == 200, await resp.text()
            data: State = await resp.json()
            return data

    async def run(self, who: str, channel: str, command: str,
                  options: dict[str, Any] | None = None,
                  files: dict[str, tuple[str, bytes, str]] | None = None) -> tuple[int, Any]:
        """Run `/command` as member `who` in `channel` (a channel's name or a room id)."""
        if not channel.isdigit():
            channel = channel_id(await self.state(who), channel)
        form = aiohttp.FormData()
        form.add_field("as", who)
        form.add_field("channel", channel)
        form.add_field("command", command)
        form.add_field("options", json.dumps({k: str(v) for k, v in (options or {}).items()}))
        for name, (filename, data, content_type) in (files or {}).items():
            form.add_field(name, data, filename=filename, content_type=content_type)
        async with self.session.post(f"{self.base}/api/run", data=form) as resp:
            return resp.status, await resp.json()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(f"{self.base}{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def click(self, who: str, message: dict[str, Any], label: str) -> tuple[int, Any]:
        """Press the button labelled `label` on `message` (as the state shows it)."""
        return await self.post("/api/click", {"as": who, "message_id": message["id"],
                                              "custom_id": custom_id(message, label)})

    async def wait_for(self, who: str, probe: Callable[[State], Any], within: float = 30.0
                       ) -> Any:
        """Poll `who`'s state until `probe(state)` is truthy; returns that value."""
        deadline = time.monotonic() + within
        while True:
            state = await self.state(who)
            value = probe(state)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never held for {who} within {within} s; last state's "
                                   f"messages: {json.dumps(state['messages'])[:3000]}")
            await asyncio.sleep(0.1)


def channel_id(state: State, name: str) -> str:
    return next(str(c["id"]) for c in state["channels"] if c["name"] == name)


def member_id(state: State, name: str) -> str:
    return next(str(m["id"]) for m in state["members"] if m["name"] == name)


def member(state: State, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in state["members"] if m["name"] == name)
    return found


def messages(state: State, channel: str) -> list[dict[str, Any]]:
    room = channel if channel.isdigit() else channel_id(state, channel)
    found: list[dict[str, Any]] = state["messages"].get(room, [])
    return found


def thread_messages(state: State) -> list[dict[str, Any]]:
    return [m for ch in state["channels"] for t in ch["threads"]
            for m in state["messages"].get(t["id"], [])]


def clips(state: State) -> list[dict[str, Any]]:
    """Messages in any thread carrying a video."""
    return [m for m in thread_messages(state)
            if any(a["content_type"].startswith("video/") for a in m["attachments"])]


def labels(message: dict[str, Any]) -> list[str]:
    return [c.get("label", "") for row in message["components"]
            for c in row.get("components", [])]


def custom_id(message: dict[str, Any], label: str) -> str:
    for row in message["components"]:
        for c in row.get("components", []):
            if c.get("label") == label:
                return str(c["custom_id"])
    raise LookupError(f"no button {label!r} on message {message['id']}: {labels(message)}")


def text_of(message: dict[str, Any]) -> str:
    """Content and embed text of a message, for asserting on what it says."""
    parts = [message["content"]]
    for e in message["embeds"]:
        parts += [e.get("title") or "", e.get("description") or ""]
        parts += [f"{f['name']}: {f['value']}" for f in e.get("fields") or []]
    return "\n".join(parts)
