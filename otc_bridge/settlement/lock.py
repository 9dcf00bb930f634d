"""Lock: create the escrow job an order's intent describes, claim it with the bridge's worker,
read it back and verify it; or abandon the intent when nothing was locked.

Escrow custody: right after creation the bridge claims the job with its own worker wallet
(``Config.worker_wallet``). A claimed job can be neither claimed by anyone else nor
cancelled by the poster until its TTL (docs/escrow-node.md §1.3, §1.7), so only the bridge
can advance it.
"""

from __future__ import annotations

from otc_bridge.domain.errors import BridgeError, NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import expected_escrow_micro_rtc
from otc_bridge.settlement.escrow_job import held_by_bridge, job_problem, read_job
from otc_bridge.settlement.record import Step, node_ref
from otc_bridge.settlement.refund import clear_taker, safe_refund_escrow
from otc_bridge.storage import leases

ESCROW_HINT = "Ensure your wallet has sufficient RTC balance (reward + 5% platform fee)"


def escrow_intent(order_id: str, version: int, wallet: str, amount_micro_rtc: int, ttl_seconds: int) -> dict:
    """Columns that say, before any node call, which escrow job is about to be created: the
    poster, a reference tag unique to this attempt (``<order_id>:v<version>``), the reward and
    the total the node will debit (reward + its fee, micro-RTC), and the job's TTL in seconds."""
    return {
        "escrow_wallet": wallet,
        "escrow_ref": f"{order_id}:v{version}",
        "escrow_reward_micro_rtc": amount_micro_rtc,
        "escrow_total_micro_rtc": expected_escrow_micro_rtc(amount_micro_rtc),
        "escrow_ttl_seconds": ttl_seconds,
    }


def abandon_lock(step: Step, reason: str) -> Order:
    """Undo a ``locking`` intent when nothing was locked: a sell order ends ``cancelled``
    (cause ``escrow_refused``), a buy order goes back to ``open`` without its taker."""
    if step.order.side == "sell":
        return step.move(Status.CANCELLED, reason=reason,
                         changes={"end_cause": "escrow_refused", "ended_at": step.bridge.now()})
    return step.move(Status.OPEN, reason=reason, changes=clear_taker(step.order))


def lock_escrow(step: Step, *, title: str, description: str) -> Order:
    """Create, claim and verify the escrow job described by a ``locking`` order's intent.

    Returns the order (still ``locking``, ``escrow_job_id`` set) once the node reports the
    job claimed by the bridge's worker with exactly the intended amounts; the claim and the
    read-back are recorded with the caller's next move on ``step``. Job creation is
    serialised per poster wallet (docs/escrow-node.md §4: concurrent creation over-locks).
    Raises :class:`BridgeError` after recording the outcome: node refusal -> the lock is
    abandoned (sell: ``cancelled``; buy match: back to ``open``); unusable answer -> 502,
    order left ``locking``; a job that is not what we asked for -> ``refund_pending``,
    refund started.
    """
    bridge, order = step.bridge, step.order
    cfg = bridge.config
    try:
        with leases.held(bridge.db, f"escrow-create:{order.escrow_wallet}", ttl_seconds=cfg.escrow_create_lease_seconds,
                         wait_seconds=cfg.escrow_lock_wait_seconds):
            result = bridge.node.create_job(
                poster_wallet=order.escrow_wallet, amount_micro_rtc=order.escrow_reward_micro_rtc,
                ttl_seconds=order.escrow_ttl_seconds, title=title, description=description,
                tags=["otc_bridge", "escrow", order.escrow_ref])
    except leases.LeaseBusy:
        abandon_lock(step, "another escrow for this wallet is being created")
        raise BridgeError("Another escrow for this wallet is being created; retry shortly",
                          http_status=409) from None
    step.call(result, ref=order.escrow_ref, reason="create escrow job")
    if result.failed:
        abandon_lock(step, f"node refused the escrow job: {result.error}")
        raise BridgeError("Failed to lock RTC in escrow", details=result.error or "escrow node refused",
                          hint=ESCROW_HINT)
    if result.unknown:
        raise NodeUnavailable("Escrow node did not answer; the escrow outcome is being reconciled",
                              order_id=order.order_id, status="locking")
    job_id = result.body["job_id"]
    # Committed before the claim: from here on the job is known by its id, not only by its tag.
    step.annotate({"escrow_job_id": job_id}, reason="escrow job created", node=node_ref(result, job_id))
    return _claim_and_verify(step)


def _claim_and_verify(step: Step) -> Order:
    """Claim the new job with the bridge's worker, then read it back and check it
    (docs/protocol.md §5)."""
    bridge, order = step.bridge, step.order
    worker, job_id = bridge.config.worker_wallet, order.escrow_job_id
    for _ in range(2):  # one retry of the claim if the job is still plainly open
        claim = bridge.node.claim_job(job_id, worker_wallet=worker)
        step.call(claim, ref=job_id, reason="claim escrow job")
        job = read_job(step, "verify escrow job after claim")
        if job is None:
            raise NodeUnavailable("Escrow node did not answer; the escrow outcome is being reconciled",
                                  order_id=order.order_id, status="locking")
        if job.status != "open":
            break
    if held_by_bridge(bridge, order, job):
        return order
    problem = job_problem(order, job) or (
        f"escrow job is {job.status} with worker {job.worker_wallet!r} right after creation")
    cause = "escrow_rejected" if order.side == "sell" else "taker_escrow_rejected"
    order = step.move(Status.REFUND_PENDING, reason=problem, changes={"end_cause": cause},
                      alert=("escrow_rejected", problem))
    step.flush()
    safe_refund_escrow(bridge, order)
    raise BridgeError("Escrow job on the node does not hold what the order needs; it is being refunded",
                      http_status=502, details=problem, order_id=order.order_id)
