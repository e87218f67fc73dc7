"""What a clip costs in credits. 1 credit = US$0.01 by default.

The table is one shared object: with PRICE_FOLLOW_WAVESPEED the cost watch
(discord_layer/cost_watch.py) replaces its prices in place (`set_credits`) when WaveSpeed's
change, and every reader sees the new ones at once. A job keeps the price it was reserved
at; a Confirm asked at an older price says so (JobStarter.accept)."""

from __future__ import annotations

from dataclasses import dataclass

from wavespeed.models import DURATIONS, resolution_of

# The options a price is set for: (resolution, seconds), in the table's order.
OPTIONS: tuple[tuple[str, int], ...] = (("720p", 5), ("720p", 10), ("1080p", 5), ("1080p", 10))
_FIELDS = {("720p", 5): "p720_5s", ("720p", 10): "p720_10s", ("1080p", 5): "p1080_5s",
           ("1080p", 10): "p1080_10s"}


@dataclass  # mutable and shared (set_credits): equal by value, not hashable
class PriceTable:
    p720_5s: int = 100
    p720_10s: int = 150
    p1080_5s: int = 150
    p1080_10s: int = 225
    usd_per_credit: float = 0.01

    def __post_init__(self) -> None:
        for name in _FIELDS.values():
            _check(name, getattr(self, name))

    def credits_for(self, size: str, duration: int) -> int:
        if duration not in DURATIONS:
            raise ValueError(f"duration must be 5 or 10 seconds, not {duration}")
        return self.credits_of(resolution_of(size), duration)

    def credits_of(self, resolution: str, duration: int) -> int:
        value = getattr(self, _FIELDS[(resolution, duration)])
        assert isinstance(value, int)
        return value

    def set_credits(self, prices: dict[tuple[str, int], int]) -> None:
        """Replace some prices, all checked before any is changed."""
        for option, credits in prices.items():
            _check(_FIELDS[option], credits)
        for option, credits in prices.items():
            setattr(self, _FIELDS[option], credits)

    def usd(self, credits: int) -> float:
        return round(credits * self.usd_per_credit, 2)


def _check(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"price {name} must be a positive whole number of credits")
