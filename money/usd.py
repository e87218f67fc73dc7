"""Amounts in US dollars, kept as whole cents: what credits cost, what a moderator typed,
and how an amount is shown."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation


class PolicyError(ValueError):
    """A setting a moderator tried that cannot work; the message says why, for them."""


def credits_to_cents(credits: int, usd_per_credit: float) -> int:
    """US cents that `credits` cost, rounded up (a cap errs on the side of the payer)."""
    cents = Decimal(credits) * Decimal(str(usd_per_credit)) * 100
    return int(cents.to_integral_value(rounding=ROUND_CEILING))


def usd_to_cents(usd: float | str) -> int:
    """A dollar amount a moderator typed (e.g. 20 or "12.50"), to whole cents."""
    try:
        value = Decimal(str(usd).strip().lstrip("$"))
    except InvalidOperation:
        raise PolicyError(f"{usd!r} is not an amount in US dollars.") from None
    if not value.is_finite() or value < 0:
        raise PolicyError("A dollar amount must be 0 or more.")
    return int((value * 100).to_integral_value(rounding=ROUND_HALF_UP))


def format_usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{part:02d}"
