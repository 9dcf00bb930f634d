"""Post-commit invariant checks of an order row (docs/protocol.md §4 rule 5).

Run after every transition commits. A broken invariant is a bug somewhere on the money
path: it is logged with the order id and a stable code, and raised, so the API answers
500 instead of reporting success (issue "Audit trail": alerted and counted as well).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from otc_bridge.domain.hashlock import preimage_matches
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.storage import outbox
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)

_HAS_TAKER = frozenset({Status.MATCHED, Status.SETTLING, Status.PAYOUT_PENDING, Status.COMPLETED})
#: Statuses that need the preimage; ``settlement_recovery`` may hold it (after a confirm) or
#: not (reached from a refund), so it is only checked for a match when present.
_NEEDS_PREIMAGE = frozenset({Status.SETTLING, Status.PAYOUT_PENDING, Status.COMPLETED})
_MAY_HOLD_PREIMAGE = _NEEDS_PREIMAGE | {Status.SETTLEMENT_RECOVERY}


class InvariantBroken(RuntimeError):
    """An order row violates an invariant; ``codes`` lists the stable error codes."""

    def __init__(self, order_id: str, codes: list[str]) -> None:
        super().__init__(f"order {order_id}: invariant broken: {', '.join(codes)}")
        self.order_id = order_id
        self.codes = codes


def violations(order: Order, *, has_trade: bool) -> list[str]:
    """Stable codes of every invariant ``order`` breaks (empty if none); ``has_trade`` says
    whether a ``trades`` row exists for it."""
    status = order.status
    codes: list[str] = []
    if status == Status.COMPLETED:
        if not has_trade:
            codes.append("completed_without_trade")
        if order.confirmed_at is None:
            codes.append("completed_without_confirmed_at")
        if not order.payout_tx_hash:
            codes.append("completed_without_payout")
    elif has_trade:
        codes.append("trade_without_completed")
    if order.htlc_secret is not None:
        if status not in _MAY_HOLD_PREIMAGE:
            codes.append("preimage_stored_before_confirm")
        elif not order.htlc_hash or not preimage_matches(order.htlc_secret, order.htlc_hash):
            codes.append("preimage_does_not_match_hash")
    elif status in _NEEDS_PREIMAGE:
        codes.append("preimage_missing")
    if status in _HAS_TAKER and not (order.taker_wallet and order.settle_by and order.htlc_hash
                                     and order.escrow_job_id):
        codes.append("matched_without_taker_or_escrow")
    if status == Status.OPEN and order.side == "sell" and not (order.escrow_job_id and order.htlc_hash):
        codes.append("open_sell_without_escrow")
    if status == Status.OPEN and order.side == "buy" and (order.taker_wallet or order.escrow_job_id):
        codes.append("open_buy_with_taker")
    if status == Status.PAYOUT_PENDING and not order.payout_tx_hash:
        codes.append("payout_pending_without_tx")
    if order.taker_wallet and order.taker_wallet == order.maker_wallet:
        codes.append("self_match")
    return codes


_failures = Counter()
_failures_lock = threading.Lock()


def failure_counts() -> dict[str, int]:
    """Invariant failures seen by this process since start, by code (for ``/metrics``)."""
    with _failures_lock:
        return dict(_failures)


def check_after_commit(db: Database, order: Order, *, has_trade: bool) -> None:
    """Check ``order`` as its transaction committed it; if any invariant fails: log it with a
    stable code, count it, raise an operator alert through the outbox (its own transaction,
    deduplicated per order version and code), then raise :class:`InvariantBroken` so the
    caller answers 500 instead of reporting success."""
    codes = violations(order, has_trade=has_trade)
    if not codes:
        return
    log.error("invariant broken for order %s: %s", order.order_id, ",".join(codes))
    with _failures_lock:
        _failures.update(codes)
    try:
        with db.transaction() as tx:
            outbox.alert(tx, order, code="invariant_broken", message=",".join(codes), now=int(time.time()))
    except Exception:
        log.exception("could not record the invariant alert for order %s", order.order_id)
    raise InvariantBroken(order.order_id, codes)
