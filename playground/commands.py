"""The slash commands the bot synced to the emulator, as the page's forms; and the values a
form sends back, turned into the options `DiscordEmulator.invoke` takes.

A command with subcommands (and subcommand groups) becomes one form per leaf, e.g.
"/settings channels add", as Discord's command picker lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from discord_emulator.emulator import Channel, DiscordEmulator, Guild, Member, Role, Thread
from discord_emulator.model import ApiError

SUBCOMMAND, GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    3, 4, 5, 6, 7, 8, 9, 10, 11)
TYPE_NAMES = {STRING: "string", INTEGER: "integer", BOOLEAN: "boolean", USER: "user",
              CHANNEL: "channel", ROLE: "role", MENTIONABLE: "mentionable", NUMBER: "number",
              ATTACHMENT: "attachment"}
OPTION_KEYS = ("name", "description", "required", "choices", "min_value", "max_value",
               "min_length", "max_length", "channel_types", "autocomplete")
SNOWFLAKE_DIGITS = 20  # 2**64 has 20 digits
# What a form's number input sends: ASCII digits only, no spaces, underscores or other
# scripts' digits (which int() and float() would take).
WHOLE_NUMBER = re.compile(r"-?[0-9]+")
DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
NUMBER_CHARS = 100  # far beyond any option's range, far below what int() refuses


class FormError(ValueError):
    """A value the form sent cannot be an option of its type; the message says which."""


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    content_type: str | None


@dataclass(frozen=True)
class Leaf:
    """One runnable command: a command, or a subcommand (of a group) of one."""

    command: str
    group: str | None
    subcommand: str | None
    description: str
    options: list[dict[str, Any]]
    permissions: int | None  # default_member_permissions of the top-level command

    @property
    def key(self) -> str:
        return " ".join(p for p in (self.command, self.group, self.subcommand) if p)

    def view(self) -> dict[str, Any]:
        return {
            "key": self.key, "command": self.command, "group": self.group,
            "subcommand": self.subcommand, "description": self.description,
            # A string: Discord's bit sets exceed what a JavaScript number holds exactly.
            "permissions": None if self.permissions is None else str(self.permissions),
            "options": [{**{k: o[k] for k in OPTION_KEYS if k in o}, "type": o["type"],
                         "type_name": TYPE_NAMES.get(o["type"], str(o["type"]))}
                        for o in self.options],
        }


def synced_commands(emulator: DiscordEmulator, guild: Guild) -> list[dict[str, Any]]:
    """Chat-input commands visible in `guild`: its own, then the global ones not shadowed."""
    scoped = [c for c in emulator.commands.get(guild.id, []) if c.get("type", 1) == 1]
    names = {c["name"] for c in scoped}
    return scoped + [c for c in emulator.commands.get(None, [])
                     if c.get("type", 1) == 1 and c["name"] not in names]


def leaves(commands: Iterable[Mapping[str, Any]]) -> list[Leaf]:
    found: list[Leaf] = []
    for cmd in sorted(commands, key=lambda c: str(c["name"])):
        raw_perms = cmd.get("default_member_permissions")
        perms = int(raw_perms) if raw_perms is not None else None
        options: list[dict[str, Any]] = list(cmd.get("options") or [])
        if not any(o["type"] in (SUBCOMMAND, GROUP) for o in options):
            found.append(Leaf(cmd["name"], None, None, cmd.get("description", ""), options,
                              perms))
            continue
        for opt in options:
            if opt["type"] == SUBCOMMAND:
                found.append(Leaf(cmd["name"], None, opt["name"], opt.get("description", ""),
                                  list(opt.get("options") or []), perms))
            elif opt["type"] == GROUP:
                found.extend(Leaf(cmd["name"], opt["name"], sub["name"],
                                  sub.get("description", ""), list(sub.get("options") or []),
                                  perms)
                             for sub in opt.get("options") or [] if sub["type"] == SUBCOMMAND)
    return found


def find_leaf(emulator: DiscordEmulator, guild: Guild, key: str) -> Leaf:
    for leaf in leaves(synced_commands(emulator, guild)):
        if leaf.key == key:
            return leaf
    raise FormError(f"/{key} is not a command the bot synced")


def is_snowflake(raw: str) -> bool:
    """An id as Discord writes it: 1-20 ASCII digits (str.isdigit() alone also takes "¹",
    which int() refuses, and int() refuses more than 4300 digits)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= SNOWFLAKE_DIGITS


def _snowflake(raw: str, what: str) -> int:
    if not is_snowflake(raw):
        raise FormError(f"{what} must be chosen from the list")
    return int(raw)


def _member(guild: Guild, raw: str, name: str) -> Member:
    member = guild.members.get(_snowflake(raw, name))
    if member is None:
        raise FormError(f"{name}: no such member")
    return member


def _role(guild: Guild, raw: str, name: str) -> Role:
    role = guild.roles.get(_snowflake(raw, name))
    if role is None:
        raise FormError(f"{name}: no such role")
    return role


def _channel(emulator: DiscordEmulator, raw: str, name: str) -> Channel | Thread:
    try:
        return emulator.channel_of(_snowflake(raw, name))
    except ApiError:  # Unknown Channel
        raise FormError(f"{name}: no such channel") from None


def _number(raw: str, name: str, *, integer: bool) -> int | float:
    if len(raw) > NUMBER_CHARS:
        raise FormError(f"{name} is too long for a number ({len(raw)} characters)")
    if (WHOLE_NUMBER if integer else DECIMAL).fullmatch(raw) is None:
        kind = "a whole number" if integer else "a number"
        raise FormError(f"{name} must be {kind}, not {raw!r}")
    value: int | float = int(raw) if integer else float(raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise FormError(f"{name} must be a finite number")
    return value


def _value(emulator: DiscordEmulator, guild: Guild, spec: Mapping[str, Any], raw: str) -> Any:
    kind, name = spec["type"], spec["name"]
    if kind == STRING:
        return raw
    if kind in (INTEGER, NUMBER):
        return _number(raw, name, integer=kind == INTEGER)
    if kind == BOOLEAN:
        if raw not in ("true", "false"):
            raise FormError(f"{name} must be true or false")
        return raw == "true"
    if kind == USER:
        return _member(guild, raw, name)
    if kind == ROLE:
        return _role(guild, raw, name)
    if kind == MENTIONABLE:
        return (_member(guild, raw, name) if _snowflake(raw, name) in guild.members
                else _role(guild, raw, name))
    if kind == CHANNEL:
        return _channel(emulator, raw, name)
    raise FormError(f"{name}: options of type {kind} are not supported")


# Keeps an upload where the bot can download it; returns its attachment payload.
Store = Callable[[Upload], dict[str, Any]]


def option_values(emulator: DiscordEmulator, guild: Guild, leaf: Leaf,
                  values: Mapping[str, str], files: Mapping[str, Upload], *,
                  lenient: bool = False, store: Store | None = None) -> dict[str, Any]:
    """The emulator's `options` for `leaf` from a form's text values (by option name) and
    uploaded files. An empty value leaves an option out; the emulator then checks what
    Discord's client would (required options, choices, ranges, lengths). `lenient`: a
    value that cannot be converted is left out too (the other options of an autocomplete,
    which may be half typed). Files are stored (by `store`, else in the emulator) only once
    every other value converted: a refused form keeps nothing."""
    by_name = {o["name"]: o for o in leaf.options}
    unknown = (set(values) | set(files)) - set(by_name)
    if unknown:
        raise FormError(f"/{leaf.key} has no option {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    for name, spec in by_name.items():
        raw = values.get(name, "")
        if raw == "" or spec["type"] == ATTACHMENT:
            continue
        try:
            out[name] = _value(emulator, guild, spec, raw)
        except FormError:
            if not lenient:
                raise
    keep = store or (lambda u: emulator.add_attachment(u.filename, u.data, u.content_type))
    for name, spec in by_name.items():
        upload = files.get(name)
        if spec["type"] == ATTACHMENT and upload is not None:
            out[name] = keep(upload)
    return {name: out[name] for name in by_name if name in out}  # in the command's order
