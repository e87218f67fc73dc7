"""What the bot writes, without Discord: quotes that hold, names Discord accepts, links."""

from __future__ import annotations

import dataclasses
from typing import Any

import discord

from discord_layer.text import (
    SIMULATED_NOTE,
    credits_text,
    job_link,
    quote,
    shorten,
    stamp_embed,
    stamped,
    thread_name,
)
from storage.jobs import JobState
from tests.discord_layer.sample import job


def test_quote_keeps_user_text_inside_the_quote_and_the_limit() -> None:
    assert quote("hello", 100) == "> hello"
    hostile = "@everyone\n# heading\u2028> nested\r\n**bold**"
    quoted = quote(hostile, 1024)
    assert all(line.startswith("> ") for line in quoted.split("\n"))
    assert "@everyone" not in quoted and "\\#" in quoted and "\\*\\*bold" in quoted
    assert len(quoted.split("\n")) == 4                    # every line break, \u2028 too
    for limit in (3, 10, 50, 1024):
        assert len(quote("x\n" * 2000, limit)) <= limit
    assert quote("", 10) == "> "


def test_names_and_amounts() -> None:
    assert thread_name(12, "  two\ndancers\t on a pier ") == "#12 two dancers on a pier"
    assert len(thread_name(1, "x" * 500)) == 100
    assert shorten("abcdef", 4) == "abc…" and shorten("abc", 4) == "abc"
    assert credits_text(1, 0.01) == "1 credit ($0.01)"
    assert credits_text(12_345, 123.45) == "12,345 credits ($123.45)"


def test_a_job_links_to_its_thread_or_else_its_message() -> None:
    running = job(JobState.RUNNING)
    assert job_link(dataclasses.replace(running, thread_id=55)) == (
        "https://discord.com/channels/1/55")
    assert job_link(dataclasses.replace(running, status_message_id=66)) == (
        "https://discord.com/channels/1/2/66")


class _Bot:
    """Stands in for the client: simulate mode is read from its `simulated`."""

    def __init__(self, simulated: bool) -> None:
        self.simulated = simulated


SIM: Any = _Bot(True)
LIVE: Any = _Bot(False)


def test_simulate_mode_marks_every_text_within_the_limit() -> None:
    assert stamped("Granted 5 credits.", LIVE) == "Granted 5 credits."
    assert stamped(None, LIVE) is None
    marked = stamped("Granted 5 credits.", SIM)
    assert marked == f"Granted 5 credits.\n-# {SIMULATED_NOTE}"
    assert stamped(None, SIM) == f"-# {SIMULATED_NOTE}"
    full = stamped("x" * 2000, SIM)
    assert full is not None and len(full) == 2000 and full.endswith(SIMULATED_NOTE)


def test_simulate_mode_marks_embed_footers_once_and_within_discords_limits() -> None:
    plain = discord.Embed(title="t", description="d")
    assert stamp_embed(plain, LIVE).footer.text is None
    embed = stamp_embed(discord.Embed(description="d"), SIM)
    assert embed.footer.text == SIMULATED_NOTE
    assert stamp_embed(embed, SIM).footer.text == SIMULATED_NOTE  # not twice
    long_footer = discord.Embed(description="d").set_footer(text="f" * 2040)
    footer = stamp_embed(long_footer, SIM).footer.text or ""
    assert len(footer) <= 2048 and footer.endswith(SIMULATED_NOTE)
    crowded = discord.Embed(title="t", description="d" * 4000)
    for _ in range(5):
        crowded.add_field(name="n", value="v" * 390)
    crowded.set_footer(text="f" * 20)
    assert len(crowded) > 6000 - len(SIMULATED_NOTE)
    stamped_embed = stamp_embed(crowded, SIM)
    assert len(stamped_embed) <= 6000
    assert (stamped_embed.footer.text or "").endswith(SIMULATED_NOTE)
