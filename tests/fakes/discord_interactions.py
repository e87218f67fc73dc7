"""Builds INTERACTION_CREATE payloads for the Discord emulator, typed against what the bot
synced, and validates command syncs the way Discord does."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from tests.fakes.discord_model import (
    AttachmentRecord,
    Channel,
    InteractionRecord,
    Member,
    MessageRecord,
    Role,
    Thread,
    User,
    form_error,
)

OPTION_TYPES = {1: "subcommand", 2: "subcommand group", 3: "string", 4: "integer",
                5: "boolean", 6: "user", 7: "channel", 8: "role", 9: "mentionable",
                10: "number", 11: "attachment"}
_NAME = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")


class InteractionHost(Protocol):
    application_id: int
    commands: dict[int | None, list[dict[str, Any]]]

    def next_id(self) -> int: ...

    def message_payload(self, m: MessageRecord) -> dict[str, Any]: ...

    def served_attachment(self, attachment_id: int) -> AttachmentRecord | None: ...

    def channel_of(self, channel_id: int) -> Channel | Thread: ...


def _walk(components: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in components:
        yield c
        yield from _walk(c.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(c.get(key), dict):
                yield from _walk([c[key]])


class InteractionBuilder:
    def __init__(self, host: InteractionHost) -> None:
        self.host = host

    # -- payloads --------------------------------------------------------------------------

    def _member(self, user: Member | User, channel: Channel | Thread) -> Member:
        member = channel.guild.members.get(user.id)
        if member is None:
            raise ValueError(f"{user.name} ({user.id}) is not a member of {channel.guild.name}")
        return member

    def _record(self, kind: int, name: str, data: dict[str, Any], *, user: Member | User,
                channel: Channel | Thread, locale: str = "en-US",
                message: MessageRecord | None = None) -> InteractionRecord:
        guild = channel.guild
        member = self._member(user, channel)
        perms = member.permissions_override
        if perms is None:
            perms = channel.permissions_for(member)
        iid = self.host.next_id()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.host.application_id), "type": kind,
            "data": data, "token": token, "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": guild.locale, "features": []},
            "channel_id": str(channel.id),
            "channel": {**channel.payload(), "permissions": str(perms)},
            "member": member.payload(permissions=perms),
            "app_permissions": str(channel.permissions_for(guild.bot_member)),
            "locale": locale, "guild_locale": guild.locale,
            "entitlements": [], "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": str(guild.id)}, "context": 0,
            "attachment_size_limit": guild.filesize_limit,
        }
        if message is not None:
            payload["message"] = self.host.message_payload(message)
        return InteractionRecord(iid, token, kind, name, member.id, channel.id, guild.id,
                                 payload, deadline=0.0, source_message=message)

    def command(self, name: str, *, user: Member | User, channel: Channel | Thread,
                options: Mapping[str, Any], subcommand: str | None, group: str | None,
                locale: str) -> InteractionRecord:
        guild_id = channel.guild.id
        scoped = [c for c in self.host.commands.get(guild_id, []) if c["name"] == name]
        found = scoped or [c for c in self.host.commands.get(None, []) if c["name"] == name]
        found = [c for c in found if c["type"] == 1]
        if not found:
            synced = sorted({c["name"] for s in (None, guild_id)
                             for c in self.host.commands.get(s, [])})
            raise LookupError(f"/{name} was not synced (globally or to guild {guild_id}); "
                              f"synced: {synced}")
        cmd = found[0]
        defs: list[dict[str, Any]] = cmd.get("options") or []
        where = f"/{name}"
        for kind, wanted in ((2, group), (1, subcommand)):
            if wanted is None:
                continue
            sub = next((o for o in defs if o["type"] == kind and o["name"] == wanted), None)
            if sub is None:
                raise LookupError(f"{where} has no {OPTION_TYPES[kind]} {wanted!r}")
            defs, where = sub.get("options") or [], f"{where} {wanted}"
        if any(o["type"] in (1, 2) for o in defs):
            raise LookupError(f"{where} needs a subcommand: "
                              f"{[o['name'] for o in defs if o['type'] in (1, 2)]}")
        by_name = {o["name"]: o for o in defs}
        invoker = self._member(user, channel)
        resolved: dict[str, dict[str, Any]] = {}
        values = []
        for opt_name, value in options.items():
            spec = by_name.get(opt_name)
            if spec is None:
                raise LookupError(f"{where} has no option {opt_name!r}; synced: {list(by_name)}")
            values.append({"name": opt_name, "type": spec["type"],
                           "value": self._value(where, spec, value, channel, invoker, resolved)})
        missing = [o["name"] for o in defs if o.get("required") and o["name"] not in options]
        if missing:
            raise ValueError(f"{where}: required options missing: {missing}")
        for kind, wanted in ((1, subcommand), (2, group)):
            if wanted is not None:
                values = [{"name": wanted, "type": kind, "options": values}]
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 1, "options": values}
        if resolved:
            data["resolved"] = resolved
        if scoped:
            data["guild_id"] = str(guild_id)
        return self._record(2, name, data, user=user, channel=channel, locale=locale)

    def _value(self, where: str, spec: Mapping[str, Any], value: Any, channel: Channel | Thread,
               invoker: Member, resolved: dict[str, dict[str, Any]]) -> Any:
        kind, name = spec["type"], spec["name"]

        def wrong() -> TypeError:
            return TypeError(f"{where} option {name!r} is a {OPTION_TYPES.get(kind)} "
                             f"(type {kind}); got {value!r}")

        def bucket(key: str) -> dict[str, Any]:
            return resolved.setdefault(key, {})

        if kind in (3, 4, 5, 10):
            ok = {3: isinstance(value, str), 5: isinstance(value, bool),
                  4: isinstance(value, int) and not isinstance(value, bool),
                  10: isinstance(value, int | float) and not isinstance(value, bool)}[kind]
            if not ok:
                raise wrong()
            choices = [c["value"] for c in spec.get("choices") or []]
            if choices and value not in choices:
                raise ValueError(f"{where} option {name!r} must be one of {choices}")
            low, high = spec.get("min_value"), spec.get("max_value")
            if kind in (4, 10) and ((low is not None and value < low)
                                    or (high is not None and value > high)):
                raise ValueError(f"{where} option {name!r} must be within [{low}, {high}]")
            size = len(value) if isinstance(value, str) else 0
            if kind == 3 and not spec.get("min_length", 0) <= size <= spec.get("max_length", 6000):
                raise ValueError(f"{where} option {name!r} has a bad length")
            return value
        if kind in (6, 9) and isinstance(value, Member | User):
            user = value.user if isinstance(value, Member) else value
            bucket("users")[str(user.id)] = user.payload()
            member = channel.guild.members.get(user.id)
            if member is not None:
                bucket("members")[str(user.id)] = member.payload(
                    user=False, permissions=channel.permissions_for(member))
            return str(user.id)
        if kind in (8, 9) and isinstance(value, Role):
            bucket("roles")[str(value.id)] = value.payload()
            return str(value.id)
        if kind == 7 and isinstance(value, Channel | Thread):
            allowed = spec.get("channel_types")
            if allowed and value.type not in allowed:
                raise ValueError(f"{where} option {name!r} takes channel types {allowed}")
            data = {k: v for k, v in value.payload().items() if k != "permission_overwrites"}
            bucket("channels")[str(value.id)] = {**data, "permissions": str(
                value.permissions_for(invoker))}
            return str(value.id)
        if kind == 11 and isinstance(value, dict | AttachmentRecord):
            aid = int(value.id if isinstance(value, AttachmentRecord) else value["id"])
            att = self.host.served_attachment(aid)
            if att is None:
                raise LookupError(f"attachment {aid} is not served by the emulator; "
                                  "use emulator.add_attachment()")
            bucket("attachments")[str(aid)] = att.payload()
            return str(aid)
        raise wrong()

    def component(self, message: MessageRecord, custom_id: str, *, user: Member | User,
                  channel: Channel | Thread, values: Sequence[str] | None) -> InteractionRecord:
        if message.deleted:
            raise LookupError(f"message {message.id} was deleted")
        found = [c for c in _walk(message.components) if c.get("custom_id") == custom_id]
        if not found:
            ids = [c["custom_id"] for c in _walk(message.components) if "custom_id" in c]
            raise LookupError(f"message {message.id} has no component {custom_id!r}; has {ids}")
        comp = found[0]
        if comp.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if "id" in comp:
            data["id"] = comp["id"]
        if comp["type"] == 2:
            if values is not None:
                raise TypeError(f"{custom_id!r} is a button; it takes no values")
        else:
            chosen = list(values or [])
            low, high = comp.get("min_values", 1), comp.get("max_values", 1)
            options = [o["value"] for o in comp.get("options") or []]
            if not low <= len(chosen) <= high or (options and not set(chosen) <= set(options)):
                raise ValueError(f"select {custom_id!r} takes {low}-{high} of {options or 'ids'}")
            data["values"] = chosen
        return self._record(3, custom_id, data, user=user, channel=channel, message=message)

    def modal_submit(self, opened: InteractionRecord, values: Mapping[str, Any], *,
                     user: Member | User | None) -> InteractionRecord:
        modal = opened.modal
        if modal is None:
            raise ValueError(f"{opened.describe()} did not open a modal")
        seen: set[str] = set()

        def mirror(c: dict[str, Any]) -> dict[str, Any] | None:
            kind, cid = c["type"], c.get("custom_id")
            out: dict[str, Any] = {"type": kind, **({"id": c["id"]} if "id" in c else {})}
            if kind == 1:
                out["components"] = [m for x in c.get("components", []) if (m := mirror(x))]
            elif kind == 18:
                inner = mirror(c["component"])
                if inner is None:
                    return None
                out["component"] = inner
            elif kind == 4 and cid is not None:
                seen.add(cid)
                if c.get("required", True) and not values.get(cid):
                    raise ValueError(f"modal {modal['custom_id']!r}: {cid!r} is required")
                out.update(custom_id=cid, value=str(values.get(cid, "")))
            elif kind in (3, 5, 6, 7, 8) and cid is not None:
                seen.add(cid)
                out.update(custom_id=cid, values=list(values.get(cid, [])))
            else:
                return None
            return out

        components = [m for c in modal["components"] if (m := mirror(c))]
        if extra := set(values) - seen:
            raise LookupError(f"modal {modal['custom_id']!r} has no inputs {sorted(extra)}")
        data = {"custom_id": modal["custom_id"], "components": components}
        channel = self.host.channel_of(opened.channel_id)
        who = user if user is not None else channel.guild.members[opened.user_id]
        return self._record(5, modal["custom_id"], data, user=who, channel=channel,
                            message=opened.source_message)

    # -- command sync validation --------------------------------------------------------------

    def validate_commands(self, body: Any) -> None:
        if not isinstance(body, list):
            raise form_error([], "BASE_TYPE_LIST", "Must be an array.")
        if len(body) > 100:
            raise form_error([], "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        seen: set[tuple[str, int]] = set()
        for i, cmd in enumerate(body):
            kind = cmd.get("type", 1) if isinstance(cmd, dict) else None
            if kind not in (1, 2, 3, 4):
                raise form_error([i, "type"], "BASE_TYPE_CHOICES",
                                 "Value must be one of (1, 2, 3, 4).")
            self._check_named(cmd, [i], chat=kind == 1)
            if (cmd["name"], kind) in seen:
                raise form_error([i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                 "Application command names must be unique")
            seen.add((cmd["name"], kind))
            self._check_options(cmd.get("options") or [], [i, "options"], depth=0)

    def _check_named(self, item: dict[str, Any], path: list[str | int], *, chat: bool) -> None:
        name, desc = item.get("name"), item.get("description", "")
        if not isinstance(name, str) or not (_NAME.match(name) if chat else 0 < len(name) < 33):
            raise form_error([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                             f"Command name is invalid: {name!r}")
        if chat and name != name.lower():
            raise form_error([*path, "name"], "APPLICATION_COMMAND_INVALID_NAME",
                             "Command name must be lowercase")
        if chat and not (isinstance(desc, str) and 1 <= len(desc) <= 100):
            raise form_error([*path, "description"], "BASE_TYPE_BAD_LENGTH",
                             "Must be between 1 and 100 in length.")

    def _check_options(self, options: list[dict[str, Any]], path: list[str | int], depth: int
                       ) -> None:
        if len(options) > 25:
            raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        names: set[str] = set()
        optional_seen = False
        subs = [o.get("type") in (1, 2) for o in options]
        if any(subs) and not all(subs):
            raise form_error(path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                             "Sub-command and sub-command group option types are mutually "
                             "exclusive to all other types")
        for j, opt in enumerate(options):
            kind = opt.get("type")
            here: list[str | int] = [*path, j]
            if kind not in OPTION_TYPES or (kind == 2 and depth > 0) or (kind == 1 and depth > 1):
                raise form_error([*here, "type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                                 f"Option type {kind} is not valid here")
            self._check_named(opt, here, chat=True)
            if opt["name"] in names:
                raise form_error([*here, "name"], "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                                 "Option names must be unique")
            names.add(opt["name"])
            if kind in (1, 2):
                self._check_options(opt.get("options") or [], [*here, "options"], depth + 1)
                continue
            if opt.get("required"):
                if optional_seen:
                    raise form_error([*here, "required"],
                                     "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                     "Required options must be placed before non-required options")
            else:
                optional_seen = True
            if len(opt.get("choices") or []) > 25:
                raise form_error([*here, "choices"], "BASE_TYPE_MAX_LENGTH",
                                 "Must be 25 or fewer in length.")


__all__ = ["InteractionBuilder"]
