"""``/api/orders`` routes: thin views over :mod:`otc_bridge.trading` (docs/protocol.md §3).

Each view parses and validates its input (400 naming the field, before any signature
check, as the reference orders them), calls one service and shapes the response.
"""

from __future__ import annotations

import re
from decimal import Decimal

from flask import Blueprint, current_app, jsonify, request

from otc_bridge.api import body
from otc_bridge.context import Bridge
from otc_bridge.domain import money, views, wallets
from otc_bridge.domain.errors import Invalid, NotFound
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
    created = create.create_order(b, req)
    order = created.order
    out = {"ok": True, **views.order_view(order), "expires_in_hours": round(ttl / 3600, 1)}
    if side == "sell":
        out.update(htlc_secret=created.htlc_secret, escrow_status="locked",
                   message=f"Sell order created. {out['amount_rtc']} RTC locked in "
                           "escrow. SAVE htlc_secret NOW: it is shown only once and is needed to settle.")
    else:
        out["message"] = "Buy order created. Waiting for a seller to match."
    return jsonify(out), 201


@bp.get("/api/orders")
def list_orders():
    """Open orders: ``pair``, ``side``, ``limit`` (1..200), ``offset``; best price first."""
    b = bridge()
    pair = body.pair_arg()
    side_arg = request.args.get("side")
    side = _side(side_arg) if side_arg else None
    limit, offset = body.page_args()
    found, total = reads.open_orders(b.db.connection(), now=b.now(), pair=pair, side=side, limit=limit,
                                     offset=offset)
    return jsonify(ok=True, orders=[views.book_entry(o) for o in found], total=total, limit=limit,
                   offset=offset, pairs=list(money.PAIRS))


@bp.get("/api/orders/<order_id>")
def get_order(order_id: str):
    """One order; ``htlc_secret`` only once ``completed``; instructions once matched."""
    b = bridge()
    order = orders.get_order(b.db.connection(), order_id)
    if order is None:
        raise NotFound("Order not found")
    out = {"ok": True, "order": views.order_view(order)}
    if order.status in _SHOW_INSTRUCTIONS and order.matched_at:
        out["settlement_instructions"] = _instructions(b, order)
    return jsonify(out)


@bp.post("/api/orders/<order_id>/match")
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
    order, secret = match.match_order(b, order_id, wallet, address, data.get("wallet_auth"),
                                      htlc_hash=body.htlc_hash(data))
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
    return jsonify(out)


@bp.post("/api/orders/<order_id>/confirm")
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
    order = confirm.confirm_order(b, order_id, secret=secret, quote_tx=quote_tx, wallet=wallet,
                                  wallet_auth=data.get("wallet_auth"))
    return jsonify(_confirm_response(order))


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
def cancel_order(order_id: str):
    """The maker cancels an open order; a sell order's escrow is refunded."""
    b = bridge()
    data = body.json_object({"wallet", "wallet_auth"})
    wallet = body.text(data, "wallet", required=True)
    order = cancel.cancel_order(b, order_id, wallet, data.get("wallet_auth"))
    refunded = order.status == Status.CANCELLED
    if refunded:
        message = "Order cancelled. Escrow refunded."
    elif order.status == Status.SETTLEMENT_RECOVERY:
        message = ("Order cancelled, but the escrow job was moved on the node by someone else; "
                   "operators were alerted and will resolve the refund.")
    else:
        message = "Order cancel accepted; escrow refund is pending and will be retried by reconciliation."
    return jsonify(ok=True, **views.order_view(order), escrow_refunded=refunded, message=message)


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
