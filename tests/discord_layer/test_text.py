"""What the bot writes, without Discord: quotes that hold, names Discord accepts, links."""

from __future__ import annotations

import dataclasses

from discord_layer.text import credits_text, job_link, quote, shorten, thread_name
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
