"""DiscordEmulator: a real aiohttp server on 127.0.0.1 that unmodified discord.py runs against.

Point discord.py at it with `discord.http.Route.BASE = emulator.api_base` and
`DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emulator.gateway_url)` (the URL that
`GET {api_base}/gateway/bot` reports). Build the world (guilds, channels, members, roles),
drive interactions with `invoke`, `autocomplete`, `click` and `submit_modal`, inject faults
with `rate_limit` (429s), `fail_after_commit` (lost replies), `refuse`, `delete_message`,
`delete_channel`, `archive_thread`, `revoke`, `reconnect_gateway`, `invalidate_session` and
`drop_gateway`, and read what the bot did
from `requests`, `messages`, `threads` and `interactions`. Discord's limits are enforced with
Discord's status codes (see DiscordEmulator's docstring). The world and records live in
discord_model.py, the websocket in discord_gateway.py, interaction building in
discord_interactions.py.
"""

from __future__ import annotations

import json
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from discord_emulator.gateway import Gateway
from discord_emulator.interactions import (
    InteractionBuilder,
    validate_autocomplete,
    validate_modal,
)
from discord_emulator.model import (
    DEFAULT_ATTACHMENT_LINK_TTL,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_FILESIZE_LIMIT,
    EDITABLE_FLAGS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    GONE,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    SENDABLE_FLAGS,
    ApiError,
    AttachmentLinks,
    AttachmentRecord,
    Channel,
    Guild,
    InteractionRecord,
    LostReplyRule,
    Member,
    MessageRecord,
    MiB,
    Perm,
    RateLimitRule,
    RefusalRule,
    Rejection,
    RequestRecord,
    Role,
    Snowflakes,
    Thread,
    User,
    form_error,
    invalid_webhook_token,
    iso_now,
    mentions_pinged,
    missing_permissions,
    poll,
    snowflake_iso,
    thread_options,
    unknown,
    validate_message,
    validate_nonce,
)

API = "/api/v10"
_RECORD = web.RequestKey("record", RequestRecord)
_T = TypeVar("_T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    """JSON with `Content-Type: application/json` exactly (a charset suffix breaks discord.py)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


@dataclass
class _Upload:
    index: int
    filename: str
    data: bytes


class DiscordEmulator:
    """Enforced as Discord does: first callback within `ack_deadline` s (else 404 10062, and
    the record's `late` is set), one first callback (400 40060), follow-ups and @original
    edits within `token_lifetime` s (401 50027), content <= 2000 chars, embeds, components
    and allowed_mentions within Discord's limits (400 50035, see discord_model.validate_*),
    <= 10 attachments (400 30015), each file <= the guild's filesize_limit and a request's
    files <= max(filesize_limit, request_size_limit) (413 40005), empty messages (400
    50006), the bot's channel permissions for posting, attaching and creating threads (403
    50013), thread names 1-100 chars and auto_archive_duration 60/1440/4320/10080 (400
    50035), the bot token on REST (401) and IDENTIFY (close 4004), privileged intents (4014),
    every documented limit of a command sync, a modal and autocomplete results (400 50035;
    see discord_interactions), and `enforce_nonce` deduplication of channel messages within
    `nonce_window` s (the earlier message is returned, nothing new is created).

    Attachment links are signed and expire, as Discord's CDN links do:
    `{base_url}/attachments/<channel>/<id>/<name>?ex=<8-hex expiry>&is=<8-hex issue>&hm=<64-hex
    HMAC>&` (`proxy_url`: the same under `/media`), unix seconds on `clock` (default
    time.time; replace it to move time), lasting `attachment_link_ttl` s (default a day). A
    link that is expired, unsigned, tampered with, or for an attachment no longer served
    answers 404 "This content is no longer available.". Every payload that shows an
    attachment (message replies and GETs, MESSAGE_CREATE/UPDATE, an interaction's
    `resolved.attachments`, `add_attachment`) carries a link valid when it is produced; an
    attachment keeps its link while that has half its lifetime left, so payloads produced
    close together agree (see discord_model.AttachmentLinks). `expire_attachment_links()`
    makes every link issued so far 404 from then on; re-fetching the message gives a working
    one."""

    def __init__(
        self, *, bot_name: str = "ref2video", ack_deadline: float = 3.0,
        token_lifetime: float = 15 * 60, request_size_limit: int = 25 * MiB,
        privileged_intents: int = 0, heartbeat_interval_ms: int = 41_250,
        nonce_window: float = 5 * 60, attachment_link_ttl: float = DEFAULT_ATTACHMENT_LINK_TTL,
    ) -> None:
        self.ack_deadline = ack_deadline
        self.attachment_link_ttl = attachment_link_ttl
        self.clock: Callable[[], float] = time.time  # unix seconds, for attachment links
        self.attachment_links = AttachmentLinks(lambda: self.clock(),
                                                lambda: self.attachment_link_ttl)
        self.nonce_window = nonce_window  # Docs: enforce_nonce looks back "a few minutes"
        self.token_lifetime = token_lifetime
        self.request_size_limit = request_size_limit
        self.privileged_intents = privileged_intents
        self._ids = Snowflakes()
        self.application_id = self.next_id()
        self.bot = User(self.application_id, bot_name, bot=True)
        self.owner = User(self.next_id(), "owner")
        self.users: dict[int, User] = {u.id: u for u in (self.bot, self.owner)}
        self.bot_token = f"emulator.{secrets.token_urlsafe(24)}"
        self.guilds: dict[int, Guild] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {None: []}  # None: global
        self.requests: list[RequestRecord] = []
        self.messages: list[MessageRecord] = []
        self.threads: list[Thread] = []
        self.deleted_channels: list[Channel | Thread] = []  # by delete_channel
        self.interactions: list[InteractionRecord] = []
        self.internal_errors: list[Exception] = []
        self.base_url = self.api_base = self.gateway_url = ""
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self._builder = InteractionBuilder(self)
        self._channels: dict[int, Channel | Thread] = {}
        self._messages: dict[int, MessageRecord] = {}
        self._blobs: dict[int, AttachmentRecord] = {}
        self._by_id: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self._rate_limits: list[RateLimitRule] = []
        self._lost_replies: list[LostReplyRule] = []
        self._refusals: list[RefusalRule] = []
        self._runner: web.AppRunner | None = None
        self._change_listeners: list[Callable[[str], None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=128 * MiB)
        r = app.router
        r.add_get("/gateway", self.gateway.handle)
        for prefix in ("", "/media"):
            r.add_get(prefix + "/{kind:attachments|ephemeral-attachments}/{scope}/{id}/{name}",
                      self._blob)
        r.add_get(API + "/gateway", self._get_gateway)
        r.add_get(API + "/gateway/bot", self._get_gateway)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/users/{user_id:\\d+}", self._user)
        r.add_get(API + "/oauth2/applications/@me", self._app_info)
        for path in ("/applications/{app}/commands", "/applications/{app}/guilds/{guild}/commands"):
            r.add_get(API + path, self._get_commands)
            r.add_put(API + path, self._put_commands)
        r.add_post(API + "/interactions/{iid}/{token}/callback", self._callback)
        r.add_post(API + "/webhooks/{app}/{token}", self._followup)
        r.add_route("*", API + "/webhooks/{app}/{token}/messages/{mid}", self._webhook_message)
        r.add_post(API + "/channels/{cid}/messages", self._post_message)
        r.add_get(API + "/channels/{cid}/messages", self._history)
        r.add_route("*", API + "/channels/{cid}/messages/{mid}", self._channel_message)
        r.add_post(API + "/channels/{cid}/messages/{mid}/threads", self._thread_from_message)
        r.add_post(API + "/channels/{cid}/threads", self._thread_without_message)
        r.add_get(API + "/channels/{cid}", self._get_channel)
        r.add_get(API + "/guilds/{gid}", self._get_guild)
        r.add_get(API + "/guilds/{gid}/members/{uid}", self._get_member)
        r.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self.api_base = self.base_url + API
        self.gateway_url = self.gateway.url = f"ws://{host}:{port}/gateway"

    async def close(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordEmulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- world building ----------------------------------------------------------------------

    def next_id(self) -> int:
        return self._ids.next()

    def register_channel(self, channel: Channel | Thread) -> None:
        self._channels[channel.id] = channel

    def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None) -> None:
        self.gateway.dispatch(event, data, intent=intent)
        self._changed(event)

    def on_change(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(what)` after anything that may change what a Discord client shows:
        each REST request other than a GET, once answered (what = "METHOD /path"), and each
        gateway event dispatched - interactions, world building - whether or not the bot
        asked for it (what = the event's name). For live views such as the playground's.
        A listener must be quick (set an event, say); one that raises is recorded in
        `internal_errors`. Returns a function that removes the listener."""
        self._change_listeners.append(listener)

        def remove() -> None:
            if listener in self._change_listeners:
                self._change_listeners.remove(listener)

        return remove

    def _changed(self, what: str) -> None:
        for listener in list(self._change_listeners):
            try:
                listener(what)
            except Exception as exc:  # noqa: BLE001 - a view's bug must not break the request it watched
                self.internal_errors.append(exc)

    def add_guild(self, name: str, *, filesize_limit: int = DEFAULT_FILESIZE_LIMIT,
                  locale: str = "en-US", bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
                  guild_id: int | None = None) -> Guild:
        """`guild_id`: a fixed id (e.g. one kept from an earlier run), else a new one."""
        guild = Guild(self, name, filesize_limit=filesize_limit, locale=locale,
                      bot_permissions=bot_permissions, guild_id=guild_id)
        self.guilds[guild.id] = guild
        self.dispatch("GUILD_CREATE", guild.payload(), intent=INTENT_GUILDS)
        return guild

    def add_attachment(self, filename: str, data: bytes, content_type: str | None = None, *,
                       declared_size: int | None = None) -> dict[str, Any]:
        """A user's upload for an attachment option, served from the emulator. Its payload's
        `size` is `declared_size` when given (a client that lies about it), else the true
        size; the bytes served are always `data`."""
        att = self._make_attachment(0, filename, data, content_type, ephemeral=True)
        att.declared_size = declared_size
        return att.payload()

    def expire_attachment_links(self) -> None:
        """Every attachment link issued so far answers 404 from now on (as after Discord's
        day); links in payloads produced later work."""
        self.attachment_links.revoke_all()

    def forget_attachment(self, attachment_id: int) -> bool:
        """Stop serving an attachment and drop its bytes (an upload whose command was
        refused, say); its URL answers 404 from then on. False if it was not served."""
        return self._blobs.pop(attachment_id, None) is not None

    def _make_attachment(self, scope: int, filename: str, data: bytes, content_type: str | None,
                         *, ephemeral: bool = False, description: str | None = None
                         ) -> AttachmentRecord:
        aid = self.next_id()
        # As Discord does: a name fit for a URL path (no "#", "/", "?" or spaces).
        filename = re.sub(r"[^\w.\-]", "_", filename) or "unknown"
        kind = "ephemeral-attachments" if ephemeral else "attachments"
        path = f"/{kind}/{scope or self.application_id}/{aid}/{filename}"
        guessed = mimetypes.guess_type(filename)[0]
        att = AttachmentRecord(aid, filename, data, content_type or guessed, self.base_url, path,
                               self.attachment_links, description)
        self._blobs[aid] = att
        return att

    # -- records and helpers for tests ------------------------------------------------------

    def channel_messages(self, channel_id: int, *, include_ephemeral: bool = True
                         ) -> list[MessageRecord]:
        return [m for m in self.messages if m.channel_id == channel_id and not m.deleted
                and (include_ephemeral or not m.ephemeral)]

    def served_attachment(self, attachment_id: int) -> AttachmentRecord | None:
        return self._blobs.get(attachment_id)

    def channel_of(self, channel_id: int) -> Channel | Thread:
        return self._channel(channel_id)

    def message(self, message_id: int) -> MessageRecord:
        return self._messages[message_id]

    def interaction(self, interaction_id: int) -> InteractionRecord | None:
        """The interaction with this id (e.g. the one an ephemeral message answers)."""
        return self._by_id.get(interaction_id)

    def command(self, name: str, guild_id: int | None = None) -> dict[str, Any] | None:
        return next((c for c in self.commands.get(guild_id, []) if c["name"] == name), None)

    def mentions_pinged(self, message: MessageRecord) -> set[str]:
        """Which of "everyone", "user:<id>", "role:<id>" this message notifies (its current
        content and allowed_mentions; see discord_model.mentions_pinged for the rules)."""
        replied = None
        ref = message.message_reference
        if ref is not None and (target := self._messages.get(int(ref["message_id"]))) is not None:
            replied = target.author_id
        return mentions_pinged(message.content, message.allowed_mentions, replied)

    def unacknowledged_interactions(self) -> list[InteractionRecord]:
        return [i for i in self.interactions if i.unacknowledged]

    def expire_tokens(self) -> None:
        """Age every interaction past the token lifetime (and so past the ack deadline)."""
        for rec in self.interactions:
            rec.age_offset += self.token_lifetime + 1

    def rate_limit(self, method: str, path_regex: str, *, retry_after: float = 0.2,
                   times: int = 1, is_global: bool = False) -> None:
        """Answer the next `times` matching requests (re.search on the path) with a 429."""
        self._rate_limits.append(RateLimitRule(
            method.upper(), re.compile(path_regex), times, retry_after=retry_after,
            is_global=is_global))

    def fail_after_commit(self, method: str, path_regex: str, status: int = 500,
                          times: int = 1) -> None:
        """Process the next `times` matching requests (re.search on the path) that succeed
        in full - the message is created, the edit applied - then answer `status` with a
        JSON error body instead, as when a reply is lost on the way back. Each such request
        has `reply_lost` set. discord.py retries 500, 502, 504 and 524 (up to 5 tries, 1 + 2n
        s apart); a retried channel post carries the same enforce_nonce, so it gets the
        message already created, while follow-ups and callbacks have no nonce."""
        self._lost_replies.append(LostReplyRule(
            method.upper(), re.compile(path_regex), times, status=status))

    def refuse(self, method: str, path_regex: str, status: int, *, code: int = 0,
               message: str = "injected refusal", times: int = 1) -> None:
        """Answer the next `times` matching requests (re.search on the path) with `status`
        and Discord's error body, without processing them: nothing is created."""
        self._refusals.append(RefusalRule(
            method.upper(), re.compile(path_regex), times, status=status, code=code,
            message=message))

    # -- faults a moderator (or Discord) causes mid-job -----------------------------------------

    def delete_message(self, message: MessageRecord) -> None:
        """A moderator deletes a message: REST on it answers 404 10008 from then on and
        MESSAGE_DELETE is sent. A thread started from it stays, as on Discord."""
        message.deleted = True
        data = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        self.dispatch("MESSAGE_DELETE", data, intent=INTENT_GUILD_MESSAGES)

    def delete_channel(self, channel: Channel | Thread) -> None:
        """A moderator deletes a channel or a thread: every REST call on it, and on a deleted
        channel's threads, answers 404 10003 from then on. A thread sends THREAD_DELETE (id,
        guild_id, parent_id, type); a channel sends CHANNEL_DELETE only, as Discord does
        (clients drop its threads themselves). What was posted stays in `messages`, as a
        record; `deleted_channels` lists what was deleted."""
        guild = channel.guild
        gone: list[Channel | Thread] = [channel]
        if isinstance(channel, Thread):
            guild.threads.pop(channel.id, None)
            event, data = "THREAD_DELETE", {
                "id": str(channel.id), "guild_id": str(guild.id),
                "parent_id": str(channel.parent_id), "type": channel.type}
        else:
            guild.channels.pop(channel.id, None)
            threads = [t for t in guild.threads.values() if t.parent is channel]
            threads += [t for t in self.threads if t.parent is channel and t not in threads
                        and t.id in self._channels]  # archived ones too
            for thread in threads:
                guild.threads.pop(thread.id, None)
            gone += threads
            event, data = "CHANNEL_DELETE", channel.payload()
        for item in gone:
            if self._channels.pop(item.id, None) is not None:
                self.deleted_channels.append(item)
        self.dispatch(event, data, intent=INTENT_GUILDS)

    def archive_thread(self, thread: Thread, *, locked: bool = False) -> None:
        """Archive a thread (a moderator, or its auto-archive timer): THREAD_UPDATE with
        thread_metadata.archived. A post in it unarchives it (another THREAD_UPDATE), as on
        Discord, unless it is `locked` and the poster lacks Manage Threads (400 50083)."""
        thread.archived, thread.locked = True, locked
        thread.archive_timestamp = iso_now()
        self.dispatch("THREAD_UPDATE", thread.payload(), intent=INTENT_GUILDS)

    def revoke(self, channel: Channel, bits: int) -> None:
        """A moderator denies the bot `bits` in `channel` (a member overwrite, which its
        threads follow): CHANNEL_UPDATE is sent, and REST checks the bits from then on (403
        50013); interactions there report the reduced app_permissions."""
        channel.bot_deny |= bits
        self.dispatch("CHANNEL_UPDATE", channel.payload(), intent=INTENT_GUILDS)

    def _post_unarchives(self, thread: Thread) -> None:
        """Docs, Threads: sending a message unarchives an archived thread, unless it is
        locked and the sender may not manage threads."""
        if not thread.archived:
            return
        if thread.locked and not thread.permissions_for(thread.guild.bot_member) & (
                Perm.MANAGE_THREADS):
            raise ApiError(400, 50083, "Thread is archived")
        thread.archived = False
        thread.archive_timestamp = iso_now()
        self.dispatch("THREAD_UPDATE", thread.payload(), intent=INTENT_GUILDS)

    def member_says(self, member: Member, channel: Channel | Thread, content: str
                    ) -> MessageRecord:
        """A member posts a plain message (traffic around the bot's own posts)."""
        msg = MessageRecord(self.next_id(), channel.id, channel.guild.id, member.id, "user",
                            content=content)
        self.messages.append(msg)
        self._messages[msg.id] = msg
        if isinstance(channel, Thread):
            channel.message_count += 1
        self.dispatch("MESSAGE_CREATE", {**self._created_payload(msg),
                                         "member": member.payload(user=False),
                                         "guild_id": str(channel.guild.id)},
                      intent=INTENT_GUILD_MESSAGES)
        return msg

    async def wait_for(self, predicate: Callable[[], _T], within: float = 5.0) -> _T:
        return await poll(predicate, within, lambda: f"condition {predicate!r} never held")

    async def reconnect_gateway(self) -> None:
        """Send op 7 RECONNECT; discord.py then resumes on resume_gateway_url."""
        self.gateway.reconnect()

    def invalidate_session(self, *, resumable: bool) -> None:
        """Send op 9 INVALID_SESSION on the live session (see Gateway.invalidate_session):
        d=true, discord.py resumes; d=false, it identifies again and gets a new READY."""
        self.gateway.invalidate_session(resumable=resumable)

    def drop_gateway(self, *, code: int | None = 4000) -> None:
        """End the gateway connection, keeping its session resumable: with a close `code`
        (4000, Discord's "Unknown error", by default), or None to cut the TCP connection
        with no close frame. discord.py reconnects and RESUMEs either way."""
        self.gateway.drop(code=code)

    # -- driving interactions ----------------------------------------------------------------

    async def invoke(self, command: str, *, user: Member | User, channel: Channel | Thread,
                     options: Mapping[str, Any] | None = None, subcommand: str | None = None,
                     group: str | None = None, locale: str = "en-US",
                     unchecked: bool = False) -> InteractionRecord:
        """Dispatch a slash command, typed against what the bot synced (LookupError/TypeError
        on a command or option that was not synced or a value of the wrong type; ValueError
        on a value Discord would refuse: not a choice, out of range, too long or short).
        `unchecked=True` (tests only) skips those value checks, sending what a forged or
        malformed interaction would, to test the bot's own checks."""
        return self._start(self._builder.command(command, user=user, channel=channel,
                                                 options=options or {}, subcommand=subcommand,
                                                 group=group, locale=locale,
                                                 unchecked=unchecked))

    async def autocomplete(self, command: str, *, user: Member | User, channel: Channel | Thread,
                           focused: str, options: Mapping[str, Any],
                           subcommand: str | None = None, group: str | None = None,
                           locale: str = "en-US") -> InteractionRecord:
        """Dispatch an autocomplete interaction (type 4) for option `focused`, whose value in
        `options` is what the user has typed so far; the record's `choices` gets the
        bot's answer (callback type 8)."""
        return self._start(self._builder.command(command, user=user, channel=channel,
                                                 options=options, subcommand=subcommand,
                                                 group=group, locale=locale, focused=focused))

    async def click(self, message: MessageRecord, custom_id: str, *, user: Member | User,
                    values: Sequence[str] | None = None) -> InteractionRecord:
        """Press a button (or choose `values` in a select) on a message the bot sent."""
        channel = self._channel(message.channel_id)
        return self._start(self._builder.component(message, custom_id, user=user,
                                                   channel=channel, values=values))

    async def submit_modal(self, opened: InteractionRecord, values: Mapping[str, Any], *,
                           user: Member | User | None = None) -> InteractionRecord:
        """Submit the modal that `opened` showed, with text (or select) values by custom_id."""
        return self._start(self._builder.modal_submit(opened, values, user=user))

    def _start(self, rec: InteractionRecord) -> InteractionRecord:
        if self.gateway.current is None:
            raise RuntimeError("no bot has identified on the gateway yet")
        rec.deadline = self.ack_deadline
        self.interactions.append(rec)
        self._by_id[rec.id] = rec
        self._by_token[rec.token] = rec
        rec.dispatched_at = time.monotonic()
        self.dispatch("INTERACTION_CREATE", rec.payload, intent=None)
        return rec

    # -- plumbing ----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = RequestRecord(request.method, request.path, dict(request.query))
        self.requests.append(record)
        request[_RECORD] = record
        try:
            early = self._forced_429(request, record) or self._auth(request)
            response = early if early is not None else await handler(request)
            if early is None and response.status < 400 and (rule := next(
                (r for r in self._lost_replies if r.matches(request.method, request.path)), None
            )) is not None:
                record.reply_lost = True
                response = json_response(rule.body(), rule.status)
        except ApiError as exc:
            record.code = exc.code
            response = json_response(exc.body(), exc.status)
        except web.HTTPException as exc:  # aiohttp's own (e.g. a body over client_max_size)
            response = json_response({"message": f"{exc.status}: {exc.reason}", "code": 0},
                                     exc.status)
        except Exception as exc:  # a payload it cannot handle: a 400, not a 500 that
            # discord.py would retry for 25 s; tests can assert `internal_errors` is empty.
            if request.transport is None or request.transport.is_closing():
                raise  # the client went away mid-request (a crashed bot): not our error
            self.internal_errors.append(exc)
            record.code = 50035
            response = json_response({"message": f"emulator: {exc!r}", "code": 50035}, 400)
        record.status = response.status
        if request.method != "GET":
            self._changed(f"{request.method} {request.path}")
        return response

    def _forced_429(self, request: web.Request, record: RequestRecord) -> web.Response | None:
        for rule in self._rate_limits:
            if rule.matches(request.method, request.path):
                record.forced = True
                return json_response(rule.body(), 429, rule.headers())
        for refusal in self._refusals:
            if refusal.matches(request.method, request.path):
                record.forced = True
                record.code = refusal.code
                return json_response(refusal.body(), refusal.status)
        return None

    def _auth(self, request: web.Request) -> web.Response | None:
        path = request.path
        if not path.startswith(API) or path == API + "/gateway" or path.startswith(
            (API + "/webhooks/", API + "/interactions/")
        ):
            return None
        if request.headers.get("Authorization") != f"Bot {self.bot_token}":
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        return None

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], list[_Upload]]:
        record = request[_RECORD]
        uploads: list[_Upload] = []
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            raw = form.get("payload_json")
            payload = json.loads(raw) if isinstance(raw, str) else {}
            for name, value in form.items():
                match = re.fullmatch(r"files\[(\d+)\]", name)
                if match and isinstance(value, web.FileField):
                    uploads.append(_Upload(int(match[1]), value.filename, value.file.read()))
            record.form = {"payload_json": payload,
                           "files": [(u.index, u.filename, len(u.data)) for u in uploads]}
        else:
            text = await request.text()
            try:
                payload = json.loads(text) if text else {}
            except ValueError:
                raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
            record.json = payload
        if not isinstance(payload, dict):
            raise form_error([], "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
        return payload, uploads

    def _channel(self, channel_id: int | str) -> Channel | Thread:
        try:
            return self._channels[int(channel_id)]
        except (KeyError, ValueError):
            raise unknown("Channel") from None

    def _require(self, channel: Channel | Thread, bits: int) -> None:
        perms = channel.permissions_for(channel.guild.bot_member)
        if not perms & Perm.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if perms & bits != bits:
            raise missing_permissions()

    # -- messages ----------------------------------------------------------------------------

    def message_payload(self, m: MessageRecord) -> dict[str, Any]:
        pinged = self.mentions_pinged(m)
        users = [self.users[int(p[5:])] for p in sorted(pinged)
                 if p.startswith("user:") and int(p[5:]) in self.users]
        data: dict[str, Any] = {
            "id": str(m.id), "channel_id": str(m.channel_id),
            "author": self.users[m.author_id].payload(), "content": m.content,
            "timestamp": snowflake_iso(m.id), "edited_timestamp": None, "tts": m.tts,
            "mention_everyone": "everyone" in pinged, "mentions": [u.payload() for u in users],
            "mention_roles": [p[5:] for p in sorted(pinged) if p.startswith("role:")],
            "attachments": [a.payload() for a in m.attachments], "embeds": m.embeds,
            "pinned": False, "type": m.type, "flags": m.flags, "components": m.components,
        }
        if m.edited_at is not None:
            data["edited_timestamp"] = iso_now()
        if m.webhook_id is not None:
            data["webhook_id"] = data["application_id"] = str(m.webhook_id)
        if m.message_reference is not None:
            data["message_reference"] = m.message_reference
        if m.thread_id is not None and (thread := self._channels.get(m.thread_id)) is not None:
            data["thread"] = thread.payload()
        if m.interaction_id is not None:
            rec = self._by_id[m.interaction_id]
            user = self.users[rec.user_id].payload()
            data["interaction_metadata"] = {
                "id": str(rec.id), "type": rec.type, "user": user,
                "authorizing_integration_owners": {"0": str(rec.guild_id)}}
            if rec.type == 2:
                data["interaction"] = {"id": str(rec.id), "type": 2, "name": rec.name, "user": user}
        return data

    def _apply(self, msg: MessageRecord, payload: Mapping[str, Any], uploads: list[_Upload],
               channel: Channel | Thread, *, creating: bool) -> None:
        """Validate then apply a create or edit payload to `msg` (unchanged on error)."""
        draft = MessageRecord(**{**msg.__dict__, "history": msg.history})
        if "content" in payload:
            draft.content = str(payload["content"] or "")
        for key in ("embeds", "components"):
            if key in payload:
                setattr(draft, key, list(payload[key] or []))
        if "allowed_mentions" in payload:
            draft.allowed_mentions = payload["allowed_mentions"]
        if creating:  # only interaction responses and follow-ups may be ephemeral
            mask = SENDABLE_FLAGS if msg.interaction_id else SENDABLE_FLAGS & ~FLAG_EPHEMERAL
            draft.flags |= int(payload.get("flags") or 0) & mask
            draft.tts = bool(payload.get("tts", False))
            draft.message_reference = payload.get("message_reference")
        elif payload.get("flags") is not None:
            keep = draft.flags & ~EDITABLE_FLAGS
            draft.flags = keep | (int(payload["flags"]) & EDITABLE_FLAGS)
        if not creating:
            draft.flags &= ~FLAG_LOADING
        listed = payload.get("attachments")
        meta = {str(a.get("id")): a for a in listed or [] if isinstance(a, dict)}
        kept = [a for a in msg.attachments if listed is None or str(a.id) in meta]
        draft.attachments = kept
        validate_message(draft, [len(u.data) for u in uploads],
                         attachments=len(kept) + len(uploads),
                         file_limit=channel.guild.filesize_limit,
                         request_limit=self.request_size_limit)
        ref = draft.message_reference
        if creating and ref is not None:
            target = self._messages.get(int(ref.get("message_id") or 0))
            if target is None or target.channel_id != channel.id or target.deleted:
                raise form_error(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                 "Unknown message")
        draft.attachments = kept + [
            self._make_attachment(channel.id, str(meta.get(str(u.index), {}).get("filename")
                                                  or u.filename), u.data, None,
                                  description=meta.get(str(u.index), {}).get("description"))
            for u in uploads]
        if not creating:
            draft.history = [*msg.history, msg.snapshot()]
            draft.edited_at = time.monotonic()
        msg.__dict__.update(draft.__dict__)

    def _create(self, channel: Channel | Thread, payload: Mapping[str, Any],
                uploads: list[_Upload], *, via: str, rec: InteractionRecord | None = None
                ) -> MessageRecord:
        msg = self._draft(channel, payload, uploads, via=via, rec=rec)
        self._store(msg, channel)
        return msg

    def _draft(self, channel: Channel | Thread, payload: Mapping[str, Any],
               uploads: list[_Upload], *, via: str, rec: InteractionRecord | None = None
               ) -> MessageRecord:
        """A validated new message, not yet stored."""
        msg = MessageRecord(
            self.next_id(), channel.id, channel.guild.id, self.bot.id, via,
            type=20 if rec is not None and rec.type == 2 else 0,
            interaction_id=rec.id if rec is not None else None,
            webhook_id=self.application_id if rec is not None else None)
        self._apply(msg, payload, uploads, channel, creating=True)
        return msg

    def _created_payload(self, m: MessageRecord) -> dict[str, Any]:
        """A message as Create Message and MESSAGE_CREATE show it: with its nonce."""
        data = self.message_payload(m)
        if m.nonce is not None:
            data["nonce"] = m.nonce
        return data

    def _store(self, msg: MessageRecord, channel: Channel | Thread) -> None:
        self.messages.append(msg)
        self._messages[msg.id] = msg
        if isinstance(channel, Thread):
            channel.message_count += 1
        if not msg.ephemeral:
            member = channel.guild.bot_member.payload(user=False)
            self.dispatch("MESSAGE_CREATE", {**self._created_payload(msg), "member": member,
                                             "guild_id": str(channel.guild.id)},
                          intent=INTENT_GUILD_MESSAGES)

    def _channel_msg(self, channel: Channel | Thread, mid: str) -> MessageRecord:
        msg = self._messages.get(int(mid)) if _is_id(mid) else None
        if msg is None or msg.channel_id != channel.id or msg.deleted or msg.ephemeral:
            raise unknown("Message")
        return msg

    # -- REST: identity and commands ----------------------------------------------------------

    async def _get_gateway(self, request: web.Request) -> web.StreamResponse:
        return json_response({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}})

    async def _me(self, request: web.Request) -> web.StreamResponse:
        return json_response({**self.bot.payload(), "verified": True, "mfa_enabled": False,
                              "flags": 0, "locale": "en-US"})

    async def _user(self, request: web.Request) -> web.StreamResponse:
        user = self.users.get(int(request.match_info["user_id"]))
        if user is None:
            raise unknown("User")
        return json_response(user.payload())

    async def _app_info(self, request: web.Request) -> web.StreamResponse:
        return json_response({
            "id": str(self.application_id), "name": self.bot.name, "icon": None,
            "description": "", "bot_public": False, "bot_require_code_grant": False,
            "owner": self.owner.payload(), "verify_key": "0" * 64, "flags": 0, "team": None,
            "summary": "", "bot": self.bot.payload(), "rpc_origins": [], "tags": [],
        })

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["app"] != str(self.application_id):
            raise unknown("Application")
        gid = request.match_info.get("guild")
        if gid is None:
            return None
        if not _is_id(gid) or int(gid) not in self.guilds:
            raise ApiError(403, 50001, "Missing Access")
        return int(gid)

    async def _get_commands(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request) -> web.StreamResponse:
        scope = self._command_scope(request)
        body = json.loads(await request.text() or "null")
        request[_RECORD].json = body
        self._builder.validate_commands(body, guild=scope is not None)
        old = {(c["name"], c["type"]): c for c in self.commands.get(scope, [])}
        stored = []
        for cmd in body:
            kind = cmd.get("type") or 1
            prev = old.get((cmd["name"], kind))
            data = {"default_member_permissions": None, "nsfw": False, "description": "",
                    "options": [], **cmd, "type": kind,
                    "id": prev["id"] if prev else str(self.next_id()),
                    "application_id": str(self.application_id), "version": str(self.next_id())}
            if scope is not None:
                data["guild_id"] = str(scope)
            stored.append(data)
        self.commands[scope] = stored
        return json_response(stored)

    # -- REST: interactions and follow-ups -----------------------------------------------------

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        rec = self._by_id.get(int(request.match_info["iid"]))
        if rec is None or rec.token != request.match_info["token"]:
            raise unknown("interaction")
        try:
            payload, uploads = await self._read_body(request)
            if rec.acked:
                raise ApiError(400, 40060, "Interaction has already been acknowledged.")
            if rec.age > rec.deadline:
                rec.late = True
                raise unknown("interaction")
            answer = self._respond(rec, payload, uploads)
        except ApiError as exc:
            rec.rejections.append(Rejection("callback", exc.status, exc.code))
            raise
        if request.query.get("with_response") not in ("1", "true", "True"):
            return web.Response(status=204)
        return json_response(answer)

    def _respond(self, rec: InteractionRecord, payload: Mapping[str, Any],
                 uploads: list[_Upload]) -> dict[str, Any]:
        kind = payload.get("type")
        data = payload.get("data") or {}
        allowed = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}[rec.type]
        if rec.type == 5 and rec.source_message is None:
            allowed = {4, 5}
        if kind not in allowed:
            raise form_error(["type"], "INTERACTION_RESPONSE_TYPE_INVALID",
                             f"Callback type {kind} is not valid for interaction type {rec.type}")
        channel = self._channel(rec.channel_id)
        message: MessageRecord | None = None
        if kind == 4:
            message = self._create(channel, data, uploads, via="interaction", rec=rec)
        elif kind == 5:
            message = MessageRecord(
                self.next_id(), channel.id, channel.guild.id, self.bot.id, "interaction",
                flags=FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL),
                type=20 if rec.type == 2 else 0, interaction_id=rec.id,
                webhook_id=self.application_id)
            self._store(message, channel)
        elif kind in (6, 7):
            message = rec.source_message
            if kind == 7 and message is not None:
                self._apply(message, data, uploads, channel, creating=False)
        elif kind == 8:
            assert rec.focused is not None
            rec.choices = validate_autocomplete(payload.get("data"), rec.focused)
        elif kind == 9:
            rec.modal = validate_modal(payload.get("data"))
        rec.original = message
        rec.callback_type = kind
        rec.acked_at = time.monotonic() - rec.dispatched_at
        rec.ephemeral = kind in (4, 5) and message is not None and message.ephemeral
        answer: dict[str, Any] = {"interaction": {
            "id": str(rec.id), "type": rec.type,
            "response_message_loading": kind == 5, "response_message_ephemeral": rec.ephemeral}}
        if message is not None:
            answer["interaction"]["response_message_id"] = str(message.id)
        answer["resource"] = {"type": kind}
        if kind in (4, 7) and message is not None:
            answer["resource"]["message"] = self.message_payload(message)
        return answer

    def _webhook_rec(self, request: web.Request, route: str) -> InteractionRecord:
        if request.match_info["app"] != str(self.application_id):
            raise unknown("Webhook")
        rec = self._by_token.get(request.match_info["token"])
        if rec is None:
            raise invalid_webhook_token()
        if rec.age > self.token_lifetime:
            rec.rejections.append(Rejection(route, 401, 50027))
            raise invalid_webhook_token()
        if not rec.acked:  # nothing to follow up before the interaction was acknowledged
            rec.rejections.append(Rejection(route, 404, 10015))
            raise unknown("Webhook")
        return rec

    def _tracked(self, rec: InteractionRecord, route: str, exc: ApiError) -> ApiError:
        rec.rejections.append(Rejection(route, exc.status, exc.code))
        return exc

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        rec = self._webhook_rec(request, "followup")
        payload, uploads = await self._read_body(request)
        thread_id = request.query.get("thread_id")
        channel = self._channel(thread_id or rec.channel_id)
        original = rec.original
        try:
            if rec.callback_type == 5 and original is not None and original.loading:
                # The first follow-up after a defer fills the "thinking" message in, keeping
                # the ephemeral choice made at defer time.
                self._apply(original, payload, uploads, channel, creating=False)
                msg = original
            else:
                msg = self._create(channel, payload, uploads, via="webhook", rec=rec)
        except ApiError as exc:
            raise self._tracked(rec, "followup", exc) from None
        rec.followups.append(msg)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(self.message_payload(msg))
        return web.Response(status=204)

    async def _webhook_message(self, request: web.Request) -> web.StreamResponse:
        mid = request.match_info["mid"]
        route = "original" if mid == "@original" else "followup"
        rec = self._webhook_rec(request, route)
        msg = rec.original if mid == "@original" else next(
            (m for m in [rec.original, *rec.followups] if m is not None and str(m.id) == mid), None)
        try:
            if msg is None or msg.deleted:
                raise unknown("Message")
            if request.method == "GET":
                return json_response(self.message_payload(msg))
            if request.method == "DELETE":
                msg.deleted = True
                return web.Response(status=204)
            if request.method != "PATCH":
                raise ApiError(405, 0, "405: Method Not Allowed")
            payload, uploads = await self._read_body(request)
            self._apply(msg, payload, uploads, self._channel(msg.channel_id), creating=False)
        except ApiError as exc:
            raise self._tracked(rec, route, exc) from None
        return json_response(self.message_payload(msg))

    # -- REST: channels, threads, guilds -------------------------------------------------------

    async def _post_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request.match_info["cid"])
        payload, uploads = await self._read_body(request)
        send = Perm.SEND_MESSAGES_IN_THREADS if isinstance(channel, Thread) else Perm.SEND_MESSAGES
        self._require(channel, send | (Perm.ATTACH_FILES if uploads else 0))
        nonce = validate_nonce(payload.get("nonce"))
        msg = self._draft(channel, payload, uploads, via="rest")
        if isinstance(channel, Thread):
            self._post_unarchives(channel)
        msg.nonce = nonce
        if payload.get("enforce_nonce") and nonce is not None and (
            earlier := self._nonce_match(msg)
        ) is not None:
            # Docs, Create Message: the message the same author created with this nonce in
            # the past few minutes is returned, and no new one is created.
            for attachment in msg.attachments:
                self._blobs.pop(attachment.id, None)
            request[_RECORD].deduplicated = True
            return json_response(self._created_payload(earlier))
        self._store(msg, channel)
        return json_response(self._created_payload(msg))

    def _nonce_match(self, draft: MessageRecord) -> MessageRecord | None:
        since = time.monotonic() - self.nonce_window
        return next((m for m in reversed(self.messages)
                     if m.created_at >= since and m.channel_id == draft.channel_id
                     and m.author_id == draft.author_id and m.nonce is not None
                     and str(m.nonce) == str(draft.nonce) and not m.deleted), None)

    async def _history(self, request: web.Request) -> web.StreamResponse:
        """GET /channels/{c}/messages: newest first, `limit` 1-100, one of before/after/around
        (around is not needed by the bot and answered like a plain fetch)."""
        channel = self._channel(request.match_info["cid"])
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        try:
            limit = int(request.query.get("limit", "50"))
            before = int(request.query["before"]) if "before" in request.query else None
            after = int(request.query["after"]) if "after" in request.query else None
        except ValueError:
            raise form_error(["limit"], "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if not 1 <= limit <= 100:
            raise form_error(["limit"], "NUMBER_TYPE_MAX", "int value should be 1 to 100.")
        found = sorted((m for m in self.channel_messages(channel.id, include_ephemeral=False)
                        if (before is None or m.id < before) and (after is None or m.id > after)),
                       key=lambda m: m.id)
        # Discord answers newest first; with `after` it returns the oldest `limit` after it.
        chosen = found[:limit] if after is not None and before is None else found[-limit:]
        return json_response([self.message_payload(m) for m in reversed(chosen)])

    async def _channel_message(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request.match_info["cid"])
        self._require(channel, Perm.READ_MESSAGE_HISTORY if request.method == "GET" else 0)
        msg = self._channel_msg(channel, request.match_info["mid"])
        if request.method == "GET":
            return json_response(self.message_payload(msg))
        if request.method == "DELETE":
            if msg.author_id != self.bot.id:
                self._require(channel, Perm.MANAGE_MESSAGES)
            msg.deleted = True
            return web.Response(status=204)
        if request.method != "PATCH":
            raise ApiError(405, 0, "405: Method Not Allowed")
        if msg.author_id != self.bot.id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload, uploads = await self._read_body(request)
        self._apply(msg, payload, uploads, channel, creating=False)
        return json_response(self.message_payload(msg))

    def _open_thread(self, parent: Channel, tid: int, kind: int, payload: Mapping[str, Any],
                     starter: MessageRecord | None) -> web.Response:
        name, archive, slowmode = thread_options(payload, parent.default_auto_archive_duration)
        need = Perm.CREATE_PUBLIC_THREADS if kind == 11 else Perm.CREATE_PRIVATE_THREADS
        self._require(parent, need)
        if starter is not None and starter.thread_id is not None:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        thread = Thread(tid, parent, name, kind, self.bot.id,
                        starter.id if starter else None, archive, slowmode,
                        bool(payload.get("invitable", True)))
        if starter is not None:
            starter.thread_id = thread.id
        parent.guild.threads[thread.id] = thread
        self.threads.append(thread)
        self.register_channel(thread)
        self.dispatch("THREAD_CREATE", {**thread.payload(), "newly_created": True},
                      intent=None)
        return json_response(thread.payload(), 201)

    def _text_parent(self, cid: str) -> Channel:
        channel = self._channel(cid)
        if isinstance(channel, Thread):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        return channel

    async def _thread_from_message(self, request: web.Request) -> web.StreamResponse:
        parent = self._text_parent(request.match_info["cid"])
        payload, _ = await self._read_body(request)
        starter = self._channel_msg(parent, request.match_info["mid"])
        return self._open_thread(parent, starter.id, 11, payload, starter)

    async def _thread_without_message(self, request: web.Request) -> web.StreamResponse:
        parent = self._text_parent(request.match_info["cid"])
        payload, _ = await self._read_body(request)
        kind = payload.get("type", 12)
        if kind not in (11, 12):
            raise form_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {11, 12}.")
        return self._open_thread(parent, self.next_id(), kind, payload, None)

    async def _get_channel(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request.match_info["cid"])
        self._require(channel, 0)
        return json_response(channel.payload())

    def _guild(self, gid: str) -> Guild:
        guild = self.guilds.get(int(gid)) if _is_id(gid) else None
        if guild is None:
            raise unknown("Guild")
        return guild

    async def _get_guild(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request.match_info["gid"])
        data = guild.payload()
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at",
                    "large", "member_count"):
            data.pop(key, None)
        data["approximate_member_count"] = data["approximate_presence_count"] = len(guild.members)
        return json_response(data)

    async def _get_member(self, request: web.Request) -> web.StreamResponse:
        guild = self._guild(request.match_info["gid"])
        uid = request.match_info["uid"]
        member = guild.members.get(int(uid)) if _is_id(uid) else None
        if member is None:
            raise unknown("Member")
        return json_response(member.payload())

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        """The CDN: an attachment's bytes for a link signed and not expired, else 404."""
        info = request.match_info
        aid = info["id"]
        att = self._blobs.get(int(aid)) if _is_id(aid) else None
        path = f"/{info['kind']}/{info['scope']}/{aid}/{info['name']}"
        if att is None or att.path != path or not self.attachment_links.valid(path,
                                                                              request.query):
            return web.Response(status=404, text=GONE)
        return web.Response(body=att.data, content_type=att.content_type or
                            "application/octet-stream")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return json_response({"message": "404: Not Found", "code": 0}, 404)


__all__ = [  # the world and record types are re-exported for tests' convenience
    "AttachmentRecord",
    "Channel",
    "DiscordEmulator",
    "Guild",
    "InteractionRecord",
    "Member",
    "MessageRecord",
    "Perm",
    "Rejection",
    "RequestRecord",
    "Role",
    "Thread",
    "User",
    "json_response",
]


def _is_id(text: str) -> bool:
    """A snowflake as Discord writes one in a path: ASCII digits, at most 20 ("¹" is a
    digit to str.isdigit, and int() refuses thousands of digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 20
