"""Fixed moments the period and server-rule tests count from."""

from __future__ import annotations

MONDAY = 1_704_067_200     # 2024-01-01 00:00 UTC, a Monday
NOW = MONDAY + 2 * 86_400 + 13 * 3600 + 17  # Wednesday 13:00:17
DAY_START, NEXT_DAY = MONDAY + 2 * 86_400, MONDAY + 3 * 86_400
