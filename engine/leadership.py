"""Which one of the processes sharing a database runs the bot.

Two processes on one database would each resume the other's jobs: refund a submit still in
flight as unknown, post a clip being delivered a second time. So the database decides:
`Leadership` waits as a *standby* until the instance lease (storage/lease.py) is free, takes
it, fences the database with it (every write transaction checks the lease is still ours,
storage/database.py), and renews it. The holder stops acting before its lease can expire:
when a renewal finds another holder, or no renewal succeeded for `ttl - margin` seconds
(measured on the monotonic clock, so a paused process notices the moment it resumes),
`on_lost` is called and the caller stops all work. After a clean stop, `release()` gives
the lease back at once, so a standby takes over within `check_interval` seconds instead of
waiting for the expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from storage.lease import Lease, LeaseStatus, LeaseStore

log = logging.getLogger(__name__)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Leadership:
    """Hold the instance lease for this process: `wait_for_lease()`, then `release()`.

    `ttl` is the takeover time: how long a lease lasts without renewal, so how long a
    standby waits after the active process died. Renewals run every `ttl / 3`; the holder
    gives up after `ttl - margin` seconds without a successful one; a standby checks every
    `check_interval` seconds (default `min(ttl / 4, 0.5)`) with a read, and tries to take
    the lease when it is free or expired.
    """

    def __init__(self, store: LeaseStore, holder: str, ttl: float, *,
                 on_lost: Callable[[str], None], margin: float | None = None,
                 check_interval: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise ValueError("ttl must be above 0")
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew_interval = ttl / 3
        self.margin = min(max(0.5, ttl / 5), ttl / 2) if margin is None else margin
        if not 0 <= self.margin < ttl - self.renew_interval:
            raise ValueError("margin must leave time for at least one renewal")
        self.check_interval = min(ttl / 4, 0.5) if check_interval is None else check_interval
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._heartbeat: asyncio.Task[None] | None = None
        self._stuck: asyncio.Future[bool] | None = None  # a renewal given up on
        self.held = False  # ours, as far as we know
        self._acquired = False  # taken at some point and not yet released
        self.lost: str | None = None  # why the lease was lost, once it was

    async def wait_for_lease(self, stop: asyncio.Event | None = None) -> LeaseStatus | None:
        """Wait as a standby until the lease is ours, then fence the database with it and
        start renewing it. Returns how it was acquired, or None if `stop` was set first."""
        stop = stop if stop is not None else asyncio.Event()
        announced: str | None = None
        while not stop.is_set():
            started = self._monotonic()
            status = await self._try_acquire()
            if status is not None and status.acquired:
                self._took(status, started)
                return status
            if status is not None and status.current.holder != announced:
                announced = status.current.holder
                lease = status.current
                log.info("standby: instance %s is active (lease until %s); waiting to take "
                         "over (takeover time %.1fs)", lease.holder, _when(lease.expires_at),
                         self.ttl)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.check_interval)
                if not stop.is_set() and await self._looks_free():
                    break
        return None

    async def _try_acquire(self) -> LeaseStatus | None:
        try:
            return await self.store.acquire(self.holder, self.ttl)
        except Exception as exc:  # noqa: BLE001 - a busy or broken file: keep waiting
            log.warning("standby: could not check the instance lease (%s: %s); retrying",
                        type(exc).__name__, exc)
            return None

    async def _looks_free(self) -> bool:
        """A read (no write lock): is the lease free, expired or ours? Then try to take it."""
        try:
            lease = await self.store.current()
        except Exception as exc:  # noqa: BLE001 - retried at the next check
            log.debug("standby: could not read the instance lease: %s", exc)
            return False
        return (lease is None or lease.holder == self.holder
                or lease.expired(self.store.now()))

    def _took(self, status: LeaseStatus, started: float) -> None:
        self.held = self._acquired = True
        self.store.db.fence_with(self.store.name, self.holder)
        previous: Lease | None = status.previous
        if previous is None:
            log.info("active: holding the instance lease as %s (takeover time %.1fs)",
                     self.holder, self.ttl)
        else:
            ago = max(0.0, status.current.acquired_at - previous.expires_at)
            how = "released it" if previous.released else "stopped renewing it"
            log.info("active: took over from %s, which %s (lease ended %.1fs ago); holding "
                     "the instance lease as %s (takeover time %.1fs)", previous.holder, how,
                     ago, self.holder, self.ttl)
        self._heartbeat = asyncio.create_task(self._renew_loop(started + self.ttl - self.margin),
                                              name="lease-heartbeat")
        self._heartbeat.add_done_callback(self._heartbeat_done)

    def _heartbeat_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.lost is None:
            log.error("the lease heartbeat crashed", exc_info=task.exception())
            self._lose("the lease heartbeat crashed")

    async def _renew_loop(self, deadline: float) -> None:
        """Renew every renew_interval; call on_lost once the lease is someone else's or no
        renewal succeeded by `deadline` (monotonic): its holder must stop before it expires."""
        wake = self._monotonic() + self.renew_interval
        while True:
            await asyncio.sleep(max(0.0, min(wake, deadline) - self._monotonic()))
            started = self._monotonic()
            remaining = deadline - started
            if remaining <= 0:
                self._lose(f"no renewal of the instance lease succeeded for "
                           f"{self.ttl - self.margin:.1f}s")
                return
            wake = started + self.renew_interval
            renewal = asyncio.ensure_future(self.store.renew(self.holder, self.ttl))
            try:
                await asyncio.wait({renewal}, timeout=remaining)
            except asyncio.CancelledError:  # release(): nothing may renew after it
                renewal.cancel()
                self._stuck = renewal
                raise
            if not renewal.done():
                # Stuck (behind another process's write lock, say). Stop now rather than when
                # it returns; cancelled, it rolls back once its BEGIN comes back.
                renewal.cancel()
                self._stuck = renewal
                self._lose(f"no renewal of the instance lease succeeded for "
                           f"{self.ttl - self.margin:.1f}s")
                return
            try:
                renewed = renewal.result()
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                log.warning("could not renew the instance lease (%s: %s); retrying",
                            type(exc).__name__, exc)
                continue
            if not renewed:
                self._lose(f"instance {await self._current_holder()} took the instance lease "
                           "over")
                return
            deadline = started + self.ttl - self.margin

    async def _current_holder(self) -> str:
        try:
            lease = await self.store.current()
        except Exception:  # noqa: BLE001 - only for the log line
            return "(unknown)"
        return lease.holder if lease is not None else "(none)"

    def _lose(self, reason: str) -> None:
        self.held = False
        self.lost = reason
        log.error("lost the instance lease: %s; stopping all work", reason)
        self._on_lost(reason)

    async def release(self) -> bool:
        """Stop renewing and give the lease back at once, so a standby takes over now. Call
        it after all work stopped. True if the lease was still ours."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._stuck is not None:  # let it finish rolling back before we write
            await asyncio.wait({self._stuck})
            if not self._stuck.cancelled():
                self._stuck.exception()  # retrieved: it was logged as the loss already
            self._stuck = None
        if not self._acquired:
            return False
        self._acquired = self.held = False
        try:
            # Also after a loss by late renewals: the row may still be ours, and giving it
            # back spares a standby the wait. Another holder's row is left alone.
            released = await self.store.release(self.holder)
        except Exception as exc:  # noqa: BLE001 - it then expires by itself
            log.warning("could not release the instance lease (%s: %s); it expires in at "
                        "most %.1fs", type(exc).__name__, exc, self.ttl)
            return False
        if released:
            log.info("released the lease: a standby can take over now")
        elif self.lost is None:
            log.warning("could not release the instance lease: another instance holds it")
        return released
