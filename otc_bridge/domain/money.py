"""Integer money: parsing wire amounts into exact units and computing totals.

Units: RTC amounts are micro-RTC (1 RTC = 10**6), prices are nano-quote per RTC
(10**9 per whole ETH/USDC/ERG, for every pair), totals are nano-quote. Nothing here
uses binary floating point: wire numbers arrive as ``Decimal`` (the API parses JSON with
``parse_float=Decimal``) or as decimal strings, and over-precise values are refused,
never rounded (docs/protocol.md §3, deliberate difference from the reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext

MICRO_RTC_PER_RTC = 10**6
NANO_PER_QUOTE = 10**9
RTC_DECIMALS = 6
PRICE_DECIMALS = 9

#: Smallest order: 0.1 RTC (docs/protocol.md §3).
MIN_ORDER_MICRO_RTC = 100_000
#: Largest order: the node's 10,000 RTC reward cap (docs/escrow-node.md §1.2).
MAX_ORDER_MICRO_RTC = 10_000 * MICRO_RTC_PER_RTC
#: Largest price: the reference's cap (1000 quote per RTC); totals stay far inside int64.
MAX_PRICE_NANO_QUOTE = 1000 * NANO_PER_QUOTE

#: Enough digits for any value ``to_units`` accepts (adjusted exponent <= 1000) to stay exact.
_EXACT = Context(prec=2100, Emax=10**6, Emin=-(10**6))
_PLAIN_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class QuoteAsset:
    """A quote asset: its symbol and the decimals of its smallest on-chain unit."""

    symbol: str
    decimals: int


#: Supported pairs. The quote asset's own decimals matter only for the base-unit total
#: the buyer locks on its chain (wei, USDC's 6 dp, ERG's nanoERG).
PAIRS: dict[str, QuoteAsset] = {
    "RTC/ETH": QuoteAsset("ETH", 18),
    "RTC/USDC": QuoteAsset("USDC", 6),
    "RTC/ERG": QuoteAsset("ERG", 9),
}


class MoneyError(ValueError):
    """A wire amount is malformed or out of range.

    ``field`` names the request field; ``message`` is the full client-facing sentence.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def to_units(value: object, *, field: str, decimals: int) -> int:
    """Parse a wire amount into integer units of ``10**-decimals``.

    ``value`` may be an ``int``, a ``Decimal`` (JSON number) or a plain decimal string
    (``"2.01"``). Booleans, floats, exponents in strings, negatives, non-finite values and
    anything with more than ``decimals`` significant decimals raise :class:`MoneyError`.
    Trailing zeros are fine: ``"2.0100000"`` is exactly 2.01.
    """
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise MoneyError(field, f"{field} must be a finite decimal number")
    if isinstance(value, str):
        text = value.strip()
        if not _PLAIN_DECIMAL.fullmatch(text):
            raise MoneyError(field, f"{field} must be a finite decimal number (plain decimal string like '12.5')")
        value = Decimal(text)
    number = Decimal(value)
    if not number.is_finite():
        raise MoneyError(field, f"{field} must be a finite decimal number")
    if number < 0:
        raise MoneyError(field, f"{field} must not be negative")
    # Huge exponents (1e1000000) would overflow decimal arithmetic; anything past 1000
    # digits is out of every range here, and smaller giants fall to the callers' range checks.
    if number and number.adjusted() > 1000:
        raise MoneyError(field, f"{field} is out of range")
    try:
        # Exact context: the default 28-digit precision would round long inputs silently.
        with localcontext(_EXACT):
            scaled = number.scaleb(decimals)
        units = int(scaled)
    except (ArithmeticError, ValueError):
        raise MoneyError(field, f"{field} is out of range") from None
    if scaled != units:
        raise MoneyError(field, f"{field} has more than {decimals} decimal places (rejected, never rounded)")
    return units


def format_units(units: int, decimals: int) -> str:
    """Exact plain decimal string of ``units`` (``2010000, 6`` -> ``"2.01"``, never
    scientific notation); no float involved."""
    with localcontext(_EXACT):
        text = f"{Decimal(units).scaleb(-decimals):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def total_quote_nano(amount_micro_rtc: int, price_nano_quote: int) -> int:
    """Total in nano-quote for ``amount`` micro-RTC at ``price`` nano-quote per RTC.

    Rounded **up** to the next nano-quote: the seller is never paid less than the agreed
    price. Computed only from the stored integers (docs/protocol.md §3).
    """
    return -(-(amount_micro_rtc * price_nano_quote) // MICRO_RTC_PER_RTC)


def total_quote_base_units(amount_micro_rtc: int, price_nano_quote: int, quote_decimals: int) -> int:
    """Total in the quote asset's smallest unit (wei, USDC 6 dp, nanoERG), rounded up.

    Computed from the exact product, not from the rounded nano total, so an asset with
    fewer decimals than 9 rounds once. Returned as an ``int``; the wire carries it as an
    integer string because wei totals exceed 64 bits.
    """
    exact_scale = RTC_DECIMALS + PRICE_DECIMALS  # the product is in 10**-15 quote
    numerator = amount_micro_rtc * price_nano_quote * 10**quote_decimals
    return -(-numerator // 10**exact_scale)


def check_order_amount(amount_micro_rtc: int, field: str) -> None:
    """Raise :class:`MoneyError` (the reference's wording) unless 0.1 <= amount <= 10,000 RTC."""
    if amount_micro_rtc < MIN_ORDER_MICRO_RTC:
        raise MoneyError(field, "Minimum order: 0.1 RTC")
    if amount_micro_rtc > MAX_ORDER_MICRO_RTC:
        raise MoneyError(field, "Maximum order: 10000 RTC (the escrow node's reward cap)")


def check_price(price_nano_quote: int, field: str) -> None:
    """Raise :class:`MoneyError` (the reference's wording) unless 0 < price <= 1000."""
    if price_nano_quote <= 0:
        raise MoneyError(field, "price_per_rtc must be positive")
    if price_nano_quote > MAX_PRICE_NANO_QUOTE:
        raise MoneyError(field, "price_per_rtc too high (max 1000)")
