"""The operations of the OpenAPI document (:mod:`otc_bridge.api.openapi`): every path, its
parameters, responses and security, and the shared parameter and security-scheme components.

Every error answer is the ``Error`` schema with the meaning of its status (:data:`_ERROR_TEXT`);
every idempotent POST takes ``Idempotency-Key`` (docs/protocol.md §3.3) and marks the answers
a key can store with ``Idempotent-Replayed``; the three signed POSTs say what their wallet
signature binds (``x-wallet-signature``, docs/protocol.md). tests/api/test_openapi.py holds
these paths to the app's routes.
"""

from __future__ import annotations

from typing import Any

from otc_bridge.api import idempotency
from otc_bridge.api.openapi_builders import PAIRS, SIDES, STATUSES, WALLET_PATTERN, Schema, integer, ref, string

# --- parameter and security components --------------------------------------------------------------


def parameter_components() -> dict[str, Schema]:
    """The ``parameters`` components."""
    return {
        "IdempotencyKey": {
            "name": idempotency.HEADER, "in": "header", "required": False,
            "description": (
                "Makes the POST safe to retry for 24 h (docs/protocol.md §3.3): the same key and request get the "
                "first answer again, marked `Idempotent-Replayed: true`; the same key with another request is "
                "422; a retry while the first runs is 409. Scoped to the signing wallet (create, match, cancel), "
                "to the order's preimage holder (confirm) or to the admin token. Use a random value (a UUID)."),
            "schema": string(minLength=1, maxLength=255, pattern=r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"),
        },
        "OrderId": {"name": "order_id", "in": "path", "required": True, "schema": string(), "description": "`otc_…`"},
        "Pair": {"name": "pair", "in": "query", "required": False, "schema": {"enum": PAIRS},
                 "description": "any letter case; an unknown pair is 400"},
        "Limit": {"name": "limit", "in": "query", "required": False,
                  "schema": integer(minimum=1, maximum=200, default=50), "description": "above 200 counts as 200"},
        "Offset": {"name": "offset", "in": "query", "required": False, "schema": integer(minimum=0, default=0)},
        "Operator": {"name": "X-Operator", "in": "header", "required": False,
                     "schema": string(pattern=r"^[A-Za-z0-9._@:+-]{1,64}$", default="admin"),
                     "description": "the operator named in the order's audit trail"},
    }


def security_schemes() -> dict[str, Schema]:
    """The ``securitySchemes`` components: the admin token (two headers) and the metrics token."""
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
        out[str(status)] = {"description": _ERROR_TEXT[status], "content": _json(ref("Error"))}
    return out


def _json_ok(status: int, text: str, name: str) -> dict[int, tuple[str, Schema | None, str]]:
    return {status: (text, ref(name), "application/json")}


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
        "requestBody": {"required": True, "content": _json(ref(request))},
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


# --- paths ------------------------------------------------------------------------------------------

def paths() -> dict[str, Any]:
    """The ``paths`` of the document: every route of the app."""
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
                        parameters=[_p("Pair"), _q("side", {"enum": SIDES}), _p("Limit"), _p("Offset")]),
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
                        parameters=[_q("after", integer(), "an event id: only later ones"),
                                    _q("limit", integer(minimum=1, maximum=500, default=200))]),
        },
        "/api/wallets/{wallet}/orders": {
            "parameters": [{"name": "wallet", "in": "path", "required": True,
                            "schema": string(pattern=WALLET_PATTERN)}],
            "get": _get("A wallet's orders", "As maker or taker, any status, newest first.",
                        _json_ok(200, "orders", "WalletOrders"), (400, 404), tag="orders",
                        parameters=[_q("status", {"enum": STATUSES}), _p("Limit"), _p("Offset")]),
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
            {200: ("an endless event stream", string(), "text/event-stream")}, (400, 404, 503), tag="market",
            parameters=[_p("Pair"), _q("order_id", string()), _q("wallet", string(pattern=WALLET_PATTERN)),
                        _q("last_event_id", integer(minimum=0)),
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": integer(minimum=0)}])},
        "/admin/reconcile": {"post": {
            "tags": ["admin"], "summary": "Run one reconcile pass", "security": _ADMIN,
            "description": "No body. A retry with the same Idempotency-Key gets the first pass's counts.",
            "parameters": [_p("IdempotencyKey")],
            "responses": _responses(_json_ok(200, "the pass's counts", "ReconcileResult"), (400, 401, 404, 415, 422)),
        }},
        "/admin/attention": {"get": _get(
            "Orders needing an operator", "With their events.", _json_ok(200, "orders", "Attention"), (400, 401, 404),
            tag="admin", security=_ADMIN,
            parameters=[_q("older_than", integer(minimum=0, default=3600),
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
            {200: ("ready", ref("Ready"), "application/json"), 503: ("not ready", ref("Ready"), "application/json")},
            (401,), tag="ops", security=[{}, *_ADMIN])},
        "/metrics": {"get": _get("Prometheus metrics", "Text exposition format.",
                                 {200: ("metrics", string(), "text/plain")}, (401,), tag="ops",
                                 security=[{}, {"metricsBearer": []}])},
        "/": {"get": _get("The trading page", "Static HTML under a strict CSP.",
                          {200: ("the page", string(), "text/html")}, (), tag="web")},
        "/page-config.json": {"get": _get("The page's settings", "Limits the page checks input against.",
                                          _json_ok(200, "settings", "PageConfig"), (), tag="web")},
        "/static/{filename}": {
            "parameters": [{"name": "filename", "in": "path", "required": True, "schema": string()}],
            "get": _get("The page's static files", "Scripts, styles, vendored libraries.",
                        {200: ("the file", {}, "*/*")}, (404,), tag="web"),
        },
        "/dev/evm-rpc": {"post": {
            "tags": ["web"], "summary": "Dev chain relay (otc-bridge dev only; 404 otherwise)",
            "description": "One JSON-RPC request relayed to the dev chain; a refusal is a JSON-RPC error with 200. "
                           "Not idempotent: takes no Idempotency-Key.",
            "requestBody": {"required": True, "content": _json(ref("JsonRpc"))},
            "responses": {**_responses({200: ("the chain's answer", ref("JsonRpc"), "application/json"),
                                        400: ("not one JSON-RPC request object", ref("JsonRpc"), "application/json"),
                                        502: ("the dev chain did not answer", ref("JsonRpc"), "application/json")},
                                       (404, 413))},
        }},
        "/openapi.json": {"get": _get("This document", "OpenAPI 3.1.",
                                      {200: ("the document", {"type": "object"}, "application/json")}, (), tag="web")},
        "/docs": {"get": _get("This document, rendered", "Plain HTML, no script.",
                              {200: ("the reference page", string(), "text/html")}, (), tag="web")},
    }
