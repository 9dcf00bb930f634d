"""The escrow watch: every reconcile pass re-reads the escrow job of every ``open`` and
``matched`` order, and acts on any job state the bridge did not make (docs/protocol.md §11).

The node authenticates nothing on ``/agent/*`` (docs/escrow-node.md §2): anyone can deliver
as the bridge's worker, then accept, dispute or cancel as the (public) poster. While an order
is open or matched the bridge's job sits ``claimed`` by its worker; any other state is
tampering. What the watch does, decided by the node's state:

* a job still ``claimed`` by the worker with the order's amounts: nothing;
* a ``matched`` order whose job was **delivered** by someone else: the bridge accepts it into
  its worker wallet at once (custody), so the match can still settle against the preimage and
  a seller cannot dispute and cancel it away from a buyer who may already have locked;
* a ``matched`` order whose job is **completed** to the worker: kept for the match, as if
  released (custody); at ``settle_by`` the unwind refunds the seller from the worker wallet;
* anything else (delivered on an ``open`` order, disputed, cancelled, expired, completed on an
  ``open`` order, paid elsewhere, wrong amounts): the order leaves the book or the match
  (``refund_pending``, cause ``escrow_tampered``) and :func:`safe_refund_escrow` returns the
  money by the node's state: cancel a disputed job, recognise a cancelled one, refund a job
  completed into the worker with a keyed transfer, or send the order to recovery.

Every case marks the order (``escrow_tampered_at``, an ``escrow_tampered`` outbox event and an
operator alert) in a compare-and-swap, so the watch and a confirm can never both act: the one
that loses the CAS stops. Cost: one ``GET /agent/jobs/<id>`` per watched order per pass.
"""

from __future__ import annotations

import logging
from collections import Counter

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import BridgeError
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.results import Job
from otc_bridge.settlement import payout
from otc_bridge.settlement.escrow_job import held_by_bridge, job_problem, read_job
from otc_bridge.settlement.record import Step
from otc_bridge.settlement.refund import safe_refund_escrow, settlement_found
from otc_bridge.storage import orders
from otc_bridge.storage.orders import ConcurrentUpdate

log = logging.getLogger(__name__)

#: Orders read per query while walking the watched set (memory stays bounded on large books).
PAGE_SIZE = 200
TAMPERED = "escrow_tampered"



def watch_escrow(bridge: Bridge, counts: Counter) -> None:
    """One pass over every watched order (``open`` sell orders and ``matched`` orders), in
    pages of :data:`PAGE_SIZE` by order id. Counts ``watched``, ``tampered``, ``errors``."""
    after = ""
    while True:
        page = orders.find(bridge.db.connection(),
                           "order_id > ? AND escrow_job_id IS NOT NULL AND "
                           "(status = 'matched' OR (status = 'open' AND side = 'sell'))",
                           (after,), order_by="order_id", limit=PAGE_SIZE)
        for order in page:
            counts["watched"] += 1
            try:
                if check_escrow(bridge, order) is not None:
                    counts["tampered"] += 1
            except ConcurrentUpdate:
                log.info("order %s moved during the escrow watch; skipped", order.order_id)
            except BridgeError as exc:  # the node gave no usable answer: the next pass reads again
                log.warning("escrow watch of order %s: %s", order.order_id, exc.error)
                counts["waiting"] += 1
            except Exception:
                log.exception("escrow watch failed for order %s", order.order_id)
                counts["errors"] += 1
        if len(page) < PAGE_SIZE:
            return
        after = page[-1].order_id


def check_escrow(bridge: Bridge, order: Order, job: Job | None = None) -> Order | None:
    """Read ``order``'s job (unless ``job`` is given) and act on tampering; the order after
    the action, or ``None`` when there was nothing to do (job held, or unreadable: the next
    pass reads it again). Raises ``ConcurrentUpdate`` if a confirm or another actor moved the
    order first (the caller skips it)."""
    with Step(bridge, order) as step:
        if job is None:
            job = read_job(step, "escrow watch: read escrow job")
            if job is None:
                return None
        return _act(step, job)


def in_custody(bridge: Bridge, order: Order, job: Job) -> bool:
    """True if ``job`` is the order's escrow completed into the bridge's worker wallet, with
    the order's amounts: the bridge holds the RTC for this order (released or custody)."""
    return (job.status == "completed" and job.worker_wallet == bridge.config.worker_wallet
            and job_problem(order, job) is None)


def _act(step: Step, job: Job) -> Order | None:
    bridge, order = step.bridge, step.order
    if held_by_bridge(bridge, order, job):
        return None
    ours = job.worker_wallet == bridge.config.worker_wallet and job_problem(order, job) is None
    seen = f"escrow job {job.job_id} is {job.status} (worker {job.worker_wallet!r}) while the order is {order.status}"
    if ours and job.status == "completed" and order.escrow_tampered_at is None and payout.paid_on_node(step):
        return settlement_found(step, seen)
    if order.status == Status.MATCHED and ours and job.status == "completed":
        if order.escrow_tampered_at is not None:
            return None  # in custody and already marked: nothing new to do or to count
        _mark(step, seen + "; the bridge holds the RTC for the match")
        return step.order
    if order.status == Status.MATCHED and ours and job.status == "delivered":
        return _take_custody(step, seen)
    _mark(step, seen)
    moved = step.move(Status.REFUND_PENDING, reason=f"{seen}; returning the escrow by the node's state",
                      changes={"end_cause": refund_cause(order)})
    step.flush()
    return safe_refund_escrow(bridge, moved)


def _mark(step: Step, seen: str) -> None:
    """Record the tampering on the order (CAS), with the outbox event and the operator alert."""
    step.annotate({"escrow_tampered_at": step.bridge.now()}, reason=f"{TAMPERED}: {seen}", topic=TAMPERED,
                  alert=(TAMPERED, seen))


def _take_custody(step: Step, seen: str) -> Order:
    """Accept a job someone delivered as the bridge's worker on a matched order, so the RTC
    sits with the worker for the match instead of waiting for the seller's dispute."""
    bridge, order = step.bridge, step.order
    if order.escrow_tampered_at is None:  # a retry after a failed accept is not a new alert
        _mark(step, seen + "; accepting it into the bridge's custody")
    step.intent("POST /agent/jobs/<job_id>/accept", "custody step from delivered: intent")
    result = bridge.node.accept_job(order.escrow_job_id, poster_wallet=order.escrow_wallet, rating=1)
    step.call(result, ref=order.escrow_job_id, reason="custody step from delivered")
    return step.order


def refund_cause(order: Order) -> str:
    """The end cause of a tampered order's refund: a buy order whose taker's escrow was taken
    goes back on the book (its maker did nothing wrong), a sell order ends."""
    return "taker_escrow_rejected" if order.side == "buy" else TAMPERED
