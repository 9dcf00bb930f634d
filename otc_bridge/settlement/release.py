"""Release: the escrow of a ``settling`` order goes to the bridge's worker wallet (deliver +
accept, back to back), then :mod:`otc_bridge.settlement.payout` pays the buyer.

This is the one place where RTC leaves escrow for a trade. It runs only for an order in
``settling``: the confirm that won the compare-and-swap into ``settling`` (with the payout
key fixed and the release intent committed in the same transaction) is the only actor, and
the reconciler resumes it after a grace period if that request died.
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import credited_micro_rtc
from otc_bridge.node.results import Job
from otc_bridge.settlement.escrow_job import alert_if_moved_first, held_by_bridge, job_problem, read_job
from otc_bridge.settlement.payout import pay
from otc_bridge.settlement.record import Step, node_ref

#: The endpoint and reason of the release intent, committed before the first release call.
RELEASE_INTENT = ("POST /agent/jobs/<job_id>/deliver", "release step from claimed: intent (deliver, accept, payout)")


class TakenBack(Exception):
    """A confirm's release found the escrow moved by someone else before the bridge's first
    release call landed: the settlement claim was undone (``settling`` -> ``matched``, the
    preimage not kept) and ``job`` is the node's state, for the escrow watch to act on."""

    def __init__(self, order: Order, job: Job) -> None:
        super().__init__(f"escrow job {job.job_id} is {job.status}")
        self.order, self.job = order, job


def advance_release(bridge: Bridge, order: Order, *, just_claimed: bool = False, job: Job | None = None) -> Order:
    """Release a ``settling`` order's escrow to the bridge worker, then pay the buyer.

    Resumable from any point (the reconciler calls it too): one read of the job says which
    step is next (claimed -> deliver, delivered -> accept, completed -> pay); the rest run
    back to back on OK answers, leaving a third party no time between deliver and accept
    (docs/protocol.md §11). A deliver refused while the job is still held untouched returns
    the order to ``matched`` (nothing left escrow; the confirm may be retried). A job moved
    by anyone else goes to ``settlement_recovery`` with an alert. An unusable node answer
    leaves ``settling`` for the reconciler (after its grace period).

    ``just_claimed`` is True when the caller's own claim into ``settling`` happened in this
    request: no release call can have been made yet. Then ``job`` is the caller's read of the
    job made right before that claim, or ``None``: the job was held by the bridge when last
    seen, and the deliver itself is the read (docs/escrow-node.md §1.4: it answers 200 only
    for a job ``claimed`` by our worker and not expired, and a claimed job's amounts cannot
    change), so the job is read only after a non-OK answer. Raises :class:`TakenBack` when
    that read shows the escrow moved by someone else while every release call of ours was
    refused.
    """
    with Step(bridge, order) as step:
        if job is None and not just_claimed:
            job = read_job(step, "release: read escrow job")
        elif job is not None and just_claimed:
            _alert_if_released_by_another(step, job, first=True)
        return _drive(step, job, just_claimed)


def _alert_if_released_by_another(step: Step, job: Job, *, first: bool) -> None:
    """While matched the bridge never touches the job: finding it released to our worker
    before our first release call means someone else moved it. The buyer is still paid
    against the valid preimage, but an operator must know (``first``: no release call of ours
    can have landed; otherwise the recorded intents decide)."""
    bridge, order = step.bridge, step.order
    if (job.status in ("delivered", "completed") and job.worker_wallet == bridge.config.worker_wallet
            and job_problem(order, job) is None):
        if first:
            step.alert("escrow_job_moved", f"escrow job was {job.status} (worker {job.worker_wallet!r}) "
                                           "before the bridge's first release step")
        else:
            alert_if_moved_first(step, job, "release step")


def _drive(step: Step, job: Job | None, just_claimed: bool) -> Order:
    bridge = step.bridge
    worker, job_id = bridge.config.worker_wallet, step.order.escrow_job_id
    if job is None and not just_claimed:
        return step.order
    if job is not None and not just_claimed:
        _alert_if_released_by_another(step, job, first=False)
    status = job.status if job else "claimed"  # just claimed without a read: held when last seen
    landed = False  # may a release call of ours have taken effect?
    for _ in range(4):  # at most two steps, each possibly followed by one re-read
        order = step.order
        if job is not None:
            problem = job_problem(order, job)
            if problem is None and job.worker_wallet != worker:
                problem = f"escrow job is {job.status} with worker {job.worker_wallet!r}, not the bridge"
            if problem is None and status not in ("claimed", "delivered", "completed"):
                problem = f"escrow job is {status} on the node; it cannot be released"
            if problem and just_claimed and not landed:
                raise TakenBack(_undo_claim(step, f"{problem}; no release call of the bridge's landed"), job)
            if problem:
                return step.move(Status.SETTLEMENT_RECOVERY, reason=problem, alert=("escrow_job_moved", problem))
        if status == "completed":
            return pay(step)
        if status == "claimed":
            summary = f"OTC trade confirmed. Order: {order.order_id}. Quote TX: {order.quote_tx}"
            result = bridge.node.deliver_job(job_id, worker_wallet=worker, result_summary=summary[:500])
        else:
            result = bridge.node.accept_job(job_id, poster_wallet=order.escrow_wallet, rating=5)
        step.call(result, ref=job_id, reason=f"release step from {status}")
        landed = landed or not result.failed
        if result.ok:
            credited = credited_micro_rtc(result.body) if status == "delivered" else None
            if credited is not None and credited != order.escrow_reward_micro_rtc:
                message = (f"accept credited {credited} micro-RTC, the order's escrow reward is "
                           f"{order.escrow_reward_micro_rtc}")
                return step.move(Status.SETTLEMENT_RECOVERY, reason=message,
                                 alert=("escrow_credit_mismatch", message), node=node_ref(result, job_id))
            status = str(result.body["status"])
            job = None
            continue
        job = read_job(step, "release: re-read after a non-OK answer")
        if job is None:
            return step.order  # no answer: the reconciler resumes from the node's state
        if job.status == status:
            if result.failed and status == "claimed" and held_by_bridge(bridge, order, job):
                return _undo_claim(step, f"node refused deliver ({result.error}); no funds left escrow",
                                   node=node_ref(result, job_id))
            return step.order  # no progress: the reconciler resumes from the node's state
        if just_claimed and not landed:
            _alert_if_released_by_another(step, job, first=True)
        status = job.status
    return step.order


def _undo_claim(step: Step, reason: str, **kwargs) -> Order:
    """``settling`` -> ``matched`` when nothing left escrow by the bridge's hand: the preimage
    and the evidence are not kept, and the confirm may be retried."""
    return step.move(Status.MATCHED, reason=reason,
                     changes={"htlc_secret": None, "quote_tx": None, "settling_at": None}, **kwargs)
