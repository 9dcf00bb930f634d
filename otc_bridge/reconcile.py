"""The reconciler: one idempotent pass that finishes whatever requests left unfinished.

``run_once(bridge)`` runs at startup and on a timer in the serving process, from
``POST /admin/reconcile`` and from ``otc-bridge reconcile``; a lease in SQLite makes one
process the driver at a time (SPEC §7). Every decision comes from an authoritative read of
the node (the escrow job, or the payout by its ``tx_hash``), never from a guess, and every
action is an ``order_events`` row. What it finishes:

* ``locking`` older than the grace period: the create or buy-match request died or lost the
  node's answer. The preimage went out only in that lost response, so the order can never
  settle: a job found by its reference is refunded (a buy order then goes back on the book);
  no job means nothing was locked and the intent is abandoned.
* ``settling`` older than the grace period: release and payout resume from the job's state.
* ``payout_pending``: confirmed -> ``completed``; voided or unknown to the node -> recovery.
* ``refund_pending``: the refund resumes from the job's state.
* ``open`` past expiry: buy orders end, sell orders' escrow is refunded.
* ``matched`` past ``settle_by``: unwind. A sell order returns to the book if its own TTL
  allows, else its escrow is refunded; a buy order's taker escrow is refunded and the
  order returns to the book (or expires).
* ``settlement_recovery``: moved forward only on the node's proof: the payout queued or
  confirmed; or no payout under the order's own key while its escrow sits released with the
  bridge's worker (then the keyed payout is re-sent: the same key can never pay twice).
  Everything else is an operator's decision (``otc-bridge attention``).

A 429 from the node stops the pass (``backoff_seconds`` in the result): back off, never spin.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable

from otc_bridge import leases, metrics, settlement
from otc_bridge.context import Bridge
from otc_bridge.errors import BridgeError, NodeBusy
from otc_bridge.model import Status
from otc_bridge.store import ConcurrentUpdate

log = logging.getLogger(__name__)

LEASE_NAME = "reconciler"
COUNTS = ("adopted", "abandoned", "released", "promoted", "still_pending", "recovered", "refunded",
          "refund_waiting", "expired", "unwound", "resolved", "waiting", "errors")
_SELL_UNWIND = dict.fromkeys(("taker_wallet", "taker_quote_address", "matched_at", "settle_by", "payout_wallet"))


def run_once(bridge: Bridge, limit: int = 500) -> dict[str, int]:
    """One pass over every state the reconciler drives; returns the counts in ``COUNTS`` plus
    ``skipped_locked`` (1 if another process held the lease) and ``backoff_seconds``.

    Orders are handled one by one; a failure on one is logged with its traceback and counted
    in ``errors``, and never stops the pass. An order another actor moved meanwhile is skipped.
    """
    holder = leases.new_holder()
    lease_ttl = max(300, 10 * bridge.config.node_read_timeout_seconds)
    if not leases.try_acquire(bridge.db, LEASE_NAME, holder, lease_ttl, bridge.now()):
        return {**dict.fromkeys(COUNTS, 0), "skipped_locked": 1, "backoff_seconds": 0}
    counts: Counter[str] = Counter()
    try:
        _pass(bridge, counts, limit)
    except NodeBusy as busy:
        log.warning("reconcile pass stopped: node rate limit, retry in %ss", busy.retry_after_seconds)
        counts["backoff_seconds"] = busy.retry_after_seconds
    finally:
        leases.release(bridge.db, LEASE_NAME, holder)
    result = {name: counts.get(name, 0) for name in (*COUNTS, "backoff_seconds")}
    result["skipped_locked"] = 0
    metrics.record_pass(bridge.db, LEASE_NAME, result, bridge.now())
    log.info("reconcile pass: %s", {k: v for k, v in result.items() if v})
    return result


def _pass(bridge: Bridge, counts: Counter, limit: int) -> None:
    now, grace = bridge.now(), bridge.config.settlement_stuck_seconds
    steps: list[tuple[str, tuple, Callable[[Bridge, sqlite3.Row, Counter], None]]] = [
        ("status = 'payout_pending'", (), _promote),
        ("status = 'settling' AND updated_at <= ?", (now - grace,), _resume_release),
        ("status = 'locking' AND updated_at <= ?", (now - grace,), _finish_locking),
        ("status = 'matched' AND settle_by <= ?", (now,), _unwind),
        ("status = 'open' AND expires_at <= ?", (now,), _expire),
        ("status = 'refund_pending'", (), _refund),
        ("status = 'settlement_recovery'", (), _recheck_recovery),
    ]
    for where, params, action in steps:
        rows = bridge.db.read(f"SELECT * FROM orders WHERE {where} ORDER BY updated_at LIMIT ?",  # noqa: S608
                              (*params, limit))
        for order in rows:
            _guard(bridge, counts, order, action)


def _guard(bridge: Bridge, counts: Counter, order: sqlite3.Row, action) -> None:
    try:
        action(bridge, order, counts)
    except ConcurrentUpdate:
        log.info("order %s moved during reconcile; skipped", order["order_id"])
    except NodeBusy:
        raise
    except BridgeError as exc:  # a recorded outcome the node refused or left open: retried next pass
        log.warning("reconcile of order %s: %s", order["order_id"], exc.error)
        counts["waiting"] += 1
    except Exception:
        log.exception("reconcile failed for order %s", order["order_id"])
        counts["errors"] += 1


def _tally(counts: Counter, fresh: sqlite3.Row, by_status: dict[Status, str], default: str) -> None:
    counts[by_status.get(Status(fresh["status"]), default)] += 1


def _promote(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    status = bridge.node.tx_status(order["payout_tx_hash"])
    settlement.record_call(bridge, order["order_id"], status.result, ref=order["payout_tx_hash"],
                           reason="reconcile: payout status")
    if status.status == "not_found":
        # The node answered our transfer as queued, so it must know it: never guess.
        settlement.move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="reconciler",
                        reason="node has no record of the queued payout",
                        alert=("payout_missing", "payout_pending order's transfer not found on the node"))
        counts["recovered"] += 1
        return
    phase = settlement.PHASE_OF_TX_STATUS.get(status.status or "")
    if phase is None:
        counts["still_pending"] += 1
        return
    fresh = settlement.apply_payout_phase(bridge, order, phase,
                                          settlement.node_ref(status.result, order["payout_tx_hash"]))
    _tally(counts, fresh, {Status.COMPLETED: "promoted", Status.SETTLEMENT_RECOVERY: "recovered"}, "still_pending")


def _resume_release(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    fresh = settlement.advance_release(bridge, order)
    _tally(counts, fresh, {Status.COMPLETED: "released", Status.PAYOUT_PENDING: "released",
                           Status.SETTLEMENT_RECOVERY: "recovered", Status.MATCHED: "released"}, "waiting")


def _finish_locking(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    """Resolve an abandoned escrow intent (see the module docstring)."""
    if order["escrow_job_id"] is None:
        job_id = settlement.find_job_by_ref(bridge, order)
        if job_id is None:
            settlement.abandon_lock(bridge, order, "reconciler: no escrow job exists for this intent")
            counts["abandoned"] += 1
            return
        order = settlement.annotate(bridge, order, {"escrow_job_id": job_id},
                                    reason="reconciler found the escrow job by its reference")
    cause = "escrow_outcome_lost" if order["side"] == "sell" else "taker_escrow_rejected"
    order = settlement.move(bridge, order, Status.REFUND_PENDING, actor="reconciler",
                            reason="escrow created but its response (with the preimage) was lost; refunding",
                            changes={"end_cause": cause})
    counts["adopted"] += 1
    _refund(bridge, order, counts)


def _unwind(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    """A match past ``settle_by`` with no winning confirm (SPEC §4)."""
    now = bridge.now()
    counts["unwound"] += 1
    if order["side"] == "sell" and now < order["expires_at"]:
        settlement.move(bridge, order, Status.OPEN, actor="reconciler",
                        reason="settle_by passed without a confirm; sell order back on the book",
                        changes=_SELL_UNWIND)
        return
    cause = "settle_deadline_passed" if order["side"] == "sell" else "taker_escrow_rejected"
    order = settlement.move(bridge, order, Status.REFUND_PENDING, actor="reconciler",
                            reason="settle_by passed without a confirm; escrow to be refunded",
                            changes={"end_cause": cause})
    _refund(bridge, order, counts)


def _expire(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    now = bridge.now()
    counts["expired"] += 1
    if order["side"] == "buy":
        settlement.move(bridge, order, Status.EXPIRED, actor="reconciler", reason="order TTL passed",
                        changes={"end_cause": "expired", "ended_at": now})
        return
    order = settlement.move(bridge, order, Status.REFUND_PENDING, actor="reconciler",
                            reason="order TTL passed; escrow to be refunded", changes={"end_cause": "expired"})
    _refund(bridge, order, counts)


#: A refund still pending this many grace periods after its order ended needs a human.
STUCK_REFUND_GRACES = 12


def _refund(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    fresh = settlement.advance_refund(bridge, order)
    # open: a buy order whose taker escrow came back is on the book again.
    _tally(counts, fresh, {Status.CANCELLED: "refunded", Status.EXPIRED: "refunded", Status.OPEN: "refunded",
                           Status.SETTLEMENT_RECOVERY: "recovered"}, "refund_waiting")
    stuck_for = bridge.now() - fresh["updated_at"]
    threshold = STUCK_REFUND_GRACES * bridge.config.settlement_stuck_seconds
    if fresh["status"] == Status.REFUND_PENDING and stuck_for >= threshold:
        # Deduplicated per order version: a refund stuck on the same version alerts once.
        settlement.raise_alert(bridge, fresh, "refund_stuck", f"refund pending for {stuck_for} s")


def _recheck_recovery(bridge: Bridge, order: sqlite3.Row, counts: Counter) -> None:
    """Move ``settlement_recovery`` forward only on proof from the node (SPEC §4 rule 3):
    the order's payout queued or confirmed. Nothing else is automatic: an escrow refunded
    behind the bridge's back (perhaps by a seller who already revealed the preimage and took
    the quote) must never pass for a normal refund; an operator resolves it (``resolve``),
    and a voided payout needs an operator's new key (``redrive-payout --new-key``)."""
    if not order["payout_key"]:
        counts["waiting"] += 1
        return
    status = bridge.node.tx_status(order["payout_tx_hash"])
    settlement.record_call(bridge, order["order_id"], status.result, ref=order["payout_tx_hash"],
                           reason="reconcile: recheck payout of an order in recovery")
    if status.status in ("pending", "confirmed"):
        fresh = settlement.apply_payout_phase(bridge, order, status.status,
                                              settlement.node_ref(status.result, order["payout_tx_hash"]))
        _tally(counts, fresh, {Status.COMPLETED: "resolved", Status.PAYOUT_PENDING: "resolved"}, "waiting")
        return
    if status.status == "not_found" and _payout_due(bridge, order):
        # Proof that no payout exists under this key while the escrow sits with our worker:
        # re-sending with the same key is safe (NODE_API §1.11), so finish the settlement.
        fresh = settlement.pay_buyer(bridge, order)
        _tally(counts, fresh, {Status.COMPLETED: "resolved", Status.PAYOUT_PENDING: "resolved"}, "waiting")
        return
    counts["waiting"] += 1


def _payout_due(bridge: Bridge, order: sqlite3.Row) -> bool:
    """The original payout key (never an operator's re-drive key) and the escrow released to
    the bridge's worker with the order's exact amounts: the buyer is owed that payout."""
    if order["payout_key"] != f"otc_payout:{order['order_id']}" or not order["escrow_job_id"]:
        return False
    job = settlement.read_job(bridge, order, "reconcile: is the unsent payout's escrow with the worker?")
    return (job is not None and job.status == "completed" and job.worker_wallet == bridge.config.worker_wallet
            and settlement.job_problem(bridge, order, job) is None)
