"""Money on the wire: integer kopecks <-> two-decimal strings, nothing else gets through."""

from __future__ import annotations

import pytest

from payouts.money import MoneyError, format_amount, parse_amount


@pytest.mark.parametrize(
    ("kopecks", "wire"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (5, "0.05"),
        (99, "0.99"),
        (100, "1.00"),
        (2500, "25.00"),
        (123456789012, "1234567890.12"),
    ],
)
def test_format_amount(kopecks: int, wire: str) -> None:
    assert format_amount(kopecks) == wire
    assert parse_amount(wire) == kopecks


@pytest.mark.parametrize("bad", [True, False, 1.0, 25.5, "25", None])
def test_format_amount_refuses_non_integers(bad: object) -> None:
    with pytest.raises(MoneyError):
        format_amount(bad)  # type: ignore[arg-type]


def test_format_amount_refuses_negative() -> None:
    with pytest.raises(MoneyError):
        format_amount(-1)


@pytest.mark.parametrize(
    ("wire", "kopecks"),
    [
        ("25", 2500),
        ("25.5", 2550),
        ("0.01", 1),
        (" 25.00 ", 2500),
        ("0", 0),
        ("999999999999.99", 99999999999999),
    ],
)
def test_parse_amount(wire: str, kopecks: int) -> None:
    assert parse_amount(wire) == kopecks


@pytest.mark.parametrize(
    "bad",
    [
        "1e3",
        "-1",
        "-1.00",
        "+1.00",
        "1.234",
        "1,00",
        "",
        " ",
        "01.00",
        "1.",
        ".5",
        "NaN",
        "Infinity",
        "25.00 UAH",
        "١٢",
    ],
)
def test_parse_amount_refuses(bad: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(bad)


def test_round_trip_over_a_range() -> None:
    for kopecks in [*range(0, 1001), 10**9, 10**12 - 1]:
        assert parse_amount(format_amount(kopecks)) == kopecks
