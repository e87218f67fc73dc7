"""Secrets and interaction tokens never reach a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from config.log_redaction import install

TOKEN = "MTIzNDU2Nzg5.secret-bot-token.abcdefghijklmnop"
KEY = "ws-key-0123456789abcdef"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    redactor = install([TOKEN, KEY])
    try:
        yield stream
    finally:
        for each in root.handlers:
            each.removeFilter(redactor)
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_secrets_in_messages_and_args_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("discord.http")
    log.debug("POST https://discord.com/api/v10/webhooks/123/%s?wait=1", "a" * 60)
    log.info("login with %s and key %s", TOKEN, KEY)
    log.warning("interaction callback /interactions/987654321/%s/callback failed", "b" * 70)
    log.debug("WebSocket Event: %s", {"t": "INTERACTION_CREATE", "d": {"token": "c" * 80}})
    log.debug('{"id": "1", "token": "%s"}', "d" * 80)
    text = captured.getvalue()
    assert TOKEN not in text and KEY not in text
    assert "c" * 80 not in text and "d" * 80 not in text and "'token': '[token]'" in text
    assert "a" * 60 not in text and "b" * 70 not in text
    assert "/webhooks/123/[token]" in text and "/interactions/987654321/[token]" in text


def test_secrets_in_tracebacks_are_redacted(captured: io.StringIO) -> None:
    try:
        raise RuntimeError(f"Authorization: Bearer {KEY}")
    except RuntimeError:
        logging.getLogger("wavespeed").exception("request failed")
    text = captured.getvalue()
    assert "RuntimeError" in text and KEY not in text
