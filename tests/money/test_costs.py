"""Margins and followed prices, from WaveSpeed's quotes and the price table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from money.costs import followed_prices, margins, quote_inputs, worst_costs
from money.prices import PriceTable

CONTRACT = {("720p", 5): 1.00, ("720p", 10): 1.50, ("1080p", 5): 1.50, ("1080p", 10): 2.25}


def test_every_size_and_duration_is_asked_and_the_dearest_size_counts() -> None:
    asked = {(i["size"], i["duration"]) for _, i in quote_inputs()}
    assert len(asked) == 8 and all(key == (i["size"], i["duration"])
                                   for key, i in quote_inputs())
    quotes = {key: 1.0 for key, _ in quote_inputs()}
    quotes[("720*1280", 5)] = 1.10  # portrait dearer than landscape
    assert worst_costs(quotes)[("720p", 5)] == 1.10
    assert worst_costs(quotes)[("1080p", 10)] == 1.0


def test_the_default_prices_sell_at_cost_and_a_cheap_one_is_below() -> None:
    lines = margins(PriceTable(), CONTRACT)
    assert [m.label for m in lines] == ["720p 5 s", "720p 10 s", "1080p 5 s", "1080p 10 s"]
    assert all(m.margin_usd == 0 and not m.below_cost for m in lines)
    cheap = margins(PriceTable(p1080_10s=200), CONTRACT)[3]
    assert cheap.below_cost and cheap.margin_usd == Decimal("-0.25")
    assert cheap.percent == pytest.approx(-11.11, abs=0.01)


def test_followed_prices_round_up_in_decimal_not_binary() -> None:
    # 1.5 x 1.2 / 0.01 is 180.00000000000003 in floats; it must be 180 credits, not 181.
    assert followed_prices(PriceTable(), CONTRACT, 20) == {
        ("720p", 5): 120, ("720p", 10): 180, ("1080p", 5): 180, ("1080p", 10): 270}
    # Never below cost: a fraction of a credit rounds up.
    assert followed_prices(PriceTable(), {("720p", 5): 1.001}, 0) == {("720p", 5): 101}
    assert followed_prices(PriceTable(usd_per_credit=0.05), {("720p", 5): 1.0}, 0) == {
        ("720p", 5): 20}


def test_set_credits_checks_every_price_before_changing_any() -> None:
    table = PriceTable()
    with pytest.raises(ValueError, match="positive"):
        table.set_credits({("720p", 5): 130, ("1080p", 10): 0})
    assert table.credits_for("1280*720", 5) == 100
    table.set_credits({("720p", 5): 130})
    assert table.credits_for("720*1280", 5) == 130 and table.credits_of("720p", 5) == 130
