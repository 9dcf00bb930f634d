"""Lock: create the escrow job an order's intent describes, claim it with the bridge's worker,
verify it; or abandon the intent when nothing was locked.

The create and claim answers prove the lock on the happy path (two node calls, no read-back):
the create's body names the poster and the amounts the node debited, and a claim answered
``claimed`` with our worker is the node's guarded ``UPDATE ... WHERE status='open'`` having
run for us (docs/escrow-node.md §1.2, §1.3). Any other answer is settled by a read of the job.

Escrow custody: right after creation the bridge claims the job with its own worker wallet
(``Config.worker_wallet``). A claimed job can be neither claimed by anyone else nor
cancelled by the poster until its TTL (docs/escrow-node.md §1.3, §1.7), so only the bridge
can advance it.
"""

from __future__ import annotations

from otc_bridge.domain.errors import BridgeError, NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import expected_escrow_micro_rtc, reward_from_wire, rtc_to_micro_rtc
from otc_bridge.node.results import NodeResult
from otc_bridge.settlement.escrow_job import held_by_bridge, job_problem, read_job
from otc_bridge.settlement.record import Step, node_ref
from otc_bridge.settlement.refund import clear_taker, safe_refund_escrow
from otc_bridge.storage import leases

ESCROW_HINT = "Ensure your wallet has sufficient RTC balance (reward + 5% platform fee)"
#: The hint of the 400 when the poster's balance does not cover the escrow.
BALANCE_HINT = "The escrow locks the amount plus the node's 5% platform fee"
#: The node's refusal of a job its poster cannot pay for (docs/escrow-node.md §1.2 check 3).
NODE_INSUFFICIENT = "Insufficient balance for escrow"


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


def lock_escrow(step: Step, *, title: str, description: str, insufficient: str) -> Order:
    """Create, claim and verify the escrow job described by a ``locking`` order's intent.

    Returns the order (still ``locking``, ``escrow_job_id`` set) once the node reports the
    job claimed by the bridge's worker with exactly the intended amounts; the claim and the
    read-back are recorded with the caller's next move on ``step``. Job creation is
    serialised per poster wallet (docs/escrow-node.md §4: concurrent creation over-locks).
    Raises :class:`BridgeError` after recording the outcome: node refusal -> the lock is
    abandoned (sell: ``cancelled``; buy match: back to ``open``), a 400 whose error is
    ``insufficient`` (the caller's wording) when the node found the poster's balance short: the
    node's check at job creation is the balance check, atomic where a read beforehand would not
    be, and with the node's figures as ``balance_rtc``/``required_rtc``; unusable answer -> 502,
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
        if result.error == NODE_INSUFFICIENT:
            raise _short_of_escrow(insufficient, result.body or {})
        raise BridgeError("Failed to lock RTC in escrow", details=result.error or "escrow node refused",
                          hint=ESCROW_HINT)
    if result.unknown:
        raise NodeUnavailable("Escrow node did not answer; the escrow outcome is being reconciled",
                              order_id=order.order_id, status="locking")
    job_id = result.body["job_id"]
    # Committed before the claim: from here on the job is known by its id, not only by its tag.
    step.annotate({"escrow_job_id": job_id}, reason="escrow job created", node=node_ref(result, job_id))
    return _claim_and_verify(step, proven_amounts=created_as_intended(step.order, result))


def _short_of_escrow(error: str, body: dict) -> BridgeError:
    """The 400 of a lock the poster cannot pay for, in the reference's shape, with the node's
    own figures: ``{"error", "balance_rtc", "required_rtc", "balance_micro_rtc",
    "required_micro_rtc", "hint"}`` (a figure the node did not give is ``null``)."""
    balance, required = rtc_to_micro_rtc(body.get("balance_rtc")), rtc_to_micro_rtc(body.get("escrow_required_rtc"))
    return BridgeError(error, balance_rtc=None if balance is None else balance / 1_000_000,
                       required_rtc=None if required is None else required / 1_000_000,
                       balance_micro_rtc=balance, required_micro_rtc=required, hint=BALANCE_HINT)


def created_as_intended(order: Order, created: NodeResult) -> bool:
    """True if the create's answer shows the job the intent describes: the order's poster, a
    reward the node truncates to the intended micro-RTC and the intended total debited
    (docs/escrow-node.md §1.2: the 201 echoes ``poster_wallet`` and ``reward_rtc`` and gives
    ``escrow_total_rtc``). False when a field is missing or differs: then the job is read."""
    body = created.body or {}
    reward = body.get("reward_rtc")
    return (body.get("poster_wallet") == order.escrow_wallet
            and reward_from_wire(reward) == order.escrow_reward_micro_rtc
            and rtc_to_micro_rtc(body.get("escrow_total_rtc")) == order.escrow_total_micro_rtc)


def _claim_and_verify(step: Step, *, proven_amounts: bool) -> Order:
    """Claim the new job with the bridge's worker and check it (docs/protocol.md §5): a claim
    answered ``claimed`` by our worker, on a job whose create answer proved its amounts, is
    held; anything else is decided by a read of the job."""
    bridge, order = step.bridge, step.order
    worker, job_id = bridge.config.worker_wallet, order.escrow_job_id
    for _ in range(2):  # one retry of the claim if the job is still plainly open
        claim = bridge.node.claim_job(job_id, worker_wallet=worker)
        step.call(claim, ref=job_id, reason="claim escrow job")
        if proven_amounts and claim.ok and (claim.body or {}).get("worker_wallet") == worker:
            return order
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
