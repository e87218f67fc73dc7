"""Host entries ("host" or "host:port") naming output hosts the operator trusts.

Pure parsing, no I/O, so config/settings.py can validate OUTPUT_HTTP_HOSTS with the very
rules the download guard applies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HostEntry:
    """One trusted host; `port` None matches every port."""

    host: str  # lowercase ASCII name, dotted IPv4, or compressed IPv6 (no brackets)
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        return self.host == normalize_host(host) and self.port in (None, port)

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port is None else f"{shown}:{self.port}"


def normalize_host(host: str) -> str:
    """Comparable form of a URL's raw host: lowercase, no trailing dot, IPv6 compressed."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def default_port(scheme: str) -> int | None:
    return _DEFAULT_PORTS.get(scheme)


def parse_host_entry(text: str) -> HostEntry:
    """Parse "host", "host:port", "[v6]" or "[v6]:port"; raises ValueError saying why."""
    entry = text.strip()
    if not entry:
        raise ValueError("an entry is empty")
    if "://" in entry or any(ch in entry for ch in "/?#@ \t"):
        raise ValueError(f"{entry!r} is not a host or host:port (no scheme, path or spaces)")
    port_text: str | None = None
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{entry!r}: an IPv6 address is written [address] or [address]:port")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{entry!r}: {host!r} is not an IPv6 address") from None
    elif entry.count(":") > 1:
        raise ValueError(f"{entry!r}: put an IPv6 address in brackets, like [::1]:8080")
    else:
        host, sep, port_text_or_empty = entry.partition(":")
        port_text = port_text_or_empty if sep else None
        _check_name(entry, host.lower().rstrip("."))
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{entry!r}: the port must be a whole number from 1 to 65535")
        port = int(port_text)
    return HostEntry(normalize_host(host), port)


def parse_host_entries(entries: Iterable[str]) -> tuple[HostEntry, ...]:
    return tuple(parse_host_entry(entry) for entry in entries)


def split_host_list(text: str) -> list[str]:
    """The comma-separated entries of a setting, blanks around commas ignored."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_name(entry: str, host: str) -> None:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return
    if not host.isascii():
        raise ValueError(f"{entry!r}: write an international name in its xn-- (punycode) form")
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{entry!r}: {host!r} is not a valid host name or IPv4 address")
    if labels[-1].isdigit():
        # 127.1 or 2130706433: not a name, and not an address written the canonical way.
        raise ValueError(f"{entry!r}: write an IPv4 address as four numbers, like 127.0.0.1")
