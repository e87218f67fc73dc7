"""config.settings: defaults, overrides, .env handling, error messages, secrecy; bot.main()."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import subprocess
import sys
from operator import attrgetter
from pathlib import Path
from typing import Any

import discord
import pytest

import bot
from config import (
    BOOLEAN_WORDS,
    DISCORD_STRING_OPTION_MAX_CHARS,
    LOG_LEVELS,
    SETTINGS_TABLE,
    SETTINGS_VARIABLES,
    Secret,
    Settings,
    SettingsError,
    load_settings,
)
from money.prices import PriceTable

REPO = Path(__file__).resolve().parents[2]

TOKEN = "MTIzNDU2Nzg5MDEy.GhIjKl.discord-token-value"
API_KEY = "ws_0123456789abcdef-api-key-value"
REQUIRED = {"DISCORD_TOKEN": TOKEN, "WAVESPEED_API_KEY": API_KEY}


def load(env: dict[str, str], env_file: Path | None = None) -> Settings:
    return load_settings(env, env_file=env_file)


def problems_of(env: dict[str, str], env_file: Path | None = None) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        load_settings(env, env_file=env_file)
    return info.value


# --- Secret -----------------------------------------------------------------------------


def test_secret_is_never_printed() -> None:
    secret = Secret("hunter2")
    assert secret.reveal() == "hunter2"
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert f"{secret!r}" == "Secret('***')"
    assert f"{secret:>5}" == "  ***"
    assert "%s" % secret == "***"  # noqa: UP031 - %-formatting must hide it too
    assert "hunter2" not in repr([secret, {"k": secret}])


def test_secret_equality_is_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2
    assert Secret("é") == Secret("é")


def test_secret_cannot_be_changed_pickled_or_built_from_non_str() -> None:
    secret = Secret("hunter2")
    with pytest.raises(AttributeError):
        secret._value = "x"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    assert not hasattr(secret, "__dict__")


# --- Defaults and overrides -------------------------------------------------------------


def test_defaults() -> None:
    settings = load(REQUIRED)
    assert settings == Settings(discord_token=Secret(TOKEN), wavespeed_api_key=Secret(API_KEY))
    assert settings.discord_token.reveal() == TOKEN
    assert settings.wavespeed_api_key == Secret(API_KEY)
    assert settings.wavespeed_base_url == "https://api.wavespeed.ai"
    assert settings.discord_api_base_url is None
    assert settings.discord_guild_id is None
    assert settings.database_path == Path("data/ref2video.sqlite3")
    assert settings.prices == PriceTable(
        p720_5s=100, p720_10s=150, p1080_5s=150, p1080_10s=225, usd_per_credit=0.01
    )
    assert settings.starting_credits == 0
    assert settings.nsfw_charge is False
    assert settings.wavespeed_max_concurrent == 2
    assert settings.wavespeed_submits_per_minute == 2
    assert settings.user_max_active_jobs == 3
    assert settings.poll_interval_seconds == 5.0
    assert settings.job_timeout_seconds == 1800
    assert settings.status_update_seconds == 10.0
    assert settings.output_max_bytes == 104_857_600
    assert settings.output_http_hosts == ()  # https from public addresses only
    assert settings.max_video_bytes == 104_857_600  # 100 MiB, WaveSpeed's video limit
    assert settings.max_audio_bytes == 20_971_520  # 20 MiB
    assert settings.max_prompt_chars == 1500
    assert settings.log_level == "INFO"


def _price(name: str) -> Any:
    return lambda s: getattr(s.prices, name)


OVERRIDES: list[tuple[str, str, Any, Any]] = [
    ("WAVESPEED_BASE_URL", "http://127.0.0.1:9000/", "wavespeed_base_url", "http://127.0.0.1:9000"),
    ("WAVESPEED_BASE_URL", "https://ws.example/v", "wavespeed_base_url", "https://ws.example/v"),
    (
        "DISCORD_API_BASE_URL",
        "http://127.0.0.1:8080/api/v10",
        "discord_api_base_url",
        "http://127.0.0.1:8080/api/v10",
    ),
    (
        "DISCORD_API_BASE_URL",
        "https://proxy.example/discord/api/v9/",
        "discord_api_base_url",
        "https://proxy.example/discord/api/v9",
    ),
    ("DISCORD_GUILD_ID", "123456789012345678", "discord_guild_id", 123456789012345678),
    ("DISCORD_GUILD_ID", "1", "discord_guild_id", 1),
    ("DISCORD_GUILD_ID", str(2**64 - 1), "discord_guild_id", 2**64 - 1),
    ("DATABASE_PATH", "/srv/bot/db.sqlite3", "database_path", Path("/srv/bot/db.sqlite3")),
    ("DATABASE_PATH", "other.db", "database_path", Path("other.db")),
    ("PRICE_720P_5S", "1", _price("p720_5s"), 1),
    ("PRICE_720P_10S", "2", _price("p720_10s"), 2),
    ("PRICE_1080P_5S", "3", _price("p1080_5s"), 3),
    ("PRICE_1080P_10S", "4", _price("p1080_10s"), 4),
    ("USD_PER_CREDIT", "0.05", _price("usd_per_credit"), 0.05),
    ("USD_PER_CREDIT", "1", _price("usd_per_credit"), 1.0),
    ("PRICE_FOLLOW_WAVESPEED", "true", "price_follow_wavespeed", True),
    ("PRICE_MARKUP_PERCENT", "0", "price_markup_percent", 0.0),
    ("PRICE_MARKUP_PERCENT", "35.5", "price_markup_percent", 35.5),
    ("STARTING_CREDITS", "0", "starting_credits", 0),
    ("STARTING_CREDITS", "500", "starting_credits", 500),
    ("NSFW_CHARGE", "true", "nsfw_charge", True),
    ("NSFW_CHARGE", "false", "nsfw_charge", False),
    ("WAVESPEED_MAX_CONCURRENT", "1", "wavespeed_max_concurrent", 1),
    ("WAVESPEED_MAX_CONCURRENT", "8", "wavespeed_max_concurrent", 8),
    ("WAVESPEED_SUBMITS_PER_MINUTE", "10", "wavespeed_submits_per_minute", 10),
    ("USER_MAX_ACTIVE_JOBS", "1", "user_max_active_jobs", 1),
    ("POLL_INTERVAL_SECONDS", "0.01", "poll_interval_seconds", 0.01),
    ("POLL_INTERVAL_SECONDS", "2", "poll_interval_seconds", 2.0),
    ("INSTANCE_TAKEOVER_SECONDS", "2", "instance_takeover_seconds", 2.0),
    ("INSTANCE_TAKEOVER_SECONDS", "300", "instance_takeover_seconds", 300.0),
    ("JOB_TIMEOUT_SECONDS", "60.5", "job_timeout_seconds", 60.5),
    ("STATUS_UPDATE_SECONDS", "1", "status_update_seconds", 1.0),
    ("STATUS_UPDATE_SECONDS", "2.5", "status_update_seconds", 2.5),
    ("STATUS_UPDATE_SECONDS", "60", "status_update_seconds", 60.0),
    ("WAVESPEED_BALANCE_WARN_USD", "0", "wavespeed_balance_warn_usd", 0.0),
    ("WAVESPEED_BALANCE_WARN_USD", "25.5", "wavespeed_balance_warn_usd", 25.5),
    ("OUTPUT_MAX_BYTES", "1048576", "output_max_bytes", 1_048_576),
    ("OUTPUT_HTTP_HOSTS", "127.0.0.1:8080", "output_http_hosts", ("127.0.0.1:8080",)),
    (
        "OUTPUT_HTTP_HOSTS",
        " CDN.Internal. , [0:0::1]:9000,127.0.0.1,cdn.internal ",
        "output_http_hosts",
        ("cdn.internal", "[::1]:9000", "127.0.0.1"),
    ),
    ("MAX_VIDEO_BYTES", "1", "max_video_bytes", 1),
    ("MAX_VIDEO_BYTES", "52428800", "max_video_bytes", 52_428_800),
    ("REFERENCE_MIN_SECONDS", "3", "reference_min_seconds", 3.0),
    ("REFERENCE_MAX_SECONDS", "12.5", "reference_max_seconds", 12.5),
    ("MAX_AUDIO_BYTES", "1", "max_audio_bytes", 1),
    ("MAX_AUDIO_BYTES", "10485760", "max_audio_bytes", 10_485_760),
    ("MAX_PROMPT_CHARS", "1", "max_prompt_chars", 1),
    ("MAX_PROMPT_CHARS", "800", "max_prompt_chars", 800),
    ("MAX_PROMPT_CHARS", "6000", "max_prompt_chars", 6000),
    ("LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("LOG_LEVEL", "warning", "log_level", "WARNING"),
    ("LOG_LEVEL", " error ", "log_level", "ERROR"),
    ("WAVESPEED_MODE", "simulate", "wavespeed_mode", "SIMULATE"),
    ("WAVESPEED_MODE", "Live", "wavespeed_mode", "LIVE"),
    ("SIMULATE_SPEEDUP", "1", "simulate_speedup", 1.0),
    ("SIMULATE_SPEEDUP", "1000", "simulate_speedup", 1000.0),
    ("SIMULATE_TIER", "gold", "simulate_tier", "GOLD"),
    ("SIMULATE_FAILURE_RATE", "0", "simulate_failure_rate", 0.0),
    ("SIMULATE_FAILURE_RATE", "0.25", "simulate_failure_rate", 0.25),
    ("SIMULATE_FAILURE_RATE", "1", "simulate_failure_rate", 1.0),
]


@pytest.mark.parametrize(("name", "value", "attr", "expected"), OVERRIDES)
def test_every_override(name: str, value: str, attr: Any, expected: Any) -> None:
    settings = load({**REQUIRED, name: value})
    actual = getattr(settings, attr) if isinstance(attr, str) else attr(settings)
    assert actual == expected
    assert type(actual) is type(expected)


def test_overrides_cover_every_variable() -> None:
    covered = {name for name, *_ in OVERRIDES} | set(REQUIRED)
    assert covered == set(SETTINGS_VARIABLES)


@pytest.mark.parametrize(("word", "expected"), list(BOOLEAN_WORDS.items()))
def test_boolean_words_in_any_case(word: str, expected: bool) -> None:
    for text in (word, word.upper(), word.capitalize(), f"  {word} "):
        assert load({**REQUIRED, "NSFW_CHARGE": text}).nsfw_charge is expected


def test_boolean_words_are_the_documented_ones() -> None:
    assert dict(BOOLEAN_WORDS) == {
        "true": True,
        "false": False,
        "yes": True,
        "no": False,
        "1": True,
        "0": False,
        "on": True,
        "off": False,
    }
    with pytest.raises(TypeError):
        BOOLEAN_WORDS["maybe"] = True  # type: ignore[index]


def test_values_are_stripped_and_blank_means_unset() -> None:
    settings = load(
        {
            "DISCORD_TOKEN": f"  {TOKEN}\n",
            "WAVESPEED_API_KEY": API_KEY,
            "STARTING_CREDITS": "   ",
            "LOG_LEVEL": "",
            "DISCORD_API_BASE_URL": "",
        }
    )
    assert settings.discord_token == Secret(TOKEN)
    assert settings.starting_credits == 0
    assert settings.log_level == "INFO"
    assert settings.discord_api_base_url is None


def test_unrelated_variables_are_ignored() -> None:
    assert load({**REQUIRED, "PATH": "/bin", "PRICE_4K_5S": "nonsense"}) == load(REQUIRED)


# --- Problems: all collected, each clear ------------------------------------------------


def test_missing_secrets_are_both_reported() -> None:
    err = problems_of({})
    assert len(err.problems) == 2
    token, key = err.problems
    assert token.startswith("DISCORD_TOKEN is not set: ")
    assert "Discord developer portal" in token and ".env" in token
    assert key.startswith("WAVESPEED_API_KEY is not set: ")
    assert "WaveSpeed" in key and ".env" in key


def test_a_missing_key_names_both_ways_forward() -> None:
    (key,) = problems_of({"DISCORD_TOKEN": TOKEN}).problems
    assert key.startswith("WAVESPEED_API_KEY is not set: ")
    assert "API Keys page" in key and "WAVESPEED_MODE=simulate" in key


def test_simulate_mode_needs_no_key() -> None:
    settings = load({"DISCORD_TOKEN": TOKEN, "WAVESPEED_MODE": "simulate"})
    assert settings.simulated and settings.wavespeed_api_key is None
    assert not load(REQUIRED).simulated
    # A bad mode is reported as such, not as a missing key as well.
    (bad,) = problems_of({"DISCORD_TOKEN": TOKEN, "WAVESPEED_MODE": "fake"}).problems
    assert bad.startswith("WAVESPEED_MODE must be one of LIVE, SIMULATE, not 'fake'")


def test_settings_made_directly_need_a_key_unless_simulated() -> None:
    with pytest.raises(ValueError, match="WAVESPEED_API_KEY is not set"):
        Settings(discord_token=Secret(TOKEN))
    assert Settings(discord_token=Secret(TOKEN), wavespeed_mode="SIMULATE").simulated
    with pytest.raises(TypeError, match="must be a Secret"):
        Settings(discord_token=Secret(TOKEN), wavespeed_api_key=API_KEY)  # type: ignore[arg-type]


def test_all_problems_are_collected_at_once() -> None:
    env = {
        "WAVESPEED_BASE_URL": "ftp://files.example",
        "DISCORD_API_BASE_URL": "http://127.0.0.1:8080/api",
        "DISCORD_GUILD_ID": "my-server",
        "PRICE_720P_5S": "0",
        "PRICE_720P_10S": "ten",
        "PRICE_1080P_5S": "-5",
        "PRICE_1080P_10S": "2.5",
        "USD_PER_CREDIT": "0",
        "STARTING_CREDITS": "-1",
        "NSFW_CHARGE": "sometimes",
        "WAVESPEED_MAX_CONCURRENT": "0",
        "WAVESPEED_SUBMITS_PER_MINUTE": "many",
        "USER_MAX_ACTIVE_JOBS": "0",
        "POLL_INTERVAL_SECONDS": "-1",
        "JOB_TIMEOUT_SECONDS": "inf",
        "STATUS_UPDATE_SECONDS": "0.5",
        "WAVESPEED_BALANCE_WARN_USD": "-1",
        "OUTPUT_MAX_BYTES": "100MB",
        "OUTPUT_HTTP_HOSTS": "http://127.0.0.1:8080",
        "MAX_VIDEO_BYTES": "0",
        "MAX_AUDIO_BYTES": "20 MiB",
        "MAX_PROMPT_CHARS": "6001",
        "LOG_LEVEL": "TRACE",
    }
    err = problems_of(env)
    # One problem per bad variable, plus the two missing secrets, in .env.example order.
    named = [problem.split(" ", 1)[0] for problem in err.problems]
    assert named == ["DISCORD_TOKEN", "WAVESPEED_API_KEY", *env]
    for problem, value in zip(err.problems[2:], env.values(), strict=True):
        assert repr(value) in problem, problem  # the bad value is quoted
        assert ": " in problem  # what is wrong: how to fix it
    message = str(err)
    lines = message.splitlines()
    assert lines[0] == "ref2video-bot cannot start: 25 problems with its settings:"
    assert lines[1 : 1 + 25] == [f"  - {problem}" for problem in err.problems]
    assert "cp .env.example .env" in lines[-1]
    assert "Traceback" not in message


def test_problem_messages_say_what_to_do() -> None:
    err = problems_of(
        {
            **REQUIRED,
            "STARTING_CREDITS": "-1",
            "POLL_INTERVAL_SECONDS": "soon",
            "DISCORD_API_BASE_URL": "127.0.0.1:8080/api/v10",
            "LOG_LEVEL": "verbose",
        }
    )
    assert err.problems == [
        "DISCORD_API_BASE_URL must be an http:// or https:// URL, not '127.0.0.1:8080/api/v10': "
        "set it to something like http://127.0.0.1:8080/api/v10, "
        "or delete the line to use the real Discord API",
        "STARTING_CREDITS must be a whole number of at least 0, not '-1': "
        "change it (default 0), or delete the line to use the default",
        "POLL_INTERVAL_SECONDS must be a number above 0 (such as 0.5 or 5), not 'soon': "
        "change it (default 5.0), or delete the line to use the default",
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not 'verbose': "
        "set it to one of those (default INFO)",
    ]


def _byte_limit_problem(name: str, value: str, default: int) -> str:
    return (
        f"{name} must be a whole number of at least 1, not {value!r}: "
        f"change it (default {default}), or delete the line to use the default"
    )


def _prompt_chars_problem(value: str) -> str:
    return (
        f"MAX_PROMPT_CHARS must be a whole number from 1 to 6000, not {value!r}: "
        "change it (default 1500), or delete the line to use the default"
    )


def _nsfw_charge_problem(value: str) -> str:
    return (
        f"NSFW_CHARGE must be one of true, false, yes, no, 1, 0, on, off, not {value!r}: "
        "set it to true or false (default false), or delete the line to use the default"
    )


def _status_update_problem(value: str) -> str:
    return (
        f"STATUS_UPDATE_SECONDS must be a number of at least 1, not {value!r}: "
        "change it (default 10.0), or delete the line to use the default"
    )


def _guild_id_problem(value: str) -> str:
    return (
        "DISCORD_GUILD_ID must be a Discord server ID (a positive whole number such as "
        f"123456789012345678), not {value!r}: copy it in Discord with Developer Mode on "
        "(right-click the server > Copy Server ID), or delete the line to sync slash "
        "commands globally"
    )


NEW_SETTING_PROBLEMS: list[tuple[str, str, str]] = [
    *(
        ("MAX_VIDEO_BYTES", value, _byte_limit_problem("MAX_VIDEO_BYTES", value, 104857600))
        for value in ("0", "-1", "100MB", "1.5", "1e8", "lots")
    ),
    *(
        ("MAX_AUDIO_BYTES", value, _byte_limit_problem("MAX_AUDIO_BYTES", value, 20971520))
        for value in ("0", "-20971520", "20 MiB", "2.5", "none")
    ),
    *(
        ("MAX_PROMPT_CHARS", value, _prompt_chars_problem(value))
        for value in ("0", "-1", "6001", "100000", "1500.0", "long")
    ),
    *(
        ("NSFW_CHARGE", value, _nsfw_charge_problem(value))
        for value in ("maybe", "2", "-1", "y", "n", "t", "f", "enabled", "true false", "ja")
    ),
    *(
        ("STATUS_UPDATE_SECONDS", value, _status_update_problem(value))
        for value in ("0", "0.5", "0.999", "-10", "nan", "inf", "10s", "often")
    ),
    *(
        ("DISCORD_GUILD_ID", value, _guild_id_problem(value))
        for value in ("0", "-123", "1.5", "my server", "<#123>", str(2**64), "12 34")
    ),
]


@pytest.mark.parametrize(("name", "value", "problem"), NEW_SETTING_PROBLEMS)
def test_new_settings_reject_bad_values_saying_how_to_fix_them(
    name: str, value: str, problem: str
) -> None:
    err = problems_of({**REQUIRED, name: value})
    assert err.problems == [problem]
    assert err.problems[0].startswith(f"{name} must be ")  # names the variable
    assert repr(value.strip()) in err.problems[0]  # quotes the bad value
    assert "delete the line" in err.problems[0]  # and says how to fix it


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("http://127.0.0.1:8080", "not a host or host:port"),
        ("127.0.0.1:8080/outputs", "not a host or host:port"),
        ("cdn.internal:0", "port must be a whole number from 1 to 65535"),
        ("cdn.internal:http", "port must be a whole number from 1 to 65535"),
        ("cdn.internal:65536", "port must be a whole number from 1 to 65535"),
        ("::1", "put an IPv6 address in brackets"),
        ("[::1", "an IPv6 address is written [address]"),
        ("[127.0.0.1]:80", "is not an IPv6 address"),
        ("*.internal", "not a valid host name"),
        ("under_score.internal", "not a valid host name"),
        ("127.1", "write an IPv4 address as four numbers"),
        ("bücher.example", "xn--"),
        ("user@cdn.internal", "not a host or host:port"),
        ("ok.internal, bad host", "not a host or host:port"),
        (",", "no entry in it"),
    ],
)
def test_output_http_hosts_rejects_bad_entries_saying_why(value: str, why: str) -> None:
    err = problems_of({**REQUIRED, "OUTPUT_HTTP_HOSTS": value})
    [problem] = err.problems
    assert problem.startswith(
        "OUTPUT_HTTP_HOSTS must be a comma-separated list of host or host:port entries, not "
        f"{value.strip()!r} ("
    )
    assert why in problem
    assert problem.endswith(
        "set it to something like 127.0.0.1:8080,cdn.internal, or delete the line to "
        "download outputs over https from public addresses only"
    )


async def test_bot_run_passes_output_http_hosts_to_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client bot.run() builds downloads over http from a listed host, and only from it."""
    from aiohttp import web

    from wavespeed.client import WaveSpeedClient
    from wavespeed.errors import UnsafeOutputURLError

    async def clip(request: web.Request) -> web.Response:
        return web.Response(body=b"clip")

    app = web.Application()
    app.router.add_get("/clip.mp4", clip)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    built: list[WaveSpeedClient] = []

    class NoDiscord:
        def __init__(self, settings: Settings, db: Any, wavespeed: WaveSpeedClient,
                     *args: Any, **kwargs: Any) -> None:
            built.append(wavespeed)

        async def __aenter__(self) -> NoDiscord:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def start(self, token: str) -> None:
            return None

    monkeypatch.setattr(bot, "Ref2VideoBot", NoDiscord)
    try:
        for listed in (f"127.0.0.1:{port}", None):
            env = {**REQUIRED, "DATABASE_PATH": str(tmp_path / "db.sqlite3")}
            if listed:
                env["OUTPUT_HTTP_HOSTS"] = listed
            await bot.run(load(env))
        listed_client, default_client = built
        url = f"http://127.0.0.1:{port}/clip.mp4"
        # Downloads use a session of their own, so the clients work after run() closed its one.
        assert await listed_client.download_output(url, tmp_path / "a.mp4", max_bytes=99) == 4
        with pytest.raises(UnsafeOutputURLError):
            await default_client.download_output(url, tmp_path / "b.mp4", max_bytes=99)
    finally:
        await runner.cleanup()


def test_prompt_chars_upper_bound_is_discords_option_cap() -> None:
    assert DISCORD_STRING_OPTION_MAX_CHARS == 6000
    top = str(DISCORD_STRING_OPTION_MAX_CHARS)
    assert load({**REQUIRED, "MAX_PROMPT_CHARS": top}).max_prompt_chars == 6000
    assert problems_of({**REQUIRED, "MAX_PROMPT_CHARS": "6001"}).problems == [
        _prompt_chars_problem("6001")
    ]


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8080",
        "http://",
        "https:///api/v10",
        "http://host:port/api/v10",
        "http://host/api/v10?x=1",
        "http://host/api/v10#frag",
        "http://ho st/api/v10",
        "mailto:someone@example.com",
    ],
)
def test_bad_urls(url: str) -> None:
    for name in ("WAVESPEED_BASE_URL", "DISCORD_API_BASE_URL"):
        err = problems_of({**REQUIRED, name: url})
        assert len(err.problems) == 1
        assert err.problems[0].startswith(f"{name} must be an http:// or https:// URL, not ")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/api",
        "http://127.0.0.1:8080/api/v",
        "http://127.0.0.1:8080/api/vten",
        "http://127.0.0.1:8080/api/v10/users",
        "http://127.0.0.1:8080/xapi/v10",
    ],
)
def test_discord_api_base_url_must_end_in_api_version(url: str) -> None:
    err = problems_of({**REQUIRED, "DISCORD_API_BASE_URL": url})
    assert err.problems == [
        f"DISCORD_API_BASE_URL must end in /api/v<version number>, not {url!r}: set it to "
        "something like http://127.0.0.1:8080/api/v10, or delete the line to use the real "
        "Discord API"
    ]


def test_database_path_must_not_be_a_directory(tmp_path: Path) -> None:
    err = problems_of({**REQUIRED, "DATABASE_PATH": str(tmp_path)})
    assert len(err.problems) == 1
    assert err.problems[0].startswith("DATABASE_PATH must be a file, not the directory ")


def test_a_single_problem_is_worded_in_the_singular() -> None:
    err = problems_of({"DISCORD_TOKEN": TOKEN})
    assert str(err).splitlines()[0] == "ref2video-bot cannot start: 1 problem with its settings:"


# --- Secrets never leak -----------------------------------------------------------------


def test_secrets_never_appear_in_errors() -> None:
    err = problems_of(
        {
            "DISCORD_TOKEN": f"Bot {TOKEN}",
            "WAVESPEED_API_KEY": f"{API_KEY} trailing words",
            "STARTING_CREDITS": "lots",
        }
    )
    assert [p.split(" ", 1)[0] for p in err.problems] == [
        "DISCORD_TOKEN",
        "WAVESPEED_API_KEY",
        "STARTING_CREDITS",
    ]
    assert "contains spaces" in err.problems[0] and "'Bot '" in err.problems[0]
    for text in (str(err), repr(err), repr(err.problems), repr(err.args)):
        for fragment in (TOKEN, API_KEY, TOKEN[:12], API_KEY[:12]):
            assert fragment not in text


def test_secrets_never_appear_in_settings_repr() -> None:
    settings = load(REQUIRED)
    percent = "%s" % (settings,)  # noqa: UP031 - %-formatting must hide secrets too
    for text in (repr(settings), str(settings), f"{settings}", percent):
        assert TOKEN not in text and API_KEY not in text
        assert "Secret('***')" in text


def test_settings_checks_direct_construction() -> None:
    with pytest.raises(TypeError, match="discord_token must be a Secret"):
        Settings(discord_token=TOKEN, wavespeed_api_key=Secret(API_KEY))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_interval_seconds") as info:
        Settings(
            discord_token=Secret(TOKEN),
            wavespeed_api_key=Secret(API_KEY),
            poll_interval_seconds=0,
            log_level="LOUD",
        )
    assert "log_level" in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_video_bytes", 0),
        ("max_audio_bytes", 0),
        ("max_audio_bytes", -1),
        ("max_prompt_chars", 0),
        ("max_prompt_chars", 6001),
        ("status_update_seconds", 0.5),
        ("status_update_seconds", float("nan")),
        ("status_update_seconds", float("inf")),
        ("nsfw_charge", "false"),
        ("nsfw_charge", 1),
        ("discord_guild_id", 0),
        ("discord_guild_id", -5),
        ("discord_guild_id", 2**64),
        ("output_http_hosts", "127.0.0.1"),
        ("output_http_hosts", ["127.0.0.1"]),
        ("output_http_hosts", ("http://127.0.0.1",)),
        ("output_http_hosts", (8080,)),
    ],
)
def test_settings_checks_new_fields_on_direct_construction(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"invalid Settings: {field} must be "):
        Settings(
            discord_token=Secret(TOKEN),
            wavespeed_api_key=Secret(API_KEY),
            **{field: value},  # type: ignore[arg-type]
        )


def test_settings_accepts_new_fields_at_their_bounds() -> None:
    settings = Settings(
        discord_token=Secret(TOKEN),
        wavespeed_api_key=Secret(API_KEY),
        max_video_bytes=1,
        max_audio_bytes=1,
        max_prompt_chars=6000,
        status_update_seconds=1,
        nsfw_charge=True,
        discord_guild_id=2**64 - 1,
        output_http_hosts=("127.0.0.1:8080", "[::1]", "cdn.internal"),
    )
    assert settings.max_prompt_chars == 6000
    assert settings.discord_guild_id == 2**64 - 1


# --- .env handling ----------------------------------------------------------------------


def write_env(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path / "custom.env",
        "# comment\n"
        f"DISCORD_TOKEN={TOKEN}\n"
        f"export WAVESPEED_API_KEY='{API_KEY}'\n"
        'LOG_LEVEL="debug"  # inline comment\n'
        "STARTING_CREDITS=25\n"
        "NOT_A_SETTING=whatever\n",
    )
    settings = load({}, env_file)
    assert settings.discord_token == Secret(TOKEN)
    assert settings.wavespeed_api_key == Secret(API_KEY)
    assert settings.log_level == "DEBUG"
    assert settings.starting_credits == 25


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path / ".env",
        f"DISCORD_TOKEN=from-file\nWAVESPEED_API_KEY={API_KEY}\n"
        "STARTING_CREDITS=10\nUSER_MAX_ACTIVE_JOBS=zero\nLOG_LEVEL=ERROR\n",
    )
    settings = load(
        {
            "DISCORD_TOKEN": TOKEN,
            "STARTING_CREDITS": "20",
            "USER_MAX_ACTIVE_JOBS": "5",  # a good env value hides the file's bad one
            "LOG_LEVEL": "",  # empty counts as unset: the file's value is used
        },
        env_file,
    )
    assert settings.discord_token == Secret(TOKEN)
    assert settings.wavespeed_api_key == Secret(API_KEY)
    assert settings.starting_credits == 20
    assert settings.user_max_active_jobs == 5
    assert settings.log_level == "ERROR"


def test_env_file_values_are_literal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_VAR", "expanded")
    env_file = write_env(
        tmp_path / ".env", f"DISCORD_TOKEN={TOKEN}\nWAVESPEED_API_KEY=ab$SOME_VAR${{SOME_VAR}}\n"
    )
    assert load({}, env_file).wavespeed_api_key == Secret("ab$SOME_VAR${SOME_VAR}")


def test_missing_env_file_is_fine_and_named_in_the_message(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / ".env"
    assert load(REQUIRED, missing) == load(REQUIRED)
    message = str(problems_of({}, missing))
    assert f"{missing} (not found)" in message


def test_unreadable_env_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"DISCORD_TOKEN=\xff\xfe\n")
    err = problems_of({"WAVESPEED_API_KEY": API_KEY}, env_file)
    assert err.problems[0].startswith(f"the settings file {env_file} cannot be read")
    assert err.problems[1].startswith("DISCORD_TOKEN is not set")


def test_defaults_read_dotenv_in_cwd_and_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    write_env(tmp_path / ".env", f"DISCORD_TOKEN={TOKEN}\nSTARTING_CREDITS=7\n")
    monkeypatch.setenv("WAVESPEED_API_KEY", API_KEY)
    before = dict(os.environ)
    settings = load_settings()
    assert settings.discord_token == Secret(TOKEN)
    assert settings.wavespeed_api_key == Secret(API_KEY)
    assert settings.starting_credits == 7
    assert dict(os.environ) == before  # the file never leaks into os.environ
    # env_file=None ignores the .env in the working directory.
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert [p.split(" ", 1)[0] for p in info.value.problems] == ["DISCORD_TOKEN"]
    assert "environment variables only" in str(info.value)


def test_env_example_documents_every_setting_with_the_real_defaults(tmp_path: Path) -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    assignments = re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE)
    names = [name for name, _ in assignments]
    assert names == list(SETTINGS_VARIABLES)  # each once, in the same order
    for name in SETTINGS_VARIABLES:
        assert re.search(rf"^# .*\S.*\n(# .*\n)*#? ?{name}=", text, flags=re.MULTILINE), name
    # The secrets are left empty; everything else is commented out and shows the default,
    # except DISCORD_API_BASE_URL, DISCORD_GUILD_ID and OUTPUT_HTTP_HOSTS, whose lines are
    # examples of a value (their default is unset).
    assert re.search(r"^DISCORD_TOKEN=$", text, flags=re.MULTILINE)
    assert re.search(r"^WAVESPEED_API_KEY=$", text, flags=re.MULTILINE)
    uncommented = "\n".join(
        f"{name}={value}"
        for name, value in assignments
        if name not in (*REQUIRED, *UNSET_BY_DEFAULT)
    )
    env_file = write_env(tmp_path / ".env", uncommented + "\n")
    assert load(REQUIRED, env_file) == load(REQUIRED)
    # A plain copy of the example only lacks the two secrets.
    copy = write_env(tmp_path / "copy.env", text)
    assert [p.split(" ", 1)[0] for p in problems_of({}, copy).problems] == list(REQUIRED)
    for level in LOG_LEVELS:
        assert level in text
    for word in BOOLEAN_WORDS:
        assert re.search(rf"\b{word}\b", text), word
    # The example values of the unset settings are valid.
    examples = dict(assignments)
    settings = load(
        {
            **REQUIRED,
            "DISCORD_API_BASE_URL": examples["DISCORD_API_BASE_URL"],
            "DISCORD_GUILD_ID": examples["DISCORD_GUILD_ID"],
            "OUTPUT_HTTP_HOSTS": examples["OUTPUT_HTTP_HOSTS"],
        }
    )
    assert settings.discord_guild_id is not None
    assert settings.output_http_hosts == ("127.0.0.1:8080",)


# Settings whose .env.example line shows an example value, since their default is unset.
UNSET_BY_DEFAULT = ("DISCORD_API_BASE_URL", "DISCORD_GUILD_ID", "OUTPUT_HTTP_HOSTS")


def _readme_settings_table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", section, flags=re.MULTILINE)


def test_readme_table_lists_every_setting_with_the_real_defaults() -> None:
    rows = _readme_settings_table()
    assert [name for name, _ in rows] == list(SETTINGS_VARIABLES)
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    commented_defaults = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", example, re.MULTILINE))
    for name, default in rows:
        if name in REQUIRED:
            assert default.startswith("(required"), name
        elif name in UNSET_BY_DEFAULT:
            assert default.startswith("unset"), name
        else:
            # The README shows the same default as the commented-out line of .env.example.
            shown = re.match(r"`([^`]*)`", default)
            assert shown is not None, name
            assert shown.group(1) == commented_defaults[name], name


# --- The settings table ----------------------------------------------------------------


def test_settings_table_has_a_row_per_field() -> None:
    own = [f.name for f in dataclasses.fields(Settings) if f.name != "prices"]
    prices = [f"prices.{f.name}" for f in dataclasses.fields(PriceTable)]
    assert sorted(row.attr for row in SETTINGS_TABLE) == sorted(own + prices)
    assert tuple(row.env for row in SETTINGS_TABLE) == SETTINGS_VARIABLES
    assert len(set(SETTINGS_VARIABLES)) == len(SETTINGS_VARIABLES)
    # The key is needed unless WAVESPEED_MODE=simulate: a rule of its own, not the table's.
    assert [row.env for row in SETTINGS_TABLE if row.required] == ["DISCORD_TOKEN"]
    defaults = load(REQUIRED)
    for row in SETTINGS_TABLE:
        assert row.help.strip(), row.env
        if not row.required and row.env not in REQUIRED:
            assert attrgetter(row.attr)(defaults) == row.default, row.env


def test_a_field_without_a_setting_is_refused() -> None:
    from config.table import table_of

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        x: int = 0

    with pytest.raises(TypeError, match=r"Undeclared\.x declares no setting"):
        table_of(Undeclared)


def test_every_default_reads_back_as_itself() -> None:
    for row in SETTINGS_TABLE:
        if row.required or row.default in (None, ()):
            continue
        value = row.kind.read(str(row.default), row.default)
        assert value == row.default, row.env
        assert type(value) is type(row.default), row.env


def _env_example_lines() -> list[tuple[str, bool, str]]:
    """(name, commented out, value) of each assignment in .env.example."""
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    found = re.findall(r"^(# ?)?([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE)
    return [(name, bool(comment), value) for comment, name, value in found]


def test_readme_and_env_example_match_the_settings_table() -> None:
    rows = {row.env: row for row in SETTINGS_TABLE}
    readme = _readme_settings_table()
    example = _env_example_lines()
    assert [name for name, _ in readme] == list(rows)
    assert [name for name, *_ in example] == list(rows)
    unset = []
    for (name, shown), (_, commented, value) in zip(readme, example, strict=True):
        row = rows[name]
        if row.required or name in REQUIRED:  # the key: required unless simulated
            assert shown.startswith("(required") and (commented, value) == (False, ""), name
        elif row.default in (None, ()):
            # Unset by default: the README says so, .env.example shows a good example value.
            unset.append(name)
            assert shown.startswith("unset ("), name
            assert commented, name
            assert row.kind.read(value, row.default) not in (None, ()), name
        else:
            # Both show the default as the variable would be written.
            readme_default = re.fullmatch(r"`([^`]+)`(?: \(.+\))?", shown)
            assert readme_default is not None, name
            assert commented, name
            for text in (readme_default.group(1), value):
                read = row.kind.read(text, row.default)
                assert read == row.default and type(read) is type(row.default), name
    assert unset == list(UNSET_BY_DEFAULT)


# --- bot.main() -------------------------------------------------------------------------


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}


def test_bot_without_settings_exits_2_with_one_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [sys.executable, str(REPO / "bot.py")],
        cwd=tmp_path,
        env=_clean_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "WAVESPEED_API_KEY is not set" in result.stderr
    assert "WAVESPEED_MODE=simulate" in result.stderr
    assert "cp .env.example .env" in result.stderr


def test_main_reports_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    assert bot.main() == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ref2video-bot cannot start: 1 problem")
    assert TOKEN not in err


def test_main_sets_up_logging_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    write_env(tmp_path / ".env", f"DISCORD_TOKEN={TOKEN}\nWAVESPEED_API_KEY={API_KEY}\n")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    levels: list[int] = []
    ran: list[Settings] = []

    def fake_setup_logging(*, level: int) -> None:
        levels.append(level)

    async def fake_run(settings: Settings) -> None:
        ran.append(settings)

    monkeypatch.setattr(discord.utils, "setup_logging", fake_setup_logging)
    monkeypatch.setattr(bot, "run", fake_run)
    assert bot.main() == 0
    assert levels == [30]
    assert [s.log_level for s in ran] == ["WARNING"]
    assert ran[0].discord_token == Secret(TOKEN)


def test_the_reference_length_range_must_not_be_empty() -> None:
    err = problems_of({**REQUIRED, "REFERENCE_MIN_SECONDS": "20",
                       "REFERENCE_MAX_SECONDS": "10"})
    assert err.problems == ["REFERENCE_MIN_SECONDS (20) is above REFERENCE_MAX_SECONDS (10): "
                            "lower the first or raise the second"]
    for bad in ("1", "31"):
        [problem] = problems_of({**REQUIRED, "REFERENCE_MAX_SECONDS": bad}).problems
        assert problem.startswith("REFERENCE_MAX_SECONDS must be a number from 2 to 30")
    assert load({**REQUIRED, "REFERENCE_MIN_SECONDS": "5", "REFERENCE_MAX_SECONDS": "5"}
                ).reference_max_seconds == 5.0
