"""The time windows the server rules count in: days start at 00:00 UTC, weeks on Monday
00:00 UTC. Daily limits and the spend cap count per day; an allowance per day or week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.guild_settings import PERIODS, Period


def period_window(now: float, period: Period) -> tuple[int, int]:
    """(start, next start) in unix seconds of the UTC day, or the week from Monday 00:00
    UTC, that contains `now`."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    moment = datetime.fromtimestamp(now, tz=UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    length = timedelta(days=1)
    if period == "week":
        start -= timedelta(days=start.weekday())
        length = timedelta(days=7)
    return int(start.timestamp()), int((start + length).timestamp())


def day_window(now: float) -> tuple[int, int]:
    """(start, next start) of the UTC day containing `now`, in unix seconds."""
    return period_window(now, "day")


def period_start(now: float, period: Period) -> int:
    """Unix seconds at which the UTC day (or Monday-based week) containing `now` began."""
    return period_window(now, period)[0]
