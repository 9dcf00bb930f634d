"""Create an order (``POST /api/orders``): a sell order locks the seller's escrow first.
"""

from __future__ import annotations

from dataclasses import dataclass

from otc_bridge.context import Bridge
from otc_bridge.domain import money
from otc_bridge.domain.errors import Conflict, Invalid
from otc_bridge.domain.hashlock import new_preimage
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement.lock import escrow_intent, lock_escrow
from otc_bridge.settlement.record import Step
from otc_bridge.storage import orders, quote_locks
from otc_bridge.trading.common import (
    HASHLOCK_REUSED,
    check_buyer_held,
    new_order_id,
    verify_and_burn,
)


@dataclass(frozen=True)
class CreateRequest:
    """A validated create: amounts in micro-RTC / nano-quote, TTL in seconds."""

    side: str
    pair: str
    wallet: str  # as sent (the signature covers it); canonicalised after verification
    quote_address: str
    amount_micro_rtc: int
    price_nano_quote: int
    ttl_seconds: int
    wallet_auth: object
    htlc_hash: str | None = None  # buyer-held buy order: sha256 of the maker's own preimage
    # A sell order's (preimage, hashlock), made by the caller so it can keep the preimage with
    # the request's Idempotency-Key before anything is written (api/idempotency.py); None: made here.
    preimage: tuple[str, str] | None = None


@dataclass(frozen=True)
class Created:
    """Outcome of a create: the order, and the preimage for a sell order (shown once)."""

    order: Order
    htlc_secret: str | None


def create_order(bridge: Bridge, req: CreateRequest) -> Created:
    """Create an order. Sell: lock the seller's escrow first, then open it (201).

    Raises 401 on a bad or replayed signature; 400 ``Insufficient RTC balance`` (sell) when the
    node refuses the job because the seller's balance does not cover reward + fee, and 400
    ``Failed to lock RTC in escrow`` when it refuses it for another reason (the order ends
    ``cancelled``, cause ``escrow_refused``, nothing held: the node's own balance check at job
    creation is the check, docs/protocol.md §5); 502 when the node's
    answer is unusable (the order stays ``locking`` for the reconciler, which refunds it:
    without the preimage, which only this response carries, it could never settle).
    """
    bound = {"side": req.side, "pair": req.pair, "amount_micro_rtc": req.amount_micro_rtc,
             "price_per_rtc_nano_quote": req.price_nano_quote, "ttl_seconds": req.ttl_seconds,
             "eth_address": req.quote_address}
    if req.htlc_hash is not None:
        if req.side != "buy":
            raise Invalid("htlc_hash is sent by the RTC buyer: on a buy order's create or a sell order's match",
                          field="htlc_hash")
        check_buyer_held(bridge, req.pair)
        bound["htlc_hash"] = req.htlc_hash  # the signature binds the buyer's hashlock
    verified = verify_and_burn(bridge, req.wallet, req.wallet_auth, "create_order", "create_order", bound)
    now = bridge.now()
    order_id = new_order_id()
    secret, htlc_hash = (req.preimage or new_preimage()) if req.side == "sell" else (None, None)
    status = Status.LOCKING if req.side == "sell" else Status.OPEN
    columns = {
        "order_id": order_id, "side": req.side, "pair": req.pair, "status": str(status),
        "maker_wallet": verified.wallet, "maker_quote_address": req.quote_address,
        "amount_micro_rtc": req.amount_micro_rtc, "price_nano_quote": req.price_nano_quote,
        "total_quote_nano": money.total_quote_nano(req.amount_micro_rtc, req.price_nano_quote),
        "ttl_seconds": req.ttl_seconds, "created_at": now, "expires_at": now + req.ttl_seconds,
        "updated_at": now, "htlc_hash": htlc_hash,
    }
    if req.side == "sell":
        job_ttl = req.ttl_seconds + bridge.config.settle_window_seconds + bridge.config.escrow_margin_for(req.pair)
        columns.update(escrow_intent(order_id, 1, verified.wallet, req.amount_micro_rtc, job_ttl))
    if req.htlc_hash is not None:
        columns |= {"htlc_hash": req.htlc_hash, "preimage_holder": "buyer"}
    with bridge.db.transaction() as tx:
        if req.htlc_hash is not None and quote_locks.hashlock_used(tx.conn, req.htlc_hash):
            raise Conflict(HASHLOCK_REUSED)
        order = orders.insert_order(tx, columns, actor=verified.wallet, reason="order created", now=now)
    if req.side == "buy":
        return Created(order, None)
    with Step(bridge, order) as step:
        lock_escrow(step, title=f"OTC Bridge Escrow: {order_id}", insufficient="Insufficient RTC balance",
                    description=f"Escrowed {money.format_units(req.amount_micro_rtc, 6)} RTC for "
                                f"OTC sell order {order_id} ({req.pair}).")
        order = step.move(Status.OPEN, reason="escrow verified and held by the bridge; order on the book")
    return Created(order, secret)
