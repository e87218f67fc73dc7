"""Guard against SSRF through URLs WaveSpeed's replies name (output videos, upload targets).

The bot fetches those URLs and posts what it got to Discord, so a reply (or a redirect)
naming 127.0.0.1 or 169.254.169.254 would publish internal data. Rules:

* https only; plain http only for hosts the operator listed (OUTPUT_HTTP_HOSTS).
* The address actually connected to must be public. Names are checked by `GuardedResolver`
  on every resolution, so DNS rebinding between a check and the connection cannot slip past;
  IP literals never reach a resolver in aiohttp, so `DownloadPolicy.check_url` checks them.
* Listed hosts may use private and loopback addresses (local fakes, an internal mirror), but
  never cloud-metadata or link-local ones.
* Redirects are followed by the caller, one hop at a time, each hop checked (see client.py).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from wavespeed.errors import UnsafeOutputURLError
from wavespeed.hosts import HostEntry, default_port, normalize_host, parse_host_entries

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ResolverFactory = Callable[[], AbstractResolver]

DEFAULT_MAX_REDIRECTS = 5

# Refused even for listed hosts: every cloud's instance metadata service lives here
# (AWS, GCP, Azure, OCI, DigitalOcean, OpenStack: 169.254.169.254; AWS ECS 169.254.170.2;
# AWS IPv6 fd00:ec2::254; Alibaba 100.100.100.200; Oracle's legacy 192.0.0.192).
_METADATA_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "100.100.100.200/32",
        "192.0.0.192/32",
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_problem(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address: judge the IPv4 address they reach.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded)
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if is_metadata(address):
        return "a cloud-metadata or link-local address"
    checks = (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (isinstance(address, ipaddress.IPv6Address) and address.is_site_local,
         "a site-local address"),
        (not address.is_global, "not a public address"),  # e.g. 100.64.0.0/10 (CGNAT)
    )
    return next((why for failed, why in checks if failed), None)


def is_metadata(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in _METADATA_NETWORKS if net.version == address.version)


def url_label(url: URL) -> str:
    """scheme://host[:port]/path: no user info, query or fragment (they may hold tokens)."""
    try:
        host = url.raw_host or ""
        shown = f"[{host}]" if ":" in host else host
        port = f":{url.explicit_port}" if url.explicit_port is not None else ""
        return f"{url.scheme}://{shown}{port}{url.raw_path}"
    except (TypeError, ValueError):
        return "<unparseable url>"


@dataclass(frozen=True)
class DownloadPolicy:
    """Which output URLs may be fetched. `http_hosts`: hosts allowed over plain http, whose
    private/loopback addresses are allowed too (see the module docstring)."""

    http_hosts: tuple[HostEntry, ...] = ()
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def __post_init__(self) -> None:
        if self.max_redirects < 0:
            raise ValueError("max_redirects must not be negative")

    @classmethod
    def build(
        cls, http_hosts: Iterable[str] = (), *, max_redirects: int = DEFAULT_MAX_REDIRECTS
    ) -> DownloadPolicy:
        """Parse "host" / "host:port" entries; raises ValueError naming a bad one."""
        return cls(parse_host_entries(http_hosts), max_redirects)

    def trusts(self, host: str, port: int) -> bool:
        return any(entry.matches(host, port) for entry in self.http_hosts)

    def check_url(self, url: URL) -> None:
        """Refuse a bad scheme, an http host not listed, or an IP literal that is not public."""
        label = url_label(url)
        scheme = url.scheme.lower()
        port = url.port if url.port is not None else default_port(scheme)
        host = url.raw_host
        if scheme not in ("http", "https") or not host or port is None:
            raise UnsafeOutputURLError(f"refused {label}: only https URLs are downloaded")
        if scheme == "http" and not self.trusts(host, port):
            raise UnsafeOutputURLError(
                f"refused {label}: plain http is allowed only for the hosts in "
                "OUTPUT_HTTP_HOSTS, and this one is not listed"
            )
        try:
            literal = ipaddress.ip_address(normalize_host(host))
        except ValueError:
            if normalize_host(host).rsplit(".", 1)[-1].isdigit():
                # 127.1, 2130706433: numeric forms a resolver would turn into an address.
                raise UnsafeOutputURLError(
                    f"refused {label}: the host is neither a name nor a canonical IP address"
                ) from None
            return  # a name: GuardedResolver checks what it resolves to
        self.check_address(host, port, literal)

    def check_address(self, host: str, port: int, address: IPAddress) -> None:
        if is_metadata(address):
            problem: str | None = "a cloud-metadata or link-local address"
        elif self.trusts(host, port):
            return
        else:
            problem = address_problem(address)
        if problem is not None:
            shown = f"[{host}]" if ":" in host else host
            literal = normalize_host(host) == str(address)
            where = shown if literal else f"{shown} (resolved to {address})"
            raise UnsafeOutputURLError(f"refused output host {where}:{port}: it is {problem}")


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then refuses the lot if any address fails the policy.

    A name answering with both a public and a private address is refused outright: real CDNs
    never do that, and picking the public one would leave the choice to the attacker's DNS.
    """

    def __init__(self, policy: DownloadPolicy, inner: AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                address = ipaddress.ip_address(result["host"].split("%", 1)[0])
            except ValueError:
                raise UnsafeOutputURLError(
                    f"refused output host {host}:{port}: resolver returned no usable address"
                ) from None
            self._policy.check_address(host, port, address)
        return results

    async def close(self) -> None:
        await self._inner.close()


def download_session(
    policy: DownloadPolicy, resolver_factory: ResolverFactory | None = None
) -> aiohttp.ClientSession:
    """A session for output hosts only: guarded resolver, no DNS cache (each connection is
    checked on its own resolution), no proxy from the environment (a proxy would resolve
    names itself, past the guard), no cookies carried between hosts, no default headers."""
    inner = resolver_factory() if resolver_factory is not None else aiohttp.ThreadedResolver()
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(policy, inner), use_dns_cache=False
    )
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )
