"""The SSRF guard on output downloads: schemes, addresses after every redirect, the resolved
address of names (through a stub resolver: the real one must not go to the internet), the
redirect cap, and the happy path through a host listed for plain http."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from tests.fakes.wavespeed import FakeWaveSpeed, Fault
from tests.media import make_mp4
from wavespeed.client import RetryPolicy, WaveSpeedClient
from wavespeed.errors import UnsafeOutputURLError, WaveSpeedError
from wavespeed.models import GenerationRequest
from wavespeed.safe_download import DownloadPolicy, GuardedResolver, address_problem

SECRET = "ws-SECRET-KEY-downloads-0123456789"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
REQUEST = GenerationRequest(videos=("https://example.com/ref.mp4",), prompt="a cat surfs")
TOKEN = "X-Signature=SIGNED-TOKEN-abc123"


class StubResolver(AbstractResolver):
    """Answers from a table; each name's answers are used in turn (the last one repeats)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = {name: list(answers) for name, answers in table.items()}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        answers = self.table[host]
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(api_key=SECRET, processing_after=0.0, complete_after=0.0) as server:
        yield server


@asynccontextmanager
async def client_for(base_url: str, **kw: Any) -> AsyncIterator[WaveSpeedClient]:
    kw.setdefault("retry", FAST)
    async with WaveSpeedClient.open(SECRET, base_url, **kw) as client:
        yield client


async def output_url(fake: FakeWaveSpeed) -> str:
    """A finished task's output URL on the fake (http://127.0.0.1:port/outputs/...)."""
    async with client_for(fake.base_url) as client:
        task_id = (await client.submit(REQUEST)).id
        for _ in range(100):
            done = await client.get_result(task_id)
            if done.succeeded:
                return done.outputs[0]
            await asyncio.sleep(0.01)
    raise AssertionError("task never finished")


@asynccontextmanager
async def internal_server() -> AsyncIterator[tuple[int, list[str]]]:
    """Something only reachable from inside (a loopback admin page); records every hit."""
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"internal secrets")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], hits
    finally:
        await runner.cleanup()


def leftovers(directory: Path) -> list[str]:
    """File names in `directory` (sync helper: a tmp dir listing, not worth a thread)."""
    return sorted(p.name for p in directory.iterdir())


def outputs_seen(fake: FakeWaveSpeed) -> list[Any]:
    return fake.requests_to(".mp4", "GET")


async def refused(download: Awaitable[int]) -> str:
    with pytest.raises(UnsafeOutputURLError) as caught:
        await download
    error = caught.value
    assert not error.retryable and not error.task_may_exist and isinstance(error, WaveSpeedError)
    assert "SIGNED-TOKEN" not in str(error) and "?" not in str(error)
    assert SECRET not in repr(error)
    return str(error)


# ---- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
        "169.254.170.2", "100.64.0.1", "100.100.100.200", "0.0.0.0", "224.0.0.1",  # noqa: S104
        "240.0.0.1", "255.255.255.255", "192.0.0.192",
        "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "fec0::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.1.2.3", "::127.0.0.1",
        "64:ff9b::7f00:1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    ],
)
def test_non_public_addresses_have_a_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example/a.mp4",  # plain http, not listed
        "ftp://cdn.example/a.mp4",
        "file:///etc/passwd",
        "https://127.0.0.1/a.mp4",
        "https://[::1]/a.mp4",
        "https://[::ffff:127.0.0.1]/a.mp4",
        "https://[::ffff:169.254.169.254]/latest/meta-data",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.8:8443/a.mp4",
        "https://127.1/a.mp4",
        "https://2130706433/a.mp4",
        "https://0x7f.0.0.1/a.mp4",
        "http://cdn.local:8081/a.mp4",  # listed for port 8080 only
    ],
)
def test_policy_refuses_urls(url: str) -> None:
    policy = DownloadPolicy.build(["cdn.local:8080"])
    with pytest.raises(UnsafeOutputURLError):
        policy.check_url(URL(url))


def test_policy_allows_https_names_and_listed_http_hosts() -> None:
    policy = DownloadPolicy.build(["cdn.local:8080", "127.0.0.1", "[::1]:9000"])
    for url in (
        "https://cdn.example/a.mp4?sig=1",  # names are for the resolver to judge
        "https://93.184.216.34/a.mp4",
        "http://cdn.local:8080/a.mp4",
        "http://CDN.Local.:8080/a.mp4",
        "http://127.0.0.1:1234/a.mp4",  # a listed host without a port: any port
        "https://127.0.0.1/a.mp4",
        "http://[::1]:9000/a.mp4",
    ):
        policy.check_url(URL(url))
    # Listing never opens the cloud-metadata address.
    listed = DownloadPolicy.build(["169.254.169.254", "[fd00:ec2::254]"])
    for url in ("http://169.254.169.254/latest/meta-data", "http://[fd00:ec2::254]/"):
        with pytest.raises(UnsafeOutputURLError, match="metadata"):
            listed.check_url(URL(url))


# ---- the guarding resolver (names) -----------------------------------------------------------


async def test_resolver_refuses_names_resolving_to_private_addresses() -> None:
    stub = StubResolver({
        "cdn.example": [["93.184.216.34"]],
        "evil.example": [["10.1.2.3"]],
        "mixed.example": [["93.184.216.34", "127.0.0.1"]],
        "mapped.example": [["::ffff:169.254.169.254"]],
        "rebind.example": [["93.184.216.34"], ["127.0.0.1"]],
        "cdn.local": [["192.168.1.20"]],
        "meta.local": [["169.254.169.254"]],
    })
    guard = GuardedResolver(DownloadPolicy.build(["cdn.local", "meta.local"]), stub)
    assert [r["host"] for r in await guard.resolve("cdn.example", 443)] == ["93.184.216.34"]
    for name in ("evil.example", "mixed.example", "mapped.example"):
        with pytest.raises(UnsafeOutputURLError, match=name):
            await guard.resolve(name, 443)
    # DNS rebinding: every resolution is judged, so the second answer is caught.
    assert await guard.resolve("rebind.example", 443)
    with pytest.raises(UnsafeOutputURLError, match=r"resolved to 127\.0\.0\.1"):
        await guard.resolve("rebind.example", 443)
    assert await guard.resolve("cdn.local", 80)  # listed: its private address is fine
    with pytest.raises(UnsafeOutputURLError, match="metadata"):
        await guard.resolve("meta.local", 80)  # but never the metadata address


async def test_download_by_name_uses_the_resolved_address(fake: FakeWaveSpeed,
                                                          tmp_path: Path) -> None:
    url = URL(await output_url(fake))
    stub = StubResolver({"cdn.test": [["127.0.0.1"]]})
    by_name = str(url.with_host("cdn.test"))
    async with client_for("https://api.invalid", resolver_factory=lambda: stub) as client:
        # https to a name that resolves to loopback: refused before any connection.
        message = await refused(client.download_output(
            str(url.with_scheme("https").with_host("cdn.test")), tmp_path / "o.mp4",
            max_bytes=10**6))
        assert "cdn.test" in message and "loopback" in message
        assert outputs_seen(fake) == [] and stub.asked == ["cdn.test"]
    listed = [f"cdn.test:{url.port}"]
    async with client_for("https://api.invalid", resolver_factory=lambda: stub,
                          output_http_hosts=listed) as client:
        size = await client.download_output(by_name, tmp_path / "o.mp4", max_bytes=10**6)
    assert size == len(make_mp4()) and (tmp_path / "o.mp4").read_bytes() == make_mp4()
    assert len(outputs_seen(fake)) == 1


# ---- downloads and redirects against the fake ------------------------------------------------


async def test_https_only_policy_refuses_http(fake: FakeWaveSpeed, tmp_path: Path) -> None:
    url = await output_url(fake)
    # The API is https (never contacted here), and no host is listed for plain http.
    async with client_for("https://api.invalid") as client:
        message = await refused(client.download_output(url + "?" + TOKEN, tmp_path / "o.mp4",
                                                       max_bytes=10**6))
    assert "plain http" in message and "OUTPUT_HTTP_HOSTS" in message
    assert outputs_seen(fake) == [] and leftovers(tmp_path) == []


async def test_listed_http_host_is_the_happy_path(fake: FakeWaveSpeed, tmp_path: Path) -> None:
    url = await output_url(fake)
    host = f"127.0.0.1:{URL(url).port}"
    async with client_for("https://api.invalid", output_http_hosts=[host]) as client:
        size = await client.download_output(url, tmp_path / "o.mp4", max_bytes=10**6)
    assert size == len(make_mp4())
    assert not any(r.had_auth_header for r in outputs_seen(fake))


@pytest.mark.parametrize(
    "target",
    [
        "https://127.0.0.1:{port}/admin?" + TOKEN,
        "http://127.0.0.1:{port}/admin?" + TOKEN,
        "https://[::ffff:127.0.0.1]:{port}/admin",
        "https://169.254.169.254/latest/meta-data/iam?" + TOKEN,
        "http://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest/meta-data/",
        "file:///etc/passwd",
    ],
    ids=["https-loopback", "http-loopback", "mapped-loopback", "metadata-https",
         "metadata-http", "metadata-v6", "file"],
)
async def test_redirects_to_internal_addresses_are_refused(
    fake: FakeWaveSpeed, tmp_path: Path, target: str
) -> None:
    url = await output_url(fake)  # on the fake's host, which is listed (its base URL is http)
    async with internal_server() as (port, hits), client_for(fake.base_url) as client:
        fake.inject("output", Fault.redirect(target.format(port=port)))
        message = await refused(client.download_output(url, tmp_path / "o.mp4",
                                                       max_bytes=10**6))
    assert hits == []  # the internal server was never reached
    assert len(outputs_seen(fake)) == 1  # refused at once, not retried
    assert leftovers(tmp_path) == []
    assert message.startswith("refused ")


async def test_redirects_are_followed_up_to_the_cap(fake: FakeWaveSpeed, tmp_path: Path) -> None:
    url = await output_url(fake)
    relative = URL(url).path  # a relative Location, resolved against the answering URL
    async with client_for(fake.base_url, max_redirects=5) as client:
        fake.inject("output", *[Fault.redirect(relative, code=code)
                                for code in (301, 302, 303, 307, 308)])
        assert await client.download_output(url, tmp_path / "o.mp4", max_bytes=10**6) > 0
        assert len(outputs_seen(fake)) == 6
        fake.inject("output", *[Fault.redirect(url)] * 6)
        message = await refused(client.download_output(url, tmp_path / "p.mp4",
                                                       max_bytes=10**6))
    assert "more than 5 redirects" in message
    assert len(outputs_seen(fake)) == 6 + 6
    assert not any(r.had_auth_header for r in outputs_seen(fake))


async def test_redirect_to_a_listed_host_is_followed(fake: FakeWaveSpeed, tmp_path: Path) -> None:
    """The guard judges each hop on its own: an https CDN may redirect to a listed mirror."""
    url = URL(await output_url(fake))
    stub = StubResolver({"mirror.test": [["127.0.0.1"]]})
    mirror = str(url.with_host("mirror.test"))
    async with client_for(fake.base_url, resolver_factory=lambda: stub,
                          output_http_hosts=["mirror.test"]) as client:
        fake.inject("output", Fault.redirect(mirror))
        assert await client.download_output(str(url), tmp_path / "o.mp4", max_bytes=10**6) > 0
    assert stub.asked == ["mirror.test"] and len(outputs_seen(fake)) == 2


async def test_client_refuses_bad_host_entries() -> None:
    with pytest.raises(ValueError, match="not a host"):
        async with client_for("https://api.invalid", output_http_hosts=["http://x/"]):
            pass
