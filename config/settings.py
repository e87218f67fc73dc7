"""The bot's settings: read from .env and the environment, validated all at once.

Nothing here runs at import time. `load_settings()` reads the env file with
python-dotenv's `dotenv_values` (it never touches `os.environ`), lets real environment
variables override it, checks every value, and raises one `SettingsError` listing every
problem it found. Secret values (the Discord token and the WaveSpeed key) are wrapped in
`Secret` and never appear in a message, a repr or a log line.
"""

from __future__ import annotations

import hmac
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, NoReturn, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from engine.pricing import PriceTable
from wavespeed.hosts import parse_host_entry, split_host_list

__all__ = [
    "BOOLEAN_WORDS",
    "DISCORD_STRING_OPTION_MAX_CHARS",
    "LOG_LEVELS",
    "SETTINGS_VARIABLES",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]

LOG_LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR")

# Discord caps a slash command's string option at 6000 characters, so MAX_PROMPT_CHARS
# cannot usefully be higher.
DISCORD_STRING_OPTION_MAX_CHARS: Final = 6000

# The words a yes/no setting accepts (case-insensitive), each mapped to its value.
BOOLEAN_WORDS: Final[Mapping[str, bool]] = MappingProxyType(
    {
        "true": True,
        "false": False,
        "yes": True,
        "no": False,
        "1": True,
        "0": False,
        "on": True,
        "off": False,
    }
)

# The largest Discord snowflake: IDs are unsigned 64-bit integers.
_MAX_SNOWFLAKE: Final = 2**64 - 1

# Every environment variable load_settings() reads, in the order of .env.example.
SETTINGS_VARIABLES: Final[tuple[str, ...]] = (
    "DISCORD_TOKEN",
    "WAVESPEED_API_KEY",
    "WAVESPEED_BASE_URL",
    "DISCORD_API_BASE_URL",
    "DISCORD_GUILD_ID",
    "DATABASE_PATH",
    "INSTANCE_TAKEOVER_SECONDS",
    "PRICE_720P_5S",
    "PRICE_720P_10S",
    "PRICE_1080P_5S",
    "PRICE_1080P_10S",
    "USD_PER_CREDIT",
    "STARTING_CREDITS",
    "NSFW_CHARGE",
    "WAVESPEED_MAX_CONCURRENT",
    "WAVESPEED_SUBMITS_PER_MINUTE",
    "USER_MAX_ACTIVE_JOBS",
    "POLL_INTERVAL_SECONDS",
    "JOB_TIMEOUT_SECONDS",
    "STATUS_UPDATE_SECONDS",
    "WAVESPEED_BALANCE_WARN_USD",
    "OUTPUT_MAX_BYTES",
    "OUTPUT_HTTP_HOSTS",
    "MAX_VIDEO_BYTES",
    "MAX_AUDIO_BYTES",
    "MAX_PROMPT_CHARS",
    "LOG_LEVEL",
)

# Bounds of INSTANCE_TAKEOVER_SECONDS: below 2 s a busy machine could miss renewals and
# hand over for nothing; above 5 minutes a crash would stop the bot for too long.
TAKEOVER_SECONDS_RANGE: Final = (2.0, 300.0)

_DISCORD_API_PATH = re.compile(r"(?:/.*)?/api/v\d+")


class Secret:
    """A string that is never printed: repr is Secret('***'), str is ***.

    Call `reveal()` at the one place the real value is needed (the login call, the
    Authorization header). Two secrets are equal when their values are.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return format("***", format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    """Everything the bot is configured with. Build it with `load_settings()`.

    Constructing it directly (as tests do) still checks the secrets are `Secret`s and
    the numbers are in range, raising TypeError / ValueError.
    """

    discord_token: Secret
    wavespeed_api_key: Secret
    wavespeed_base_url: str = "https://api.wavespeed.ai"
    # Only for tests against a fake Discord, e.g. "http://127.0.0.1:8080/api/v10".
    discord_api_base_url: str | None = None
    # When set, slash commands are synced to this one server (instant, for development)
    # instead of globally.
    discord_guild_id: int | None = None
    database_path: Path = Path("data/ref2video.sqlite3")
    # How long the instance lease lasts without renewal: a standby process on the same
    # database takes over this long after the active one died (at once after a clean stop).
    instance_takeover_seconds: float = 10.0
    prices: PriceTable = field(default_factory=PriceTable)
    starting_credits: int = 0
    # Whether a clip WaveSpeed flags as NSFW, and that is therefore withheld (not posted
    # in a channel that is not age-restricted), is still charged.
    nsfw_charge: bool = False
    wavespeed_max_concurrent: int = 2
    wavespeed_submits_per_minute: int = 2
    # How many queued + running jobs one user may have at once.
    user_max_active_jobs: int = 3
    poll_interval_seconds: float = 5.0
    job_timeout_seconds: float = 1800.0
    # At most how often a job's status message is edited (Discord rate-limits edits).
    status_update_seconds: float = 10.0
    # Warn in audit channels when the WaveSpeed account balance falls below this; 0: never.
    wavespeed_balance_warn_usd: float = 10.0
    # Largest output video the bot downloads, in bytes.
    output_max_bytes: int = 104_857_600
    # Hosts ("host" or "host:port") outputs may be downloaded from over plain http, whose
    # private/loopback addresses are allowed too (local fakes, an internal mirror). Every
    # other output URL must be https on a public address; see wavespeed/safe_download.py.
    output_http_hosts: tuple[str, ...] = ()
    # Largest reference video attachment accepted, in bytes (WaveSpeed's video limit).
    max_video_bytes: int = 104_857_600
    # Largest audio attachment accepted, in bytes.
    max_audio_bytes: int = 20_971_520
    # Longest prompt (and negative prompt) accepted, in characters.
    max_prompt_chars: int = 1500
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for name in ("discord_token", "wavespeed_api_key"):
            if not isinstance(getattr(self, name), Secret):
                raise TypeError(f"Settings.{name} must be a Secret, so it is never printed")
        wrong = [
            f"{name} must be at least {low}"
            for name, low in (
                ("starting_credits", 0),
                ("wavespeed_max_concurrent", 1),
                ("wavespeed_submits_per_minute", 1),
                ("user_max_active_jobs", 1),
                ("output_max_bytes", 1),
                ("max_video_bytes", 1),
                ("max_audio_bytes", 1),
            )
            if getattr(self, name) < low
        ]
        if not 1 <= self.max_prompt_chars <= DISCORD_STRING_OPTION_MAX_CHARS:
            wrong.append(f"max_prompt_chars must be from 1 to {DISCORD_STRING_OPTION_MAX_CHARS}")
        wrong += [
            f"{name} must be a finite number above 0"
            for name in ("poll_interval_seconds", "job_timeout_seconds")
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0)
        ]
        if not (math.isfinite(self.status_update_seconds) and self.status_update_seconds >= 1):
            wrong.append("status_update_seconds must be a finite number of at least 1")
        low, high = TAKEOVER_SECONDS_RANGE
        takeover = self.instance_takeover_seconds
        if not (math.isfinite(takeover) and low <= takeover <= high):
            wrong.append(f"instance_takeover_seconds must be a number from {low:g} to {high:g}")
        warn = self.wavespeed_balance_warn_usd
        if not (math.isfinite(warn) and warn >= 0):
            wrong.append("wavespeed_balance_warn_usd must be a finite number of at least 0")
        nsfw_charge: object = self.nsfw_charge  # a str such as "false" would be truthy
        if not isinstance(nsfw_charge, bool):
            wrong.append("nsfw_charge must be a bool")
        if self.discord_guild_id is not None and not (1 <= self.discord_guild_id <= _MAX_SNOWFLAKE):
            wrong.append("discord_guild_id must be None or a Discord snowflake (above 0)")
        if self.log_level not in LOG_LEVELS:
            wrong.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        hosts: object = self.output_http_hosts  # a bare str would pass as a list of letters
        if not isinstance(hosts, tuple) or not all(_is_host_entry(h) for h in hosts):
            wrong.append("output_http_hosts must be a tuple of 'host' or 'host:port' strings")
        if wrong:
            raise ValueError("invalid Settings: " + "; ".join(wrong))


def _is_host_entry(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_host_entry(value)
    except ValueError:
        return False
    return True


class SettingsError(Exception):
    """The configuration is incomplete or wrong. `problems` has one line per problem;
    str() is the whole message meant for the person starting the bot."""

    def __init__(self, problems: list[str], *, env_file: Path | None = None) -> None:
        self.problems = list(problems)
        self.env_file = env_file
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"ref2video-bot cannot start: {count} {noun} with its settings:"]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.env_file is not None:
            path = self.env_file.absolute()
            found = "" if path.is_file() else " (not found)"
            lines.append(
                f"Settings are read from {path}{found} and from environment variables, "
                "which win over the file."
            )
        else:
            lines.append("Settings are read from environment variables only.")
        lines.append(
            "To fix this, copy .env.example to .env (cp .env.example .env), fill it in "
            "(every setting is explained there) and start the bot again."
        )
        return "\n".join(lines)


_T = TypeVar("_T")


class _Reader:
    """Reads one variable at a time, remembering every problem instead of raising."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def secret(self, name: str, how: str) -> Secret:
        value = self.raw(name)
        if value is None:
            self.problems.append(f"{name} is not set: {how}")
            return Secret("")
        if any(ch.isspace() for ch in value):
            # Never show the value, not even part of it.
            self.problems.append(
                f"{name} contains spaces or line breaks: paste only the value itself "
                "(no 'Bot ' or 'Bearer ' prefix, no spaces)"
            )
        return Secret(value)

    def _number(
        self,
        name: str,
        default: _T,
        parse: Callable[[str], _T],
        ok: Callable[[_T], bool],
        rule: str,
    ) -> _T:
        text = self.raw(name)
        if text is None:
            return default
        try:
            value = parse(text)
        except ValueError:
            ok_value = False
        else:
            ok_value = ok(value)
        if not ok_value:
            self.problems.append(
                f"{name} must be {rule}, not {text!r}: change it "
                f"(default {default}), or delete the line to use the default"
            )
            return default
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        rule = (
            f"a whole number of at least {minimum}"
            if maximum is None
            else f"a whole number from {minimum} to {maximum}"
        )
        return self._number(
            name,
            default,
            lambda s: int(s, 10),
            lambda v: v >= minimum and (maximum is None or v <= maximum),
            rule,
        )

    def positive_float(self, name: str, default: float) -> float:
        return self._number(
            name,
            default,
            float,
            lambda v: math.isfinite(v) and v > 0,
            "a number above 0 (such as 0.5 or 5)",
        )

    def number_at_least(self, name: str, default: float, minimum: float) -> float:
        return self._number(
            name,
            default,
            float,
            lambda v: math.isfinite(v) and v >= minimum,
            f"a number of at least {minimum:g}",
        )

    def number_between(self, name: str, default: float, low: float, high: float) -> float:
        return self._number(
            name,
            default,
            float,
            lambda v: math.isfinite(v) and low <= v <= high,
            f"a number from {low:g} to {high:g}",
        )

    def boolean(self, name: str, default: bool) -> bool:
        text = self.raw(name)
        if text is None:
            return default
        value = BOOLEAN_WORDS.get(text.lower())
        if value is None:
            self.problems.append(
                f"{name} must be one of {', '.join(BOOLEAN_WORDS)}, not {text!r}: "
                f"set it to true or false (default {str(default).lower()}), "
                "or delete the line to use the default"
            )
            return default
        return value

    def snowflake(self, name: str, what: str, how: str, unset: str) -> int | None:
        """An optional Discord ID: `what` names it, `how` says where to copy it from and
        `unset` what leaving it out means."""
        text = self.raw(name)
        if text is None:
            return None
        try:
            value = int(text, 10)
        except ValueError:
            value = 0
        if not 1 <= value <= _MAX_SNOWFLAKE:
            self.problems.append(
                f"{name} must be {what} (a positive whole number such as "
                f"123456789012345678), not {text!r}: {how}, or delete the line {unset}"
            )
            return None
        return value

    def host_list(self, name: str, example: str, unset: str) -> tuple[str, ...]:
        """Comma-separated "host" / "host:port" entries, normalized, duplicates dropped."""
        text = self.raw(name)
        if text is None:
            return ()
        entries: list[str] = []
        reasons: list[str] = []
        for part in split_host_list(text):
            try:
                entries.append(str(parse_host_entry(part)))
            except ValueError as exc:
                reasons.append(str(exc))
        if reasons or not entries:
            why = "; ".join(reasons) if reasons else "no entry in it"
            self.problems.append(
                f"{name} must be a comma-separated list of host or host:port entries, not "
                f"{text!r} ({why}): set it to something like {example}, or delete the line "
                f"{unset}"
            )
            return ()
        return tuple(dict.fromkeys(entries))

    def url(self, name: str, default: str | None, example: str, api_path: bool) -> str | None:
        text = self.raw(name)
        if text is None:
            return default
        url = text.rstrip("/")
        use_default = (
            f"or delete the line to use the default ({default})"
            if default is not None
            else "or delete the line to use the real Discord API"
        )
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or any(ch.isspace() for ch in url)
        ):
            self.problems.append(
                f"{name} must be an http:// or https:// URL, not {text!r}: "
                f"set it to something like {example}, {use_default}"
            )
            return default
        if api_path and not _DISCORD_API_PATH.fullmatch(parts.path):
            self.problems.append(
                f"{name} must end in /api/v<version number>, not {text!r}: "
                f"set it to something like {example}, {use_default}"
            )
            return default
        return url


def _read_env_file(env_file: Path, problems: list[str]) -> dict[str, str]:
    try:
        # interpolate=False: values are taken literally, so a '$' in a key stays a '$'
        # and nothing is read from os.environ behind the caller's back.
        raw = dotenv_values(env_file, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problems.append(
            f"the settings file {env_file} cannot be read ({reason}): "
            "make it a readable UTF-8 text file, or delete it and use environment variables"
        )
        return {}
    return {key: value for key, value in raw.items() if value is not None}


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | None = Path(".env"),
) -> Settings:
    """Read, check and return the settings, or raise SettingsError listing every problem.

    `environ` defaults to `os.environ`; `env_file` (default `.env` in the working
    directory, None for none) is read with `dotenv_values`, and a missing file is fine.
    A variable set in `environ` wins over the file; empty or blank values count as unset
    (so an empty variable in the environment does not hide the file's value).
    """
    environment = os.environ if environ is None else environ
    file_problems: list[str] = []
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(_read_env_file(env_file, file_problems))
    merged.update({key: value for key, value in environment.items() if value.strip()})

    read = _Reader(merged)
    read.problems.extend(file_problems)

    discord_token = read.secret(
        "DISCORD_TOKEN",
        "put your bot token from the Discord developer portal "
        "(https://discord.com/developers/applications > your app > Bot > Reset Token) "
        "in .env (see .env.example)",
    )
    wavespeed_api_key = read.secret(
        "WAVESPEED_API_KEY",
        "put your API key from the API Keys page of your WaveSpeed account (wavespeed.ai) "
        "in .env (see .env.example)",
    )
    wavespeed_base_url = read.url(
        "WAVESPEED_BASE_URL", Settings.wavespeed_base_url, "https://api.wavespeed.ai", False
    )
    discord_api_base_url = read.url(
        "DISCORD_API_BASE_URL", None, "http://127.0.0.1:8080/api/v10", True
    )
    discord_guild_id = read.snowflake(
        "DISCORD_GUILD_ID",
        "a Discord server ID",
        "copy it in Discord with Developer Mode on (right-click the server > Copy Server ID)",
        "to sync slash commands globally",
    )

    database_path = Settings.database_path
    db_text = read.raw("DATABASE_PATH")
    if db_text is not None:
        database_path = Path(db_text).expanduser()
        if database_path.is_dir():
            read.problems.append(
                f"DATABASE_PATH must be a file, not the directory {db_text!r}: "
                f"set it to a file path such as {Settings.database_path}"
            )
            database_path = Settings.database_path

    takeover = read.number_between(
        "INSTANCE_TAKEOVER_SECONDS", Settings.instance_takeover_seconds, *TAKEOVER_SECONDS_RANGE
    )

    default_prices = PriceTable()
    p720_5s = read.integer("PRICE_720P_5S", default_prices.p720_5s, 1)
    p720_10s = read.integer("PRICE_720P_10S", default_prices.p720_10s, 1)
    p1080_5s = read.integer("PRICE_1080P_5S", default_prices.p1080_5s, 1)
    p1080_10s = read.integer("PRICE_1080P_10S", default_prices.p1080_10s, 1)
    usd_per_credit = read.positive_float("USD_PER_CREDIT", default_prices.usd_per_credit)

    starting_credits = read.integer("STARTING_CREDITS", Settings.starting_credits, 0)
    nsfw_charge = read.boolean("NSFW_CHARGE", Settings.nsfw_charge)
    max_concurrent = read.integer("WAVESPEED_MAX_CONCURRENT", Settings.wavespeed_max_concurrent, 1)
    submits_per_minute = read.integer(
        "WAVESPEED_SUBMITS_PER_MINUTE", Settings.wavespeed_submits_per_minute, 1
    )
    user_max_active_jobs = read.integer("USER_MAX_ACTIVE_JOBS", Settings.user_max_active_jobs, 1)
    poll_interval = read.positive_float("POLL_INTERVAL_SECONDS", Settings.poll_interval_seconds)
    job_timeout = read.positive_float("JOB_TIMEOUT_SECONDS", Settings.job_timeout_seconds)
    status_update = read.number_at_least("STATUS_UPDATE_SECONDS", Settings.status_update_seconds, 1)
    balance_warn = read.number_at_least(
        "WAVESPEED_BALANCE_WARN_USD", Settings.wavespeed_balance_warn_usd, 0)
    output_max_bytes = read.integer("OUTPUT_MAX_BYTES", Settings.output_max_bytes, 1)
    output_http_hosts = read.host_list(
        "OUTPUT_HTTP_HOSTS",
        "127.0.0.1:8080,cdn.internal",
        "to download outputs over https from public addresses only",
    )
    max_video_bytes = read.integer("MAX_VIDEO_BYTES", Settings.max_video_bytes, 1)
    max_audio_bytes = read.integer("MAX_AUDIO_BYTES", Settings.max_audio_bytes, 1)
    max_prompt_chars = read.integer(
        "MAX_PROMPT_CHARS", Settings.max_prompt_chars, 1, DISCORD_STRING_OPTION_MAX_CHARS
    )

    log_level = Settings.log_level
    level_text = read.raw("LOG_LEVEL")
    if level_text is not None:
        if level_text.upper() in LOG_LEVELS:
            log_level = level_text.upper()
        else:
            read.problems.append(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {level_text!r}: "
                f"set it to one of those (default {Settings.log_level})"
            )

    if read.problems:
        raise SettingsError(read.problems, env_file=env_file)

    return Settings(
        discord_token=discord_token,
        wavespeed_api_key=wavespeed_api_key,
        wavespeed_base_url=wavespeed_base_url or Settings.wavespeed_base_url,
        discord_api_base_url=discord_api_base_url,
        discord_guild_id=discord_guild_id,
        database_path=database_path,
        instance_takeover_seconds=takeover,
        prices=PriceTable(
            p720_5s=p720_5s,
            p720_10s=p720_10s,
            p1080_5s=p1080_5s,
            p1080_10s=p1080_10s,
            usd_per_credit=usd_per_credit,
        ),
        starting_credits=starting_credits,
        nsfw_charge=nsfw_charge,
        wavespeed_max_concurrent=max_concurrent,
        wavespeed_submits_per_minute=submits_per_minute,
        user_max_active_jobs=user_max_active_jobs,
        poll_interval_seconds=poll_interval,
        job_timeout_seconds=job_timeout,
        status_update_seconds=status_update,
        wavespeed_balance_warn_usd=balance_warn,
        output_max_bytes=output_max_bytes,
        output_http_hosts=output_http_hosts,
        max_video_bytes=max_video_bytes,
        max_audio_bytes=max_audio_bytes,
        max_prompt_chars=max_prompt_chars,
        log_level=log_level,
    )
