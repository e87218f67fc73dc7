"""Dollar amounts as whole cents: what credits cost, what a moderator typed, how shown."""

from __future__ import annotations

import pytest

from money.usd import PolicyError, credits_to_cents, format_usd, usd_to_cents


def test_money_conversions() -> None:
    assert credits_to_cents(150, 0.01) == 150
    assert credits_to_cents(100, 0.1) == 1000
    assert credits_to_cents(1, 0.015) == 2          # rounded up: a cap errs toward the payer
    assert credits_to_cents(0, 0.01) == 0
    assert usd_to_cents(20) == 2000
    assert usd_to_cents(12.5) == 1250
    assert usd_to_cents("$0.105") == 11
    assert usd_to_cents(" 7 ") == 700
    for bad in ("abc", -1, "nan", "inf", ""):
        with pytest.raises(PolicyError):
            usd_to_cents(bad)
    assert format_usd(2000) == "$20.00"
    assert format_usd(5) == "$0.05"
    assert format_usd(123_456_78) == "$123,456.78"
