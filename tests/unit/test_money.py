"""Integer money (docs/protocol.md §3): parsing wire amounts exactly, formatting, totals and bounds.

Over-precise values are refused, never rounded; totals round up so the seller is never paid
less than the agreed price. Random cases use a seeded ``random.Random`` so failures replay.
"""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from otc_bridge.domain import money
from otc_bridge.domain.money import (
    MoneyError,
    check_order_amount,
    check_price,
    format_units,
    to_units,
    total_quote_base_units,
    total_quote_nano,
)

# --- to_units ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "decimals", "units"), [
    (0, 6, 0),
    (1, 6, 1_000_000),
    (10_000, 6, 10_000_000_000),
    (Decimal("2.01"), 6, 2_010_000),
    (Decimal("0.000001"), 6, 1),
    (Decimal("1E+2"), 6, 100_000_000),
    (Decimal("-0"), 6, 0),
    ("2.01", 6, 2_010_000),
    ("2.0100000", 6, 2_010_000),  # trailing zeros beyond the precision are fine
    ("0.000000001", 9, 1),
    ("1000.000000000", 9, 1_000_000_000_000),
    ("  12.5  ", 6, 12_500_000),  # surrounding whitespace is stripped
    ("007", 6, 7_000_000),
    ("5", 0, 5),
    (Decimal("123456789.123456789"), 9, 123_456_789_123_456_789),
])
def test_to_units_accepts_exact_values(value, decimals, units):
    assert to_units(value, field="amount_rtc", decimals=decimals) == units
    assert isinstance(to_units(value, field="amount_rtc", decimals=decimals), int)


@pytest.mark.parametrize(("value", "decimals"), [
    ("2.0100001", 6),
    (Decimal("0.0000001"), 6),
    ("0.0000000001", 9),
    (Decimal("1.5"), 0),
    ("1.5", 0),
])
def test_over_precision_is_rejected_naming_decimals_and_field(value, decimals):
    with pytest.raises(MoneyError) as info:
        to_units(value, field="price_per_rtc", decimals=decimals)
    assert info.value.field == "price_per_rtc"
    assert f"more than {decimals} decimal places" in info.value.message
    assert info.value.message.startswith("price_per_rtc ")
    assert str(info.value) == info.value.message


@pytest.mark.parametrize("value", [
    True, False, 1.5, 2.0, None, [1], {"a": 1}, (1,), b"1", object(),
])
def test_non_number_types_are_rejected(value):
    with pytest.raises(MoneyError, match="amount_rtc must be a finite decimal number") as info:
        to_units(value, field="amount_rtc", decimals=6)
    assert info.value.field == "amount_rtc"


@pytest.mark.parametrize("value", [
    "", " ", "abc", "1e5", "1E5", "-1", "+1", "1.", ".5", "1,5", "0x10", "1.2.3", "NaN",
    "Infinity", "inf", "1 000", "½", "1.5e-3",
])
def test_malformed_strings_are_rejected(value):
    with pytest.raises(MoneyError, match="plain decimal string") as info:
        to_units(value, field="amount_rtc", decimals=6)
    assert info.value.field == "amount_rtc"


@pytest.mark.parametrize("value", [
    Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"),
])
def test_non_finite_decimals_are_rejected(value):
    with pytest.raises(MoneyError, match="finite decimal number"):
        to_units(value, field="amount_rtc", decimals=6)


@pytest.mark.parametrize("value", [-1, Decimal("-0.5"), Decimal("-0.000001"), -(10**30)])
def test_negatives_are_rejected(value):
    with pytest.raises(MoneyError, match="amount_rtc must not be negative"):
        to_units(value, field="amount_rtc", decimals=6)


@pytest.mark.parametrize(("value", "units"), [
    (10**20, 10**26),
    ("99999999999999999999", 99999999999999999999 * 10**6),
    (Decimal("1E+30"), 10**36),
])
def test_huge_values_are_exact(value, units):
    assert to_units(value, field="amount_rtc", decimals=6) == units


def test_astronomic_exponent_is_a_money_error():
    with pytest.raises(MoneyError, match="out of range"):
        to_units(Decimal("1E+999999"), field="amount_rtc", decimals=6)


@pytest.mark.parametrize("value", ["0.1000000000000000000000000000001", Decimal("0.1000000000000000000000000000001")])
def test_over_precision_beyond_context_precision_is_rejected(value):
    with pytest.raises(MoneyError, match="more than 6 decimal places"):
        to_units(value, field="amount_rtc", decimals=6)


def test_huge_integer_is_not_rounded():
    assert to_units(10**30 + 1, field="amount_rtc", decimals=6) == (10**30 + 1) * 10**6


# --- format_units --------------------------------------------------------------------------


@pytest.mark.parametrize(("units", "decimals", "text"), [
    (0, 6, "0"),
    (1, 6, "0.000001"),
    (2_010_000, 6, "2.01"),
    (1_000_000, 6, "1"),
    (10_000_000_000, 6, "10000"),
    (12_345_678, 6, "12.345678"),
    (50_000_000, 9, "0.05"),
    (1_000_000_000_000, 9, "1000"),
    (1_000, 9, "0.000001"),
    (7, 0, "7"),
    (-2_500_000, 6, "-2.5"),
])
def test_format_units(units, decimals, text):
    assert format_units(units, decimals) == text


@pytest.mark.parametrize(("units", "text"), [(1, "0.000000001"), (10, "0.00000001"), (500, "0.0000005")])
def test_format_units_small_nano_amounts_are_plain(units, text):
    assert format_units(units, 9) == text


@pytest.mark.parametrize("decimals", [0, 6, 9, 18])
def test_round_trip_random_units(decimals):
    # Units of at least 10**(decimals - 5) keep clear of the scientific-notation bug above.
    rng = random.Random(20240601 + decimals)
    low = 10 ** max(0, decimals - 5)
    for _ in range(500):
        units = rng.randrange(low, 10**18)
        text = format_units(units, decimals)
        assert "E" not in text and "e" not in text
        assert to_units(text, field="x", decimals=decimals) == units
        assert to_units(Decimal(text), field="x", decimals=decimals) == units


def test_round_trip_random_rtc_amounts_in_order_range():
    rng = random.Random(7)
    for _ in range(1000):
        units = rng.randrange(money.MIN_ORDER_MICRO_RTC, money.MAX_ORDER_MICRO_RTC + 1)
        assert to_units(format_units(units, 6), field="amount_rtc", decimals=6) == units


def test_format_units_huge_value():
    assert format_units(10**28 + 1, 6) == "10000000000000000000000.000001"


# --- totals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "price", "total"), [
    (1_000_000, 50_000_000, 50_000_000),         # 1 RTC at 0.05 -> 0.05
    (10_000_000, 50_000_000, 500_000_000),       # 10 RTC at 0.05 -> 0.5
    (1, 1, 1),                                   # 1e-15 quote rounds UP to 1 nano
    (1_000_000, 1, 1),                           # 1 RTC at 1 nano
    (999_999, 1, 1),                             # 0.999999e-9 rounds up
    (1_000_001, 1, 2),                           # 1.000001e-9 rounds up
    (100_000, 3, 1),                             # 0.3 nano -> 1
    (3_333_333, 3, 10),                          # 9.999999 -> 10
    (2_010_000, 123_456_789, 248_148_146),       # 248148145.89 -> 248148146
    (money.MAX_ORDER_MICRO_RTC, money.MAX_PRICE_NANO_QUOTE, 10_000 * 1000 * 10**9),
])
def test_total_quote_nano_rounds_up(amount, price, total):
    assert total_quote_nano(amount, price) == total


def test_total_quote_nano_is_exact_ceiling_for_random_cases():
    rng = random.Random(11)
    for _ in range(2000):
        amount = rng.randrange(1, money.MAX_ORDER_MICRO_RTC + 1)
        price = rng.randrange(1, money.MAX_PRICE_NANO_QUOTE + 1)
        exact = Decimal(amount) * Decimal(price) / Decimal(10**6)
        total = total_quote_nano(amount, price)
        assert total - 1 < exact <= total


@pytest.mark.parametrize(("pair", "amount", "price", "base_units"), [
    ("RTC/USDC", 1_000_000, 1, 1),                      # 1e-9 USDC -> 1 base unit (rounded up)
    ("RTC/USDC", 10_000_000, 50_000_000, 500_000),      # 10 RTC at 0.05 USDC
    ("RTC/USDC", 1_000_000, 1_500, 2),                  # 1.5 base units round up to 2
    ("RTC/ETH", 1_000_000, 1, 10**9),                   # 1e-9 ETH = 1 gwei exactly
    ("RTC/ETH", 1, 1, 1_000),                           # 1e-15 ETH = 1000 wei exactly
    ("RTC/ETH", 2_010_000, 123_456_789, 248_148_145_890_000_000),
    ("RTC/ETH", money.MAX_ORDER_MICRO_RTC, money.MAX_PRICE_NANO_QUOTE, 10_000_000 * 10**18),
    ("RTC/ERG", 2_010_000, 123_456_789, 248_148_146),   # nanoERG = nano-quote, rounded up
    ("RTC/ERG", 10_000_000, 50_000_000, 500_000_000),
])
def test_total_quote_base_units(pair, amount, price, base_units):
    decimals = money.PAIRS[pair].decimals
    assert total_quote_base_units(amount, price, decimals) == base_units


def test_base_units_match_nano_total_when_decimals_are_nine():
    rng = random.Random(3)
    for _ in range(1000):
        amount = rng.randrange(1, money.MAX_ORDER_MICRO_RTC + 1)
        price = rng.randrange(1, money.MAX_PRICE_NANO_QUOTE + 1)
        assert total_quote_base_units(amount, price, 9) == total_quote_nano(amount, price)
        # wei is exact: the product in 1e-15 quote times 1000
        assert total_quote_base_units(amount, price, 18) == amount * price * 1000


def test_pairs_decimals():
    assert {p: a.decimals for p, a in money.PAIRS.items()} == {"RTC/ETH": 18, "RTC/USDC": 6, "RTC/ERG": 9}


# --- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "ok"), [
    (99_999, False), (100_000, True), (1_000_000, True),
    (10_000_000_000, True), (10_000_000_001, False), (0, False), (-1, False),
])
def test_check_order_amount_bounds(amount, ok):
    if ok:
        check_order_amount(amount, "amount_rtc")
        return
    with pytest.raises(MoneyError) as info:
        check_order_amount(amount, "amount_rtc")
    assert info.value.field == "amount_rtc"
    assert ("Minimum order: 0.1 RTC" if amount < 100_000 else "Maximum order: 10000 RTC") in info.value.message


@pytest.mark.parametrize(("price", "ok"), [
    (0, False), (-1, False), (1, True), (50_000_000, True),
    (1000 * 10**9, True), (1000 * 10**9 + 1, False),
])
def test_check_price_bounds(price, ok):
    if ok:
        check_price(price, "price_per_rtc")
        return
    with pytest.raises(MoneyError) as info:
        check_price(price, "price_per_rtc")
    assert info.value.field == "price_per_rtc"
    expected = "price_per_rtc must be positive" if price <= 0 else "price_per_rtc too high (max 1000)"
    assert info.value.message == expected
