"""Builds INTERACTION_CREATE payloads for the Discord emulator, typed against what the bot
synced, and validates command syncs the way Discord does."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from discord_emulator.model import (
    ACTION_ROW,
    CHANNEL_TYPES,
    LABEL,
    SELECT_TYPES,
    TEXT_DISPLAY,
    TEXT_INPUT,
    ApiError,
    AttachmentRecord,
    Channel,
    ComponentIds,
    InteractionRecord,
    Member,
    MessageRecord,
    Role,
    Thread,
    User,
    choice_field,
    dict_field,
    form_error,
    int_field,
    list_field,
    text_field,
    validate_select,
)

OPTION_TYPES = {1: "subcommand", 2: "subcommand group", 3: "string", 4: "integer",
                5: "boolean", 6: "user", 7: "channel", 8: "role", 9: "mentionable",
                10: "number", 11: "attachment"}
# Docs: ^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$ ; Python's \w is \p{L}\p{N} and "_", and
# the Devanagari and Thai blocks stand in for those scripts.
_NAME = re.compile(r"^[-_'\w\u0900-\u097F\u0E00-\u0E7F]{1,32}$")
INT53_MAX = 2**53 - 1  # spec Int53Type: INTEGER values are within -(2^53-1)..2^53-1
NUMBER_BOUND = 2**53  # docs: a NUMBER is any double between -2^53 and 2^53
PERMISSIONS_MAX = 2**54 - 1  # spec: default_member_permissions maximum 18014398509481983
COMMAND_MAX_CHARS = 8000  # docs, "Slash Commands"
# Docs, "Registering a Command": per scope, 100 CHAT_INPUT, 15 USER, 15 MESSAGE and one
# PRIMARY_ENTRY_POINT command.
COMMAND_LIMITS = {1: 100, 2: 15, 3: 15, 4: 1}
LOCALES = frozenset({  # spec AvailableLocalesEnum
    "ar", "bg", "cs", "da", "de", "el", "en-GB", "en-US", "es-419", "es-ES", "fi", "fr", "he",
    "hi", "hr", "hu", "id", "it", "ja", "ko", "lt", "nl", "no", "pl", "pt-BR", "ro", "ru",
    "sv-SE", "th", "tr", "uk", "vi", "zh-CN", "zh-TW"})


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
                locale: str, focused: str | None = None,
                unchecked: bool = False) -> InteractionRecord:
        """A slash command (type 2), or with `focused` the autocomplete interaction (type 4)
        for that option while the user is typing: its value may be partial (a string), the
        other options are as typed so far and required ones may be missing (docs,
        "Autocomplete"). `unchecked` (tests only): skip the value checks Discord makes
        (choices, min/max value, min/max length), as a forged or malformed interaction
        would, so a test can see the bot's own checks; option names and types still must
        match what was synced."""
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
        values: list[dict[str, Any]] = []
        focused_spec: dict[str, Any] | None = None
        if focused is not None:
            focused_spec = by_name.get(focused)
            if focused_spec is None or not focused_spec.get("autocomplete"):
                raise LookupError(f"{where} option {focused!r} was not synced with autocomplete")
            if focused not in options:
                raise ValueError(f"{where}: give the focused option {focused!r} a value")
        for opt_name, value in options.items():
            spec = by_name.get(opt_name)
            if spec is None:
                raise LookupError(f"{where} has no option {opt_name!r}; synced: {list(by_name)}")
            if opt_name == focused:  # what the user has typed so far, unchecked
                values.append({"name": opt_name, "type": spec["type"], "value": value,
                               "focused": True})
                continue
            values.append({"name": opt_name, "type": spec["type"],
                           "value": self._value(where, spec, value, channel, invoker, resolved,
                                                unchecked=unchecked)})
        missing = [o["name"] for o in defs if o.get("required") and o["name"] not in options]
        if missing and focused is None:
            raise ValueError(f"{where}: required options missing: {missing}")
        for kind, wanted in ((1, subcommand), (2, group)):
            if wanted is not None:
                values = [{"name": wanted, "type": kind, "options": values}]
        data: dict[str, Any] = {"id": cmd["id"], "name": name, "type": 1, "options": values}
        if resolved:
            data["resolved"] = resolved
        if scoped:
            data["guild_id"] = str(guild_id)
        rec = self._record(2 if focused is None else 4, name, data, user=user, channel=channel,
                           locale=locale)
        rec.focused = focused_spec
        return rec

    def _value(self, where: str, spec: Mapping[str, Any], value: Any, channel: Channel | Thread,
               invoker: Member, resolved: dict[str, dict[str, Any]], *,
               unchecked: bool = False) -> Any:
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
            if unchecked:
                return value
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

    def validate_commands(self, body: Any, *, guild: bool = False) -> None:
        validate_commands(body, guild=guild)


# -- command sync validation ------------------------------------------------------------------
# Limits from Discord's docs (interactions/application-commands) and its OpenAPI description
# (discord/discord-api-spec: ApplicationCommandUpdateRequest, ApplicationCommand*Option,
# ApplicationCommandOption*Choice, Int53Type, AvailableLocalesEnum).


def validate_commands(body: Any, *, guild: bool = False) -> None:
    """A bulk overwrite (PUT .../commands) is accepted or refused whole, as Discord does."""
    commands = list_field(body, [], 130)  # spec: the PUT body's maxItems
    seen: set[tuple[str, int]] = set()
    counts: dict[int, int] = {}
    for i, raw in enumerate(commands):
        cmd = dict_field(raw, [i])
        kind = choice_field(cmd.get("type") or 1, [i, "type"], tuple(COMMAND_LIMITS))
        if kind == 4 and guild:  # docs: no PRIMARY_ENTRY_POINT guild command
            raise form_error([i, "type"], "APPLICATION_COMMAND_INVALID_TYPE",
                             "Primary entry point commands cannot be guild commands")
        counts[kind] = counts.get(kind, 0) + 1
        if counts[kind] > COMMAND_LIMITS[kind]:
            raise ApiError(400, 30032, "Maximum number of application commands reached "
                                       f"({COMMAND_LIMITS[kind]})")
        _check_named(cmd, [i], chat=kind == 1)
        if (cmd["name"], kind) in seen:
            raise form_error([i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME",
                             "Application command names must be unique")
        seen.add((cmd["name"], kind))
        _check_command_fields(cmd, [i])
        if kind == 1:
            _check_options(cmd.get("options"), [i, "options"], parent=None)
            size = _command_size(cmd)
            if size > COMMAND_MAX_CHARS:
                raise form_error([i], "APPLICATION_COMMAND_TOO_LARGE",
                                 f"Command exceeds maximum size ({COMMAND_MAX_CHARS}): {size}")


def _check_command_fields(cmd: Mapping[str, Any], path: list[str | int]) -> None:
    perms = cmd.get("default_member_permissions")
    here = [*path, "default_member_permissions"]
    # Docs: a permission bit set serialized as a string; spec: an integer 0..2^54-1.
    if isinstance(perms, str):
        if not (perms.isascii() and perms.isdigit()):
            raise form_error(here, "NUMBER_TYPE_COERCE", f"Value {perms!r} is not int.")
        perms = int(perms)
    int_field(perms, here, 0, PERMISSIONS_MAX)
    for key, allowed in (("contexts", (0, 1, 2)), ("integration_types", (0, 1))):
        if cmd.get(key) is None:
            continue
        items = list_field(cmd[key], [*path, key], 25, low=1)  # spec: minItems 1, unique
        for k, item in enumerate(items):
            choice_field(item, [*path, key, k], allowed)
        if len(set(items)) != len(items):
            raise form_error([*path, key], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                             "The set already contains this value.")
    for key in ("nsfw", "dm_permission"):
        if not isinstance(cmd.get(key), bool | None):
            raise form_error([*path, key], "BOOLEAN_TYPE_CONVERT", "Must be either true or false.")


def _check_name(value: Any, path: list[str | int], *, chat: bool, choice: bool) -> None:
    if choice:
        text_field(value, path, 100, low=1)
        return
    text_field(value, path, 32, low=1)
    if chat and not _NAME.match(value):
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME",
                         f"Command name is invalid: {value!r}")
    if chat and value != value.lower():
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME",
                         "Command name must be lowercase")


def _check_named(item: Mapping[str, Any], path: list[str | int], *, chat: bool,
                 choice: bool = False) -> None:
    """name and description and their localizations (docs, "Application Command Naming" and
    the command, option and choice structures). Chat-input command and option names: 1-32
    characters matching Discord's regex, lowercase where a letter has a lowercase form; other
    command names 1-32 of anything; choice names 1-100. Descriptions: 1-100 for chat input
    and options, <= 100 otherwise; choices have none."""
    _check_name(item.get("name"), [*path, "name"], chat=chat, choice=choice)
    for locale, value in _localizations(item, "name_localizations", path):
        _check_name(value, [*path, "name_localizations", locale], chat=chat, choice=choice)
    if choice:
        return
    text_field(item.get("description"), [*path, "description"], 100, low=1 if chat else 0)
    for locale, value in _localizations(item, "description_localizations", path):
        text_field(value, [*path, "description_localizations", locale], 100, low=1)


def _localizations(item: Mapping[str, Any], key: str, path: list[str | int]
                   ) -> list[tuple[str, Any]]:
    """A localization dictionary's entries, keyed by Discord locales (spec
    AvailableLocalesEnum; one entry per locale, so its maxProperties 34 holds)."""
    if item.get(key) is None:
        return []
    entries = dict_field(item[key], [*path, key])
    for locale in entries:
        if locale not in LOCALES:
            raise form_error([*path, key, locale], "ENUM_TYPE_COERCE",
                             f"Value {locale!r} is not a valid enum value.")
    return list(entries.items())


def _check_options(raw: Any, path: list[str | int], *, parent: int | None) -> None:
    """`parent`: None for a command's own options, else the subcommand (1) or group (2) type
    they sit in. A group holds only subcommands, a subcommand only value options (spec)."""
    options = list_field(raw, path, 25)  # docs and spec: up to 25
    kinds = [dict_field(o, [*path, j]).get("type") for j, o in enumerate(options)]
    subs = [k in (1, 2) for k in kinds]
    if any(subs) and not all(subs):
        raise form_error(path, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                         "Sub-command and sub-command group option types are mutually "
                         "exclusive to all other types")
    allowed = {None: set(OPTION_TYPES), 2: {1}, 1: set(OPTION_TYPES) - {1, 2}}[parent]
    names: set[str] = set()
    optional_seen = False
    for j, opt in enumerate(options):
        kind = opt.get("type")
        here: list[str | int] = [*path, j]
        if isinstance(kind, bool) or kind not in allowed:
            raise form_error([*here, "type"], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                             f"Option type {kind} is not valid here")
        _check_named(opt, here, chat=True)
        if opt["name"] in names:
            raise form_error([*here, "name"], "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                             "Option names must be unique")
        names.add(opt["name"])
        if kind in (1, 2):
            _check_options(opt.get("options"), [*here, "options"], parent=kind)
            continue
        if opt.get("required"):
            if optional_seen:
                raise form_error([*here, "required"],
                                 "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                 "Required options must be placed before non-required options")
        else:
            optional_seen = True
        _check_value_option(opt, here)


def check_number(value: Any, kind: int, path: list[str | int]) -> None:
    """An INTEGER is an int in -2^53+1..2^53-1 (spec Int53Type; docs "Application Command
    Option Type"); a NUMBER any double in -2^53..2^53 (docs)."""
    if kind == 4:
        int_field(value, path, -INT53_MAX, INT53_MAX)
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise form_error(path, "NUMBER_TYPE_COERCE", f"Value {value!r} is not a valid number.")
    if not -NUMBER_BOUND <= value <= NUMBER_BOUND:
        raise form_error(path, "NUMBER_TYPE_MAX" if value > 0 else "NUMBER_TYPE_MIN",
                         f"Value must be between {-NUMBER_BOUND} and {NUMBER_BOUND}.")


def check_choice(raw: Any, kind: int, path: list[str | int]) -> None:
    """An option (or autocomplete) choice: name 1-100 (and localized), a value of the option's
    type, a string one <= 100 characters (docs, "Application Command Option Choice
    Structure"; the spec says 6000, the docs' 100 is the stricter and documented limit)."""
    choice = dict_field(raw, path)
    _check_named(choice, path, chat=False, choice=True)
    if kind == 3:
        if not isinstance(choice.get("value"), str):
            raise form_error([*path, "value"], "STRING_TYPE_CONVERT",
                             f"Could not interpret {choice.get('value')!r} as string.")
        text_field(choice["value"], [*path, "value"], 100)
    else:
        check_number(choice.get("value"), kind, [*path, "value"])


def _check_value_option(opt: Mapping[str, Any], here: list[str | int]) -> None:
    kind = opt["type"]
    choices = list_field(opt.get("choices"), [*here, "choices"], 25)
    for k, raw in enumerate(choices):
        check_choice(raw, kind, [*here, "choices", k])
    if opt.get("autocomplete") and choices:  # docs: not true if choices are present
        raise form_error([*here, "autocomplete"], "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE",
                         "Autocomplete and choices are mutually exclusive")
    if kind in (4, 10):
        low, high = opt.get("min_value"), opt.get("max_value")
        for key, value in (("min_value", low), ("max_value", high)):
            if value is not None:
                check_number(value, kind, [*here, key])
        if low is not None and high is not None and low > high:
            raise form_error([*here, "min_value"], "NUMBER_TYPE_MAX",
                             "min_value must be less than or equal to max_value")
    if kind == 3:  # docs and spec: min_length 0-6000, max_length 1-6000
        int_field(opt.get("min_length"), [*here, "min_length"], 0, 6000)
        int_field(opt.get("max_length"), [*here, "max_length"], 1, 6000)
    if kind == 7:  # spec: unique ChannelTypes
        types = list_field(opt.get("channel_types"), [*here, "channel_types"], 25)
        for k, value in enumerate(types):
            choice_field(value, [*here, "channel_types", k], CHANNEL_TYPES)
        if len(set(types)) != len(types):
            raise form_error([*here, "channel_types"], "SET_TYPE_ALREADY_CONTAINS_VALUE",
                             "The set already contains this value.")


def _longest(item: Mapping[str, Any], key: str) -> int:
    """Docs: with localizations only the longest of each field (default included) counts."""
    texts = [str(item.get(key) or "")]
    texts += [str(v) for v in (item.get(f"{key}_localizations") or {}).values()]
    return max(len(t) for t in texts)


def _command_size(item: Mapping[str, Any]) -> int:
    """Docs, "Slash Commands": the name, description and value of a command, its options
    (subcommands and groups included) and choices, which must total <= COMMAND_MAX_CHARS."""
    size = _longest(item, "name") + _longest(item, "description")
    for choice in item.get("choices") or []:
        size += _longest(choice, "name") + len(str(choice.get("value", "")))
    return size + sum(_command_size(o) for o in item.get("options") or [])


# -- interaction callbacks -----------------------------------------------------------------


def validate_autocomplete(data: Any, option: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Callback type 8 (docs, "Autocomplete"; spec InteractionApplicationCommandAutocomplete
    Callback*Data): <= 25 choices, each like an option choice of the focused option's type."""
    body = dict_field(data, ["data"])
    choices = list_field(body.get("choices"), ["data", "choices"], 25)
    for k, raw in enumerate(choices):
        check_choice(raw, option["type"], ["data", "choices", k])
    return list(choices)


def _text_input(c: Mapping[str, Any], path: list[str | int], *, labelled: bool) -> None:
    """Docs, components reference "Text Input", and spec TextInputComponentForModalRequest:
    custom_id 1-100, style 1 or 2, label 1-45 (needed outside a Label component, where it is
    deprecated), min_length 0-4000, max_length 1-4000, placeholder <= 100, value <= 4000."""
    text_field(c.get("custom_id"), [*path, "custom_id"], 100, low=1)
    choice_field(c.get("style"), [*path, "style"], (1, 2))
    if not labelled or c.get("label") is not None:
        text_field(c.get("label"), [*path, "label"], 45, low=1)
    int_field(c.get("min_length"), [*path, "min_length"], 0, 4000)
    int_field(c.get("max_length"), [*path, "max_length"], 1, 4000)
    text_field(c.get("placeholder"), [*path, "placeholder"], 100)
    text_field(c.get("value"), [*path, "value"], 4000)


# What a Label may hold (spec LabelComponentForModalRequest): a text input, a select, a file
# upload, a radio group, a checkbox group or a checkbox.
_LABELLED = (TEXT_INPUT, *SELECT_TYPES, 19, 21, 22, 23)


def validate_modal(data: Any) -> dict[str, Any]:
    """Callback type 9 (docs, "Modal" and components reference; spec ModalInteractionCallback
    RequestData): custom_id 1-100, title 1-45, 1-5 components, each an action row holding
    one text input, a label (1-45, description <= 100) holding one input, or a text display
    (1-4000); custom_ids unique. Returns the modal."""
    modal = dict_field(data, ["data"])
    text_field(modal.get("custom_id"), ["data", "custom_id"], 100, low=1)
    text_field(modal.get("title"), ["data", "title"], 45, low=1)
    ids = ComponentIds()
    for i, raw in enumerate(list_field(modal.get("components"), ["data", "components"], 5,
                                       low=1)):
        here: list[str | int] = ["data", "components", i]
        c = dict_field(raw, here)
        ids.add(c, here)
        kind = choice_field(c.get("type"), [*here, "type"], (ACTION_ROW, LABEL, TEXT_DISPLAY))
        if kind == TEXT_DISPLAY:
            text_field(c.get("content"), [*here, "content"], 4000, low=1)
            continue
        if kind == ACTION_ROW:
            children = list_field(c.get("components"), [*here, "components"], 5, low=1)
            if len(children) > 1:  # a text input takes the whole row
                raise form_error([*here, "components"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                                 "The specified component exceeds the maximum width")
            inner_path: list[str | int] = [*here, "components", 0]
            inner = dict_field(children[0], inner_path)
            choice_field(inner.get("type"), [*inner_path, "type"], (TEXT_INPUT,))
        else:
            text_field(c.get("label"), [*here, "label"], 45, low=1)
            text_field(c.get("description"), [*here, "description"], 100)
            inner_path = [*here, "component"]
            inner = dict_field(c.get("component"), inner_path)
            choice_field(inner.get("type"), [*inner_path, "type"], _LABELLED)
        ids.add(inner, inner_path)
        if inner["type"] == TEXT_INPUT:
            _text_input(inner, inner_path, labelled=kind == LABEL)
        elif inner["type"] in SELECT_TYPES:
            validate_select(inner, inner_path)
        if inner.get("disabled"):  # docs: disabled components in a modal are an error
            raise form_error([*inner_path, "disabled"], "COMPONENT_INVALID_FIELD",
                             "Modals cannot have disabled components")
    return dict(modal)


__all__ = ["InteractionBuilder", "validate_autocomplete", "validate_commands", "validate_modal"]
