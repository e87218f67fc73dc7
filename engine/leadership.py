"""Which one of the processes sharing a database runs the bot.

Two processes on one database would each resume the other's jobs: refund a submit still in
flight as unknown, post a clip being delivered a second time. So the database decides:
`Leadership` waits as a *standby* until the instance lease (storage/lease.py) is free or its
holder is dead, takes it, fences the database with it (every write transaction checks the
lease is still ours, storage/database.py), and renews it.

No wall clock decides anything (NTP or an operator may step it; the row's `expires_at` is
for display). A standby takes the lease when there is no row, it was released, or it is
ours; at once when the holder names a process on this host that no longer exists (a crash
and restart on one host need not wait); otherwise only after watching the row's holder and
last renewal stay unchanged for `ttl` seconds of its own monotonic clock - and then only if
the row is still exactly that one (storage/lease.py compares and swaps).

The holder stops acting before a standby can take over: its deadline is the start of its
last successful renewal + `ttl - margin` (monotonic, so a paused process notices the moment
it resumes). At the deadline, or when a renewal finds another holder, `on_lost` is called
and the caller stops all work; from that moment the fence refuses every write. Any renewal
the standby saw started before that deadline's renewal, and the standby waits `ttl` from
seeing it, so the holder has stopped `margin` seconds before. After a clean stop,
`release()` gives the lease back at once, so a standby takes over within `check_interval`
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from storage.lease import Lease, LeaseStatus, LeaseStore, gone_process

log = logging.getLogger(__name__)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Leadership:
    """Hold the instance lease for this process: `wait_for_lease()`, then `release()`.

    `ttl` is the takeover time: how long a standby watches a holder that stopped renewing
    before it takes over. Renewals run every `ttl / 3`; the holder gives up `ttl - margin`
    seconds after the start of its last successful one; a standby reads the row every
    `check_interval` seconds (default `min(ttl / 4, 0.5)`).
    """

    def __init__(self, store: LeaseStore, holder: str, ttl: float, *,
                 on_lost: Callable[[str], None], margin: float | None = None,
                 check_interval: float | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 gone: Callable[[str], int | None] = gone_process) -> None:
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
        self._gone = gone
        self._heartbeat: asyncio.Task[None] | None = None
        self._stuck: asyncio.Future[str | None] | None = None  # a renewal given up on
        self._deadline = 0.0  # monotonic: when we must have stopped acting
        self._unreadable = False  # the last standby read failed
        self.held = False  # ours, as far as we know
        self._acquired = False  # taken at some point and not yet released
        self.lost: str | None = None  # why the lease was lost, once it was

    def holds(self) -> bool:
        """Whether this process may still act: the lease is ours as far as it knows, and
        its own deadline has not passed. The database's fence asks this first."""
        return self.held and self._monotonic() < self._deadline

    async def wait_for_lease(self, stop: asyncio.Event | None = None) -> LeaseStatus | None:
        """Wait as a standby until the lease is ours, then fence the database with it and
        start renewing it. Returns how it was acquired, or None if `stop` was set first."""
        stop = stop if stop is not None else asyncio.Event()
        announced: str | None = None
        watched: Lease | None = None  # the row as it was first seen unchanged...
        since = 0.0  # ...at this monotonic time
        while not stop.is_set():
            started = self._monotonic()
            read, lease = await self._read()
            if read:
                if lease is not None and not lease.same_renewal(watched):
                    watched, since = lease, started
                how = self._free(lease, started - since)
                if how is not None:
                    status = await self._try_acquire(lease)
                    if status is not None and status.acquired:
                        self._took(status, started, how)
                        return status
                    if status is not None:  # another standby was faster, or a renewal
                        lease = status.current
                        if not lease.same_renewal(watched):
                            watched, since = lease, self._monotonic()
                if lease is not None and lease.holder != announced:
                    announced = lease.holder
                    log.info("standby: instance %s is active (lease until %s); waiting to "
                             "take over (takeover time %.1fs)", lease.holder,
                             _when(lease.expires_at), self.ttl)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.check_interval)
        return None

    def _free(self, lease: Lease | None, unchanged_for: float) -> str | None:
        """Whether a standby may take `lease` (the row as read, seen unchanged for
        `unchanged_for` seconds), and how its holder ended; None: keep waiting."""
        if lease is None or lease.holder == self.holder:
            return ""
        if lease.released:
            return "released it"
        pid = self._gone(lease.holder)
        if pid is not None:
            return f"stopped renewing it (its process {pid} on this host is gone)"
        if unchanged_for >= self.ttl:
            return f"stopped renewing it (no renewal seen for {unchanged_for:.1f}s)"
        return None

    async def _read(self) -> tuple[bool, Lease | None]:
        """A read (no write lock): (True, the row) or (False, None) if it failed."""
        try:
            lease = await self.store.current()
        except Exception as exc:  # noqa: BLE001 - retried at the next check
            # Once per run of failures, not at every check.
            (log.debug if self._unreadable else log.warning)(
                "standby: could not read the instance lease (%s: %s); retrying",
                type(exc).__name__, exc)
            self._unreadable = True
            return False, None
        self._unreadable = False
        return True, lease

    async def _try_acquire(self, judged: Lease | None) -> LeaseStatus | None:
        try:
            return await self.store.acquire(self.holder, self.ttl, judged=judged)
        except Exception as exc:  # noqa: BLE001 - a busy or broken file: keep waiting
            log.warning("standby: could not check the instance lease (%s: %s); retrying",
                        type(exc).__name__, exc)
            return None

    def _took(self, status: LeaseStatus, started: float, how: str) -> None:
        self.held = self._acquired = True
        self._deadline = started + self.ttl - self.margin
        self.store.db.fence_with(self.store.name, self.holder, self.holds)
        previous: Lease | None = status.previous
        if previous is None:
            log.info("active: holding the instance lease as %s (takeover time %.1fs)",
                     self.holder, self.ttl)
        else:
            if previous.released:
                ago = max(0.0, status.current.acquired_at - previous.expires_at)
                how = f"{how} (lease ended {ago:.1f}s ago)"
            log.info("active: took over from %s, which %s; holding the instance lease as %s "
                     "(takeover time %.1fs)", previous.holder, how, self.holder, self.ttl)
        self._heartbeat = asyncio.create_task(self._renew_loop(), name="lease-heartbeat")
        self._heartbeat.add_done_callback(self._heartbeat_done)

    def _heartbeat_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self.lost is None:
            log.error("the lease heartbeat crashed", exc_info=task.exception())
            self._lose("the lease heartbeat crashed")

    async def _renew_loop(self) -> None:
        """Renew every renew_interval; call on_lost once the lease is someone else's or no
        renewal succeeded by the deadline: its holder must stop before a standby acts."""
        late = (f"no renewal of the instance lease succeeded for "
                f"{self.ttl - self.margin:.1f}s")
        wake = self._monotonic() + self.renew_interval
        while True:
            await asyncio.sleep(max(0.0, min(wake, self._deadline) - self._monotonic()))
            started = self._monotonic()
            remaining = self._deadline - started
            if remaining <= 0:
                self._lose(late)
                return
            wake = started + self.renew_interval
            renewal = asyncio.ensure_future(self.store.renew_or_holder(self.holder, self.ttl))
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
                self._lose(late)
                return
            try:
                other = renewal.result()
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                log.warning("could not renew the instance lease (%s: %s); retrying",
                            type(exc).__name__, exc)
                continue
            if other is not None:
                self._lose(f"instance {other} took the instance lease over")
                return
            if self._monotonic() >= self._deadline:
                # Renewed, but after the deadline the fence already went by: we stopped
                # acting then, so stop for good (release() gives the row back).
                self._lose(late)
                return
            self._deadline = started + self.ttl - self.margin

    def _lose(self, reason: str) -> None:
        self.held = False
        self.lost = reason
        log.error("lost the instance lease: %s; stopping all work", reason)
        try:
            self._on_lost(reason)
        except Exception:
            log.exception("stopping after the loss of the instance lease failed")

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
        except Exception as exc:  # noqa: BLE001 - a standby then takes it after ttl
            log.warning("could not release the instance lease (%s: %s); a standby takes "
                        "over %.1fs after its last renewal", type(exc).__name__, exc, self.ttl)
            return False
        if released:
            log.info("released the lease: a standby can take over now")
        elif self.lost is None:
            log.warning("could not release the instance lease: another instance holds it")
        return released
