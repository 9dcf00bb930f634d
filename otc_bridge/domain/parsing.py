"""ASCII-only parsing of numbers that arrive as text (query strings, headers, settings).

``str.isdigit``, ``str.isdecimal``, ``\\d`` in a ``str`` pattern, ``int()`` and ``float()``
all accept digits of other scripts: ``int("١٠")`` is 10, ``"²".isdigit()`` is true but
``int("²")`` raises. A check with one and a conversion with the other is how
``?last_event_id=%C2%B2`` became a 500. Every number the bridge reads from text goes through
these two functions instead, which accept ``[0-9]`` only, no sign unless asked for, no
whitespace, no ``_`` separators, no exponent (docs/protocol.md §8: strict input).
"""

from __future__ import annotations

import re
from decimal import Decimal

_ASCII_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")


def ascii_int(text: object, *, signed: bool = False, max_digits: int = 18) -> int | None:
    """The integer ``text`` spells in ASCII digits, or ``None`` if it is anything else.

    ``signed`` allows one leading ``-``. ``max_digits`` (default 18) bounds the length, so
    the value always fits SQLite's signed 64-bit integers. Non-strings give ``None``.
    """
    if not isinstance(text, str):
        return None
    digits = text[1:] if signed and text.startswith("-") else text
    if not 1 <= len(digits) <= max_digits or not re.fullmatch(r"[0-9]+", digits):
        return None
    return int(text)


def ascii_decimal(text: object, *, max_chars: int = 40) -> Decimal | None:
    """A plain non-negative decimal (``12``, ``0.5``) in ASCII digits as a ``Decimal``, or
    ``None`` (signs, exponents, ``nan``/``inf``, whitespace and other scripts' digits included)."""
    if not isinstance(text, str) or len(text) > max_chars or not _ASCII_DECIMAL.fullmatch(text):
        return None
    return Decimal(text)
