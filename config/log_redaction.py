"""A logging filter that keeps secrets out of every log line.

discord.py logs webhook and interaction URLs at DEBUG, and those URLs carry interaction
tokens; exceptions from any library may quote a header. The filter rewrites each record's
final text, so it works whatever logger or format produced it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# /webhooks/{application id}/{token} and /interactions/{id}/{token}
_URL_TOKENS = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._\-]{20,}")
# "token": "..." in payloads discord.py logs at DEBUG (every INTERACTION_CREATE has one)
_FIELD_TOKENS = re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+""")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        text = _FIELD_TOKENS.sub(r"\1[token]", text)
        return _URL_TOKENS.sub(r"\1[token]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


def install(secrets: Iterable[str]) -> RedactingFilter:
    """Attach the filter to every handler of the root logger (set up logging first)."""
    redactor = RedactingFilter(secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor
