"""Match an open order (``POST /api/orders/<id>/match``); a buy order makes the taker lock escrow.
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import Conflict, Gone, Invalid, NodeUnavailable
from otc_bridge.domain.hashlock import new_preimage
from otc_bridge.domain.order import Order
from otc_bridge.domain.quote_lock import verified_on_chain
from otc_bridge.domain.status import Status
from otc_bridge.settlement.escrow_job import held_by_bridge, job_problem, read_job
from otc_bridge.settlement.lock import escrow_intent, lock_escrow
from otc_bridge.settlement.record import Step
from otc_bridge.settlement.refund import safe_refund_escrow
from otc_bridge.storage import quote_locks
from otc_bridge.storage.orders import ConcurrentUpdate
from otc_bridge.trading.common import (
    HASHLOCK_REUSED,
    check_buyer_held,
    order_or_404,
    verify_and_burn,
)


def match_order(bridge: Bridge, order_id: str, wallet: str, quote_address: str,
                wallet_auth: object, *, htlc_hash: str | None = None,
                preimage: tuple[str, str] | None = None) -> tuple[Order, str | None]:
    """Take an open order; returns ``(order, htlc_secret)`` (secret only for a buy order,
    whose taker is the RTC seller and locks escrow now).

    Raises 401 (signature), 404, 409 ``Order is not open``, 400 ``Cannot match your own
    order`` (compared canonically), 410 ``Order has expired``, 400 ``Insufficient RTC balance
    to fill this buy order`` (the node refused the taker's escrow job for its balance; the
    order is back ``open``), 409 when another match won,
    409 when a sell order's escrow is no longer held on the node (recorded, alerted).
    """
    bound = {"eth_address": quote_address} | ({"htlc_hash": htlc_hash} if htlc_hash is not None else {})
    verified = verify_and_burn(bridge, wallet, wallet_auth, "match_order", order_id, bound)
    order = order_or_404(bridge, order_id)
    _check_matchable(bridge, order, verified.wallet)
    guard = None
    if htlc_hash is not None:  # buyer-held: the taker of a sell order is the RTC buyer
        if order.side != "sell":
            raise Invalid("htlc_hash is sent by the RTC buyer: on a buy order's create or a sell order's match",
                          field="htlc_hash")
        check_buyer_held(bridge, order.pair)
        if quote_locks.hashlock_used(bridge.db.connection(), htlc_hash):
            raise Conflict(HASHLOCK_REUSED)
        guard = quote_locks.hashlock_unused_guard(htlc_hash)  # the same rule, race-free, in the CAS
    with Step(bridge, order) as step:
        if order.side == "sell":
            _check_escrow_still_held(step)
        now = bridge.now()
        secret = None
        changes = {"taker_wallet": verified.wallet, "taker_quote_address": quote_address}
        if order.side == "sell":
            to = Status.MATCHED
            changes |= {"payout_wallet": verified.wallet, **_deadlines(bridge, order, now)}
            if htlc_hash is not None:  # the seller's creation-time preimage is void from now on
                changes |= {"htlc_hash": htlc_hash, "preimage_holder": "buyer"}
        else:
            to = Status.LOCKING
            if order.buyer_holds_preimage:  # the maker (RTC buyer) chose the hashlock at create
                htlc_hash = order.htlc_hash
            else:  # the caller may have made it, to keep it with its Idempotency-Key first
                secret, htlc_hash = preimage or new_preimage()
            ttl = bridge.config.settle_window_seconds + bridge.config.escrow_margin_for(order.pair)
            changes |= {"htlc_hash": htlc_hash, "payout_wallet": order.maker_wallet,
                        **escrow_intent(order_id, order.order_version + 1, verified.wallet, order.amount_micro_rtc,
                                        ttl)}
        try:
            order = step.move(to, actor=verified.wallet, reason="taker matched the order", changes=changes,
                              guard=guard)
        except ConcurrentUpdate:
            if htlc_hash is not None and quote_locks.hashlock_used(bridge.db.connection(), htlc_hash) \
                    and order.side == "sell":
                raise Conflict(HASHLOCK_REUSED) from None
            raise Conflict("Order was matched by someone else") from None
        if order.side == "buy":
            lock_escrow(step, title=f"OTC Bridge Escrow: {order_id} (taker)",
                        insufficient="Insufficient RTC balance to fill this buy order",
                        description=f"Escrowed RTC for OTC buy order match {order_id}. Buyer: {order.maker_wallet}.")
            order = step.move(Status.MATCHED, reason="taker escrow verified and held; waiting for the preimage",
                              changes=_deadlines(bridge, order, bridge.now()))
    return order, secret


def _deadlines(bridge: Bridge, order: Order, matched_at: int) -> dict:
    """``matched_at`` and ``settle_by`` (unix seconds) of a match made at ``matched_at``; for
    a pair verified on chain also ``lock_by`` (the buyer's lock must be mined by then) and
    the quote leg's first state (docs/protocol.md §12.2)."""
    deadlines = {"matched_at": matched_at, "settle_by": matched_at + bridge.config.settle_window_seconds}
    q = bridge.config.quote_chain
    if bridge.chain is not None and verified_on_chain(order.pair, q.usdc_address):
        deadlines |= {"lock_by": matched_at + q.lock_window_seconds, "quote_leg_state": "awaiting_lock",
                      "quote_leg_reason": None}
    return deadlines


def _check_matchable(bridge: Bridge, order: Order, taker: str) -> None:
    if order.status != Status.OPEN:
        raise Conflict(f"Order is not open (status: {order.status})")
    if order.maker_wallet == taker:
        raise Invalid("Cannot match your own order")
    if bridge.now() >= order.expires_at:
        raise Gone("Order has expired")


def _check_escrow_still_held(step: Step) -> None:
    """Read the sell order's job before matching: a buyer must never pay into a swap whose
    escrow someone else already moved (docs/escrow-node.md §2)."""
    order = step.order
    job = read_job(step, "check escrow before match")
    if job is None:
        raise NodeUnavailable("Escrow node did not answer; nothing was changed, retry the match")
    if held_by_bridge(step.bridge, order, job):
        return
    problem = job_problem(order, job) or (
        f"escrow job is {job.status} with worker {job.worker_wallet!r} while the order is open")
    try:
        moved = step.move(Status.REFUND_PENDING, reason=problem, changes={"end_cause": "escrow_moved"},
                          alert=("escrow_job_moved", problem))
    except ConcurrentUpdate:
        raise Conflict("Order is no longer open") from None
    safe_refund_escrow(step.bridge, moved)
    raise Conflict("Order escrow is no longer held on the node; the order was withdrawn", details=problem)
