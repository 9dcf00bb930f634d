"""Post-commit invariant checks of an order row (SPEC §4 rule 5).

Run after every transition commits. A broken invariant is a bug somewhere on the money
path: it is logged with the order id and a stable code, and raised, so the API answers
500 instead of reporting success (issue "Audit trail": alerted and counted as well).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter

from otc_bridge import store
from otc_bridge.db import Database
from otc_bridge.htlc import preimage_matches
from otc_bridge.model import Status

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


def violations(conn: sqlite3.Connection, order: sqlite3.Row) -> list[str]:
    """Stable codes of every invariant ``order`` breaks (empty if none)."""
    status = Status(order["status"])
    codes: list[str] = []
    trade = conn.execute("SELECT * FROM trades WHERE order_id = ?", (order["order_id"],)).fetchone()
    if status == Status.COMPLETED:
        if trade is None:
            codes.append("completed_without_trade")
        if order["confirmed_at"] is None:
            codes.append("completed_without_confirmed_at")
        if not order["payout_tx_hash"]:
            codes.append("completed_without_payout")
    elif trade is not None:
        codes.append("trade_without_completed")
    if order["htlc_secret"] is not None:
        if status not in _MAY_HOLD_PREIMAGE:
            codes.append("preimage_stored_before_confirm")
        elif not order["htlc_hash"] or not preimage_matches(order["htlc_secret"], order["htlc_hash"]):
            codes.append("preimage_does_not_match_hash")
    elif status in _NEEDS_PREIMAGE:
        codes.append("preimage_missing")
    if status in _HAS_TAKER and not (order["taker_wallet"] and order["settle_by"] and order["htlc_hash"]
                                     and order["escrow_job_id"]):
        codes.append("matched_without_taker_or_escrow")
    if status == Status.OPEN and order["side"] == "sell" and not (order["escrow_job_id"] and order["htlc_hash"]):
        codes.append("open_sell_without_escrow")
    if status == Status.OPEN and order["side"] == "buy" and (order["taker_wallet"] or order["escrow_job_id"]):
        codes.append("open_buy_with_taker")
    if status == Status.PAYOUT_PENDING and not order["payout_tx_hash"]:
        codes.append("payout_pending_without_tx")
    if order["taker_wallet"] and order["taker_wallet"] == order["maker_wallet"]:
        codes.append("self_match")
    return codes


_failures = Counter()
_failures_lock = threading.Lock()


def failure_counts() -> dict[str, int]:
    """Invariant failures seen by this process since start, by code (for ``/metrics``)."""
    with _failures_lock:
        return dict(_failures)


def check_after_commit(db: Database, order_id: str) -> None:
    """Re-read ``order_id``; if any invariant fails: log it with a stable code, count it,
    raise an operator alert through the outbox (its own transaction, deduplicated per order
    version and code), then raise :class:`InvariantBroken` so the caller answers 500
    instead of reporting success."""
    conn = db.connection()
    order = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    codes = ["order_missing"] if order is None else violations(conn, order)
    if not codes:
        return
    log.error("invariant broken for order %s: %s", order_id, ",".join(codes))
    with _failures_lock:
        _failures.update(codes)
    if order is not None:
        try:
            with db.transaction() as tx:
                store.alert(tx, order, code="invariant_broken", message=",".join(codes), now=int(time.time()))
        except Exception:
            log.exception("could not record the invariant alert for order %s", order_id)
    raise InvariantBroken(order_id, codes)
