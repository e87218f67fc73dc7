"""What each clip option costs the operator at WaveSpeed, next to what it sells for.

Pure arithmetic over quotes (USD per task, from WaveSpeed's pricing endpoint) and the price
table; discord_layer/cost_watch.py fetches the quotes and acts on the result. Money is
Decimal here: 1.5 x 1.2 / 0.01 must be 180 credits, not 181."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from money.prices import OPTIONS, PriceTable
from wavespeed.models import SIZES, resolution_of


def quote_inputs() -> list[tuple[tuple[str, int], dict[str, object]]]:
    """(size, seconds) and the pricing endpoint's `inputs` for it, for every size and
    duration: the price may differ between sizes of one resolution, so each is asked and
    the dearest counts."""
    return [((size, duration), {"videos": ["https://example.com/reference.mp4"],
                                "prompt": "price check", "size": size, "duration": duration})
            for size in SIZES for duration in (5, 10)]


def worst_costs(quotes: dict[tuple[str, int], float]) -> dict[tuple[str, int], float]:
    """Per (resolution, seconds), the dearest of its sizes' quotes; keyed (size, seconds)."""
    worst: dict[tuple[str, int], float] = {}
    for (size, duration), usd in quotes.items():
        option = (resolution_of(size), duration)
        worst[option] = max(usd, worst.get(option, 0.0))
    return worst


@dataclass(frozen=True)
class Margin:
    resolution: str
    duration: int
    credits: int
    price_usd: Decimal       # what the clip sells for
    cost_usd: Decimal        # what WaveSpeed charges the operator for it

    @property
    def margin_usd(self) -> Decimal:
        return self.price_usd - self.cost_usd

    @property
    def percent(self) -> float | None:
        """Margin as a share of the cost; None for a free task."""
        return None if self.cost_usd == 0 else float(self.margin_usd / self.cost_usd * 100)

    @property
    def below_cost(self) -> bool:
        return self.price_usd < self.cost_usd

    @property
    def label(self) -> str:
        return f"{self.resolution} {self.duration} s"


def margins(prices: PriceTable, costs: dict[tuple[str, int], float]) -> list[Margin]:
    """One line per option WaveSpeed quoted, in the table's order."""
    per_credit = Decimal(str(prices.usd_per_credit))
    return [Margin(resolution, duration, prices.credits_of(resolution, duration),
                   prices.credits_of(resolution, duration) * per_credit,
                   Decimal(str(costs[(resolution, duration)])))
            for resolution, duration in OPTIONS if (resolution, duration) in costs]


def followed_prices(prices: PriceTable, costs: dict[tuple[str, int], float],
                    markup_percent: float) -> dict[tuple[str, int], int]:
    """Credits per option that sell at WaveSpeed's cost plus the markup, rounded up to a
    whole credit (never below cost), and at least 1."""
    per_credit = Decimal(str(prices.usd_per_credit))
    factor = 1 + Decimal(str(markup_percent)) / 100
    return {option: max(1, int((Decimal(str(usd)) * factor / per_credit).to_integral_value(
                rounding=ROUND_CEILING)))
            for option, usd in costs.items()}
