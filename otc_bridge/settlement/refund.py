"""Refund: every escrow that goes back to its poster goes through :func:`safe_refund_escrow`.

Whatever the cause (cancel, expiry, unwind, a rejected or moved job), the refund is driven
from the node's state of the job: claimed -> deliver, delivered -> dispute, open/disputed
-> cancel (docs/escrow-node.md §1.9), and the order ends only when the node reports the job
``cancelled`` or ``expired``. A job that is not the order's to refund (another poster, or
completed by anyone) is never taken for a refund: the order goes to ``settlement_recovery``.
"""

from __future__ import annotations

import logging

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import NodeBusy
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import Job
from otc_bridge.settlement import quote_hold
from otc_bridge.settlement.escrow_job import alert_if_moved_first, read_job
from otc_bridge.settlement.payout import paid_on_node, phase_of_tx_status
from otc_bridge.settlement.record import Step, bridge_claimed

log = logging.getLogger(__name__)

#: The cause of a buyer-held refund whose payout the bridge voided because the seller's
#: claim of the quote lock could no longer land (settlement/quote_claim.py): the bridge's own
#: release left the job completed into the worker, which pays it back.
UNCLAIMABLE = "quote_unclaimable"
#: Refund causes that end an order as ``expired`` rather than ``cancelled``.
EXPIRY_CAUSES = frozenset({"expired", "settle_deadline_passed"})
#: Refund causes of a buy-order *taker's* escrow: the maker's order goes back on the book,
#: so a third party front-running the taker's escrow cannot kill buy orders.
TAKER_CAUSES = frozenset({"taker_escrow_rejected"})
_TAKER_COLUMNS = ("taker_wallet", "taker_quote_address", "htlc_hash", "escrow_wallet", "escrow_ref",
                  "escrow_job_id", "escrow_reward_micro_rtc", "escrow_total_micro_rtc", "escrow_ttl_seconds",
                  "payout_wallet", "matched_at", "settle_by", "escrow_tampered_at", "refund_key", "refund_tx_hash",
                  "refund_micro_rtc")
#: A match's quote leg on chain (docs/protocol.md §12), reset with the taker.
_QUOTE_LEG_COLUMNS = ("lock_by", "quote_leg_state", "quote_leg_reason", "quote_lock_tx", "quote_swap_id",
                      "quote_timelock")


def clear_taker(order: Order) -> dict:
    """The column changes that clear a buy order's taker (and the match's quote leg) when it
    goes back on the book. A buyer-held buy order keeps its hashlock: its maker, the RTC
    buyer, chose it at create and still holds the preimage."""
    cleared = dict.fromkeys(_TAKER_COLUMNS + _QUOTE_LEG_COLUMNS)
    if order.buyer_holds_preimage:
        del cleared["htlc_hash"]
    return cleared
#: The node call that moves a job one step towards its poster, by job status.
_REFUND_ACTION = {"claimed": "deliver", "delivered": "dispute", "open": "cancel", "disputed": "cancel"}


def refund_end_status(order: Order, now: int) -> Status:
    """Where a confirmed refund leaves the order: ``open`` again for a buy order whose
    taker's escrow was refused (unless it expired meanwhile), ``expired`` for time-based
    endings, else ``cancelled`` (the stored cause decides, never a guess)."""
    if order.end_cause in TAKER_CAUSES:
        return Status.OPEN if now < order.expires_at else Status.EXPIRED
    return Status.EXPIRED if order.end_cause in EXPIRY_CAUSES else Status.CANCELLED


def _refund_done(step: Step, reason: str) -> Order:
    order, now = step.order, step.bridge.now()
    to = refund_end_status(order, now)
    if to == Status.OPEN:
        changes = clear_taker(order) | {"end_cause": None}
        reason += "; buy order back on the book"
    else:
        # A buy order whose re-listing came too late ends as plainly expired; others keep their cause.
        expired_relist = to == Status.EXPIRED and order.end_cause in TAKER_CAUSES
        changes = {"ended_at": now, "end_cause": "expired" if expired_relist else order.end_cause}
    return step.move(to, reason=reason, changes=changes)


def safe_refund_escrow(bridge: Bridge, order: Order) -> Order:
    """Drive a ``refund_pending`` order's escrow back to its poster; returns the new order.

    Reads the job once, then runs the remaining steps back to back (claimed -> deliver,
    delivered -> dispute, open/disputed -> cancel) after one committed intent, so a third
    party has no time to act between them; only a non-OK answer triggers another read. The
    node's ``cancelled`` or ``expired`` (both refund reward + fee to the poster,
    docs/escrow-node.md §1.7, §1.9) ends the order. A job completed into the bridge's
    worker (only tampering does that while a refund is due) is paid back from the worker with
    a keyed transfer; a job completed to anyone else, or not the order's escrow at all, goes to
    ``settlement_recovery`` with an alert. A job claimed by a
    third party cannot be refunded before its TTL: the order waits, alerted. An unusable
    node answer leaves ``refund_pending`` for the reconciler. A seller-held order whose
    hashlock a still-claimable quote lock carries is not refunded yet
    (:func:`otc_bridge.settlement.quote_hold.refund_hold`).
    """
    with Step(bridge, order) as step:
        if order.escrow_job_id is None:
            return _refund_done(step, "no escrow job was ever created; nothing to refund")
        hold = quote_hold.refund_hold(bridge, order)
        if hold is not None:  # seller-held: the seller could still claim the buyer's quote
            log.info("refund of order %s held: %s", order.order_id, hold.reason)
            if hold.claimed:
                step.alert(quote_hold.CLAIMED_HOLD, hold.reason)
            return step.order
        job = read_job(step, "refund: read escrow job")
        if job is not None and _moved_by_someone_else(step, job):
            alert_if_moved_first(step, job, "refund step")
        return _drive(step, job)


def _moved_by_someone_else(step: Step, job) -> bool:
    """Whether finding ``job`` in its state needs the "moved before our first step" check.

    Only where the refund would otherwise finish quietly (the other cases alert on their
    own), and not when the cause already says the job was rejected or moved. An ``open`` job
    is untouched unless the bridge had claimed it (a create whose answer was lost leaves the
    job unclaimed: that is the bridge's own history, not a third party).
    """
    order = step.order
    if _already_alerted(order):
        return False
    if job.status not in ("open", "delivered", "disputed", "cancelled"):
        return False
    return job.status != "open" or bridge_claimed(step.bridge, order.order_id, job.job_id)


def _already_alerted(order: Order) -> bool:
    """The escrow watch, or the check that ended the order, already alerted its job's state."""
    return order.escrow_tampered_at is not None or order.end_cause in ("escrow_rejected", "escrow_moved",
                                                                       UNCLAIMABLE, *TAKER_CAUSES)


def _drive(step: Step, job) -> Order:
    bridge, order = step.bridge, step.order
    worker, poster, job_id = bridge.config.worker_wallet, order.escrow_wallet, order.escrow_job_id
    status = job.status if job else None
    announced = False
    for _ in range(6):  # at most three steps, each possibly followed by one re-read
        if job is None:
            return step.order
        # Only the poster matters for a refund: whatever amount the job holds goes back to
        # the seller, which is exactly the fix for a job with the wrong amount.
        if job.poster_wallet != poster:
            problem = f"job poster is {job.poster_wallet!r}, not the order's seller; not ours to refund"
            return step.move(Status.SETTLEMENT_RECOVERY, reason=problem, alert=("escrow_job_mismatch", problem))
        if status in ("cancelled", "expired"):
            return _refund_done(step, f"node reports the escrow job {status}: reward and fee refunded to the poster")
        if status == "completed" and job.worker_wallet == worker:
            # Only tampering leaves a job completed into the worker while a refund is due (the
            # bridge releases only from settling): the worker holds it, so it pays it back.
            if order.refund_key is None and not _already_alerted(order):
                step.alert("escrow_released_during_refund",
                           "escrow job was accepted into the worker wallet while a refund was due; "
                           "paying it back to the seller from the worker")
            return _refund_from_custody(step, job)
        if status == "completed":
            message = f"escrow job was accepted (paid to {job.worker_wallet}) while a refund was due"
            return step.move(Status.SETTLEMENT_RECOVERY, reason=message,
                             alert=("escrow_released_during_refund", message))
        if status == "claimed" and job.worker_wallet != worker:
            step.alert("escrow_claimed_by_third_party",
                       f"job claimed by {job.worker_wallet!r}; refund possible only after its TTL")
            return step.order
        action = _REFUND_ACTION.get(status, "cancel")
        if not announced:
            step.intent(f"POST /agent/jobs/<job_id>/{action}", f"refund step from {status}: intent")
            announced = True
        result = _refund_call(bridge, order, action)
        step.call(result, ref=job_id, reason=f"refund step from {status}")
        if result.ok:
            status = str(result.body["status"])
            continue
        job = read_job(step, "refund: re-read after a non-OK answer")
        if job is None or job.status == status:
            return step.order  # no progress: the reconciler retries from the node's state
        status = job.status
    return step.order


#: The alert of a job completed into the worker whose order the node shows already paid.
FOUND = "settlement_found_on_node"


def settlement_found(step: Step, seen: str) -> Order:
    """Stop every automatic action on an order the bridge already settled on the node (its
    payout under ``otc_payout:<order>`` exists) though its row says otherwise (a restore lost
    that): ``settlement_recovery`` with an alert; an operator reconciles it with the node
    (docs/backups.md). An open order passes through ``refund_pending`` (the table's edges)."""
    message = (f"{seen}, and the node holds this order's own payout: the bridge settled it before and the "
               "database lost that (restored from a backup?). Nothing is refunded; resolve it by hand")
    if step.order.status == Status.OPEN:
        step.move(Status.REFUND_PENDING, reason="escrow released by the bridge's own settlement, lost by a restore",
                  changes={"end_cause": "settlement_found_on_node"})
    return step.move(Status.SETTLEMENT_RECOVERY, reason=message, alert=(FOUND, message))


def _refund_from_custody(step: Step, job: Job) -> Order:
    """Return escrow that sits in the worker wallet to its poster with a keyed transfer.

    The key ``otc_refund:<order_id>:v<version>`` and the amount (the reward the worker was
    credited, ``job.reward_i64``; the node keeps its 5 % fee) are committed before the first
    send, so a repeat can never pay twice (docs/escrow-node.md §1.11). Later passes look the
    transfer up by its ``tx_hash`` and end the order once the node confirms it; a voided or
    refused transfer goes to ``settlement_recovery`` with an alert. A 429 raises ``NodeBusy``.
    """
    bridge, order = step.bridge, step.order
    if order.refund_key is None:
        # Before the first send: a job completed into the worker may be the bridge's own release
        # whose settlement a restored database lost; its buyer is paid, so the seller is not.
        if paid_on_node(step):
            return settlement_found(step, f"escrow job {job.job_id} is completed into the worker while the order "
                                          f"is {order.status}")
        key = f"otc_refund:{order.order_id}:v{order.order_version}"
        order = step.annotate({"refund_key": key, "refund_tx_hash": payout_tx_hash(key),
                               "refund_micro_rtc": job.reward_i64},
                              reason=f"refund from the worker's custody: intent ({key})")
    else:
        lookup = bridge.node.tx_status(order.refund_tx_hash)
        step.call(lookup.result, ref=order.refund_tx_hash, reason="custody refund status")
        if lookup.status != "not_found":
            return _custody_phase(step, phase_of_tx_status(lookup.status))
    key = order.refund_key
    result = bridge.node.transfer(from_wallet=bridge.config.worker_wallet, to_wallet=order.escrow_wallet,
                                  amount_micro_rtc=order.refund_micro_rtc, reason=key, idempotency_key=key)
    step.call(result, ref=order.refund_tx_hash, reason="custody refund transfer")
    if result.ok:
        return _custody_phase(step, str(result.body["phase"]))
    if result.failed and result.retry_after_seconds is not None:
        raise NodeBusy(result.retry_after_seconds, order_id=order.order_id, status=order.status)
    if result.failed:
        message = f"refund from the worker's custody refused by the node: {result.error}"
        return step.move(Status.SETTLEMENT_RECOVERY, reason=message, alert=("custody_refund_refused", message))
    return step.order  # unanswered: the next pass looks the transfer up by its tx_hash


def _custody_phase(step: Step, phase: str | None) -> Order:
    """What a custody refund's phase means: confirmed ends the order, pending waits, voided
    needs an operator; ``None`` (no usable answer) waits for the next pass."""
    if phase == "confirmed":
        return _refund_done(step, "refund from the worker's custody confirmed by the node")
    if phase == "voided":
        message = f"refund {step.order.refund_tx_hash} from the worker's custody was voided on the node"
        return step.move(Status.SETTLEMENT_RECOVERY, reason=message, alert=("custody_refund_voided", message))
    return step.order


def _refund_call(bridge: Bridge, order: Order, action: str):
    """The node call of one refund step (``deliver`` as the worker, ``dispute`` or ``cancel``
    as the poster: docs/escrow-node.md §1.4, §1.6, §1.7)."""
    job_id, poster = order.escrow_job_id, order.escrow_wallet
    if action == "deliver":
        return bridge.node.deliver_job(job_id, worker_wallet=bridge.config.worker_wallet,
                                       result_summary=f"OTC order {order.order_id} ended; refunding")
    if action == "dispute":
        return bridge.node.dispute_job(job_id, poster_wallet=poster,
                                       reason=f"OTC order {order.order_id} ended; refund to poster")
    return bridge.node.cancel_job(job_id, poster_wallet=poster)
