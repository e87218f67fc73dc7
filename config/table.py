"""The settings table: how a setting is declared, and each kind of value it can hold.

A field of a settings dataclass declares its row where it is defined:

    starting_credits: int = field(default=0, metadata=from_env(
        "STARTING_CREDITS", Whole(at_least=0), "credits a new user starts with"))

so the name of the variable, the attribute, its type, default, bounds and help stand in
one place. A field holding a dataclass of its own (the price table) lists one row per
field of it with `parts_from_env`. `table_of()` lists the rows in field order, and
`build()` makes the dataclass from the values read.

A kind reads a variable's text (`read`) or raises `Invalid` with the problem, worded for
the person starting the bot, and says what a value given to the dataclass directly must
be (`complaint`).
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

from config.secret import Secret
from wavespeed.hosts import parse_host_entry, split_host_list

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

# The largest Discord snowflake: IDs are unsigned 64-bit integers.
_MAX_SNOWFLAKE: Final = 2**64 - 1

_DISCORD_API_PATH = re.compile(r"(?:/.*)?/api/v\d+")

_ROW: Final = "setting"
_PARTS: Final = "settings"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


# The default of a setting that has none.
REQUIRED: Final = _Required()


class Invalid(Exception):
    """A variable's value is not usable; str() is the problem, after the variable's name."""


def _must_be(rule: str, text: str, fix: str, why: str = "") -> Invalid:
    return Invalid(f"must be {rule}, not {text!r}{why}: {fix}")


def _plain(number: object) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


class Kind(ABC):
    """How one kind of setting is read from text and checked."""

    @abstractmethod
    def read(self, text: str, default: Any) -> object:
        """The value of a variable set to `text` (stripped, not empty), or raise Invalid."""

    def missing(self, default: Any) -> object:
        """The value of a variable that is not set."""
        return default

    def complaint(self, value: Any) -> str | None:
        """What a value given to the dataclass directly must be, when it is not that.

        None when it is fine, or when this kind is only checked when read."""
        return None


@dataclass(frozen=True)
class Setting:
    """A row of the table: variable `env` sets attribute `attr` of the dataclass
    ("prices.p720_5s" for a part of a field), a `kind` of value. A `default` of REQUIRED
    means it has none."""

    env: str
    kind: Kind
    help: str
    attr: str = ""  # filled in by table_of()
    default: Any = REQUIRED  # filled in by table_of()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def read(self, values: Mapping[str, str]) -> object:
        """This setting's value in `values` (blank counts as unset), or raise Invalid."""
        text = values.get(self.env, "").strip()
        return self.kind.read(text, self.default) if text else self.kind.missing(self.default)


def from_env(env: str, kind: Kind, help: str) -> Mapping[str, Setting]:
    """The `field(metadata=...)` of a field read from variable `env`."""
    return {_ROW: Setting(env, kind, help)}


def parts_from_env(**parts: Setting) -> Mapping[str, Mapping[str, Setting]]:
    """The `field(metadata=...)` of a field holding a dataclass (its default_factory)
    whose fields are each read from a variable: `parts_from_env(field=Setting(...))`."""
    return {_PARTS: parts}


def table_of(cls: type[DataclassInstance]) -> tuple[Setting, ...]:
    """The rows declared by the fields of `cls`, in field order."""
    rows: list[Setting] = []
    for f in fields(cls):
        if _ROW in f.metadata:
            rows.append(replace(f.metadata[_ROW], attr=f.name, default=_default(f)))
        elif _PARTS in f.metadata:
            defaults = _default(f)
            rows += [
                replace(part, attr=f"{f.name}.{name}", default=getattr(defaults, name))
                for name, part in f.metadata[_PARTS].items()
            ]
        else:
            raise TypeError(f"{cls.__name__}.{f.name} declares no setting: see from_env()")
    return tuple(rows)


def build(cls: type[_D], values: Mapping[str, object]) -> _D:
    """A `cls` made of `values`, keyed by `Setting.attr` as in `table_of(cls)`."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if _PARTS in f.metadata:
            parts = {name: values[f"{f.name}.{name}"] for name in f.metadata[_PARTS]}
            kwargs[f.name] = replace(_default(f), **parts)
        else:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def _default(f: Field[Any]) -> Any:
    """The default of a field: REQUIRED when it has none."""
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED if f.default is MISSING else f.default


# --- The kinds of settings -----------------------------------------------------------


@dataclass(frozen=True)
class Number(Kind):
    """A finite number from `at_least` (or above `above`) up to `at_most`."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    noun: ClassVar[str] = "a number"

    def __post_init__(self) -> None:
        if (self.at_least is None) == (self.above is None) or (
            self.at_most is not None and self.at_least is None
        ):
            raise TypeError("Number takes at_least or above, and at_most only with at_least")

    def parse(self, text: str) -> float:
        return float(text)

    def rule(self) -> str:
        if self.at_most is not None:
            return f"{self.noun} from {_plain(self.at_least)} to {_plain(self.at_most)}"
        if self.above is not None:
            return f"{self.noun} above {_plain(self.above)}"
        return f"{self.noun} of at least {_plain(self.at_least)}"

    def _examples(self) -> str:
        # "above 0" alone leaves one guessing how small a value may be.
        if self.above is None:
            return ""
        return f" (such as {self.above + 0.5:g} or {self.above + 5:g})"

    def fits(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.above is not None and value <= self.above:
            return False
        if self.at_least is not None and value < self.at_least:
            return False
        return self.at_most is None or value <= self.at_most

    def read(self, text: str, default: Any) -> float:
        try:
            value = self.parse(text)
        except ValueError:
            value = math.nan
        if not self.fits(value):
            fix = f"change it (default {default}), or delete the line to use the default"
            raise _must_be(self.rule() + self._examples(), text, fix)
        return value

    def complaint(self, value: Any) -> str | None:
        return None if self.fits(value) else self.rule()


class Whole(Number):
    """A whole number (an int), written in decimal."""

    noun = "a whole number"

    def parse(self, text: str) -> int:
        return int(text, 10)


@dataclass(frozen=True)
class Flag(Kind):
    """A yes/no setting: one of `words` (lower case, each mapped to its value), in any case."""

    words: Mapping[str, bool]

    def read(self, text: str, default: Any) -> bool:
        value = self.words.get(text.lower())
        if value is None:
            fix = (
                f"set it to true or false (default {str(default).lower()}), "
                "or delete the line to use the default"
            )
            raise _must_be(f"one of {', '.join(self.words)}", text, fix)
        return value

    def complaint(self, value: Any) -> str | None:
        # A str such as "false" would be truthy.
        return None if isinstance(value, bool) else "a bool"


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few words, in any case; the value is upper case."""

    choices: tuple[str, ...]

    def read(self, text: str, default: Any) -> str:
        if text.upper() not in self.choices:
            rule = f"one of {', '.join(self.choices)}"
            raise _must_be(rule, text, f"set it to one of those (default {default})")
        return text.upper()

    def complaint(self, value: Any) -> str | None:
        return None if value in self.choices else f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class SecretText(Kind):
    """A secret, read into a `Secret`; `how` says where to get it. Required unless
    `optional` (then unset is None, and a rule elsewhere says when it is needed)."""

    how: str
    optional: bool = False

    def read(self, text: str, default: Any) -> Secret:
        if any(ch.isspace() for ch in text):
            # Never show the value, not even part of it.
            raise Invalid(
                "contains spaces or line breaks: paste only the value itself "
                "(no 'Bot ' or 'Bearer ' prefix, no spaces)"
            )
        return Secret(text)

    def missing(self, default: Any) -> object:
        if self.optional:
            return None
        raise Invalid(f"is not set: {self.how}")


@dataclass(frozen=True)
class Snowflake(Kind):
    """An optional Discord ID: `what` names it, `how` says where to copy it from and
    `unset` what leaving it out means."""

    what: str
    how: str
    unset: str

    @staticmethod
    def fits(value: Any) -> bool:
        return bool(1 <= value <= _MAX_SNOWFLAKE)

    def read(self, text: str, default: Any) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = 0
        if not self.fits(value):
            rule = f"{self.what} (a positive whole number such as 123456789012345678)"
            raise _must_be(rule, text, f"{self.how}, or delete the line {self.unset}")
        return value

    def complaint(self, value: Any) -> str | None:
        if value is None or self.fits(value):
            return None
        return "None or a Discord snowflake (above 0)"


@dataclass(frozen=True)
class HostList(Kind):
    """Comma-separated "host" / "host:port" entries, normalized, duplicates dropped."""

    example: str
    unset: str

    def read(self, text: str, default: Any) -> tuple[str, ...]:
        entries: list[str] = []
        reasons: list[str] = []
        for part in split_host_list(text):
            try:
                entries.append(str(parse_host_entry(part)))
            except ValueError as exc:
                reasons.append(str(exc))
        if reasons or not entries:
            why = "; ".join(reasons) if reasons else "no entry in it"
            raise _must_be(
                "a comma-separated list of host or host:port entries",
                text,
                f"set it to something like {self.example}, or delete the line {self.unset}",
                why=f" ({why})",
            )
        return tuple(dict.fromkeys(entries))

    def complaint(self, value: Any) -> str | None:
        # A bare str would pass as a list of letters.
        if isinstance(value, tuple) and all(_is_host_entry(entry) for entry in value):
            return None
        return "a tuple of 'host' or 'host:port' strings"


def _is_host_entry(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_host_entry(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Url(Kind):
    """An http(s) URL without query or fragment, trailing slashes dropped. `unset` says
    what leaving it out means (default: the default URL is used); with `api_path` the
    path must end in /api/v<number>, as a Discord API root does."""

    example: str
    unset: str | None = None
    api_path: bool = False

    def read(self, text: str, default: Any) -> str:
        url = text.rstrip("/")
        unset = self.unset or f"to use the default ({default})"
        fix = f"set it to something like {self.example}, or delete the line {unset}"
        path = _http_url_path(url)
        if path is None:
            raise _must_be("an http:// or https:// URL", text, fix)
        if self.api_path and not _DISCORD_API_PATH.fullmatch(path):
            raise Invalid(f"must end in /api/v<version number>, not {text!r}: {fix}")
        return url


def _http_url_path(url: str) -> str | None:
    """The path of an http(s) URL with a host and no query or fragment, else None."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(ch.isspace() for ch in url)
    ):
        return None
    return parts.path


class FilePath(Kind):
    """A file path (~ expanded) that is not a directory."""

    def read(self, text: str, default: Any) -> Path:
        path = Path(text).expanduser()
        if path.is_dir():
            raise Invalid(
                f"must be a file, not the directory {text!r}: "
                f"set it to a file path such as {default}"
            )
        return path
