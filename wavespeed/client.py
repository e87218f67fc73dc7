"""Async WaveSpeed REST client for WAN 2.6 reference-to-video (shared/wavespeed-wan26-ref2video.md).

Retry rules follow the contract: result GETs, balance, uploads and output downloads are retried
on transient failures; the submit POST is sent exactly once, because a POST whose reply was lost
may still have created a paid task. Its errors say so via `task_may_exist`.

The API key lives only in the per-request Authorization header of API calls. It is never put in
the session's default headers (so output downloads from other hosts never carry it), never
logged, and scrubbed from any server text copied into an exception message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from wavespeed.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionDroppedError,
    ConnectionFailedError,
    MalformedResponseError,
    NotFoundError,
    OutputTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    WaveSpeedError,
)
from wavespeed.models import MODEL_PATH, GenerationRequest, Prediction

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
SUBMIT_PATH = f"/api/v3/{MODEL_PATH}"
UPLOAD_PATH = "/api/v3/media/upload/binary"
BALANCE_PATH = "/api/v3/balance"
_CHUNK = 64 * 1024

log = logging.getLogger("wavespeed")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After replaces the computed delay.

    `attempts` counts every try, the first included. A Retry-After longer than
    `max_retry_after` is not slept through: the error is raised at once so the caller can
    reschedule the work instead of holding a coroutine for minutes.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failed_attempt`-th try (1-based) failed."""
        if retry_after is not None:
            # Waiting less than the server asked for only earns another 429, so Retry-After
            # wins even over max_delay.
            return max(0.0, retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failed_attempt - 1))
        return random.uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date. None when absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT by definition
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


class WaveSpeedClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        download_timeout: float = 600.0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if "Authorization" in session.headers:
            # Session-wide auth would also go to output URLs on other hosts.
            raise ValueError("the session must not carry a default Authorization header")
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        # Downloads can be large, so a whole-request deadline of request_timeout would cut off
        # healthy transfers: bound the stall between reads instead, plus a generous overall cap.
        self._download_timeout = aiohttp.ClientTimeout(
            total=download_timeout, sock_connect=connect_timeout, sock_read=request_timeout
        )

    def __repr__(self) -> str:
        return f"WaveSpeedClient(base_url={self._base_url!r}, retry={self._retry!r})"

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        download_timeout: float = 600.0,
    ) -> AsyncIterator[WaveSpeedClient]:
        """A client with its own ClientSession, closed on exit."""
        async with aiohttp.ClientSession() as session:
            yield cls(
                session,
                api_key,
                base_url,
                retry=retry,
                request_timeout=request_timeout,
                connect_timeout=connect_timeout,
                download_timeout=download_timeout,
            )

    # -- public API ------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Prediction:
        """Create a task. Sent once, never retried: see WaveSpeedError.task_may_exist."""
        data = await self._api_call("POST", SUBMIT_PATH, attempt=1, json_body=request.to_json())
        return _prediction(data, "POST", SUBMIT_PATH)

    async def get_result(self, task_id: str) -> Prediction:
        path = f"/api/v3/predictions/{task_id}/result"

        async def once(attempt: int) -> Prediction:
            return _prediction(await self._api_call("GET", path, attempt=attempt), "GET", path)

        return await self._with_retries("GET", path, once)

    async def upload_media(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload a file for WaveSpeed to fetch; returns its download URL.

        Retried even though it is a POST: a duplicate upload only stores the file twice
        (kept 7 days, free), which is harmless, unlike a duplicate submit.
        """

        async def once(attempt: int) -> str:
            form = aiohttp.FormData()  # rebuilt each try: a FormData can be sent only once
            form.add_field("file", data, filename=filename, content_type=content_type)
            reply = await self._api_call("POST", UPLOAD_PATH, attempt=attempt, form=form)
            url = reply.get("download_url") if isinstance(reply, dict) else None
            if not isinstance(url, str) or not url:
                raise MalformedResponseError(f"POST {UPLOAD_PATH}: reply has no data.download_url")
            return url

        return await self._with_retries("POST", UPLOAD_PATH, once)

    async def balance(self) -> float:
        """The account balance in USD."""

        async def once(attempt: int) -> float:
            reply = await self._api_call("GET", BALANCE_PATH, attempt=attempt)
            value = reply.get("balance") if isinstance(reply, dict) else None
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise MalformedResponseError(f"GET {BALANCE_PATH}: reply has no data.balance")
            try:
                return float(value)
            except ValueError:
                raise MalformedResponseError(
                    f"GET {BALANCE_PATH}: data.balance is not a number"
                ) from None

        return await self._with_retries("GET", BALANCE_PATH, once)

    async def download_output(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Stream an output file to `dest`; returns its size in bytes.

        Sent without the Authorization header: output URLs live on a CDN, not the API host.
        Bytes go to a sibling `.part` file that is renamed into place only when complete,
        so `dest` never holds a truncated video and nothing is left behind on failure.
        """
        label = _url_label(url)

        async def once(attempt: int) -> int:
            return await self._download_once(url, label, dest, max_bytes, attempt)

        return await self._with_retries("GET", label, once)

    # -- plumbing --------------------------------------------------------------------------

    async def _with_retries(
        self, method: str, label: str, once: Callable[[int], Awaitable[T]]
    ) -> T:
        policy = self._retry
        for attempt in range(1, policy.attempts + 1):
            try:
                return await once(attempt)
            except WaveSpeedError as exc:
                if not exc.retryable or attempt == policy.attempts:
                    raise
                retry_after: float | None = getattr(exc, "retry_after", None)
                if retry_after is not None and retry_after > policy.max_retry_after:
                    raise
                delay = policy.delay(attempt, retry_after)
                log.warning(
                    "%s %s attempt %d failed (%s, status %s); retrying in %.2fs",
                    method,
                    label,
                    attempt,
                    type(exc).__name__,
                    exc.status,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _api_call(
        self,
        method: str,
        path: str,
        *,
        attempt: int,
        json_body: dict[str, Any] | None = None,
        form: aiohttp.FormData | None = None,
    ) -> Any:
        """One authenticated request; returns the envelope's `data` or raises a typed error."""
        started = time.monotonic()
        status, retry_after, raw = await self._send(method, path, attempt, json_body, form)
        log.debug(
            "%s %s -> %d (attempt %d, %.0f ms)",
            method,
            path,
            status,
            attempt,
            (time.monotonic() - started) * 1000,
        )
        body = _parse_json(raw)
        if not 200 <= status < 300:
            raise self._status_error(status, method, path, _message_of(body), retry_after)
        if not isinstance(body, dict):
            raise MalformedResponseError(
                f"{method} {path}: reply is not a JSON object", status=status
            )
        code = body.get("code")
        if code != 200:
            # HTTP 200 carrying an error envelope: trust the envelope's code when it is one.
            if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
                raise self._status_error(code, method, path, _message_of(body), retry_after)
            raise MalformedResponseError(
                f"{method} {path}: envelope code is {code!r}, not 200", status=status
            )
        return body.get("data")

    async def _send(
        self,
        method: str,
        path: str,
        attempt: int,
        json_body: dict[str, Any] | None,
        form: aiohttp.FormData | None,
    ) -> tuple[int, float | None, bytes]:
        """Status, Retry-After and raw body of one authenticated request."""
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            # allow_redirects=False: a redirect is not part of the contract, and following one
            # could turn the submit POST into a GET or hand the request to another host.
            async with self._session.request(
                method,
                self._base_url + path,
                headers=headers,
                json=json_body,
                data=form,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                return resp.status, retry_after, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = self._transport_error(exc, method, path, attempt)
        # Raised outside the except block on purpose: see _transport_error.
        raise failure

    async def _download_once(
        self, url: str, label: str, dest: Path, max_bytes: int, attempt: int
    ) -> int:
        part = dest.with_name(dest.name + ".part")
        started = time.monotonic()
        try:
            written = await self._stream_to(url, label, part, max_bytes, attempt)
            await asyncio.to_thread(part.replace, dest)
        except (aiohttp.ClientError, TimeoutError) as exc:
            await _unlink(part)
            failure = self._transport_error(exc, "GET", label, attempt)
        except BaseException:  # our own typed errors, cancellation: no partial file either way
            await _unlink(part)
            raise
        else:
            log.debug(
                "GET %s: %d bytes in %.0f ms", label, written, (time.monotonic() - started) * 1000
            )
            return written
        raise failure  # outside the except block on purpose: see _transport_error

    async def _stream_to(
        self, url: str, label: str, part: Path, max_bytes: int, attempt: int
    ) -> int:
        # No headers argument at all: the key must never reach the output host.
        async with self._session.get(url, timeout=self._download_timeout) as resp:
            log.debug("GET %s -> %d (attempt %d)", label, resp.status, attempt)
            if resp.status != 200:
                body = _parse_json(await resp.content.read(64 * 1024))
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise self._status_error(resp.status, "GET", label, _message_of(body), retry_after)
            length = resp.content_length
            if length is not None and length > max_bytes:
                raise _too_large(label, max_bytes, f"announces {length} bytes")
            written = 0
            handle = await asyncio.to_thread(part.open, "wb")
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise _too_large(label, max_bytes, "streamed past the limit")
                    await asyncio.to_thread(handle.write, chunk)
            finally:
                await asyncio.to_thread(handle.close)
            return written

    def _transport_error(
        self, exc: BaseException, method: str, path: str, attempt: int
    ) -> WaveSpeedError:
        """Map an aiohttp/asyncio failure to a typed error.

        The caller raises the result *outside* its except block, so the aiohttp exception is
        not kept as __context__: aiohttp's ClientResponseError carries request_info, whose
        headers (and therefore repr) include the Authorization header.
        """
        kind = type(exc).__name__
        log.debug("%s %s failed on attempt %d: %s", method, path, attempt, kind)
        error: WaveSpeedError
        # ConnectionTimeoutError subclasses ServerTimeoutError (and TimeoutError), and
        # ClientConnectorError subclasses ClientOSError: test the "never connected" cases first,
        # because only they prove the request was not sent.
        if isinstance(exc, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
            error = ConnectionFailedError(f"{method} {path}: could not connect ({kind})")
        elif isinstance(exc, TimeoutError):  # ServerTimeoutError/SocketTimeoutError included
            error = RequestTimeoutError(f"{method} {path}: no reply in time ({kind})")
        elif isinstance(exc, aiohttp.InvalidURL):
            error = WaveSpeedError(f"{method} {path}: invalid URL")
        elif isinstance(exc, aiohttp.ClientResponseError):
            # aiohttp could not parse the reply (or, for downloads, too many redirects).
            return MalformedResponseError(f"{method} {path}: unusable HTTP reply ({kind})")
        else:
            # ServerDisconnectedError, ClientPayloadError, ClientOSError and any other
            # ClientError after connecting: the request may have been sent, the reply was lost.
            error = ConnectionDroppedError(f"{method} {path}: connection lost ({kind})")
        error.__cause__ = exc  # kept for tracebacks; these types carry no request headers
        return error

    def _status_error(
        self,
        status: int,
        method: str,
        path: str,
        server_message: str | None,
        retry_after: float | None,
    ) -> WaveSpeedError:
        detail = self._scrub(server_message) if server_message else f"HTTP {status}"
        text = f"{method} {path}: {status} {detail}"
        if status == 400:
            # WaveSpeed's own explanation, verbatim, is what the user needs to see.
            return BadRequestError(detail, status=status)
        if status in (401, 403):
            return AuthenticationError(text, status=status)
        if status == 404:
            return NotFoundError(text, status=status)
        if status == 429:
            return RateLimitedError(text, retry_after=retry_after)
        if 500 <= status < 600:
            return ServerError(text, status=status, retry_after=retry_after)
        return WaveSpeedError(text, status=status)

    def _scrub(self, text: str) -> str:
        """Servers sometimes echo credentials in error text; never let the key through."""
        return text.replace(self._api_key, "[redacted]")


def _prediction(data: Any, method: str, path: str) -> Prediction:
    try:
        return Prediction.from_data(data)
    except ValueError as exc:
        raise MalformedResponseError(f"{method} {path}: bad prediction: {exc}") from None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both subclass ValueError
        return None


def _message_of(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    return None


def _too_large(label: str, max_bytes: int, why: str) -> OutputTooLargeError:
    return OutputTooLargeError(f"GET {label}: {why} (limit {max_bytes})", size_limit=max_bytes)


def _url_label(url: str) -> str:
    """Host and path only: output URLs may carry signed query tokens worth keeping out of logs."""
    try:
        parsed = URL(url)
    except ValueError:
        return "<invalid url>"
    return f"{parsed.host or ''}{parsed.path}"


async def _unlink(path: Path) -> None:
    await asyncio.to_thread(path.unlink, missing_ok=True)
