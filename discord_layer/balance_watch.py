"""Watches the operator's WaveSpeed balance and warns every audit channel once when it falls
below WAVESPEED_BALANCE_WARN_USD (and again only after it has recovered and fallen again).

Also remembers the last reading for /admin status, so that command need not wait on
WaveSpeed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from discord_layer.audit import AuditLog
from discord_layer.owned_task import OwnedTask
from storage.guild_settings import GuildSettingsStore
from wavespeed.errors import WaveSpeedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BalanceReading:
    usd: float | None          # None: the last check failed
    at: float                  # time.time() of the check
    error: str | None = None


class BalanceWatch:
    def __init__(
        self, read_balance: Callable[[], Awaitable[float]], audit: AuditLog,
        guild_settings: GuildSettingsStore, *, threshold_usd: float, interval: float = 600.0,
    ) -> None:
        self._read = read_balance
        self._audit = audit
        self._settings = guild_settings
        self.threshold = threshold_usd
        self.interval = interval
        self.last: BalanceReading | None = None
        self._warned = False
        self._task = OwnedTask("balance-watch", self._run)

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def check(self) -> BalanceReading:
        try:
            usd = await self._read()
        except WaveSpeedError as exc:
            self.last = BalanceReading(None, time.time(), type(exc).__name__)
            log.warning("could not read the WaveSpeed balance (%s)", type(exc).__name__)
            return self.last
        self.last = BalanceReading(usd, time.time())
        if self.threshold > 0 and usd < self.threshold:
            if not self._warned:
                self._warned = True
                log.warning("WaveSpeed balance $%.2f is below $%.2f", usd, self.threshold)
                for guild_id in await self._settings.audit_channels():
                    await self._audit.post(
                        guild_id, f"⚠️ The WaveSpeed account balance is ${usd:,.2f}, below the "
                        f"warning level of ${self.threshold:,.2f}. Top it up before jobs "
                        "start failing.")
        else:
            self._warned = False
        return self.last

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("balance check failed")
            await asyncio.sleep(self.interval)
