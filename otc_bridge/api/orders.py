"""``/api/orders`` routes: thin views over :mod:`otc_bridge.trading` (docs/protocol.md §3).

Each view parses and validates its input (400 naming the field, before any signature
check, as the reference orders them), calls one service and shapes the response. The POST
views take an ``Idempotency-Key`` (:mod:`otc_bridge.api.idempotency`): once the input is
valid they reserve the key, and each has a ``_recover_*`` function that answers a retry
whose first attempt died half-way from the order's state.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from decimal import Decimal

from flask import Blueprint, Response, current_app, jsonify, request

from otc_bridge.api import body, idempotency, readcache
from otc_bridge.context import Bridge
from otc_bridge.domain import money, views, wallets
from otc_bridge.domain.errors import Invalid, NotFound
from otc_bridge.domain.hashlock import new_preimage, preimage_matches
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.storage import orders, reads
from otc_bridge.trading import cancel, confirm, create, match

bp = Blueprint("orders", __name__)

_SIDES = ("buy", "sell")
WALLET_REQUIRED = "wallet required (RTC wallet ID)"
_SHOW_INSTRUCTIONS = frozenset({Status.MATCHED, Status.SETTLING, Status.PAYOUT_PENDING,
                                Status.SETTLEMENT_RECOVERY, Status.COMPLETED})


def bridge() -> Bridge:
    """The app's :class:`~otc_bridge.context.Bridge` (built by the app factory)."""
    return current_app.extensions["otc_bridge"]


def _side(raw: object) -> str:
    side = raw.strip().lower() if isinstance(raw, str) else ""
    if side not in _SIDES:
        raise Invalid("side must be 'buy' or 'sell'", field="side")
    return side


def _pair(raw: object) -> str:
    if raw is None:
        return "RTC/USDC"  # the reference's default pair
    return body.parse_pair(raw)


def _wallet(data: dict) -> str:
    """The maker's ``wallet`` as sent. Shorter than 3 characters is "no wallet" (400), as the
    reference has it; any other non-native string is the signature check's 401."""
    wallet = body.text(data, "wallet", required=True, message=WALLET_REQUIRED)
    if len(wallet) < 3:
        raise Invalid(WALLET_REQUIRED, field="wallet")
    return wallet


def _price(data: dict) -> tuple[int, str]:
    """``price_per_rtc`` / ``price_per_rtc_nano_quote`` as nano-quote. A negative
    ``price_per_rtc`` (number or decimal string) counts as 0, so the range check answers the
    reference's ``price_per_rtc must be positive`` rather than a format error."""
    raw = data.get("price_per_rtc")
    if isinstance(raw, str):
        negative = bool(re.fullmatch(r"-[0-9]+(\.[0-9]+)?", raw.strip()))
    elif isinstance(raw, Decimal):  # JSON numbers with a fraction or exponent
        negative = raw.is_finite() and raw < 0
    else:
        negative = isinstance(raw, int) and not isinstance(raw, bool) and raw < 0
    if negative:
        return 0, "price_per_rtc"
    return body.amount(data, "price_per_rtc", "price_per_rtc_nano_quote", money.PRICE_DECIMALS)


def _instructions(b: Bridge, order) -> dict:
    """The settlement instructions of a matched order, with this bridge's timelock settings."""
    q = b.config.quote_chain
    chain = None if q is None else views.ChainTerms(
        chain_id=q.chain_id, htlc_contract=q.htlc_address, usdc_contract=q.usdc_address,
        buyer_timelock_min_seconds=q.buyer_timelock_min_seconds,
        buyer_timelock_max_seconds=q.buyer_timelock_max_seconds, buyer_margin_seconds=q.buyer_margin_seconds)
    return views.settlement_instructions(order, htlc_min_seconds=b.config.htlc_min_seconds,
                                         claim_margin_seconds=b.config.claim_margin_seconds, chain=chain)


@bp.post("/api/orders")
@idempotency.idempotent
def create_order():
    """Create a buy or sell order (201). Sell orders lock escrow and return the preimage once."""
    b = bridge()
    cfg = b.config
    data = body.json_object({"side", "pair", "wallet", "amount_rtc", "amount_micro_rtc", "price_per_rtc",
                             "price_per_rtc_nano_quote", "eth_address", "ttl_seconds", "wallet_auth", "htlc_hash"})
    ttl = body.integer(data, "ttl_seconds", cfg.default_order_ttl_seconds)
    if not 3600 <= ttl <= cfg.max_order_ttl_seconds:
        raise Invalid(f"ttl_seconds must be between 3600 and {cfg.max_order_ttl_seconds} (the escrow "
                      "must outlive the order plus the settle window within the node's 30-day job TTL)",
                      field="ttl_seconds")
    side = _side(data.get("side"))
    pair = _pair(data.get("pair"))
    if ttl > cfg.max_order_ttl_for(pair):  # an EVM pair's escrow also outlives any quote lock
        raise Invalid(f"ttl_seconds must be at most {cfg.max_order_ttl_for(pair)} for {pair} (its escrow must "
                      "outlive the order, the settle window and the longest quote-lock timelock within the "
                      "node's 30-day job TTL)", field="ttl_seconds")
    wallet = _wallet(data)
    amount, amount_field = body.amount(data, "amount_rtc", "amount_micro_rtc", money.RTC_DECIMALS)
    price, price_field = _price(data)
    try:
        money.check_order_amount(amount, amount_field)
        money.check_price(price, price_field)
    except money.MoneyError as exc:
        raise Invalid(exc.message, field=exc.field) from None
    address = body.quote_address(data, pair, required=side == "sell",
                                 why="the seller's quote-chain address that the buyer's HTLC pays")
    req = create.CreateRequest(side=side, pair=pair, wallet=wallet, quote_address=address,
                               amount_micro_rtc=amount, price_nano_quote=price, ttl_seconds=ttl,
                               wallet_auth=data.get("wallet_auth"), htlc_hash=body.htlc_hash(data))
    maker = idempotency.signed_wallet(wallet, req.wallet_auth, action="create_order", order_id="create_order",
                                      bound=_create_bound(req))
    idempotency.begin(idempotency.wallet_scope(maker), recover=_recover_create, link_order=True)
    if side == "sell":  # kept with the key before the order exists: a retry after any crash gets it back
        req = dataclasses.replace(req, preimage=new_preimage())
        idempotency.keep_secret(req.preimage[0])
    created = create.create_order(b, req)
    return jsonify(_create_body(created.order, created.htlc_secret)), 201


def _create_bound(req: create.CreateRequest) -> dict:
    """The fields a create's signature binds (docs/protocol.md §3.1), as the service checks them."""
    bound = {"side": req.side, "pair": req.pair, "amount_micro_rtc": req.amount_micro_rtc,
             "price_per_rtc_nano_quote": req.price_nano_quote, "ttl_seconds": req.ttl_seconds,
             "eth_address": req.quote_address}
    return bound | ({"htlc_hash": req.htlc_hash} if req.htlc_hash is not None else {})


def _create_body(order: Order, htlc_secret: str | None) -> dict:
    """The 201 body of a create: the order, ``expires_in_hours``, and for a sell order the
    preimage (shown here only) and ``escrow_status``."""
    out = {"ok": True, **views.order_view(order), "expires_in_hours": round(order.ttl_seconds / 3600, 1)}
    if order.side == "sell":
        out.update(htlc_secret=htlc_secret, escrow_status="locked",
                   message=f"Sell order created. {out['amount_rtc']} RTC locked in "
                           "escrow. SAVE htlc_secret NOW: it is shown only once and is needed to settle.")
    else:
        out["message"] = "Buy order created. Waiting for a seller to match."
    return out


def _recover_create(order_id: str | None) -> Response | None:
    """A retry of a create whose first attempt died before its answer was stored: nothing was
    written (run it again), a buy order (its answer is rebuilt, 201), or a sell order whose
    preimage went with the lost answer (:func:`_interrupted`)."""
    order = None if order_id is None else orders.get_order(bridge().db.connection(), order_id)
    if order is None:
        return None
    if order.side == "buy":
        return _json(_create_body(order, None), 201)
    kept = _kept_secret_of(order)
    if kept is not None:
        return _json(_create_body(order, kept), 201)
    return _interrupted(order, "the escrow of this sell order")


def _kept_secret_of(order: Order) -> str | None:
    """The preimage the first attempt kept with its key, if it is ``order``'s and the order
    can still use it (not locking or ending: those are refunded whatever the trader holds)."""
    kept = idempotency.kept_secret()
    if kept is None or order.htlc_hash is None or not preimage_matches(kept, order.htlc_hash):
        return None
    return None if order.status == Status.LOCKING or order.status in _ENDING else kept


#: Statuses of an order whose escrow is being, or has been, returned (or that holds none).
_ENDING = frozenset({Status.REFUND_PENDING, Status.CANCELLED, Status.EXPIRED})


def _interrupted(order: Order, what: str) -> Response:
    """409 for a retry whose first attempt wrote ``order`` but died before its answer, the only
    copy of ``htlc_secret``, was stored (docs/protocol.md §3.3 and §8). ``locking``: the
    reconciler refunds ``what`` (nobody holds the preimage, so it could never settle); later
    states: the trader must withdraw it. Body: ``{"error", "field": "Idempotency-Key",
    "order_id", "status", "htlc_secret_lost": true}``."""
    if order.status == Status.LOCKING:
        advice = (f"it was interrupted while locking {what}, which the reconciler refunds. Send a new request "
                  "with a new Idempotency-Key.")
    elif order.status in _ENDING:
        advice = f"the order is {order.status}: its escrow is refunded, nothing is left to do."
    elif order.side == "sell":
        advice = (f"cancel order {order.order_id} (signed POST /api/orders/{order.order_id}/cancel) to have "
                  "its escrow refunded; if it is matched, it returns to the book at settle_by and can be "
                  "cancelled then.")
    else:
        advice = ("without it the buyer's HTLC cannot be claimed: the match unwinds at settle_by and your "
                  "escrow is refunded.")
    return _json({"error": f"The first attempt with this Idempotency-Key wrote order {order.order_id} but its "
                           f"answer, the only copy of htlc_secret, was lost before it was stored; the secret cannot "
                           f"be shown again: {advice}",
                  "field": idempotency.HEADER, "order_id": order.order_id, "status": str(order.status),
                  "htlc_secret_lost": True}, 409)


def _json(out: dict, status: int) -> Response:
    response = jsonify(out)
    response.status_code = status
    return response


@bp.get("/api/orders")
def list_orders():
    """Open orders: ``pair``, ``side``, ``limit`` (1..200), ``offset``; best price first.
    Rendered once per change of the orders and query string, or when the next listed order
    expires (:mod:`otc_bridge.api.readcache`)."""
    b = bridge()
    return readcache.respond(b.db.connection(), ("orders", request.query_string), b.now(), _list_orders)


def _list_orders(conn: sqlite3.Connection, now: int) -> readcache.Rendered:
    pair = body.pair_arg()
    side_arg = request.args.get("side")
    side = _side(side_arg) if side_arg else None
    limit, offset = body.page_args()
    found, total = reads.open_orders(conn, now=now, pair=pair, side=side, limit=limit, offset=offset)
    return readcache.Rendered({"ok": True, "orders": [views.book_entry(o) for o in found], "total": total,
                               "limit": limit, "offset": offset, "pairs": list(money.PAIRS)},
                              reads.open_expiry_after(conn, now=now, pair=pair, side=side))


@bp.get("/api/orders/<order_id>")
def get_order(order_id: str):
    """One order; ``htlc_secret`` only once ``completed``; instructions once matched.
    Rendered once per ``order_version`` (:mod:`otc_bridge.api.readcache`); 404 if none."""
    b = bridge()

    def render(conn: sqlite3.Connection, now: int) -> readcache.Rendered:
        order = orders.get_order(conn, order_id)
        if order is None:
            raise NotFound("Order not found")
        out = {"ok": True, "order": views.order_view(order)}
        if order.status in _SHOW_INSTRUCTIONS and order.matched_at:
            out["settlement_instructions"] = _instructions(b, order)
        return readcache.Rendered(out)

    return readcache.respond(b.db.connection(), ("order", order_id), b.now(), render,
                             version=lambda conn: reads.order_version(conn, order_id))


@bp.post("/api/orders/<order_id>/match")
@idempotency.idempotent
def match_order(order_id: str):
    """Take an order. For a buy order the taker (RTC seller) locks escrow and gets the preimage."""
    b = bridge()
    data = body.json_object({"wallet", "eth_address", "wallet_auth", "htlc_hash"})
    wallet = body.text(data, "wallet", required=True)
    order = orders.get_order(b.db.connection(), order_id)
    pair = order.pair if order else "RTC/USDC"
    taker_sells = order is not None and order.side == "buy"
    address = body.quote_address(data, pair, required=taker_sells,
                                 why="the RTC seller's quote-chain address that the buyer's HTLC pays")
    htlc_hash = body.htlc_hash(data)
    bound = {"eth_address": address} | ({"htlc_hash": htlc_hash} if htlc_hash is not None else {})
    taker = idempotency.signed_wallet(wallet, data.get("wallet_auth"), action="match_order", order_id=order_id,
                                      bound=bound)
    idempotency.begin(idempotency.wallet_scope(taker), recover=lambda _: _recover_match(order_id, taker))
    made = None
    if taker_sells and htlc_hash is None and not order.buyer_holds_preimage:
        made = new_preimage()  # the taker's preimage, kept with the key before the match is written
        idempotency.keep_secret(made[0])
    order, secret = match.match_order(b, order_id, wallet, address, data.get("wallet_auth"), htlc_hash=htlc_hash,
                                      preimage=made)
    return jsonify(_match_body(b, order, secret))


def _recover_match(order_id: str, taker: str) -> Response | None:
    """A retry of a match whose first attempt died before its answer was stored: the order
    is not ``taker``'s (run it again: the service answers), or its answer is rebuilt (200)
    when it carried no secret, or :func:`_interrupted`."""
    order = orders.get_order(bridge().db.connection(), order_id)
    if order is None or order.taker_wallet != taker:
        return None
    if order.status != Status.LOCKING and order.matched_at and (order.side == "sell" or order.buyer_holds_preimage):
        return _json(_match_body(bridge(), order, None), 200)
    kept = _kept_secret_of(order) if order.matched_at else None
    if kept is not None:
        return _json(_match_body(bridge(), order, kept), 200)
    return _interrupted(order, "your escrow (the order returns to the book)")


def _match_body(b: Bridge, order: Order, secret: str | None) -> dict:
    """The 200 body of a match: the order, its settlement instructions, and for the taker of a
    buy order (the RTC seller) the preimage, shown here only."""
    out = {"ok": True, **views.order_view(order),
           "settlement_instructions": _instructions(b, order)}
    if secret:
        out["htlc_secret"] = secret
        out["message"] = ("RTC locked in escrow. SAVE htlc_secret NOW: it is shown only once. Claim the "
                          "buyer's quote HTLC with it, then confirm here to release the RTC.")
    elif order.buyer_holds_preimage:
        out["message"] = ("Order matched, buyer-held: lock the quote amount in our HTLC with your htlc_hash "
                          "before lock_by, wait until quote_leg is 'locked', then reveal your preimage with a "
                          "signed confirm. The bridge claims the HTLC for the seller after your RTC payout.")
    else:
        out["message"] = "Order matched. Lock the quote amount in an HTLC as instructed before settle_by."
    return out


@bp.post("/api/orders/<order_id>/confirm")
@idempotency.idempotent
def confirm_order(order_id: str):
    """Settle with the preimage. 200 for every settlement outcome; ``ok`` only when completed."""
    b = bridge()
    data = body.json_object({"wallet", "quote_tx", "secret", "wallet_auth"})
    wallet = body.text(data, "wallet", required=False)
    secret = body.text(data, "secret", required=True,
                       message="HTLC secret (preimage) required to confirm settlement")
    # A buyer-held reveal needs no quote_tx (the bridge verified the lock on chain itself);
    # the confirm service requires it for every other order.
    quote_tx = body.quote_tx(data) if "quote_tx" in data else None
    # The preimage is a confirm's authority, so its key belongs to whoever holds it (with or
    # without a wallet); the secret is part of the fingerprinted body.
    idempotency.begin(idempotency.preimage_holder_scope(order_id), recover=lambda _: _recover_confirm(order_id))
    order = confirm.confirm_order(b, order_id, secret=secret, quote_tx=quote_tx, wallet=wallet,
                                  wallet_auth=data.get("wallet_auth"))
    return jsonify(_confirm_response(order))


#: Where a confirm that won the claim leaves the order.
_CLAIMED = frozenset({Status.SETTLING, Status.PAYOUT_PENDING, Status.SETTLEMENT_RECOVERY, Status.COMPLETED})


def _recover_confirm(order_id: str) -> Response | None:
    """A retry of a confirm whose first attempt died before its answer was stored: once the
    settlement was claimed, the answer is rebuilt from the order (200, as a confirm answers
    every settlement outcome); otherwise the confirm runs again (its claim is a CAS)."""
    order = orders.get_order(bridge().db.connection(), order_id)
    if order is None or order.status not in _CLAIMED:
        return None
    return _json(_confirm_response(order), 200)


_CONFIRM_MESSAGES = {
    Status.COMPLETED: "Trade completed. RTC payout to {r} confirmed. HTLC secret verified and revealed.",
    Status.PAYOUT_PENDING: ("Escrow released; RTC payout to {r} is QUEUED and pending confirmation on the node. "
                            "The HTLC secret is withheld until the payout confirms; poll GET /api/orders/{o}."),
    Status.SETTLEMENT_RECOVERY: ("Escrow left but the payout to {r} could not be confirmed. Operators were "
                                "alerted; the payout is idempotent and will be resolved. Do NOT confirm again."),
    Status.MATCHED: "The escrow node refused the release; no funds left escrow. Order is 'matched': retry confirm.",
    Status.SETTLING: "The escrow node did not answer; settlement is claimed and will be finished by the reconciler.",
}


def _confirm_response(order) -> dict:
    status = Status(order.status)
    recipient = order.payout_wallet
    out = {
        "ok": status == Status.COMPLETED,
        **views.order_view(order),
        "rtc_recipient": recipient,
        "rtc_transfer_status": {Status.COMPLETED: "confirmed", Status.PAYOUT_PENDING: "pending",
                                Status.SETTLEMENT_RECOVERY: "manual_recovery_required",
                                Status.MATCHED: "escrow_release_refused"}.get(status, "in_progress"),
        "rtc_transfer_tx_hash": order.payout_tx_hash,
        "message": _CONFIRM_MESSAGES.get(status, "").format(r=recipient, o=order.order_id),
    }
    if status == Status.COMPLETED:
        out["trade_id"] = "trade_" + order.order_id.removeprefix("otc_")
    return out


@bp.post("/api/orders/<order_id>/cancel")
@idempotency.idempotent
def cancel_order(order_id: str):
    """The maker cancels an open order; a sell order's escrow is refunded."""
    b = bridge()
    data = body.json_object({"wallet", "wallet_auth"})
    wallet = body.text(data, "wallet", required=True)
    maker = idempotency.signed_wallet(wallet, data.get("wallet_auth"), action="cancel_order", order_id=order_id,
                                      bound={})
    idempotency.begin(idempotency.wallet_scope(maker), recover=lambda _: _recover_cancel(order_id, maker))
    order = cancel.cancel_order(b, order_id, wallet, data.get("wallet_auth"))
    return jsonify(_cancel_body(order))


def _recover_cancel(order_id: str, maker: str) -> Response | None:
    """A retry of a cancel whose first attempt died before its answer was stored: if the
    maker's cancel took effect, its answer is rebuilt (200); otherwise it runs again."""
    order = orders.get_order(bridge().db.connection(), order_id)
    if order is None or order.maker_wallet != maker or order.end_cause != "cancelled":
        return None
    return _json(_cancel_body(order), 200)


def _cancel_body(order: Order) -> dict:
    """The 200 body of a cancel: the order, ``escrow_refunded`` and what happens next."""
    refunded = order.status == Status.CANCELLED
    if refunded:
        message = "Order cancelled. Escrow refunded."
    elif order.status == Status.SETTLEMENT_RECOVERY:
        message = ("Order cancelled, but the escrow job was moved on the node by someone else; "
                   "operators were alerted and will resolve the refund.")
    else:
        message = "Order cancel accepted; escrow refund is pending and will be retried by reconciliation."
    return {"ok": True, **views.order_view(order), "escrow_refunded": refunded, "message": message}


@bp.get("/api/orders/<order_id>/events")
def order_events(order_id: str):
    """The order's audit trail, oldest first: every transition, node call outcome, alert and
    note, each with the ``order_version`` it belongs to. ``after`` (an event id) and ``limit``
    (1..500, default 200) page through it. Never carries a secret."""
    b = bridge()
    order = orders.get_order(b.db.connection(), order_id)
    if order is None:
        raise NotFound("Order not found")
    after = body.int_arg("after", 0, "after must be an integer")
    limit = min(body.int_arg("limit", 200, "limit_must_be_integer"), 500)
    if limit < 1:
        raise Invalid("limit_must_be_positive", field="limit")
    rows = reads.order_events(b.db.connection(), order_id, after=after, limit=limit)
    return jsonify(ok=True, order_id=order_id, order_version=order.order_version,
                   events=[views.event_view(r) for r in rows])


@bp.get("/api/wallets/<wallet>/orders")
def wallet_orders(wallet: str):
    """A wallet's orders as maker or taker, any status, newest first; ``status`` filter,
    ``limit`` (1..200) and ``offset``. The wallet is matched in its canonical form."""
    b = bridge()
    if not wallets.is_native_wallet(wallet):
        raise Invalid("wallet must be a native RTC address (RTC + 40 hex)", field="wallet")
    canonical = wallets.canonical_wallet(wallet)
    limit, offset = body.page_args()
    status = request.args.get("status")
    if status and status not in {s.value for s in Status}:
        raise Invalid("status must be one of the order statuses", field="status")
    found, total = reads.wallet_orders(b.db.connection(), canonical, status=status, limit=limit, offset=offset)
    return jsonify(ok=True, wallet=canonical, orders=[views.order_view(o) for o in found], total=total,
                   limit=limit, offset=offset)
