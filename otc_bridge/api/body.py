"""Strict request parsing: JSON bodies, typed fields and query parameters.

JSON numbers are parsed as ``Decimal`` (never binary float) and ``NaN``/``Infinity`` are
refused, so money arrives exact (docs/protocol.md §3). Every refusal is an :class:`~otc_bridge.domain.errors.Invalid`
naming the field, raised before anything is written or any node is called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from otc_bridge.domain import money
from otc_bridge.domain.errors import BridgeError, Invalid
from otc_bridge.domain.parsing import ascii_int

_ETH_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_ERG_ADDRESS = re.compile(r"[1-9A-HJ-NP-Za-km-z]{30,120}")  # base58, as Ergo addresses are
_QUOTE_TX = re.compile(r"[A-Za-z0-9:_\-.]{1,200}")


class NonFinite:
    """Stands in for a ``NaN``/``Infinity`` literal, so the field check names the field."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _read_limited() -> bytes:
    """The raw body, refusing (413) one over the limit even without ``Content-Length``.

    Werkzeug enforces ``MAX_CONTENT_LENGTH`` on a declared length, but silently cuts a
    chunked body at the limit; a cut body must never be processed as if whole.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None:
        return request.get_data(cache=True)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit or (len(raw) == limit and request.stream.read(1)):
        raise RequestEntityTooLarge()
    return raw


def require_json_content_type() -> None:
    """Refuse (415) a POST whose body is declared as anything but JSON.

    Accepted: ``application/json`` (any letter case), optionally with ``charset=utf-8``,
    the only encoding JSON has (RFC 8259). A request with neither a ``Content-Type`` nor a
    body passes: routes that take no body (``/admin/reconcile``) need none, and routes that
    do answer ``JSON body required``. A body without a ``Content-Type`` is refused too.
    Error: 415 ``{"error": "Content-Type must be application/json", "field": "Content-Type"}``.
    """
    declared = (request.headers.get("Content-Type") or "").strip() or None
    if declared is None:
        has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if not has_body:
            return
    elif _is_json_type(declared):
        return
    raise BridgeError("Content-Type must be application/json", field="Content-Type", http_status=415)


def _is_json_type(declared: str) -> bool:
    media_type, *params = [part.strip().lower() for part in declared.split(";")]
    if media_type != "application/json":
        return False
    return all(not param or re.fullmatch(r'charset="?utf-?8"?', param) for param in params)


_HASHLOCK = re.compile(r"[0-9a-f]{64}")
#: Deepest JSON nesting a body may have. Our bodies are two levels deep; the parser's own
#: guard is the interpreter's recursion limit, which a library (web3 sets 100,000) can raise
#: far past what a thread's C stack survives, so the depth is bounded before parsing.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _nesting(raw: bytes) -> int:
    """The deepest bracket nesting of ``raw`` outside JSON strings (0 for a scalar)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
    return deepest


def json_object(allowed: Iterable[str]) -> dict[str, Any]:
    """The request body as a dict; unknown top-level fields are refused.

    Errors (400): ``JSON body required`` (missing, empty, not JSON, ``null`` or ``{}``:
    the reference answers both as no body), ``JSON object required`` (JSON but not an
    object), ``unknown field: <name>``. The Content-Type was checked before (415, see
    :func:`require_json_content_type`).
    """
    raw = _read_limited()
    if not raw.strip() or _nesting(raw) > MAX_JSON_DEPTH:
        raise Invalid("JSON body required")
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=NonFinite)
    except (ValueError, RecursionError):
        raise Invalid("JSON body required") from None
    if data is None or data == {}:
        raise Invalid("JSON body required")
    if not isinstance(data, dict):
        raise Invalid("JSON object required")
    for name in data:
        if name not in allowed:
            raise Invalid(f"unknown field: {name}", field=name)
    g.otc_json_body = data  # the request as parsed, for the Idempotency-Key fingerprint (api/idempotency.py)
    return data


def parsed_json() -> dict[str, Any] | None:
    """The body :func:`json_object` accepted in this request, or ``None`` if it read none."""
    return g.get("otc_json_body")


def text(data: dict, name: str, *, required: bool, message: str | None = None,
         max_length: int = 200) -> str | None:
    """A string field, stripped; ``None`` if absent and optional. Non-strings are refused."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Invalid(message or f"{name} required", field=name)
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string", field=name)
    value = value.strip()
    if len(value) > max_length:
        raise Invalid(f"{name} is longer than {max_length} characters", field=name)
    return value


def integer(data: dict, name: str, default: int) -> int:
    """A JSON integer field (booleans, decimals and strings refused); ``default`` if absent."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} must be an integer", field=name)
    return value


def amount(data: dict, decimal_name: str, units_name: str, decimals: int) -> tuple[int, str]:
    """An amount given as a decimal (``amount_rtc``) and/or exact units (``amount_micro_rtc``).

    Returns ``(units, field)`` where ``field`` is the one the client sent (for later range
    errors). Both forms must agree when both are sent. Raises :class:`Invalid` naming the field.
    """
    units = None
    if data.get(units_name) is not None:
        raw = data[units_name]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise Invalid(f"{units_name} must be a positive integer", field=units_name)
        units = raw
    if data.get(decimal_name) is None:
        if units is None:
            raise Invalid(f"{decimal_name} must be a finite decimal number", field=decimal_name)
        return units, units_name
    try:
        parsed = money.to_units(data[decimal_name], field=decimal_name, decimals=decimals)
    except money.MoneyError as exc:
        raise Invalid(exc.message, field=exc.field) from None
    if units is not None and units != parsed:
        raise Invalid(f"{decimal_name} and {units_name} disagree", field=units_name)
    return parsed, decimal_name


def quote_address(data: dict, pair: str, *, required: bool, why: str) -> str:
    """``eth_address``: the party's address on the quote chain, checked for the pair.

    ETH and USDC take ``0x`` + 40 hex; ERG a base58 address. Empty is allowed only when
    not ``required`` (``why`` explains the requirement in the error).
    """
    value = text(data, "eth_address", required=required, message=f"eth_address required: {why}",
                 max_length=120)
    if value is None:
        return ""
    pattern = _ERG_ADDRESS if pair == "RTC/ERG" else _ETH_ADDRESS
    if not pattern.fullmatch(value):
        kind = "a base58 Ergo address" if pair == "RTC/ERG" else "0x followed by 40 hex characters"
        raise Invalid(f"eth_address must be {kind} for {pair}", field="eth_address")
    return value


def htlc_hash(data: dict) -> str | None:
    """``htlc_hash`` (buyer-held mode, docs/protocol.md §12.5): the sha256 of the RTC buyer's
    own preimage, exactly 64 lower-case hex characters, or ``None`` when absent."""
    value = data.get("htlc_hash")
    if value is None:
        return None
    if not isinstance(value, str) or not _HASHLOCK.fullmatch(value):
        raise Invalid("htlc_hash must be 64 lower-case hex characters (sha256 of your 32-byte preimage)",
                      field="htlc_hash")
    return value


def quote_tx(data: dict) -> str:
    """``quote_tx``: the quote-chain transaction reference (required, plain characters)."""
    value = text(data, "quote_tx", required=True, message="quote_tx required")
    if not _QUOTE_TX.fullmatch(value):
        raise Invalid("quote_tx must be 1-200 letters, digits or ':_-.'", field="quote_tx")
    return value


def pair_arg(required_default: str | None = None, *, message: str | None = None) -> str | None:
    """``?pair=``: a supported pair (upper-cased), ``required_default`` if absent; 400 otherwise,
    with ``message`` (default ``Unsupported pair. Supported: [...]``)."""
    raw = request.args.get("pair")
    if raw is None or raw == "":
        return required_default
    return parse_pair(raw, message=message)


def parse_pair(raw: object, *, message: str | None = None) -> str:
    """A supported pair from a string in any letter case; :class:`Invalid` (field ``pair``)
    otherwise. ASCII only: ``str.upper`` maps ``"ſ"`` to ``"S"``, which must not make
    ``"rtc/uſdc"`` a pair."""
    pair = raw.strip().upper() if isinstance(raw, str) and raw.isascii() else ""
    if pair not in money.PAIRS:
        raise Invalid(message or f"Unsupported pair. Supported: {list(money.PAIRS)}", field="pair")
    return pair


def page_args(default_limit: int = 50, max_limit: int = 200) -> tuple[int, int]:
    """``?limit=&offset=`` with the reference's error strings; limit capped at ``max_limit``."""
    limit = int_arg("limit", default_limit, "limit_must_be_integer")
    if limit < 1:
        raise Invalid("limit_must_be_positive", field="limit")
    offset = int_arg("offset", 0, "offset_must_be_integer")
    if offset < 0:
        raise Invalid("offset_must_be_non_negative", field="offset")
    return min(limit, max_limit), offset


def int_arg(name: str, default: int, error: str) -> int:
    """``?name=`` as an integer of at most 18 ASCII digits (SQLite's int64), optionally
    negative and space-padded; ``default`` if absent; 400 with ``error`` otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_int(raw.strip(" \t\r\n"), signed=True)
    if value is None:
        raise Invalid(error, field=name)
    return value
