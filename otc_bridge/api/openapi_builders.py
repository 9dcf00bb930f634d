"""The building blocks of the OpenAPI document (:mod:`otc_bridge.api.openapi`): small JSON
Schema builders, the enumerations every part of it shares, and the order view's properties
that the order and every POST answer are made of.

The builders keep the document's tables at one line per key: :func:`string`, :func:`integer`,
:func:`number` and :func:`boolean` with an optional description and keywords, :func:`nullable`
(the schema or ``null``), :func:`array`, :func:`obj` (closed objects: ``additionalProperties:
false`` unless told, so a leaked internal field fails the tests) and :func:`ref` to a
component. The enumerations are the code's own: statuses (docs/protocol.md §4), pairs, sides.
"""

from __future__ import annotations

from typing import Any

from otc_bridge.domain import money
from otc_bridge.domain.status import Status

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "string", **kw, **({"description": description} if description else {})}


def integer(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "integer", **kw, **({"description": description} if description else {})}


def number(description: str | None = None) -> Schema:
    return {"type": "number", **({"description": description} if description else {})}


def boolean(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "boolean", **kw, **({"description": description} if description else {})}


def nullable(schema: Schema) -> Schema:
    """``schema`` or JSON ``null``."""
    if "type" in schema and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"oneOf": [schema, {"type": "null"}]}


def array(items: Schema, description: str | None = None) -> Schema:
    return {"type": "array", "items": items, **({"description": description} if description else {})}


def obj(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), extra: bool | Schema = False,
        description: str | None = None) -> Schema:
    """An object with ``properties``, all required except ``optional``; ``extra`` says what other
    keys may appear (``False``: none)."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": [name for name in properties if name not in optional],
                      "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


TRUE = {"const": True}
HEX64 = r"^[0-9a-fA-F]{64}$"
WALLET_PATTERN = r"^RTC[0-9a-fA-F]{40}$"
STATUSES = [str(s) for s in Status]
PAIRS = list(money.PAIRS)
SIDES = ["buy", "sell"]


# --- the order view, shared by several schemas -------------------------------------------------------

def order_properties() -> dict[str, Schema]:
    """Every key of the public order view (a fresh dict)."""
    return {
        "order_id": string("`otc_` + 16 hex characters"),
        "order_version": integer("rises by one with every change of the order", minimum=1),
        "side": {"enum": SIDES, "description": "the maker's side: `sell` sells RTC"},
        "pair": {"enum": PAIRS},
        "status": {"enum": STATUSES, "description": "docs/protocol.md §4"},
        "quote_currency": string("the pair's quote asset (ETH, USDC, ERG)"),
        "maker_wallet": string(pattern=WALLET_PATTERN),
        "maker_eth_address": string("the maker's quote-chain address; empty for a buy order created without one"),
        "taker_wallet": nullable(string(pattern=WALLET_PATTERN)),
        "taker_eth_address": nullable(string()),
        "amount_micro_rtc": integer("exact amount, micro-RTC (1 RTC = 10^6)", minimum=money.MIN_ORDER_MICRO_RTC,
                                    maximum=money.MAX_ORDER_MICRO_RTC),
        "amount_rtc": number("display number; amount_micro_rtc is exact"),
        "price_per_rtc_nano_quote": integer("exact price, nano-quote per RTC (1 quote = 10^9)", minimum=1,
                                            maximum=money.MAX_PRICE_NANO_QUOTE),
        "price_per_rtc": number("display number"),
        "total_quote_nano": integer("amount x price, rounded up, nano-quote", minimum=1),
        "total_quote": number("display number"),
        "htlc_hash": nullable(string("sha256 of the 32-byte preimage, 64 hex", pattern=HEX64)),
        "escrow_job_id": nullable(string()),
        "created_at": integer("unix seconds"),
        "expires_at": integer("unix seconds"),
        "matched_at": nullable(integer("unix seconds")),
        "settle_by": nullable(integer("unix seconds: the preimage must be presented by then")),
        "confirmed_at": nullable(integer("unix seconds")),
        "settlement_tx": nullable(string("the quote_tx the confirm named")),
        "payout_tx_hash": nullable(string()),
        "end_cause": nullable(string("why the order ended (cancelled, expired, escrow_refused, ...)")),
        "escrow_tampered": boolean("the escrow watch found the job moved by someone else (docs/protocol.md §11)"),
        "escrow_tampered_at": nullable(integer("unix seconds")),
        "refund_tx_hash": nullable(string()),
        "quote_leg": nullable(ref("QuoteLeg")),
        "preimage_holder": {"enum": ["seller", "buyer"]},
        "seller_secret_void": {"const": True, "description": "buyer-held: the seller's create-time preimage is void"},
        "escrow_notice": string("what both traders must do after tampering"),
        "htlc_secret": nullable(string("the preimage: only once `completed` (buyer-held: from `payout_pending`)",
                                       pattern=HEX64)),
    }


ORDER_OPTIONAL = ("seller_secret_void", "escrow_notice", "htlc_secret")


def order_with(extra: dict[str, Schema], *, optional: tuple[str, ...] = (), description: str) -> Schema:
    """The order view with the keys a POST answer adds (one flat object, so that no key
    outside both is allowed)."""
    return obj({**order_properties(), **extra}, optional=(*ORDER_OPTIONAL, *optional), description=description)
