"""Async WaveSpeed REST client for WAN 2.6 reference-to-video (shared/wavespeed-wan26-ref2video.md).

Retry rules follow the contract: result GETs, balance, the history POST (a read), uploads and
output downloads are retried on transient failures; the submit POST is sent exactly once,
because a POST whose reply was lost may still have created a paid task. Its errors say so via
`task_may_exist`.

The API key lives only in the per-request Authorization header of API calls. It is never put in
the session's default headers, never logged, and scrubbed from any server text copied into an
exception message. URLs that replies name (outputs, upload targets) are fetched on a separate,
guarded session (wavespeed/safe_download.py) that never carries the key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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
    UnsafeOutputURLError,
    WaveSpeedError,
)
from wavespeed.hosts import HostEntry, normalize_host, parse_host_entries
from wavespeed.models import (
    HISTORY_STATUSES,
    MODEL_PATH,
    GenerationRequest,
    History,
    Prediction,
    TaskStatus,
    UploadTicket,
)
from wavespeed.safe_download import (
    DEFAULT_MAX_REDIRECTS,
    DownloadPolicy,
    ResolverFactory,
    download_session,
    url_label,
)

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
SUBMIT_PATH = f"/api/v3/{MODEL_PATH}"
UPLOAD_TICKET_PATH = "/api/v3/media/uploads"  # the SDK's direct upload (then a PUT)
UPLOAD_PATH = "/api/v3/media/upload/binary"  # the older multipart upload, kept as fallback
BALANCE_PATH = "/api/v3/balance"
PRICING_PATH = "/api/v3/model/pricing"  # what one task with these inputs costs, in USD
MAX_SANE_PRICE_USD = 1_000_000.0
HISTORY_PATH = "/api/v3/predictions"  # the account's last 7 days, newest first
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

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


class _DirectUploadRefused(Exception):
    """The direct upload path said no in a way the binary endpoint may not (see upload_media).
    Not a WaveSpeedError, so _with_retries passes it straight up instead of retrying."""


class WaveSpeedClient:
    """WaveSpeed REST client.

    Timeouts (seconds): `request_timeout` bounds a GET (result, balance) and the upload
    ticket POST; `submit_timeout` is the submit POST's read timeout (default 60: a slow but
    successful submit that we cut off is a task we refund while WaveSpeed bills it);
    `connect_timeout` bounds opening a connection; `download_timeout` caps a whole output
    download or upload transfer, whose reads may each stall up to `request_timeout`.

    Output downloads (see wavespeed/safe_download.py): https only, public addresses only,
    at most `max_redirects` redirects, each hop checked. `output_http_hosts` ("host" or
    "host:port") lists hosts also allowed over plain http and on private/loopback addresses;
    an http `base_url`'s own host:port counts as listed, since the operator already trusts it
    with the key. `resolver_factory` replaces the DNS resolver under the guard (tests).
    """

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
        submit_timeout: float = 60.0,
        output_http_hosts: Iterable[str] = (),
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        resolver_factory: ResolverFactory | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        if "Authorization" in session.headers:
            # Session-wide auth would also go to output URLs on other hosts.
            raise ValueError("the session must not carry a default Authorization header")
        if not all(t > 0 for t in (request_timeout, connect_timeout, download_timeout,
                                   submit_timeout)):
            raise ValueError("timeouts must be above 0")
        self._session = session
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        # sock_read is what the SDK's (connect, read) timeout means; the total only stops a
        # reply that trickles forever.
        self._submit_timeout = aiohttp.ClientTimeout(
            total=connect_timeout + submit_timeout,
            sock_connect=connect_timeout,
            sock_read=submit_timeout,
        )
        # Transfers can be large, so a whole-request deadline of request_timeout would cut off
        # healthy ones: bound the stall between reads instead, plus a generous overall cap.
        self._transfer_timeout = aiohttp.ClientTimeout(
            total=download_timeout, sock_connect=connect_timeout, sock_read=request_timeout
        )
        self._policy = DownloadPolicy(
            parse_host_entries(output_http_hosts) + _base_host_entry(self._base_url),
            max_redirects,
        )
        self._resolver_factory = resolver_factory

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
        submit_timeout: float = 60.0,
        output_http_hosts: Iterable[str] = (),
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        resolver_factory: ResolverFactory | None = None,
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
                submit_timeout=submit_timeout,
                output_http_hosts=output_http_hosts,
                max_redirects=max_redirects,
                resolver_factory=resolver_factory,
            )

    # -- public API ------------------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Prediction:
        """Create a task. Sent once, never retried: see WaveSpeedError.task_may_exist."""
        data = await self._api_call(
            "POST", SUBMIT_PATH, attempt=1, json_body=request.to_json(),
            limits=self._submit_timeout,
        )
        try:
            return self._scrubbed(Prediction.from_data(data))
        except ValueError as exc:
            # Only the id matters after a submit: with it the task is ours to poll, and
            # calling the reply malformed would refund a task that exists and bills.
            task_id = data.get("id") if isinstance(data, dict) else None
            if isinstance(task_id, str) and task_id:
                log.warning("POST %s: task %s created, reply otherwise unusable (%s)",
                            SUBMIT_PATH, task_id, exc)
                return Prediction(id=task_id, status=TaskStatus.CREATED)
            raise MalformedResponseError(
                f"POST {SUBMIT_PATH}: bad prediction: {exc}") from None

    async def get_result(self, task_id: str) -> Prediction:
        path = f"/api/v3/predictions/{task_id}/result"

        async def once(attempt: int) -> Prediction:
            return self._scrubbed(_prediction(
                await self._api_call("GET", path, attempt=attempt), "GET", path))

        return await self._with_retries("GET", path, once)

    async def upload_media(self, data: bytes | Path, filename: str, content_type: str) -> str:
        """Upload a file (its bytes, or a path streamed from disk) for WaveSpeed to fetch;
        returns its download URL.

        First the SDK's direct upload: `POST /api/v3/media/uploads` with `filename`, `size`
        and `content_type` returns `data.upload` (`method` PUT, `url`, `headers`) and
        `data.download_url`; the bytes are PUT to that URL with exactly those headers (never
        the API key: it is storage, not the API) and `data.download_url` is returned.

        Falls back to `POST /api/v3/media/upload/binary` (multipart `file`) when the direct
        path refuses rather than fails:
        * the ticket POST answers a non-retryable error other than 401: 404/405 (no such
          endpoint on this deployment), 400/413/415 (it will not take this file), 403, ...;
        * the ticket is not an instruction we can follow (no upload URL, not PUT, no
          download_url), or the download guard refuses the PUT URL;
        * the PUT answers a non-retryable status (400, 403 expired signature, 413, ...).
        Not fallen back on: a 401 on the ticket (the key is wrong, the binary endpoint would
        say so too), nor transient failures (429, 5xx, timeouts, drops), which are retried
        per RetryPolicy and then raised, since both endpoints are the same service.

        Retried even though these are POSTs: a duplicate upload only stores the file twice
        (kept 7 days, free), which is harmless, unlike a duplicate submit.
        """
        try:
            return await self._with_retries(
                "POST", UPLOAD_TICKET_PATH,
                lambda attempt: self._upload_direct(data, filename, content_type, attempt),
            )
        except _DirectUploadRefused as refused:
            log.info("direct upload refused (%s); falling back to %s", refused, UPLOAD_PATH)

        async def once(attempt: int) -> str:
            async with _body(data) as body:
                form = aiohttp.FormData()  # rebuilt each try: a FormData can be sent only once
                form.add_field("file", body, filename=filename, content_type=content_type)
                reply = await self._api_call(
                    "POST", UPLOAD_PATH, attempt=attempt, form=form,
                    limits=self._transfer_timeout)
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

    async def price(self, inputs: dict[str, Any]) -> float:
        """What WaveSpeed charges, in USD, for one WAN 2.6 task with these submit `inputs`
        (`POST /api/v3/model/pricing`). Retried like a read: it creates nothing."""
        body = {"model_id": MODEL_PATH, "inputs": inputs}

        async def once(attempt: int) -> float:
            reply = await self._api_call("POST", PRICING_PATH, attempt=attempt, json_body=body)
            value = reply.get("unit_price") if isinstance(reply, dict) else None
            currency = reply.get("currency", "USD") if isinstance(reply, dict) else None
            # A clip costs dollars: a price past a million is a broken reply, not a price.
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and 0 <= value <= MAX_SANE_PRICE_USD):
                raise MalformedResponseError(f"POST {PRICING_PATH}: no usable data.unit_price")
            if currency != "USD":
                raise MalformedResponseError(
                    f"POST {PRICING_PATH}: the price is in {str(currency)[:8]!r}, not USD")
            return float(value)

        return await self._with_retries("POST", PRICING_PATH, once)

    async def predictions(
        self,
        *,
        created_after: datetime,
        created_before: datetime,
        model: str | None = MODEL_PATH,
        status: str | None = None,
        page_size: int = 100,
        max_pages: int = 20,
    ) -> History:
        """The account's tasks created at or after `created_after` and before `created_before`,
        newest first: for browsing and synchronization (finding tasks a lost submit reply
        created, or tasks made on the website), not for polling one task (use get_result).

        WaveSpeed keeps 7 days of history and does not return a task's input. `model` (None:
        every model) and `status` (completed, failed or processing; None: any) are filters.
        Pages 1, 2, ... are fetched until a short or empty page, `total`, or `max_pages`; each
        page is a read, retried like a GET. Filters are applied again here, so a server that
        ignores one cannot widen the result. See History for what `complete` promises.
        """
        query = _history_query(created_after, created_before, model, status, page_size)
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        found: dict[str, tuple[datetime, Prediction]] = {}
        complete, listed = True, 0
        for page in range(1, max_pages + 1):

            async def once(attempt: int, page: int = page) -> tuple[list[Any], int | None]:
                data = await self._api_call(
                    "POST", HISTORY_PATH, attempt=attempt, json_body=query | {"page": page}
                )
                return _history_page(data, page)

            items, total = await self._with_retries("POST", f"{HISTORY_PATH} page {page}", once)
            listed += len(items)
            for item in items:
                try:
                    prediction = self._scrubbed(Prediction.from_data(item))
                    created = prediction.created
                    if created is None:
                        raise ValueError("data.created_at is not an ISO 8601 date-time")
                    if model is not None and prediction.model is None:
                        raise ValueError("data.model is missing")
                except (ValueError, TypeError, OverflowError) as exc:  # one odd item
                    log.warning("POST %s page %d: skipped an unusable item (%s)",
                                HISTORY_PATH, page, exc)
                    complete = False
                    continue
                if (created_after <= created < created_before
                        and model in (None, prediction.model)
                        and _status_matches(prediction, status)):
                    found.setdefault(prediction.id, (created, prediction))  # pages can shift
            if len(items) < page_size or (total is not None and listed >= total):
                break
        else:
            complete = False  # max_pages walked and the last page was full: there may be more
        newest_first = sorted(found.values(), key=lambda pair: pair[0], reverse=True)
        return History(tuple(prediction for _, prediction in newest_first), complete)

    async def download_output(self, url: str, dest: Path, *, max_bytes: int) -> int:
        """Stream an output file to `dest`; returns its size in bytes.

        Fetched on a guarded session of its own, without the Authorization header: output
        URLs live on a CDN, not the API host. Redirects are followed here, up to the policy's
        cap, and every hop is checked; a refused URL raises UnsafeOutputURLError (not
        retried). Bytes go to a sibling `.part` file renamed into place only when complete,
        so `dest` never holds a truncated video and nothing is left behind on failure.
        """
        target = _parse_url(url)
        label = url_label(target)
        async with download_session(self._policy, self._resolver_factory) as session:

            async def once(attempt: int) -> int:
                return await self._download_once(session, target, label, dest, max_bytes,
                                                 attempt)

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
        limits: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        """One authenticated request; returns the envelope's `data` or raises a typed error.

        Like the SDK, a 2xx reply whose envelope has no `code` (or a null one) is a success:
        the SDK reads `data.id` from a submit reply without looking at `code` at all. A code
        that is present and not 200 is still an error, as the HTTP status would be.
        """
        started = time.monotonic()
        status, retry_after, raw = await self._send(
            method, path, attempt, json_body, form, limits or self._timeout
        )
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
        if code is not None and code != 200:
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
        limits: aiohttp.ClientTimeout,
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
                timeout=limits,
                allow_redirects=False,
            ) as resp:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                return resp.status, retry_after, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = self._transport_error(exc, method, path, attempt)
        # Raised outside the except block on purpose: see _transport_error.
        raise failure

    async def _upload_direct(
        self, data: bytes | Path, filename: str, content_type: str, attempt: int
    ) -> str:
        """One try of the direct upload: ticket, then PUT. See upload_media for the rules."""
        size = len(data) if isinstance(data, bytes) else (await asyncio.to_thread(data.stat)
                                                          ).st_size
        payload: dict[str, Any] = {"filename": filename, "size": size}
        if content_type:
            payload["content_type"] = content_type
        try:
            reply = await self._api_call(
                "POST", UPLOAD_TICKET_PATH, attempt=attempt, json_body=payload
            )
        except WaveSpeedError as exc:
            if exc.retryable or exc.status == 401:
                raise
            raise _DirectUploadRefused(f"{type(exc).__name__}, status {exc.status}") from None
        try:
            ticket = UploadTicket.from_data(reply)
            put_url = _parse_url(ticket.put_url)
            self._policy.check_url(put_url)
        except (ValueError, UnsafeOutputURLError) as exc:
            raise _DirectUploadRefused(f"unusable ticket: {exc}") from None
        try:
            await self._put(put_url, ticket.put_headers, data, attempt)
        except WaveSpeedError as exc:
            if exc.retryable:
                raise
            raise _DirectUploadRefused(f"PUT {type(exc).__name__}, status {exc.status}") from None
        return ticket.download_url

    async def _put(self, url: URL, headers: dict[str, str], data: bytes | Path, attempt: int
                   ) -> None:
        """PUT the bytes to the ticket's storage URL on a guarded session, no redirects."""
        label = url_label(url)  # never the query: presigned URLs carry their signature there
        async with download_session(self._policy, self._resolver_factory) as session, \
                _body(data) as body:
            try:
                async with session.put(
                    url, data=body, headers=headers, timeout=self._transfer_timeout,
                    allow_redirects=False,
                ) as resp:
                    log.debug("PUT %s -> %d (attempt %d)", label, resp.status, attempt)
                    if 200 <= resp.status < 300:
                        return
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    # Storage replies are not WaveSpeed envelopes (often XML): status only.
                    failure = self._status_error(resp.status, "PUT", label, None, retry_after)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failure = self._transport_error(exc, "PUT", label, attempt)
        raise failure  # outside the except block on purpose: see _transport_error

    async def _download_once(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        label: str,
        dest: Path,
        max_bytes: int,
        attempt: int,
    ) -> int:
        part = dest.with_name(dest.name + ".part")
        started = time.monotonic()
        try:
            written = await self._stream_to(session, url, part, max_bytes, attempt)
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
        self, session: aiohttp.ClientSession, url: URL, part: Path, max_bytes: int, attempt: int
    ) -> int:
        current = url
        for _hop in range(self._policy.max_redirects + 1):
            self._policy.check_url(current)  # names are checked again by the guarded resolver
            written = await self._fetch_hop(session, current, part, max_bytes, attempt)
            if isinstance(written, int):
                return written
            current = written
        raise UnsafeOutputURLError(
            f"refused {url_label(url)}: more than {self._policy.max_redirects} redirects"
        )

    async def _fetch_hop(
        self, session: aiohttp.ClientSession, url: URL, part: Path, max_bytes: int, attempt: int
    ) -> int | URL:
        """One request: the bytes written, or the URL a redirect points to."""
        label = url_label(url)
        # No headers argument at all: the key must never reach the output host.
        async with session.get(
            url, timeout=self._transfer_timeout, allow_redirects=False
        ) as resp:
            log.debug("GET %s -> %d (attempt %d)", label, resp.status, attempt)
            if resp.status in _REDIRECTS:
                return _redirect_target(url, resp.headers.get("Location"), resp.status, label)
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

    def _scrubbed(self, prediction: Prediction) -> Prediction:
        """A task's error text is shown to members and stored: scrubbed like any other."""
        if prediction.error and self._api_key in prediction.error:
            return dataclasses.replace(prediction, error=self._scrub(prediction.error))
        return prediction


@asynccontextmanager
async def _body(data: bytes | Path) -> AsyncIterator[bytes | BinaryIO]:
    """What to send: the bytes, or the file opened for this one try (aiohttp streams a file
    from a worker thread and sends its Content-Length; a retry needs it opened again)."""
    if isinstance(data, bytes):
        yield data
        return
    handle = await asyncio.to_thread(data.open, "rb")
    try:
        yield handle
    finally:
        await asyncio.to_thread(handle.close)


def _prediction(data: Any, method: str, path: str) -> Prediction:
    try:
        return Prediction.from_data(data)
    except ValueError as exc:
        raise MalformedResponseError(f"{method} {path}: bad prediction: {exc}") from None


def _utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the history filters are written: 2023-10-01T00:00:00Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _history_query(
    created_after: datetime,
    created_before: datetime,
    model: str | None,
    status: str | None,
    page_size: int,
) -> dict[str, Any]:
    """The history filters as sent (all but `page`); raises ValueError for bad arguments."""
    for name, moment in (("created_after", created_after), ("created_before", created_before)):
        if moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    if created_after > created_before:
        raise ValueError("created_after must not be later than created_before")
    if isinstance(page_size, bool) or not 1 <= page_size <= 100:
        raise ValueError(f"page_size must be from 1 to 100, not {page_size!r}")
    if status is not None and status not in HISTORY_STATUSES:
        raise ValueError(f"status must be one of {', '.join(HISTORY_STATUSES)}, or None")
    if model is not None and not model:
        raise ValueError("model must not be empty (None means every model)")
    query: dict[str, Any] = {
        "page_size": page_size,
        "created_after": _utc_text(created_after),
        "created_before": _utc_text(created_before),
    }
    return query | {k: v for k, v in (("model", model), ("status", status)) if v is not None}


def _history_page(data: Any, page: int) -> tuple[list[Any], int | None]:
    """`data.items` and `data.total` (None when absent) of one history page."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MalformedResponseError(f"POST {HISTORY_PATH} page {page}: reply has no data.items")
    total = data.get("total")
    return items, total if isinstance(total, int) and not isinstance(total, bool) else None


def _status_matches(prediction: Prediction, status: str | None) -> bool:
    """The history `status` filter, leniently: "failed" also takes cancelled/timeout/deleted,
    "processing" any status still running (created, queued, ...)."""
    if status is None:
        return True
    if status == "processing":
        return not prediction.is_terminal
    if status == "completed":
        return prediction.status is TaskStatus.COMPLETED
    return prediction.is_terminal and prediction.status is not TaskStatus.COMPLETED


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


def _parse_url(url: str) -> URL:
    try:
        return URL(url)
    except (TypeError, ValueError):
        raise UnsafeOutputURLError("refused an output URL that cannot be parsed") from None


def _redirect_target(current: URL, location: str | None, status: int, label: str) -> URL:
    """Where a redirect points, resolved against the URL that answered it (as aiohttp does)."""
    if not location:
        raise MalformedResponseError(f"GET {label}: {status} redirect without a Location")
    try:
        return current.join(URL(location)).with_fragment(None)
    except (TypeError, ValueError):
        raise UnsafeOutputURLError(f"refused a redirect from {label}: bad Location") from None


def _base_host_entry(base_url: str) -> tuple[HostEntry, ...]:
    """An http base URL's host:port, trusted for downloads like an OUTPUT_HTTP_HOSTS entry."""
    try:
        base = URL(base_url)
    except (TypeError, ValueError):
        return ()
    if base.scheme != "http" or not base.raw_host or base.port is None:
        return ()
    return (HostEntry(normalize_host(base.raw_host), base.port),)


async def _unlink(path: Path) -> None:
    await asyncio.to_thread(path.unlink, missing_ok=True)
