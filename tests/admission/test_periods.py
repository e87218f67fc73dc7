"""The time windows the server rules count in: UTC days, weeks from Monday."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from admission.periods import day_window, period_start, period_window
from tests.admission.moments import DAY_START, MONDAY, NEXT_DAY, NOW


def test_day_and_week_windows_are_utc() -> None:
    assert day_window(NOW) == (DAY_START, NEXT_DAY)
    assert day_window(DAY_START) == (DAY_START, NEXT_DAY)          # midnight opens a day
    assert day_window(NEXT_DAY - 0.001) == (DAY_START, NEXT_DAY)
    assert period_start(NOW, "day") == DAY_START
    assert period_window(NOW, "week") == (MONDAY, MONDAY + 7 * 86_400)
    assert period_start(MONDAY, "week") == MONDAY
    assert period_start(MONDAY - 1, "week") == MONDAY - 7 * 86_400  # Sunday 23:59:59
    assert period_start(MONDAY + 7 * 86_400 - 1, "week") == MONDAY
    assert datetime.fromtimestamp(period_start(NOW, "week"), tz=UTC).weekday() == 0
    with pytest.raises(ValueError, match="period"):
        period_window(NOW, "month")  # type: ignore[arg-type]
