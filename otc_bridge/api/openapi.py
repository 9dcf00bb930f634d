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
"""

from __future__ import annotations

from typing import Any

from otc_bridge import __version__
from otc_bridge.api import idempotency
from otc_bridge.config import Config
from otc_bridge.domain import money
from otc_bridge.domain.status import Status
from otc_bridge.operator.common import MAX_REASON_CHARS
from otc_bridge.operator.resolve import RESOLVE_TARGETS

Schema = dict[str, Any]

# --- schema builders --------------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _s(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "string", **kw, **({"description": description} if description else {})}


def _i(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "integer", **kw, **({"description": description} if description else {})}


def _n(description: str | None = None) -> Schema:
    return {"type": "number", **({"description": description} if description else {})}


def _b(description: str | None = None, **kw: Any) -> Schema:
    return {"type": "boolean", **kw, **({"description": description} if description else {})}


def _null(schema: Schema) -> Schema:
    """``schema`` or JSON ``null``."""
    if "type" in schema and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    return {"oneOf": [schema, {"type": "null"}]}


def _array(items: Schema, description: str | None = None) -> Schema:
    return {"type": "array", "items": items, **({"description": description} if description else {})}


def _obj(properties: dict[str, Schema], *, optional: tuple[str, ...] = (), extra: bool | Schema = False,
         description: str | None = None) -> Schema:
    """An object with ``properties``, all required except ``optional``; ``extra`` says what other
    keys may appear (``False``: none)."""
    schema: Schema = {"type": "object", "properties": properties,
                      "required": [name for name in properties if name not in optional],
                      "additionalProperties": extra}
    if description:
        schema["description"] = description
    return schema


_TRUE = {"const": True}
_HEX64 = r"^[0-9a-fA-F]{64}$"
_WALLET_PATTERN = r"^RTC[0-9a-fA-F]{40}$"
_STATUSES = [str(s) for s in Status]
_PAIRS = list(money.PAIRS)
_SIDES = ["buy", "sell"]


# --- components -------------------------------------------------------------------------------------

def _order_properties() -> dict[str, Schema]:
    return {
        "order_id": _s("`otc_` + 16 hex characters"),
        "order_version": _i("rises by one with every change of the order", minimum=1),
        "side": {"enum": _SIDES, "description": "the maker's side: `sell` sells RTC"},
        "pair": {"enum": _PAIRS},
        "status": {"enum": _STATUSES, "description": "docs/protocol.md §4"},
        "quote_currency": _s("the pair's quote asset (ETH, USDC, ERG)"),
        "maker_wallet": _s(pattern=_WALLET_PATTERN),
        "maker_eth_address": _s("the maker's quote-chain address; empty for a buy order created without one"),
        "taker_wallet": _null(_s(pattern=_WALLET_PATTERN)),
        "taker_eth_address": _null(_s()),
        "amount_micro_rtc": _i("exact amount, micro-RTC (1 RTC = 10^6)", minimum=money.MIN_ORDER_MICRO_RTC,
                               maximum=money.MAX_ORDER_MICRO_RTC),
        "amount_rtc": _n("display number; amount_micro_rtc is exact"),
        "price_per_rtc_nano_quote": _i("exact price, nano-quote per RTC (1 quote = 10^9)", minimum=1,
                                       maximum=money.MAX_PRICE_NANO_QUOTE),
        "price_per_rtc": _n("display number"),
        "total_quote_nano": _i("amount x price, rounded up, nano-quote", minimum=1),
        "total_quote": _n("display number"),
        "htlc_hash": _null(_s("sha256 of the 32-byte preimage, 64 hex", pattern=_HEX64)),
        "escrow_job_id": _null(_s()),
        "created_at": _i("unix seconds"),
        "expires_at": _i("unix seconds"),
        "matched_at": _null(_i("unix seconds")),
        "settle_by": _null(_i("unix seconds: the preimage must be presented by then")),
        "confirmed_at": _null(_i("unix seconds")),
        "settlement_tx": _null(_s("the quote_tx the confirm named")),
        "payout_tx_hash": _null(_s()),
        "end_cause": _null(_s("why the order ended (cancelled, expired, escrow_refused, ...)")),
        "escrow_tampered": _b("the escrow watch found the job moved by someone else (docs/protocol.md §11)"),
        "escrow_tampered_at": _null(_i("unix seconds")),
        "refund_tx_hash": _null(_s()),
        "quote_leg": _null(_ref("QuoteLeg")),
        "preimage_holder": {"enum": ["seller", "buyer"]},
        "seller_secret_void": {"const": True, "description": "buyer-held: the seller's create-time preimage is void"},
        "escrow_notice": _s("what both traders must do after tampering"),
        "htlc_secret": _null(_s("the preimage: only once `completed` (buyer-held: from `payout_pending`)",
                                pattern=_HEX64)),
    }


_ORDER_OPTIONAL = ("seller_secret_void", "escrow_notice", "htlc_secret")


def _order_with(extra: dict[str, Schema], *, optional: tuple[str, ...] = (), description: str) -> Schema:
    """The order view with the keys a POST answer adds (one flat object, so that no key
    outside both is allowed)."""
    return _obj({**_order_properties(), **extra}, optional=(*_ORDER_OPTIONAL, *optional), description=description)


def _schemas(config: Config) -> dict[str, Schema]:
    ttl_max = max(config.max_order_ttl_for(pair) for pair in money.PAIRS)
    wallet = _s("`RTC` + 40 hex characters: the first 40 hex characters of sha256(raw 32-byte Ed25519 public "
                "key). Any letter case; compared in lower case after the signature is checked over the string "
                "as sent", pattern=_WALLET_PATTERN)
    amount_rtc = {"type": ["number", "string"], "description": (
        f"decimal RTC, at most {money.RTC_DECIMALS} decimals, {money.MIN_ORDER_MICRO_RTC / 10**6} to "
        f"{money.MAX_ORDER_MICRO_RTC // 10**6}; a JSON number (read as an exact decimal) or a decimal string. "
        "Give this or amount_micro_rtc (both: they must agree)")}
    price = {"type": ["number", "string"], "description": (
        f"decimal quote per RTC, at most {money.PRICE_DECIMALS} decimals, above 0 and at most "
        f"{money.MAX_PRICE_NANO_QUOTE // 10**9}. Give this or price_per_rtc_nano_quote (both: they must agree)")}
    eth_address = _s("the party's quote-chain address: `0x` + 40 hex for RTC/ETH and RTC/USDC, a base58 Ergo "
                     "address for RTC/ERG. Required from whoever sells RTC (a sell create, a buy order's match)",
                     maxLength=120)
    htlc_hash = _s("buyer-held mode (docs/protocol.md §12.5): sha256 of the RTC buyer's own 32-byte preimage, "
                   "64 lower-case hex; only on a chain-verified pair", pattern=r"^[0-9a-f]{64}$")
    return {
        "Error": _obj({"error": _s("what went wrong, in words (the reference's wording where one exists)"),
                       "field": _s("the request field or header at fault")},
                      optional=("field",), extra=True,
                      description="Every error answer. Some add keys: retry_after_seconds (429, 503, 409 of an "
                                  "Idempotency-Key in progress), order_id and status, details, hint, balance and "
                                  "required amounts, htlc_secret_lost (docs/protocol.md §3.3)."),
        "WalletAuth": _obj({
            "public_key": _s("raw 32-byte Ed25519 public key, hex", pattern=r"^[0-9a-fA-F]{64}$"),
            "signature": _s("Ed25519 signature, hex", pattern=r"^[0-9a-fA-F]{128}$"),
            "timestamp": _i("unix seconds; within 300 s of the bridge's clock; a JSON integer"),
        }, extra=True, description=(
            "The wallet's signature over the UTF-8 bytes of the compact, key-sorted JSON of {action, order_id, "
            "timestamp, wallet} plus the operation's bound fields (see x-wallet-signature on the operation). "
            "Each signed message is accepted once (401 wallet_auth_replayed).")),
        "CreateOrderRequest": {
            **_obj({
                "side": {"enum": _SIDES, "description": "`sell`: you sell RTC (escrow locked now); any letter case"},
                "pair": {"enum": _PAIRS, "default": "RTC/USDC", "description": "any letter case"},
                "wallet": wallet,
                "amount_rtc": amount_rtc,
                "amount_micro_rtc": _i("exact amount, micro-RTC", minimum=money.MIN_ORDER_MICRO_RTC,
                                       maximum=money.MAX_ORDER_MICRO_RTC),
                "price_per_rtc": price,
                "price_per_rtc_nano_quote": _i("exact price, nano-quote per RTC", minimum=1,
                                               maximum=money.MAX_PRICE_NANO_QUOTE),
                "eth_address": eth_address,
                "ttl_seconds": _i(f"order lifetime; an EVM pair watched on chain allows at most "
                                  f"{min(config.max_order_ttl_for(p) for p in money.PAIRS)}", minimum=3600,
                                  maximum=ttl_max, default=config.default_order_ttl_seconds),
                "wallet_auth": _ref("WalletAuth"),
                "htlc_hash": htlc_hash,
            }, optional=("pair", "amount_rtc", "amount_micro_rtc", "price_per_rtc", "price_per_rtc_nano_quote",
                         "eth_address", "ttl_seconds", "htlc_hash")),
            "allOf": [{"anyOf": [{"required": ["amount_rtc"]}, {"required": ["amount_micro_rtc"]}]},
                      {"anyOf": [{"required": ["price_per_rtc"]}, {"required": ["price_per_rtc_nano_quote"]}]}],
        },
        "MatchRequest": _obj({"wallet": wallet, "eth_address": eth_address, "wallet_auth": _ref("WalletAuth"),
                              "htlc_hash": htlc_hash}, optional=("eth_address", "htlc_hash")),
        "ConfirmRequest": _obj({
            "secret": _s("the HTLC preimage, 64 hex: the authority of a confirm", pattern=_HEX64),
            "quote_tx": _s("the quote-chain transaction (the seller's claim); required except for a buyer-held "
                           "reveal", pattern=r"^[A-Za-z0-9:_\-.]{1,200}$"),
            "wallet": _s("optional: must then be the order's RTC seller or buyer (403 otherwise); required, with "
                         "wallet_auth, for a buyer-held reveal", maxLength=200),
            "wallet_auth": _ref("WalletAuth"),
        }, optional=("quote_tx", "wallet", "wallet_auth")),
        "CancelRequest": _obj({"wallet": wallet, "wallet_auth": _ref("WalletAuth")}),
        "RedriveRequest": _obj({"reason": _s("why (the audit trail keeps it)", minLength=1, maxLength=MAX_REASON_CHARS),
                                "new_key": _b("send under a new payout key (only after the node voided the last)",
                                              default=False)}, optional=("new_key",)),
        "ResolveRequest": _obj({"to": {"enum": [str(s) for s in RESOLVE_TARGETS]},
                                "reason": _s(minLength=1, maxLength=MAX_REASON_CHARS)}),
        "QuoteLeg": _obj({
            "state": {"enum": ["awaiting_lock", "locked", "invalid", "claimed", "refunded"]},
            "swap_id": _null(_s()), "lock_tx": _null(_s()), "claim_tx": _null(_s()),
            "timelock": _null(_i("unix seconds (chain time)")), "reason": _null(_s()),
        }, description="The quote leg as the chain watcher saw it (docs/protocol.md §12)"),
        "SettlementInstructions": _obj({
            "step": _s(), "note": _s(), "amount": _n("display number of total_quote_nano"), "currency": _s(),
            "total_quote_nano": _i(minimum=1),
            "total_quote_base_units": _s("integer string in the asset's smallest unit, rounded up",
                                         pattern=r"^[0-9]+$"),
            "quote_decimals": _i(minimum=0),
            "htlc_hash": _null(_s(pattern=_HEX64)),
            "hash_algorithm": {"const": "sha256"},
            "pay_to_address": _null(_s("the RTC seller's quote-chain address")),
            "rtc_recipient": _null(_s(pattern=_WALLET_PATTERN)),
            "settle_by": _null(_i("unix seconds")),
            "htlc_timelock_min": _i("unix seconds"),
            "htlc_timelock_max": _i("unix seconds"),
            "quote_verification": {"enum": ["evm", "evidence"]},
            "preimage_holder": {"enum": ["seller", "buyer"]},
            "chain_id": _i(), "htlc_contract": _s(), "token_contract": _null(_s()),
            "lock_by": _null(_i("unix seconds")), "quote_leg": _null(_ref("QuoteLeg")),
            "htlc_timelock_min_after_lock": _i(), "htlc_timelock_max_after_lock": _i(),
            "reveal_margin_seconds": _i(), "warning": _s(),
        }, optional=("chain_id", "htlc_contract", "token_contract", "lock_by", "quote_leg",
                     "htlc_timelock_min_after_lock", "htlc_timelock_max_after_lock", "reveal_margin_seconds",
                     "warning")),
        "Order": _obj(_order_properties(), optional=_ORDER_OPTIONAL, description="The public view of an order"),
        "CreateOrderResponse": _order_with({
            "ok": _TRUE, "expires_in_hours": _n(),
            "htlc_secret": _null(_s("sell orders: the preimage, shown in this answer only (and in its "
                                    "Idempotency-Key replays): keep it", pattern=_HEX64)),
            "escrow_status": {"const": "locked"}, "message": _s(),
        }, optional=("escrow_status",), description="201: the order created"),
        "MatchResponse": _order_with({
            "ok": _TRUE, "settlement_instructions": _ref("SettlementInstructions"), "message": _s(),
            "htlc_secret": _s("a buy order's taker (the RTC seller): the preimage, shown here only", pattern=_HEX64),
        }, description="200: the order taken"),
        "ConfirmResponse": _order_with({
            "ok": _b("true only when `completed`"),
            "rtc_recipient": _null(_s(pattern=_WALLET_PATTERN)),
            "rtc_transfer_status": {"enum": ["confirmed", "pending", "manual_recovery_required",
                                             "escrow_release_refused", "in_progress"]},
            "rtc_transfer_tx_hash": _null(_s()), "message": _s(), "trade_id": _s(),
        }, optional=("trade_id",), description="200 for every settlement outcome"),
        "CancelResponse": _order_with({"ok": _TRUE, "escrow_refunded": _b(), "message": _s()},
                                      description="200: the cancel taken"),
        "BookEntry": _obj({name: _order_properties()[name] for name in (
            "order_id", "order_version", "side", "pair", "maker_wallet", "amount_micro_rtc", "amount_rtc",
            "price_per_rtc_nano_quote", "price_per_rtc", "total_quote_nano", "total_quote", "quote_currency",
            "status", "htlc_hash", "created_at", "expires_at", "escrow_job_id")}),
        "OrderList": _obj({"ok": _TRUE, "orders": _array(_ref("BookEntry")), "total": _i(minimum=0),
                           "limit": _i(minimum=1), "offset": _i(minimum=0), "pairs": _array({"enum": _PAIRS})}),
        "OrderDetail": _obj({"ok": _TRUE, "order": _ref("Order"),
                             "settlement_instructions": _ref("SettlementInstructions")},
                            optional=("settlement_instructions",)),
        "Event": _obj({
            "event_id": _i(minimum=1), "order_id": _s(), "order_version": _i(minimum=1),
            "kind": {"enum": ["transition", "node_call", "alert", "note"]},
            "from_status": _null(_s()), "to_status": _null(_s()), "actor": _s(), "reason": _s(),
            "node_endpoint": _null(_s()), "node_outcome": _null(_s()), "node_ref": _null(_s()),
            "detail": {"description": "any JSON value, or null"}, "created_at": _i(),
        }),
        "OrderEvents": _obj({"ok": _TRUE, "order_id": _s(), "order_version": _i(minimum=1),
                             "events": _array(_ref("Event"))}),
        "WalletOrders": _obj({"ok": _TRUE, "wallet": _s(pattern=r"^RTC[0-9a-f]{40}$"),
                              "orders": _array(_ref("Order")), "total": _i(minimum=0), "limit": _i(minimum=1),
                              "offset": _i(minimum=0)}),
        "Trade": _obj({
            "trade_id": _s(), "order_id": _s(), "pair": {"enum": _PAIRS}, "side": {"enum": _SIDES},
            "seller_wallet": _s(), "buyer_wallet": _s(), "maker_wallet": _s(), "taker_wallet": _s(),
            "amount_micro_rtc": _i(), "amount_rtc": _n(), "price_per_rtc_nano_quote": _i(), "price_per_rtc": _n(),
            "total_quote_nano": _i(), "total_quote": _n(), "quote_tx": _null(_s()), "escrow_job_id": _null(_s()),
            "payout_tx_hash": _null(_s()), "completed_at": _i("unix seconds"),
        }),
        "Trades": _obj({"ok": _TRUE, "trades": _array(_ref("Trade"))}),
        "Level": _obj({"price": _n(), "price_per_rtc_nano_quote": _i(), "total_rtc": _n(),
                       "total_micro_rtc": _i(), "order_count": _i(minimum=1)}),
        "Orderbook": _obj({
            "ok": _TRUE, "pair": {"enum": _PAIRS}, "asks": _array(_ref("Level"), "ascending price"),
            "bids": _array(_ref("Level"), "descending price"), "last_price": _null(_n()),
            "last_price_nano_quote": _null(_i()), "spread": _null(_n()), "spread_nano_quote": _null(_i()),
            "volume_24h_rtc": _n(), "volume_24h_micro_rtc": _i(), "trades_24h": _i(minimum=0),
            "reference_rate": _n("the reference's fixed RTC price in USD, informational"),
        }),
        "Stats": _obj({"ok": _TRUE, "pair": _null({"enum": _PAIRS}), "stats": _obj({
            "total_trades": _i(minimum=0), "total_volume_rtc": _n(), "total_volume_micro_rtc": _i(),
            "volume_24h_rtc": _n(), "volume_7d_rtc": _n(), "open_orders": _i(minimum=0),
            "open_sells": _obj({"count": _i(minimum=0), "total_rtc": _n()}),
            "open_buys": _obj({"count": _i(minimum=0), "total_rtc": _n()}),
            "last_price": _null(_n()), "high_24h": _null(_n()), "low_24h": _null(_n()),
            "reference_rate_usd": _n(), "supported_pairs": _array({"enum": _PAIRS}),
        })}),
        "Ok": _obj({"ok": _TRUE}),
        "Ready": _obj({"ok": _b(), "failed": _array(_s(), "the failing checks (admin token only)"),
                       "checks": {"type": "object", "additionalProperties": {"type": "object"},
                                  "description": "database, node, reconciler, outbox, worker_coverage (admin only)"}},
                      optional=("failed", "checks")),
        "PageConfig": _obj({"ok": _TRUE, "pairs": {"type": "object"}, "rtc_decimals": _i(),
                            "price_decimals": _i(), "min_order_micro_rtc": _i(), "max_order_micro_rtc": _i(),
                            "max_price_nano_quote": _i(), "ttl_min_seconds": _i(), "ttl_max_seconds": _i(),
                            "ttl_default_seconds": _i(), "dev": _b()}, extra=True,
                           description="Settings the trading page checks input against (more keys may follow)"),
        "ReconcileResult": _obj({"ok": _TRUE, "summary": {"type": "object", "additionalProperties": {"type": "integer"},
                                                          "description": "counts of the pass"}}),
        "AttentionOrder": {**_order_with({"updated_at": _i(), "age_seconds": _i(), "events": _array(_ref("Event"))},
                                         description="An order needing an operator, with its events")},
        "Attention": _obj({"ok": _TRUE, "orders": _array(_ref("AttentionOrder"))}),
        "Audit": _obj({"ok": _b("no mismatch"), "mismatches": _array(_obj({
            "code": _s(), "order_id": _null(_s()), "detail": _s()}))}),
        "RedriveResult": _obj({"ok": _TRUE, "order": _ref("Order"), "phase": {"enum": ["pending", "confirmed"]},
                               "message": _s()}),
        "ResolveResult": _obj({"ok": _TRUE, "order": _ref("Order")}),
        "JsonRpc": {"type": "object", "description": "a JSON-RPC 2.0 request or answer object"},
    }


def _parameters() -> dict[str, Schema]:
    return {
        "IdempotencyKey": {
            "name": idempotency.HEADER, "in": "header", "required": False,
            "description": (
                "Makes the POST safe to retry for 24 h (docs/protocol.md §3.3): the same key and request get the "
                "first answer again, marked `Idempotent-Replayed: true`; the same key with another request is "
                "422; a retry while the first runs is 409. Scoped to the signing wallet (create, match, cancel), "
                "to the order's preimage holder (confirm) or to the admin token. Use a random value (a UUID)."),
            "schema": _s(minLength=1, maxLength=255, pattern=r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"),
        },
        "OrderId": {"name": "order_id", "in": "path", "required": True, "schema": _s(), "description": "`otc_…`"},
        "Pair": {"name": "pair", "in": "query", "required": False, "schema": {"enum": _PAIRS},
                 "description": "any letter case; an unknown pair is 400"},
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "schema": _i(minimum=1, maximum=200, default=50), "description": "above 200 counts as 200"},
        "Offset": {"name": "offset", "in": "query", "required": False, "schema": _i(minimum=0, default=0)},
        "Operator": {"name": "X-Operator", "in": "header", "required": False,
                     "schema": _s(pattern=r"^[A-Za-z0-9._@:+-]{1,64}$", default="admin"),
                     "description": "the operator named in the order's audit trail"},
    }


def _security_schemes() -> dict[str, Schema]:
    return {
        "adminBearer": {"type": "http", "scheme": "bearer",
                        "description": "`Authorization: Bearer $OTC_ADMIN_TOKEN` (the admin routes are 404 when it is "
                                       "unset)"},
        "adminKey": {"type": "apiKey", "in": "header", "name": "X-Admin-Key", "description": "the same token"},
        "metricsBearer": {"type": "http", "scheme": "bearer", "description": "`OTC_METRICS_TOKEN`, when set"},
    }


# --- responses --------------------------------------------------------------------------------------

_ERROR_TEXT = {
    400: "invalid input: `field` names it",
    401: "a refused wallet signature (the reference's codes, e.g. `wallet_auth_invalid_signature`, "
         "`wallet_auth_replayed`) or admin token (`unauthorized`)",
    403: "authenticated, but not a party allowed to do this",
    404: "no such order (or route; admin routes without OTC_ADMIN_TOKEN)",
    409: "the order's state does not allow it, another request won the race, or the Idempotency-Key is still "
         "in progress (`Retry-After`) or its first attempt lost the answer carrying htlc_secret "
         "(`htlc_secret_lost`)",
    410: "the order has expired",
    413: "the body is larger than OTC_MAX_BODY_BYTES",
    415: "the body is not declared `application/json` (field `Content-Type`)",
    422: "the Idempotency-Key was used for another request",
    429: "rate limited per client IP (`Retry-After`, `retry_after_seconds`)",
    500: "internal error: a generic body, the detail only in the log",
    502: "the escrow node's answer was unusable; the outcome is recorded and reconciled",
    503: "the node rate-limits, releases are paused, or the quote chain cannot be read: retry later",
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[int, tuple[str, Schema | None, str]], errors: tuple[int, ...]) -> dict[str, Any]:
    """``ok``: status -> (description, schema, media type); ``errors``: statuses answered with ``Error``."""
    out: dict[str, Any] = {}
    for status, (text, schema, media) in ok.items():
        out[str(status)] = {"description": text, **({"content": {media: {"schema": schema or {}}}} if media else {})}
    for status in (*errors, 500):
        out[str(status)] = {"description": _ERROR_TEXT[status], "content": _json(_ref("Error"))}
    return out


def _json_ok(status: int, text: str, name: str) -> dict[int, tuple[str, Schema | None, str]]:
    return {status: (text, _ref(name), "application/json")}


def _signed(action: str, order_id: str, bound: list[str]) -> dict[str, Any]:
    return {"x-wallet-signature": {"action": action, "order_id": order_id, "bound_fields": bound}}


#: Every idempotent POST: input, size, media type, key reused; /api/* also the per-IP rate limit.
_POST_ERRORS = (400, 413, 415, 422)
_ADMIN = [{"adminBearer": []}, {"adminKey": []}]


def _post(summary: str, description: str, request: str, ok: dict[int, tuple[str, Schema | None, str]],
          errors: tuple[int, ...], *, tag: str, extra: dict[str, Any] | None = None,
          parameters: list[Schema] | None = None) -> dict[str, Any]:
    limited = (429,) if tag != "admin" else ()
    op: dict[str, Any] = {
        "tags": [tag], "summary": summary, "description": description,
        "parameters": [*(parameters or []), {"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {"required": True, "content": _json(_ref(request))},
        "responses": _responses(ok, tuple(sorted({*_POST_ERRORS, *limited, *errors}))),
    }
    replayed = {idempotency.REPLAYED_HEADER: {"$ref": f"#/components/headers/{idempotency.REPLAYED_HEADER}"}}
    for status, response in op["responses"].items():
        if int(status) < 500 and status not in ("413", "415", "429"):  # answers a key can store
            response["headers"] = replayed
    return op | (extra or {})


def _get(summary: str, description: str, ok: dict[int, tuple[str, Schema | None, str]], errors: tuple[int, ...],
         *, tag: str, parameters: list[Schema] | None = None, security: list | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [tag], "summary": summary, "description": description,
                          "responses": _responses(ok, errors)}
    if parameters:
        op["parameters"] = parameters
    if security is not None:
        op["security"] = security
    return op


def _p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _q(name: str, schema: Schema, description: str | None = None) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            **({"description": description} if description else {})}


def _paths() -> dict[str, Any]:
    create_bound = ["side", "pair", "amount_micro_rtc", "price_per_rtc_nano_quote", "ttl_seconds", "eth_address",
                    "htlc_hash (only when sent)"]
    return {
        "/api/orders": {
            "post": _post(
                "Create an order",
                "A sell order locks the maker's escrow first (amount + the node's 5 % fee) and answers the "
                "preimage `htlc_secret` once; a buy order is listed at once. Retry with the same Idempotency-Key "
                "to get a lost answer (and its htlc_secret) again.",
                "CreateOrderRequest", _json_ok(201, "the order", "CreateOrderResponse"), (401, 409, 502, 503),
                tag="orders", extra=_signed("create_order", '"create_order"', create_bound)),
            "get": _get("Open orders", "Sells by ascending price, buys by descending price, ties oldest first.",
                        _json_ok(200, "a page of the book", "OrderList"), (400,), tag="orders",
                        parameters=[_p("Pair"), _q("side", {"enum": _SIDES}), _p("Limit"), _p("Offset")]),
        },
        "/api/orders/{order_id}": {
            "parameters": [_p("OrderId")],
            "get": _get("One order", "With settlement instructions once matched; htlc_secret only once completed.",
                        _json_ok(200, "the order", "OrderDetail"), (404,), tag="orders"),
        },
        "/api/orders/{order_id}/match": {
            "parameters": [_p("OrderId")],
            "post": _post(
                "Take an order",
                "For a buy order the taker is the RTC seller: its escrow is locked and the preimage answered once.",
                "MatchRequest", _json_ok(200, "the order taken", "MatchResponse"), (401, 404, 409, 410, 502, 503),
                tag="orders", extra=_signed("match_order", "the order id", ["eth_address", "htlc_hash (when sent)"])),
        },
        "/api/orders/{order_id}/confirm": {
            "parameters": [_p("OrderId")],
            "post": _post(
                "Settle with the preimage",
                "Authorised by the preimage (no signature, except a buyer-held reveal: action `confirm_order`, no "
                "bound field). Answers 200 for every settlement outcome; `ok` only when completed.",
                "ConfirmRequest", _json_ok(200, "the settlement attempt's outcome", "ConfirmResponse"),
                (401, 403, 404, 409, 502, 503), tag="orders"),
        },
        "/api/orders/{order_id}/cancel": {
            "parameters": [_p("OrderId")],
            "post": _post("Withdraw an open order", "The maker's cancel; a sell order's escrow is refunded.",
                          "CancelRequest", _json_ok(200, "the cancel taken", "CancelResponse"),
                          (401, 403, 404, 409, 502, 503), tag="orders",
                          extra=_signed("cancel_order", "the order id", [])),
        },
        "/api/orders/{order_id}/events": {
            "parameters": [_p("OrderId")],
            "get": _get("The order's audit trail", "Oldest first; never carries a secret.",
                        _json_ok(200, "events", "OrderEvents"), (400, 404), tag="orders",
                        parameters=[_q("after", _i(), "an event id: only later ones"),
                                    _q("limit", _i(minimum=1, maximum=500, default=200))]),
        },
        "/api/wallets/{wallet}/orders": {
            "parameters": [{"name": "wallet", "in": "path", "required": True,
                            "schema": _s(pattern=_WALLET_PATTERN)}],
            "get": _get("A wallet's orders", "As maker or taker, any status, newest first.",
                        _json_ok(200, "orders", "WalletOrders"), (400, 404), tag="orders",
                        parameters=[_q("status", {"enum": _STATUSES}), _p("Limit"), _p("Offset")]),
        },
        "/api/trades": {"get": _get("Completed trades", "Newest first.", _json_ok(200, "trades", "Trades"), (400,),
                                    tag="market", parameters=[_p("Pair"), _p("Limit")])},
        "/api/orderbook": {"get": _get("The order book", "Aggregated price levels, spread, last price, 24 h volume.",
                                       _json_ok(200, "the book", "Orderbook"), (400,), tag="market",
                                       parameters=[_p("Pair")])},
        "/api/stats": {"get": _get("Market statistics", "One pair, or all without `pair`.",
                                   _json_ok(200, "statistics", "Stats"), (400,), tag="market",
                                   parameters=[_p("Pair")])},
        "/api/stream": {"get": _get(
            "Live order events (Server-Sent Events)",
            "Each event is an order event (as in /events) with its id; resume with `Last-Event-ID`. 503 when the "
            "process serves OTC_STREAM_MAX_CLIENTS streams.",
            {200: ("an endless event stream", _s(), "text/event-stream")}, (400, 404, 503), tag="market",
            parameters=[_p("Pair"), _q("order_id", _s()), _q("wallet", _s(pattern=_WALLET_PATTERN)),
                        _q("last_event_id", _i(minimum=0)),
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _i(minimum=0)}])},
        "/admin/reconcile": {"post": {
            "tags": ["admin"], "summary": "Run one reconcile pass", "security": _ADMIN,
            "description": "No body. A retry with the same Idempotency-Key gets the first pass's counts.",
            "parameters": [_p("IdempotencyKey")],
            "responses": _responses(_json_ok(200, "the pass's counts", "ReconcileResult"), (400, 401, 404, 415, 422)),
        }},
        "/admin/attention": {"get": _get(
            "Orders needing an operator", "With their events.", _json_ok(200, "orders", "Attention"), (400, 401, 404),
            tag="admin", security=_ADMIN,
            parameters=[_q("older_than", _i(minimum=0, default=3600),
                           "age (seconds) from which a payout_pending order is listed")])},
        "/admin/audit": {"get": _get(
            "Cross-check the book against the node", "Read-only.", _json_ok(200, "mismatches", "Audit"),
            (400, 401, 404), tag="admin", security=_ADMIN,
            parameters=[_q("all", {"enum": ["0", "1", "true", "false", "yes", "no"]}, "include ended orders")])},
        "/admin/orders/{order_id}/redrive-payout": {
            "parameters": [_p("OrderId")],
            "post": _post("Re-send an order's payout", "409 when the node's state does not allow it.",
                          "RedriveRequest", _json_ok(200, "the payout sent", "RedriveResult"),
                          (401, 404, 409, 502, 503),
                          tag="admin", extra={"security": _ADMIN}, parameters=[_p("Operator")]),
        },
        "/admin/orders/{order_id}/resolve": {
            "parameters": [_p("OrderId")],
            "post": _post("Move a settlement_recovery order forward", "409 unless the node's state proves `to`.",
                          "ResolveRequest", _json_ok(200, "the order", "ResolveResult"), (401, 404, 409, 502, 503),
                          tag="admin", extra={"security": _ADMIN}, parameters=[_p("Operator")]),
        },
        "/healthz": {"get": _get("Liveness", "The process serves.", _json_ok(200, "alive", "Ok"), (), tag="ops")},
        "/readyz": {"get": _get(
            "Readiness", "503 when a check fails; the admin token adds the checks' details.",
            {200: ("ready", _ref("Ready"), "application/json"), 503: ("not ready", _ref("Ready"), "application/json")},
            (401,), tag="ops", security=[{}, *_ADMIN])},
        "/metrics": {"get": _get("Prometheus metrics", "Text exposition format.",
                                 {200: ("metrics", _s(), "text/plain")}, (401,), tag="ops",
                                 security=[{}, {"metricsBearer": []}])},
        "/": {"get": _get("The trading page", "Static HTML under a strict CSP.",
                          {200: ("the page", _s(), "text/html")}, (), tag="web")},
        "/page-config.json": {"get": _get("The page's settings", "Limits the page checks input against.",
                                          _json_ok(200, "settings", "PageConfig"), (), tag="web")},
        "/static/{filename}": {
            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": _s()}],
            "get": _get("The page's static files", "Scripts, styles, vendored libraries.",
                        {200: ("the file", {}, "*/*")}, (404,), tag="web"),
        },
        "/dev/evm-rpc": {"post": {
            "tags": ["web"], "summary": "Dev chain relay (otc-bridge dev only; 404 otherwise)",
            "description": "One JSON-RPC request relayed to the dev chain; a refusal is a JSON-RPC error with 200. "
                           "Not idempotent: takes no Idempotency-Key.",
            "requestBody": {"required": True, "content": _json(_ref("JsonRpc"))},
            "responses": {**_responses({200: ("the chain's answer", _ref("JsonRpc"), "application/json"),
                                        400: ("not one JSON-RPC request object", _ref("JsonRpc"), "application/json"),
                                        502: ("the dev chain did not answer", _ref("JsonRpc"), "application/json")},
                                       (404, 413))},
        }},
        "/openapi.json": {"get": _get("This document", "OpenAPI 3.1.",
                                      {200: ("the document", {"type": "object"}, "application/json")}, (), tag="web")},
        "/docs": {"get": _get("This document, rendered", "Plain HTML, no script.",
                              {200: ("the reference page", _s(), "text/html")}, (), tag="web")},
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
        "paths": _paths(),
        "components": {"schemas": _schemas(config), "parameters": _parameters(),
                       "securitySchemes": _security_schemes(),
                       "headers": {
                           idempotency.REPLAYED_HEADER: {"description": "`true` on an answer replayed for an "
                                                                        "Idempotency-Key", "schema": _s()}}},
    }
