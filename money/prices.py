"""What a clip costs in credits. 1 credit = US$0.01 by default."""

from __future__ import annotations

from dataclasses import dataclass

from wavespeed.models import DURATIONS, resolution_of


@dataclass(frozen=True)
class PriceTable:
    p720_5s: int = 100
    p720_10s: int = 150
    p1080_5s: int = 150
    p1080_10s: int = 225
    usd_per_credit: float = 0.01

    def __post_init__(self) -> None:
        for name in ("p720_5s", "p720_10s", "p1080_5s", "p1080_10s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"price {name} must be a positive whole number of credits")

    def credits_for(self, size: str, duration: int) -> int:
        if duration not in DURATIONS:
            raise ValueError(f"duration must be 5 or 10 seconds, not {duration}")
        if resolution_of(size) == "1080p":
            return self.p1080_5s if duration == 5 else self.p1080_10s
        return self.p720_5s if duration == 5 else self.p720_10s

    def usd(self, credits: int) -> float:
        return round(credits * self.usd_per_credit, 2)
