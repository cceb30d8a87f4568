"""Money is integer kopecks inside the service and a two-decimal string on the wire; never float."""

from __future__ import annotations

import re
from decimal import Decimal

KOPECKS_PER_HRYVNIA = 100
_AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$")


class MoneyError(ValueError):
    """An amount that is not a valid non-negative sum of money."""


def kopecks_to_decimal(kopecks: int) -> Decimal:
    """Exact hryvnias for integer kopecks: 2500 -> Decimal('25.00')."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise MoneyError(f"amount must be integer kopecks, got {type(kopecks).__name__}")
    if kopecks < 0:
        raise MoneyError("amount must not be negative")
    return (Decimal(kopecks) / KOPECKS_PER_HRYVNIA).quantize(Decimal("0.01"))


def format_amount(kopecks: int) -> str:
    """The wire form Portmone expects: 2500 -> '25.00', 5 -> '0.05'."""
    return f"{kopecks_to_decimal(kopecks)}"


def parse_amount(text: str) -> int:
    """Integer kopecks from a wire amount such as '25.00' or '25'; refuses anything else.

    No exponent, sign, comma or more than two decimals is accepted, so a hostile or sloppy
    amount never turns into a different sum.
    """
    cleaned = text.strip()
    if not _AMOUNT_RE.match(cleaned):
        raise MoneyError(f"not an amount: {cleaned[:32]!r}")
    value = Decimal(cleaned) * KOPECKS_PER_HRYVNIA
    return int(value)
