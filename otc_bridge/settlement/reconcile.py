"""The reconciler: one idempotent pass that finishes whatever requests left unfinished.

``run_once(bridge)`` runs at startup and on a timer in the serving process, from
``POST /admin/reconcile`` and from ``otc-bridge reconcile``; a lease (a file lock the kernel
frees with its holder) makes one process the driver at a time (docs/protocol.md §7). Every
decision comes from an authoritative read of the node (the escrow job, or the payout by its
``tx_hash``), never from a guess, and every action is an ``order_events`` row. What it finishes:

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

Every pass starts with the escrow watch (:mod:`.watch`) and ends with the worker wallet's
checks (:mod:`.coverage`).

A 429 from the node stops the pass (``backoff_seconds`` in the result): back off, never spin.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import BridgeError, NodeBusy
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement import payout, release
from otc_bridge.settlement.coverage import cancel_foreign_jobs, check_coverage
from otc_bridge.settlement.escrow_job import find_job_by_ref, job_problem, read_job
from otc_bridge.settlement.lock import abandon_lock
from otc_bridge.settlement.quote_claim import claim_for_sellers, void_unclaimable_payouts
from otc_bridge.settlement.quote_watch import watch_quote_chain
from otc_bridge.settlement.record import Step, node_ref
from otc_bridge.settlement.refund import safe_refund_escrow
from otc_bridge.settlement.watch import refund_cause, watch_escrow
from otc_bridge.storage import heartbeats, leases, orders
from otc_bridge.storage.orders import ConcurrentUpdate

log = logging.getLogger(__name__)

LEASE_NAME = "reconciler"
COUNTS = ("adopted", "abandoned", "released", "promoted", "still_pending", "recovered", "refunded",
          "refund_waiting", "expired", "unwound", "resolved", "waiting", "watched", "tampered", "foreign_jobs",
          "coverage_breach", "quote_locks_seen", "quote_locks_reorged", "quote_leg_changes", "settled_from_chain",
          "quote_claims_sent", "payouts_voided", "chain_unavailable", "errors")
_SELL_UNWIND = dict.fromkeys(("taker_wallet", "taker_quote_address", "matched_at", "settle_by", "payout_wallet",
                              "lock_by", "quote_leg_state", "quote_leg_reason", "quote_lock_tx", "quote_swap_id",
                              "quote_timelock"))


def run_once(bridge: Bridge, limit: int = 500) -> dict[str, int]:
    """One pass over every state the reconciler drives; returns the counts in ``COUNTS`` plus
    ``skipped_locked`` (1 if another process held the lease) and ``backoff_seconds``.

    Orders are handled one by one; a failure on one is logged with its traceback and counted
    in ``errors``, and never stops the pass. An order another actor moved meanwhile is skipped.
    """
    # Held while this process lives (a file lock the kernel frees if it dies: docs/leases.md).
    lease = leases.try_hold(bridge.db, LEASE_NAME, now=bridge.now())
    if lease is None:
        return {**dict.fromkeys(COUNTS, 0), "skipped_locked": 1, "backoff_seconds": 0}
    counts: Counter[str] = Counter()
    try:
        _pass(bridge, counts, limit)
    except NodeBusy as busy:
        log.warning("reconcile pass stopped: node rate limit, retry in %ss", busy.retry_after_seconds)
        counts["backoff_seconds"] = busy.retry_after_seconds
    finally:
        lease.release()
    result = {name: counts.get(name, 0) for name in (*COUNTS, "backoff_seconds")}
    result["skipped_locked"] = 0
    heartbeats.record_pass(bridge.db, LEASE_NAME, result, bridge.now())
    log.info("reconcile pass: %s", {k: v for k, v in result.items() if v})
    return result


def _pass(bridge: Bridge, counts: Counter, limit: int) -> None:
    now, grace = bridge.now(), bridge.config.settlement_stuck_seconds
    watch_escrow(bridge, counts)  # first: a tampered order must not be unwound or expired as if held
    # Then the quote chain: a lock or a seller's claim seen now must count before any unwind.
    chain_now = watch_quote_chain(bridge, counts)
    steps: list[tuple[str, tuple, Callable[[Bridge, Order, Counter], None]]] = [
        ("status = 'payout_pending'", (), _promote),
        ("status = 'settling' AND updated_at <= ?", (now - grace,), _resume_release),
        ("status = 'locking' AND updated_at <= ?", (now - grace,), _finish_locking),
        ("status = 'matched' AND settle_by <= ?", (now,), _unwind),
        # No valid lock mined by lock_by (chain time of the safe head: every lock mined by then
        # has been counted): the match stops holding the seller's RTC.
        *([("status = 'matched' AND quote_leg_state IN ('awaiting_lock', 'invalid') AND lock_by <= ?",
            (chain_now,), _unwind)] if chain_now is not None else []),
        ("status = 'open' AND expires_at <= ?", (now,), _expire),
        ("status = 'refund_pending'", (), _refund),
        ("status = 'settlement_recovery'", (), _recheck_recovery),
    ]
    for where, params, action in steps:
        for order in orders.find(bridge.db.connection(), where, params, limit=limit):
            _guard(bridge, counts, order, action)
    # Buyer-held: claim for the sellers whose buyers' payouts this pass (or an earlier one) committed.
    claim_for_sellers(bridge, counts)
    void_unclaimable_payouts(bridge, counts)
    # Last: the worker wallet's exposure, measured after this pass's own payouts and refunds.
    cancel_foreign_jobs(bridge, counts)
    check_coverage(bridge, counts)


def _guard(bridge: Bridge, counts: Counter, order: Order, action) -> None:
    try:
        action(bridge, order, counts)
    except ConcurrentUpdate:
        log.info("order %s moved during reconcile; skipped", order.order_id)
    except NodeBusy:
        raise
    except BridgeError as exc:  # a recorded outcome the node refused or left open: retried next pass
        log.warning("reconcile of order %s: %s", order.order_id, exc.error)
        counts["waiting"] += 1
    except Exception:
        log.exception("reconcile failed for order %s", order.order_id)
        counts["errors"] += 1


def _tally(counts: Counter, fresh: Order, by_status: dict[Status, str], default: str) -> None:
    counts[by_status.get(fresh.status, default)] += 1


def _promote(bridge: Bridge, order: Order, counts: Counter) -> None:
    with Step(bridge, order) as step:
        status = bridge.node.tx_status(order.payout_tx_hash)
        step.call(status.result, ref=order.payout_tx_hash, reason="reconcile: payout status")
        if status.status == "not_found":
            # The node answered our transfer as queued, so it must know it: never guess.
            step.move(Status.SETTLEMENT_RECOVERY, actor="reconciler", reason="node has no record of the queued payout",
                      alert=("payout_missing", "payout_pending order's transfer not found on the node"))
            counts["recovered"] += 1
            return
        phase = payout.phase_of_tx_status(status.status)
        if phase is None:
            counts["still_pending"] += 1
            return
        fresh = payout.apply_phase(step, phase, node_ref(status.result, order.payout_tx_hash))
    _tally(counts, fresh, {Status.COMPLETED: "promoted", Status.SETTLEMENT_RECOVERY: "recovered"}, "still_pending")


def _resume_release(bridge: Bridge, order: Order, counts: Counter) -> None:
    if order.buyer_holds_preimage and bridge.chain is not None and _stopped_for_late_claim(bridge, order, counts):
        return
    fresh = release.advance_release(bridge, order)
    _tally(counts, fresh, {Status.COMPLETED: "released", Status.PAYOUT_PENDING: "released",
                           Status.SETTLEMENT_RECOVERY: "recovered", Status.MATCHED: "released"}, "waiting")


def _stopped_for_late_claim(bridge: Bridge, order: Order, counts: Counter) -> bool:
    """Buyer-held: no irreversible step once chain time reaches the lock's ``timelock -
    margin`` (docs/protocol.md §12.5): the claim for the seller could no longer land safely.
    A release nothing has moved yet goes back to ``matched`` (the buyer refunds the quote
    after the timelock; the match unwinds); one already under way is finished, with an
    alert. True if the release must not resume now (also when chain time is unreadable)."""
    from otc_bridge.chain.reader import ChainUnavailable  # loaded with the chain

    try:
        now = bridge.chain.latest_time()
    except ChainUnavailable as exc:
        log.warning("release of order %s waits: chain time unreadable (%s)", order.order_id, exc)
        counts["waiting"] += 1
        return True
    margin = bridge.config.quote_chain.buyer_margin_seconds
    if order.quote_timelock is None or now < order.quote_timelock - margin:
        return False
    late = (f"chain time {now} is past the lock's timelock {order.quote_timelock} minus the {margin} s margin "
            "before the release finished")
    with Step(bridge, order) as step:
        job = read_job(step, "release: read escrow job (claim window closed)")
        if (job is not None and job.status == "claimed" and job.worker_wallet == bridge.config.worker_wallet
                and job_problem(order, job) is None):
            step.move(Status.MATCHED, actor="reconciler", reason=f"{late}; nothing left escrow, the buyer refunds "
                      "the quote after its timelock", alert=("release_too_late", late),
                      changes={"htlc_secret": None, "quote_tx": None, "settling_at": None})
            counts["waiting"] += 1
            return True
        step.alert("quote_claim_late", f"{late}; the escrow is already moving, so the release is finished")
    return False


def _finish_locking(bridge: Bridge, order: Order, counts: Counter) -> None:
    """Resolve an abandoned escrow intent (see the module docstring)."""
    with Step(bridge, order) as step:
        if order.escrow_job_id is None:
            job_id = find_job_by_ref(step)
            if job_id is None:
                abandon_lock(step, "reconciler: no escrow job exists for this intent")
                counts["abandoned"] += 1
                return
            step.annotate({"escrow_job_id": job_id}, reason="reconciler found the escrow job by its reference")
        cause = "escrow_outcome_lost" if order.side == "sell" else "taker_escrow_rejected"
        order = step.move(Status.REFUND_PENDING, actor="reconciler",
                          reason="escrow created but its response (with the preimage) was lost; refunding",
                          changes={"end_cause": cause})
    counts["adopted"] += 1
    _refund(bridge, order, counts)


def _unwind(bridge: Bridge, order: Order, counts: Counter) -> None:
    """A match past ``settle_by`` with no winning confirm (docs/protocol.md §4), or past
    ``lock_by`` with no valid quote lock (§12.2)."""
    now = bridge.now()
    counts["unwound"] += 1
    step = Step(bridge, order)
    why = "settle_by passed without a confirm" if order.settle_by <= now else "no valid quote lock by lock_by"
    if order.escrow_tampered_at is not None:
        # The escrow is no longer a claimed job (the bridge holds it in custody): it never goes
        # back on the book; the seller is refunded from the worker wallet.
        order = step.move(Status.REFUND_PENDING, actor="reconciler", changes={"end_cause": refund_cause(order)},
                          reason=f"{why}; escrow held in custody to be refunded")
        _refund(bridge, order, counts)
        return
    # A buyer-held match replaced the seller's hashlock with the buyer's: that order cannot be
    # offered again (no one but that buyer knows the preimage), so it ends.
    if order.side == "sell" and now < order.expires_at and not order.buyer_holds_preimage:
        step.move(Status.OPEN, actor="reconciler", changes=_SELL_UNWIND, reason=f"{why}; sell order back on the book")
        return
    cause = "settle_deadline_passed" if order.side == "sell" else "taker_escrow_rejected"
    order = step.move(Status.REFUND_PENDING, actor="reconciler", reason=f"{why}; escrow to be refunded",
                      changes={"end_cause": cause})
    _refund(bridge, order, counts)


def _expire(bridge: Bridge, order: Order, counts: Counter) -> None:
    now = bridge.now()
    counts["expired"] += 1
    step = Step(bridge, order)
    if order.side == "buy":
        step.move(Status.EXPIRED, actor="reconciler", reason="order TTL passed",
                  changes={"end_cause": "expired", "ended_at": now})
        return
    order = step.move(Status.REFUND_PENDING, actor="reconciler", reason="order TTL passed; escrow to be refunded",
                      changes={"end_cause": "expired"})
    _refund(bridge, order, counts)


#: A refund still pending this many grace periods after its order ended needs a human.
STUCK_REFUND_GRACES = 12


def _refund(bridge: Bridge, order: Order, counts: Counter) -> None:
    fresh = safe_refund_escrow(bridge, order)
    # open: a buy order whose taker escrow came back is on the book again.
    _tally(counts, fresh, {Status.CANCELLED: "refunded", Status.EXPIRED: "refunded", Status.OPEN: "refunded",
                           Status.SETTLEMENT_RECOVERY: "recovered"}, "refund_waiting")
    stuck_for = bridge.now() - fresh.updated_at
    threshold = STUCK_REFUND_GRACES * bridge.config.settlement_stuck_seconds
    if fresh.status == Status.REFUND_PENDING and stuck_for >= threshold:
        # Deduplicated per order version: a refund stuck on the same version alerts once.
        Step(bridge, fresh).alert("refund_stuck", f"refund pending for {stuck_for} s")


def _recheck_recovery(bridge: Bridge, order: Order, counts: Counter) -> None:
    """Move ``settlement_recovery`` forward only on proof from the node (docs/protocol.md §4
    rule 3): the order's payout queued or confirmed. Nothing else is automatic: an escrow
    refunded behind the bridge's back (perhaps by a seller who already revealed the preimage
    and took the quote) must never pass for a normal refund; an operator resolves it
    (``resolve``), and a voided payout needs an operator's new key (``redrive-payout
    --new-key``)."""
    if not order.payout_key:
        counts["waiting"] += 1
        return
    with Step(bridge, order) as step:
        status = bridge.node.tx_status(order.payout_tx_hash)
        step.call(status.result, ref=order.payout_tx_hash, reason="reconcile: recheck payout of an order in recovery")
        phase = payout.phase_of_tx_status(status.status)
        if phase in ("pending", "confirmed"):
            fresh = payout.apply_phase(step, phase, node_ref(status.result, order.payout_tx_hash))
        elif status.status == "not_found" and _payout_due(step):
            # Proof that no payout exists under this key while the escrow sits with our worker:
            # re-sending with the same key is safe (docs/escrow-node.md §1.11), so finish it.
            fresh = payout.pay(step)
        else:
            counts["waiting"] += 1
            return
    _tally(counts, fresh, {Status.COMPLETED: "resolved", Status.PAYOUT_PENDING: "resolved"}, "waiting")


def _payout_due(step: Step) -> bool:
    """The original payout key (never an operator's re-drive key) and the escrow released to
    the bridge's worker with the order's exact amounts: the buyer is owed that payout."""
    order = step.order
    if order.payout_key != f"otc_payout:{order.order_id}" or not order.escrow_job_id:
        return False
    job = read_job(step, "reconcile: is the unsent payout's escrow with the worker?")
    return (job is not None and job.status == "completed" and job.worker_wallet == step.bridge.config.worker_wallet
            and job_problem(order, job) is None)
