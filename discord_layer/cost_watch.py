"""Asks WaveSpeed what each clip option costs (at start-up, then daily), compares it with
the price table, and warns every audit channel when an option sells below cost. With
PRICE_FOLLOW_WAVESPEED it sets the prices to WaveSpeed's plus the markup instead.

Keeps the last reading for /admin status, which shows the margin per option."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from discord_layer.audit import AuditLog
from discord_layer.owned_task import OwnedTask
from money.costs import Margin, followed_prices, margins, quote_inputs, worst_costs
from money.prices import OPTIONS, PriceTable
from storage.guild_settings import GuildSettingsStore
from wavespeed.errors import WaveSpeedError

log = logging.getLogger(__name__)

DAY = 86400.0
PLAUSIBLE_FACTOR = 2.0  # follow mode follows quotes within 1/2x to 2x the configured cost


@dataclass(frozen=True)
class CostReading:
    costs: dict[tuple[str, int], float]  # (resolution, seconds) -> USD per task; {}: failed
    at: float
    error: str | None = None


class CostWatch:
    def __init__(
        self, quote: Callable[[dict[str, Any]], Awaitable[float]], prices: PriceTable,
        audit: AuditLog, guild_settings: GuildSettingsStore, *, follow: bool = False,
        markup_percent: float = 0.0, interval: float = DAY,
    ) -> None:
        self._quote = quote
        self.prices = prices
        self._audit = audit
        self._settings = guild_settings
        self.follow = follow
        self.markup_percent = markup_percent
        self.interval = interval
        self.last: CostReading | None = None
        self._warned: frozenset[str] = frozenset()  # the options last warned about
        self._doubted: frozenset[tuple[str, int]] = frozenset()  # quotes not followed
        # The PRICE_* values as configured: what follow mode judges quotes against, so its
        # own past changes (a glitch it followed) can never move the yardstick.
        self._configured = {option: prices.credits_of(*option) for option in OPTIONS}
        self._task = OwnedTask("cost-watch", self._run)

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    def margins(self) -> list[Margin]:
        """Today's margins per option, from the last reading ([] before one succeeded)."""
        return margins(self.prices, self.last.costs) if self.last is not None else []

    async def check(self) -> CostReading:
        try:
            quotes = {key: await self._quote(inputs) for key, inputs in quote_inputs()}
        except WaveSpeedError as exc:
            kept = self.last.costs if self.last is not None else {}
            self.last = CostReading(kept, time.time(), type(exc).__name__)
            log.warning("could not read WaveSpeed's prices (%s)%s", type(exc).__name__,
                        "; keeping the last ones" if kept else "")
            return self.last
        costs = worst_costs(quotes)
        self.last = CostReading(costs, time.time())
        if self.follow:
            await self._follow(costs)
        await self._warn(self.margins())
        return self.last

    async def _follow(self, costs: dict[tuple[str, int], float]) -> None:
        # A quote far from the cost the configured price implies (PRICE_*, the operator's
        # own figure for the option, less the markup) is more likely WaveSpeed's glitch
        # than a price change: cents read as
        # dollars would sell clips at 100x, a quote of nothing for 1 credit. Said, not
        # followed; if WaveSpeed really moved that far, the operator updates PRICE_*.
        implausible = {option: usd for option, usd in costs.items()
                       if not self._plausible(option, usd)}
        if implausible and frozenset(implausible) != self._doubted:
            text = ", ".join(f"{r} {d} s ${usd:,.2f}" for (r, d), usd in implausible.items())
            log.warning("not following WaveSpeed's prices: quotes far from the configured "
                        "ones (%s)", text)
            for guild_id in await self._settings.audit_channels():
                await self._audit.post(
                    guild_id, f"⚠️ WaveSpeed quoted prices far from the configured ones "
                    f"({text}), so the bot's prices were left as they are. If WaveSpeed "
                    "really changed its prices, the operator should update PRICE_*.")
        self._doubted = frozenset(implausible)
        costs = {o: usd for o, usd in costs.items() if o not in implausible}
        wanted = followed_prices(self.prices, costs, self.markup_percent)
        changed = {option: credits for option, credits in wanted.items()
                   if self.prices.credits_of(*option) != credits}
        if not changed:
            return
        before = {option: self.prices.credits_of(*option) for option in changed}
        self.prices.set_credits(changed)
        text = ", ".join(f"{r} {d} s {before[(r, d)]} → {c}" for (r, d), c in changed.items())
        log.info("prices follow WaveSpeed's (+%g%%): %s credits", self.markup_percent, text)
        for guild_id in await self._settings.audit_channels():
            await self._audit.post(guild_id, f"💲 Prices now follow WaveSpeed's plus "
                                   f"{self.markup_percent:g}%: {text} credits.")

    def _plausible(self, option: tuple[str, int], usd: float) -> bool:
        """Within half to twice the cost the configured price implies: PRICE_* is what the
        option sells for, so the cost it stands for is that less the markup."""
        selling = self.prices.usd_per_credit * self._configured[option]
        anchor = selling / (1 + self.markup_percent / 100)
        return usd > 0 and anchor / PLAUSIBLE_FACTOR <= usd <= anchor * PLAUSIBLE_FACTOR

    async def _warn(self, lines: list[Margin]) -> None:
        under = [m for m in lines if m.below_cost]
        labels = frozenset(m.label for m in under)
        if labels == self._warned:
            return  # said already (or still fine): once per change, not daily
        self._warned = labels
        if not under:
            return
        detail = "; ".join(f"{m.label} sells for ${m.price_usd:.2f} ({m.credits} credits) "
                           f"and costs ${m.cost_usd:.2f}" for m in under)
        log.warning("prices below WaveSpeed's cost: %s", detail)
        for guild_id in await self._settings.audit_channels():
            await self._audit.post(
                guild_id, f"⚠️ Below cost: {detail}. Every such clip loses money. The "
                "operator should raise the PRICE_* settings (or set PRICE_FOLLOW_WAVESPEED).")

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("price check failed")
            await asyncio.sleep(self.interval)
