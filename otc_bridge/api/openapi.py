"""The OpenAPI 3.1 document of the bridge's HTTP API, built from the code's own rules.

:func:`document` returns it for one :class:`~otc_bridge.config.Config`: the limits it states
(amounts, prices, TTL range, body size, key length) are the constants and settings the parsers
enforce, not copies of them. ``/openapi.json`` serves it and ``/docs`` renders it
(:mod:`otc_bridge.api.docs`). Three tests hold it to the app: every route of ``app.url_map`` is
in it and every path in it is a route (tests/api/test_openapi.py); real responses of a whole
trade validate against its schemas (same file); and Schemathesis runs it against the live app
(tests/api/test_openapi_fuzz.py).

Conventions: every error body is ``{"error": str, "field"?: str, ...}`` (``field`` names the
offending request field or header; some errors add keys such as ``retry_after_seconds``,
``order_id``, ``details``); response objects list every key they can carry and allow no
other (``additionalProperties: false``), so a leaked internal field fails the tests.

The document is built in three modules: :mod:`otc_bridge.api.openapi_builders` (the JSON
Schema builders and shared enumerations), :mod:`otc_bridge.api.openapi_paths` (the paths,
their parameters, responses and security) and this one (the schema components, which carry
the limits, and :func:`document`).
"""

from __future__ import annotations

from typing import Any

from otc_bridge import __version__
from otc_bridge.api import idempotency
from otc_bridge.api.openapi_builders import (
    HEX64,
    ORDER_OPTIONAL,
    PAIRS,
    SIDES,
    TRUE,
    WALLET_PATTERN,
    Schema,
    array,
    boolean,
    integer,
    nullable,
    number,
    obj,
    order_properties,
    order_with,
    ref,
    string,
)
from otc_bridge.api.openapi_paths import parameter_components, paths, security_schemes
from otc_bridge.config import Config
from otc_bridge.domain import money
from otc_bridge.operator.common import MAX_REASON_CHARS
from otc_bridge.operator.resolve import RESOLVE_TARGETS

# --- components -------------------------------------------------------------------------------------

def _schemas(config: Config) -> dict[str, Schema]:
    ttl_max = max(config.max_order_ttl_for(pair) for pair in money.PAIRS)
    wallet = string("`RTC` + 40 hex characters: the first 40 hex characters of sha256(raw 32-byte Ed25519 public "
                    "key). Any letter case; compared in lower case after the signature is checked over the string "
                    "as sent", pattern=WALLET_PATTERN)
    amount_rtc = {"type": ["number", "string"], "description": (
        f"decimal RTC, at most {money.RTC_DECIMALS} decimals, {money.MIN_ORDER_MICRO_RTC / 10**6} to "
        f"{money.MAX_ORDER_MICRO_RTC // 10**6}; a JSON number (read as an exact decimal) or a decimal string. "
        "Give this or amount_micro_rtc (both: they must agree)")}
    price = {"type": ["number", "string"], "description": (
        f"decimal quote per RTC, at most {money.PRICE_DECIMALS} decimals, above 0 and at most "
        f"{money.MAX_PRICE_NANO_QUOTE // 10**9}. Give this or price_per_rtc_nano_quote (both: they must agree)")}
    eth_address = string("the party's quote-chain address: `0x` + 40 hex for RTC/ETH and RTC/USDC, a base58 Ergo "
                         "address for RTC/ERG. Required from whoever sells RTC (a sell create, a buy order's match)",
                         maxLength=120)
    htlc_hash = string("buyer-held mode (docs/protocol.md §12.5): sha256 of the RTC buyer's own 32-byte preimage, "
                       "64 lower-case hex; only on a chain-verified pair", pattern=r"^[0-9a-f]{64}$")
    return {
        "Error": obj({"error": string("what went wrong, in words (the reference's wording where one exists)"),
                      "field": string("the request field or header at fault")},
                     optional=("field",), extra=True,
                     description="Every error answer. Some add keys: retry_after_seconds (429, 503, 409 of an "
                                 "Idempotency-Key in progress), order_id and status, details, hint, balance and "
                                 "required amounts, htlc_secret_lost (docs/protocol.md §3.3)."),
        "WalletAuth": obj({
            "public_key": string("raw 32-byte Ed25519 public key, hex", pattern=r"^[0-9a-fA-F]{64}$"),
            "signature": string("Ed25519 signature, hex", pattern=r"^[0-9a-fA-F]{128}$"),
            "timestamp": integer("unix seconds; within 300 s of the bridge's clock; a JSON integer"),
        }, extra=True, description=(
            "The wallet's signature over the UTF-8 bytes of the compact, key-sorted JSON of {action, order_id, "
            "timestamp, wallet} plus the operation's bound fields (see x-wallet-signature on the operation). "
            "Each signed message is accepted once (401 wallet_auth_replayed).")),
        "CreateOrderRequest": {
            **obj({
                "side": {"enum": SIDES, "description": "`sell`: you sell RTC (escrow locked now); any letter case"},
                "pair": {"enum": PAIRS, "default": "RTC/USDC", "description": "any letter case"},
                "wallet": wallet,
                "amount_rtc": amount_rtc,
                "amount_micro_rtc": integer("exact amount, micro-RTC", minimum=money.MIN_ORDER_MICRO_RTC,
                                            maximum=money.MAX_ORDER_MICRO_RTC),
                "price_per_rtc": price,
                "price_per_rtc_nano_quote": integer("exact price, nano-quote per RTC", minimum=1,
                                                    maximum=money.MAX_PRICE_NANO_QUOTE),
                "eth_address": eth_address,
                "ttl_seconds": integer(f"order lifetime; an EVM pair watched on chain allows at most "
                                       f"{min(config.max_order_ttl_for(p) for p in money.PAIRS)}", minimum=3600,
                                       maximum=ttl_max, default=config.default_order_ttl_seconds),
                "wallet_auth": ref("WalletAuth"),
                "htlc_hash": htlc_hash,
            }, optional=("pair", "amount_rtc", "amount_micro_rtc", "price_per_rtc", "price_per_rtc_nano_quote",
                         "eth_address", "ttl_seconds", "htlc_hash")),
            "allOf": [{"anyOf": [{"required": ["amount_rtc"]}, {"required": ["amount_micro_rtc"]}]},
                      {"anyOf": [{"required": ["price_per_rtc"]}, {"required": ["price_per_rtc_nano_quote"]}]}],
        },
        "MatchRequest": obj({"wallet": wallet, "eth_address": eth_address, "wallet_auth": ref("WalletAuth"),
                             "htlc_hash": htlc_hash}, optional=("eth_address", "htlc_hash")),
        "ConfirmRequest": obj({
            "secret": string("the HTLC preimage, 64 hex: the authority of a confirm", pattern=HEX64),
            "quote_tx": string("the quote-chain transaction (the seller's claim); required except for a buyer-held "
                               "reveal", pattern=r"^[A-Za-z0-9:_\-.]{1,200}$"),
            "wallet": string("optional: must then be the order's RTC seller or buyer (403 otherwise); required, with "
                             "wallet_auth, for a buyer-held reveal", maxLength=200),
            "wallet_auth": ref("WalletAuth"),
        }, optional=("quote_tx", "wallet", "wallet_auth")),
        "CancelRequest": obj({"wallet": wallet, "wallet_auth": ref("WalletAuth")}),
        "RedriveRequest": obj({"reason": string("why (the audit trail keeps it)", minLength=1,
                                                maxLength=MAX_REASON_CHARS),
                               "new_key": boolean("send under a new payout key (only after the node voided the last)",
                                                  default=False)}, optional=("new_key",)),
        "ResolveRequest": obj({"to": {"enum": [str(s) for s in RESOLVE_TARGETS]},
                               "reason": string(minLength=1, maxLength=MAX_REASON_CHARS)}),
        "QuoteLeg": obj({
            "state": {"enum": ["awaiting_lock", "locked", "invalid", "claimed", "refunded"]},
            "swap_id": nullable(string()), "lock_tx": nullable(string()), "claim_tx": nullable(string()),
            "timelock": nullable(integer("unix seconds (chain time)")), "reason": nullable(string()),
        }, description="The quote leg as the chain watcher saw it (docs/protocol.md §12)"),
        "SettlementInstructions": obj({
            "step": string(), "note": string(), "amount": number("display number of total_quote_nano"),
            "currency": string(),
            "total_quote_nano": integer(minimum=1),
            "total_quote_base_units": string("integer string in the asset's smallest unit, rounded up",
                                             pattern=r"^[0-9]+$"),
            "quote_decimals": integer(minimum=0),
            "htlc_hash": nullable(string(pattern=HEX64)),
            "hash_algorithm": {"const": "sha256"},
            "pay_to_address": nullable(string("the RTC seller's quote-chain address")),
            "rtc_recipient": nullable(string(pattern=WALLET_PATTERN)),
            "settle_by": nullable(integer("unix seconds")),
            "htlc_timelock_min": integer("unix seconds"),
            "htlc_timelock_max": integer("unix seconds"),
            "quote_verification": {"enum": ["evm", "evidence"]},
            "preimage_holder": {"enum": ["seller", "buyer"]},
            "chain_id": integer(), "htlc_contract": string(), "token_contract": nullable(string()),
            "lock_by": nullable(integer("unix seconds")), "quote_leg": nullable(ref("QuoteLeg")),
            "htlc_timelock_min_after_lock": integer(), "htlc_timelock_max_after_lock": integer(),
            "reveal_margin_seconds": integer(), "warning": string(),
        }, optional=("chain_id", "htlc_contract", "token_contract", "lock_by", "quote_leg",
                     "htlc_timelock_min_after_lock", "htlc_timelock_max_after_lock", "reveal_margin_seconds",
                     "warning")),
        "Order": obj(order_properties(), optional=ORDER_OPTIONAL, description="The public view of an order"),
        "CreateOrderResponse": order_with({
            "ok": TRUE, "expires_in_hours": number(),
            "htlc_secret": nullable(string("sell orders: the preimage, shown in this answer only (and in its "
                                           "Idempotency-Key replays): keep it", pattern=HEX64)),
            "escrow_status": {"const": "locked"}, "message": string(),
        }, optional=("escrow_status",), description="201: the order created"),
        "MatchResponse": order_with({
            "ok": TRUE, "settlement_instructions": ref("SettlementInstructions"), "message": string(),
            "htlc_secret": string("a buy order's taker (the RTC seller): the preimage, shown here only", pattern=HEX64),
        }, description="200: the order taken"),
        "ConfirmResponse": order_with({
            "ok": boolean("true only when `completed`"),
            "rtc_recipient": nullable(string(pattern=WALLET_PATTERN)),
            "rtc_transfer_status": {"enum": ["confirmed", "pending", "manual_recovery_required",
                                             "escrow_release_refused", "in_progress"]},
            "rtc_transfer_tx_hash": nullable(string()), "message": string(), "trade_id": string(),
        }, optional=("trade_id",), description="200 for every settlement outcome"),
        "CancelResponse": order_with({"ok": TRUE, "escrow_refunded": boolean(), "message": string()},
                                     description="200: the cancel taken"),
        "BookEntry": obj({name: order_properties()[name] for name in (
            "order_id", "order_version", "side", "pair", "maker_wallet", "amount_micro_rtc", "amount_rtc",
            "price_per_rtc_nano_quote", "price_per_rtc", "total_quote_nano", "total_quote", "quote_currency",
            "status", "htlc_hash", "created_at", "expires_at", "escrow_job_id")}),
        "OrderList": obj({"ok": TRUE, "orders": array(ref("BookEntry")), "total": integer(minimum=0),
                          "limit": integer(minimum=1), "offset": integer(minimum=0), "pairs": array({"enum": PAIRS})}),
        "OrderDetail": obj({"ok": TRUE, "order": ref("Order"),
                            "settlement_instructions": ref("SettlementInstructions")},
                           optional=("settlement_instructions",)),
        "Event": obj({
            "event_id": integer(minimum=1), "order_id": string(), "order_version": integer(minimum=1),
            "kind": {"enum": ["transition", "node_call", "alert", "note"]},
            "from_status": nullable(string()), "to_status": nullable(string()), "actor": string(), "reason": string(),
            "node_endpoint": nullable(string()), "node_outcome": nullable(string()), "node_ref": nullable(string()),
            "detail": {"description": "any JSON value, or null"}, "created_at": integer(),
        }),
        "OrderEvents": obj({"ok": TRUE, "order_id": string(), "order_version": integer(minimum=1),
                            "events": array(ref("Event"))}),
        "WalletOrders": obj({"ok": TRUE, "wallet": string(pattern=r"^RTC[0-9a-f]{40}$"),
                             "orders": array(ref("Order")), "total": integer(minimum=0), "limit": integer(minimum=1),
                             "offset": integer(minimum=0)}),
        "Trade": obj({
            "trade_id": string(), "order_id": string(), "pair": {"enum": PAIRS}, "side": {"enum": SIDES},
            "seller_wallet": string(), "buyer_wallet": string(), "maker_wallet": string(), "taker_wallet": string(),
            "amount_micro_rtc": integer(), "amount_rtc": number(), "price_per_rtc_nano_quote": integer(),
            "price_per_rtc": number(), "total_quote_nano": integer(), "total_quote": number(),
            "quote_tx": nullable(string()), "escrow_job_id": nullable(string()),
            "payout_tx_hash": nullable(string()), "completed_at": integer("unix seconds"),
        }),
        "Trades": obj({"ok": TRUE, "trades": array(ref("Trade"))}),
        "Level": obj({"price": number(), "price_per_rtc_nano_quote": integer(), "total_rtc": number(),
                      "total_micro_rtc": integer(), "order_count": integer(minimum=1)}),
        "Orderbook": obj({
            "ok": TRUE, "pair": {"enum": PAIRS}, "asks": array(ref("Level"), "ascending price"),
            "bids": array(ref("Level"), "descending price"), "last_price": nullable(number()),
            "last_price_nano_quote": nullable(integer()), "spread": nullable(number()),
            "spread_nano_quote": nullable(integer()),
            "volume_24h_rtc": number(), "volume_24h_micro_rtc": integer(), "trades_24h": integer(minimum=0),
            "reference_rate": number("the reference's fixed RTC price in USD, informational"),
        }),
        "Stats": obj({"ok": TRUE, "pair": nullable({"enum": PAIRS}), "stats": obj({
            "total_trades": integer(minimum=0), "total_volume_rtc": number(), "total_volume_micro_rtc": integer(),
            "volume_24h_rtc": number(), "volume_7d_rtc": number(), "open_orders": integer(minimum=0),
            "open_sells": obj({"count": integer(minimum=0), "total_rtc": number()}),
            "open_buys": obj({"count": integer(minimum=0), "total_rtc": number()}),
            "last_price": nullable(number()), "high_24h": nullable(number()), "low_24h": nullable(number()),
            "reference_rate_usd": number(), "supported_pairs": array({"enum": PAIRS}),
        })}),
        "Ok": obj({"ok": TRUE}),
        "Ready": obj({"ok": boolean(), "failed": array(string(), "the failing checks (admin token only)"),
                      "checks": {"type": "object", "additionalProperties": {"type": "object"},
                                 "description": "database, node, reconciler, outbox, worker_coverage (admin only)"}},
                     optional=("failed", "checks")),
        "PageConfig": obj({"ok": TRUE, "pairs": {"type": "object"}, "rtc_decimals": integer(),
                           "price_decimals": integer(), "min_order_micro_rtc": integer(),
                           "max_order_micro_rtc": integer(), "max_price_nano_quote": integer(),
                           "ttl_min_seconds": integer(), "ttl_max_seconds": integer(),
                           "ttl_default_seconds": integer(), "dev": boolean()}, extra=True,
                          description="Settings the trading page checks input against (more keys may follow)"),
        "ReconcileResult": obj({"ok": TRUE, "summary": {"type": "object", "additionalProperties": {"type": "integer"},
                                                        "description": "counts of the pass"}}),
        "AttentionOrder": {**order_with({"updated_at": integer(), "age_seconds": integer(),
                                         "events": array(ref("Event"))},
                                        description="An order needing an operator, with its events")},
        "Attention": obj({"ok": TRUE, "orders": array(ref("AttentionOrder"))}),
        "Audit": obj({"ok": boolean("no mismatch"), "mismatches": array(obj({
            "code": string(), "order_id": nullable(string()), "detail": string()}))}),
        "RedriveResult": obj({"ok": TRUE, "order": ref("Order"), "phase": {"enum": ["pending", "confirmed"]},
                              "message": string()}),
        "ResolveResult": obj({"ok": TRUE, "order": ref("Order")}),
        "JsonRpc": {"type": "object", "description": "a JSON-RPC 2.0 request or answer object"},
    }


_DESCRIPTION = """\
The HTTP API of the OTC bridge: RTC against ETH, USDC or ERG, the RTC side in escrow on a RustChain
node, the quote side in a sha256 HTLC. JSON in and out; every error is `{"error": str, "field"?: str}`.

**Money**: amounts travel as display numbers and exact integers (`amount_micro_rtc`, 1 RTC = 10^6;
`price_per_rtc_nano_quote` and `total_quote_nano`, 1 quote = 10^9). Over-precise amounts are refused,
never rounded.

**Wallet signatures** (create, match, cancel; a buyer-held reveal): `wallet` is `RTC` + the first 40 hex
characters of sha256(raw 32-byte Ed25519 public key); `wallet_auth` = `{public_key, signature, timestamp}`,
the signature over the UTF-8 bytes of the compact JSON, keys sorted, of `{action, order_id, timestamp,
wallet}` plus the operation's bound fields (its `x-wallet-signature`). The timestamp must be within 300 s;
each signed message is accepted once (401 `wallet_auth_replayed`).

**Idempotency-Key** (every POST but the dev relay): retry safely for 24 h, see the parameter and
docs/protocol.md §3.3.
"""


def document(config: Config) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a bridge running with ``config`` (a fresh dict)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "otc_bridge API", "version": __version__, "description": _DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "servers": [{"url": "/"}],
        "tags": [{"name": "orders"}, {"name": "market"}, {"name": "admin"}, {"name": "ops"}, {"name": "web"}],
        "paths": paths(),
        "components": {"schemas": _schemas(config), "parameters": parameter_components(),
                       "securitySchemes": security_schemes(),
                       "headers": {
                           idempotency.REPLAYED_HEADER: {"description": "`true` on an answer replayed for an "
                                                                        "Idempotency-Key", "schema": string()}}},
    }
