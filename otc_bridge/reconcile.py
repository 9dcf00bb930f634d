"""The reconciler's pass: finish what requests left unfinished (first version).

``run_once(bridge)`` is idempotent and safe to run at any time, from ``POST
/admin/reconcile`` or ``otc-bridge reconcile``. This first version (issue #2) promotes
``payout_pending`` orders whose payout the node reports confirmed, retries
``refund_pending`` refunds, and ends ``open`` orders past their expiry. Locking,
settling, matches past ``settle_by`` and ``settlement_recovery`` are the full
reconciler's (issue #3) and are counted as ``left`` here.
"""

from __future__ import annotations

import logging
from collections import Counter

from otc_bridge import settlement
from otc_bridge.context import Bridge
from otc_bridge.model import Status
from otc_bridge.store import ConcurrentUpdate

log = logging.getLogger(__name__)

_LEFT_FOR_LATER = (Status.LOCKING, Status.SETTLING, Status.SETTLEMENT_RECOVERY)


def run_once(bridge: Bridge, limit: int = 500) -> dict[str, int]:
    """One pass; returns counts: ``promoted`` (-> completed), ``still_pending``,
    ``recovered`` (-> settlement_recovery), ``refunded``, ``refund_waiting``, ``expired``,
    ``left`` (states this version does not drive), ``errors``.

    Each order is handled on its own; a failure on one (logged with traceback and
    counted) never stops the pass. Orders another actor moved meanwhile are skipped.
    """
    counts: Counter[str] = Counter()
    now = bridge.now()
    db = bridge.db
    for order in db.read("SELECT * FROM orders WHERE status = ? ORDER BY updated_at LIMIT ?",
                         (Status.PAYOUT_PENDING, limit)):
        _guard(counts, order, lambda o=order: _promote(bridge, o, counts))
    for order in db.read("SELECT * FROM orders WHERE status = 'open' AND expires_at <= ? LIMIT ?", (now, limit)):
        _guard(counts, order, lambda o=order: _expire(bridge, o, counts))
    for order in db.read("SELECT * FROM orders WHERE status = ? ORDER BY updated_at LIMIT ?",
                         (Status.REFUND_PENDING, limit)):
        _guard(counts, order, lambda o=order: _refund(bridge, o, counts))
    counts["left"] += db.read_one(
        f"SELECT COUNT(*) FROM orders WHERE status IN ({','.join('?' * len(_LEFT_FOR_LATER))})",  # noqa: S608
        tuple(str(s) for s in _LEFT_FOR_LATER))[0]
    result = {k: counts.get(k, 0) for k in ("promoted", "still_pending", "recovered", "refunded",
                                            "refund_waiting", "expired", "left", "errors")}
    log.info("reconcile pass: %s", result)
    return result


def _guard(counts: Counter, order, action) -> None:
    try:
        action()
    except ConcurrentUpdate:
        log.info("order %s moved during reconcile; skipped", order["order_id"])
    except Exception:
        log.exception("reconcile failed for order %s", order["order_id"])
        counts["errors"] += 1


def _promote(bridge: Bridge, order, counts: Counter) -> None:
    status = bridge.node.tx_status(order["payout_tx_hash"])
    settlement.record_call(bridge, order["order_id"], status.result, ref=order["payout_tx_hash"],
                           reason="reconcile: payout status")
    phase = {"pending": "pending", "confirmed": "confirmed", "failed": "voided"}.get(status.status or "")
    if status.status == "not_found":
        # Our transfer was answered as queued, so the node must know it: never guess.
        fresh = settlement.move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="reconciler",
                                reason="node has no record of the queued payout",
                                alert=("payout_missing", "payout_pending order's transfer not found on the node"))
        counts["recovered" if fresh["status"] == Status.SETTLEMENT_RECOVERY else "errors"] += 1
        return
    if phase is None:
        counts["still_pending"] += 1
        return
    fresh = settlement.apply_payout_phase(bridge, order, phase, settlement.node_ref(status.result,
                                                                                  order["payout_tx_hash"]))
    counts[{Status.COMPLETED: "promoted", Status.SETTLEMENT_RECOVERY: "recovered"}.get(
        Status(fresh["status"]), "still_pending")] += 1


def _expire(bridge: Bridge, order, counts: Counter) -> None:
    now = bridge.now()
    if order["side"] == "buy":
        settlement.move(bridge, order, Status.EXPIRED, actor="reconciler", reason="order TTL passed",
                        changes={"end_cause": "expired", "ended_at": now})
        counts["expired"] += 1
        return
    settlement.move(bridge, order, Status.REFUND_PENDING, actor="reconciler",
                    reason="order TTL passed; escrow to be refunded", changes={"end_cause": "expired"})
    counts["expired"] += 1


def _refund(bridge: Bridge, order, counts: Counter) -> None:
    fresh = settlement.advance_refund(bridge, order)
    if fresh["status"] in (Status.CANCELLED, Status.EXPIRED, Status.OPEN):  # open: buy order re-listed
        counts["refunded"] += 1
    elif fresh["status"] == Status.SETTLEMENT_RECOVERY:
        counts["recovered"] += 1
    else:
        counts["refund_waiting"] += 1

