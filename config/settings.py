"""The bot's settings: read from .env and the environment, validated all at once.

Each field of `Settings` declares its setting (variable, kind and bounds, help; see
config/table.py), and that one table drives reading, checking and the error messages.
Nothing here runs at import time. `load_settings()` reads the env file with
python-dotenv's `dotenv_values` (it never touches `os.environ`), lets real environment
variables override it, checks every value, and raises one `SettingsError` listing every
problem it found. Secret values (the Discord token and the WaveSpeed key) are wrapped in
`Secret` and never appear in a message, a repr or a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final

from dotenv import dotenv_values

from config.secret import Secret
from config.table import (
    Choice,
    FilePath,
    Flag,
    HostList,
    Invalid,
    Number,
    SecretText,
    Setting,
    Snowflake,
    Url,
    Whole,
    build,
    from_env,
    parts_from_env,
    table_of,
)
from money.prices import PriceTable

__all__ = [
    "BOOLEAN_WORDS",
    "DISCORD_STRING_OPTION_MAX_CHARS",
    "LOG_LEVELS",
    "SETTINGS_TABLE",
    "SETTINGS_VARIABLES",
    "Secret",
    "Settings",
    "SettingsError",
    "load_settings",
]

LOG_LEVELS: Final[tuple[str, ...]] = ("DEBUG", "INFO", "WARNING", "ERROR")
WAVESPEED_MODES: Final[tuple[str, ...]] = ("LIVE", "SIMULATE")
SIMULATE_TIERS: Final[tuple[str, ...]] = ("BRONZE", "SILVER", "GOLD")

_KEY_HOW: Final = (
    "put your API key from the API Keys page of your WaveSpeed account (wavespeed.ai) in "
    ".env (see .env.example), or set WAVESPEED_MODE=simulate to run against a simulated "
    "WaveSpeed with no key and no cost (every message then says it is simulated; "
    "scripts/playground tries that with no Discord account either)"
)

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


@dataclass(frozen=True)
class Settings:
    """Everything the bot is configured with. Build it with `load_settings()`.

    Each field is a row of the settings table: its variable, kind (with bounds) and help.
    Constructing it directly (as tests do) still checks the secrets are `Secret`s and
    the values are in range, raising TypeError / ValueError. The fields are in the order
    of .env.example; what each setting does is explained there.
    """

    discord_token: Secret = field(metadata=from_env("DISCORD_TOKEN", SecretText(
        "put your bot token from the Discord developer portal "
        "(https://discord.com/developers/applications > your app > Bot > Reset Token) "
        "in .env (see .env.example)"), "bot token from the Discord developer portal"))
    # Needed unless WAVESPEED_MODE=simulate (checked in __post_init__ and load_settings).
    wavespeed_api_key: Secret | None = field(default=None, metadata=from_env(
        "WAVESPEED_API_KEY", SecretText(_KEY_HOW, optional=True),
        "API key from your WaveSpeed account"))
    wavespeed_base_url: str = field(default="https://api.wavespeed.ai", metadata=from_env(
        "WAVESPEED_BASE_URL", Url("https://api.wavespeed.ai"), "WaveSpeed API root"))
    wavespeed_mode: str = field(default="LIVE", metadata=from_env(
        "WAVESPEED_MODE", Choice(WAVESPEED_MODES),
        "LIVE: the paid WaveSpeed API; SIMULATE: a simulated WaveSpeed inside the bot (no key, "
        "no cost, every message says so)"))
    simulate_speedup: float = field(default=1.0, metadata=from_env(
        "SIMULATE_SPEEDUP", Number(at_least=1.0, at_most=1000.0),
        "simulate mode: how many times faster than real generation tasks finish"))
    simulate_tier: str = field(default="BRONZE", metadata=from_env(
        "SIMULATE_TIER", Choice(SIMULATE_TIERS),
        "simulate mode: the WaveSpeed account tier whose limits are enforced"))
    simulate_failure_rate: float = field(default=0.0, metadata=from_env(
        "SIMULATE_FAILURE_RATE", Number(at_least=0.0, at_most=1.0),
        "simulate mode: the share of tasks that fail, from 0 to 1"))
    discord_api_base_url: str | None = field(default=None, metadata=from_env(
        "DISCORD_API_BASE_URL",
        Url("http://127.0.0.1:8080/api/v10", "to use the real Discord API", api_path=True),
        "Discord API root, only for tests against a fake Discord"))
    discord_guild_id: int | None = field(default=None, metadata=from_env(
        "DISCORD_GUILD_ID",
        Snowflake(
            "a Discord server ID",
            "copy it in Discord with Developer Mode on (right-click the server > Copy Server ID)",
            "to sync slash commands globally",
        ),
        "the server slash commands are synced to (at once, for development), not globally"))
    database_path: Path = field(default=Path("data/ref2video.sqlite3"), metadata=from_env(
        "DATABASE_PATH", FilePath(), "SQLite database file"))
    # Below 2 s a busy machine could miss renewals and hand over for nothing; above
    # 5 minutes a crash would stop the bot for too long.
    instance_takeover_seconds: float = field(default=10.0, metadata=from_env(
        "INSTANCE_TAKEOVER_SECONDS", Number(at_least=2.0, at_most=300.0),
        "how long the instance lease lasts without renewal: a standby process on the same "
        "database takes over this long after the active one died (at once after a clean stop)"))
    # The defaults are PriceTable's.
    prices: PriceTable = field(default_factory=PriceTable, metadata=parts_from_env(
        p720_5s=Setting("PRICE_720P_5S", Whole(at_least=1), "credits for a 720p, 5 s clip"),
        p720_10s=Setting("PRICE_720P_10S", Whole(at_least=1), "credits for a 720p, 10 s clip"),
        p1080_5s=Setting("PRICE_1080P_5S", Whole(at_least=1), "credits for a 1080p, 5 s clip"),
        p1080_10s=Setting("PRICE_1080P_10S", Whole(at_least=1), "credits for a 1080p, 10 s clip"),
        usd_per_credit=Setting("USD_PER_CREDIT", Number(above=0), "US$ one credit is worth"),
    ))
    price_follow_wavespeed: bool = field(default=False, metadata=from_env(
        "PRICE_FOLLOW_WAVESPEED", Flag(BOOLEAN_WORDS),
        "set each price from WaveSpeed's own (its pricing endpoint, read at start and daily) "
        "plus PRICE_MARKUP_PERCENT, instead of the PRICE_* values"))
    price_markup_percent: float = field(default=20.0, metadata=from_env(
        "PRICE_MARKUP_PERCENT", Number(at_least=0.0, at_most=1000.0),
        "with PRICE_FOLLOW_WAVESPEED: how much above WaveSpeed's price a clip sells, in %"))
    starting_credits: int = field(default=0, metadata=from_env(
        "STARTING_CREDITS", Whole(at_least=0), "credits a new user starts with"))
    nsfw_charge: bool = field(default=False, metadata=from_env(
        "NSFW_CHARGE", Flag(BOOLEAN_WORDS), "whether a clip withheld as NSFW is still charged"))
    wavespeed_max_concurrent: int = field(default=2, metadata=from_env(
        "WAVESPEED_MAX_CONCURRENT", Whole(at_least=1), "generations running on WaveSpeed at once"))
    wavespeed_submits_per_minute: int = field(default=2, metadata=from_env(
        "WAVESPEED_SUBMITS_PER_MINUTE", Whole(at_least=1), "generations submitted per minute"))
    user_max_active_jobs: int = field(default=3, metadata=from_env(
        "USER_MAX_ACTIVE_JOBS", Whole(at_least=1), "queued + running jobs one user may have"))
    poll_interval_seconds: float = field(default=5.0, metadata=from_env(
        "POLL_INTERVAL_SECONDS", Number(above=0), "seconds between status checks of a generation"))
    job_timeout_seconds: float = field(default=1800.0, metadata=from_env(
        "JOB_TIMEOUT_SECONDS", Number(above=0), "seconds before a generation is given up on"))
    status_update_seconds: float = field(default=10.0, metadata=from_env(
        "STATUS_UPDATE_SECONDS", Number(at_least=1), "least seconds between status edits"))
    wavespeed_balance_warn_usd: float = field(default=10.0, metadata=from_env(
        "WAVESPEED_BALANCE_WARN_USD", Number(at_least=0), "warn below this balance; 0: never"))
    output_max_bytes: int = field(default=104_857_600, metadata=from_env(
        "OUTPUT_MAX_BYTES", Whole(at_least=1), "largest output video downloaded, in bytes"))
    output_http_hosts: tuple[str, ...] = field(default=(), metadata=from_env(
        "OUTPUT_HTTP_HOSTS",
        HostList(
            "127.0.0.1:8080,cdn.internal",
            "to download outputs over https from public addresses only",
        ),
        "hosts outputs may also be downloaded from over plain http, on private/loopback "
        "addresses too (local fakes, an internal mirror); see wavespeed/safe_download.py"))
    max_video_bytes: int = field(default=104_857_600, metadata=from_env(
        "MAX_VIDEO_BYTES", Whole(at_least=1), "largest reference video accepted, in bytes"))
    reference_min_seconds: float = field(default=2.0, metadata=from_env(
        "REFERENCE_MIN_SECONDS", Number(at_least=2.0, at_most=30.0),
        "shortest reference video (and audio) accepted, in seconds (the model's limit is 2)"))
    reference_max_seconds: float = field(default=30.0, metadata=from_env(
        "REFERENCE_MAX_SECONDS", Number(at_least=2.0, at_most=30.0),
        "longest reference video (and audio) accepted, in seconds (the model's limit is 30)"))
    max_audio_bytes: int = field(default=20_971_520, metadata=from_env(
        "MAX_AUDIO_BYTES", Whole(at_least=1), "largest audio attachment accepted, in bytes"))
    max_prompt_chars: int = field(default=1500, metadata=from_env(
        "MAX_PROMPT_CHARS", Whole(at_least=1, at_most=DISCORD_STRING_OPTION_MAX_CHARS),
        "longest prompt (and negative prompt) accepted, in characters"))
    log_level: str = field(default="INFO", metadata=from_env(
        "LOG_LEVEL", Choice(LOG_LEVELS), "how much the bot logs"))

    def __post_init__(self) -> None:
        # The parts of the price table ("prices.p720_5s") are checked by PriceTable itself.
        own = [row for row in SETTINGS_TABLE if "." not in row.attr]
        for row in own:
            value = getattr(self, row.attr)
            if isinstance(row.kind, SecretText) and not isinstance(value, Secret) and not (
                    row.kind.optional and value is None):
                raise TypeError(f"Settings.{row.attr} must be a Secret, so it is never printed")
        if (problem := _needs_key(self.wavespeed_mode, self.wavespeed_api_key)) is not None:
            raise ValueError(f"invalid Settings: {problem}")
        if (problem := _reference_range(self.reference_min_seconds,
                                        self.reference_max_seconds)) is not None:
            raise ValueError(f"invalid Settings: {problem}")
        wrong = [
            f"{row.attr} must be {complaint}"
            for row in own
            if (complaint := row.kind.complaint(getattr(self, row.attr))) is not None
        ]
        if wrong:
            raise ValueError("invalid Settings: " + "; ".join(wrong))

    @property
    def simulated(self) -> bool:
        """WaveSpeed is simulated inside the bot (simulator/): nothing is paid."""
        return self.wavespeed_mode == "SIMULATE"


# Every setting, in the order of .env.example, and the variables they are read from.
SETTINGS_TABLE: Final[tuple[Setting, ...]] = table_of(Settings)
SETTINGS_VARIABLES: Final[tuple[str, ...]] = tuple(row.env for row in SETTINGS_TABLE)


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
    problems: list[str] = []
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(_read_env_file(env_file, problems))
    merged.update({key: value for key, value in environment.items() if value.strip()})

    values: dict[str, object] = {}
    key_at = 0  # where the missing key's problem goes, to keep .env.example's order
    for row in SETTINGS_TABLE:
        if row.attr == "wavespeed_api_key":
            key_at = len(problems)
        try:
            values[row.attr] = row.read(merged)
        except Invalid as problem:
            problems.append(f"{row.env} {problem}")
    # Only when both were read: a bad value has been reported already.
    if {"wavespeed_mode", "wavespeed_api_key"} <= values.keys() and (missing := _needs_key(
            values["wavespeed_mode"], values["wavespeed_api_key"])) is not None:
        problems.insert(key_at, missing)
    if {"reference_min_seconds", "reference_max_seconds"} <= values.keys() and (
            backwards := _reference_range(values["reference_min_seconds"],
                                          values["reference_max_seconds"])) is not None:
        problems.append(backwards)
    if problems:
        raise SettingsError(problems, env_file=env_file)
    return build(Settings, values)


def _reference_range(shortest: object, longest: object) -> str | None:
    """The range of reference lengths must not be empty."""
    if isinstance(shortest, float | int) and isinstance(longest, float | int) and (
            shortest > longest):
        return (f"REFERENCE_MIN_SECONDS ({shortest:g}) is above REFERENCE_MAX_SECONDS "
                f"({longest:g}): lower the first or raise the second")
    return None


def _needs_key(mode: object, key: object) -> str | None:
    """The one rule across settings: the paid API needs its key."""
    if mode == "LIVE" and key is None:
        return f"WAVESPEED_API_KEY is not set: {_KEY_HOW}"
    return None
