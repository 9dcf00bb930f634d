"""Settle a matched order with its HTLC preimage: the one path from ``matched`` to a release,
for a trader's confirm and for the quote-chain watcher that saw the seller's on-chain claim
(docs/protocol.md §4, §12).

One compare-and-swap into ``settling`` that also stores the preimage, the payout key and the
release intent, then the release itself (:func:`otc_bridge.settlement.release.advance_release`).
Only an escrow the bridge still holds (or holds in custody after tampering) is released. The
proof is the release's own deliver: the node answers 200 only for a job claimed by the
bridge's worker and not expired (docs/escrow-node.md §1.4), so no read precedes it; a refused
deliver is followed by a read, and an escrow someone else moved undoes the claim and answers
409 with nothing kept. An order whose escrow is already in custody is read first instead.
"""

from __future__ import annotations

import contextlib

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import BridgeError, Conflict, NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import Job
from otc_bridge.settlement import release, watch
from otc_bridge.settlement.escrow_job import held_by_bridge, read_job
from otc_bridge.settlement.record import Step
from otc_bridge.storage import pauses
from otc_bridge.storage.orders import ConcurrentUpdate

#: The 409 of a confirm whose escrow was taken back on the node (docs/protocol.md §11).
ESCROW_TAKEN_BACK = ("The escrow was taken back on the node; this order cannot settle. Do not reveal the "
                     "preimage; refund your HTLC after its timelock.")
#: The 503 of a confirm while releases are paused (settlement.coverage).
RELEASES_PAUSED = ("Releases are paused: the bridge's worker wallet does not cover what is queued from it; "
                   "an operator was alerted. Retry later; nothing was changed.")


def settle_with_preimage(bridge: Bridge, order: Order, *, secret: str, quote_tx: str | None, actor: str) -> Order:
    """Claim ``order`` (``matched``, ``secret`` already checked against its hashlock: 64
    lower-case hex) and release its escrow; returns the order after the attempt
    (``completed``, ``payout_pending``, ``settling``, ``settlement_recovery`` or ``matched``
    when nothing left escrow).

    Raises ``NodeUnavailable`` (502) when the job read of an order in custody gets no answer,
    ``Conflict`` (409) when the escrow was taken back on the node (nothing kept) or another
    actor claimed first, a 503
    ``BridgeError`` while releases are paused, and ``ConcurrentUpdate`` when the reconciler
    finished this settlement during the release. Nothing is stored on any refusal.
    """
    key = f"otc_payout:{order.order_id}"
    changes = {"htlc_secret": secret, "quote_tx": quote_tx, "settling_at": bridge.now(), "payout_key": key,
               "payout_tx_hash": payout_tx_hash(key), "payout_micro_rtc": order.escrow_reward_micro_rtc}
    with Step(bridge, order) as step:
        # In custody (tampering seen by the watch) the job is past `claimed`: read it first.
        job = _escrow_before_release(step) if order.escrow_tampered_at is not None else None
        try:
            order = step.move(Status.SETTLING, actor=actor, reason="preimage verified; settlement claimed",
                              changes=changes, intent=release.RELEASE_INTENT, guard=pauses.NO_RELEASE_PAUSE)
        except ConcurrentUpdate:
            if pauses.current(bridge.db.connection(), pauses.RELEASES) is not None:
                raise BridgeError(RELEASES_PAUSED, http_status=503, order_id=order.order_id) from None
            raise Conflict("Order is no longer matched (already settling or settled)") from None
    try:
        return release.advance_release(bridge, order, just_claimed=True, job=job)
    except release.TakenBack as taken:
        _withdraw(bridge, taken.order, taken.job)
        raise Conflict(ESCROW_TAKEN_BACK, details=f"escrow job is {taken.job.status} with worker "
                                                  f"{taken.job.worker_wallet!r}", order_id=order.order_id) from None


def _withdraw(bridge: Bridge, order: Order, job: Job) -> None:
    """The escrow watch's action on a matched order whose escrow someone else moved (refund
    what can be refunded, alert); a concurrent actor that moved the order first wins."""
    with contextlib.suppress(ConcurrentUpdate):
        watch.check_escrow(bridge, order, job)


def _escrow_before_release(step: Step) -> Job:
    """Read the escrow job of an order in custody right before the claim: release only an
    escrow the bridge still holds (claimed by its worker, or already in its custody). A job someone else moved makes
    the order leave the match at once (the escrow watch's action) and the confirm answers 409
    without storing the preimage. Raises ``NodeUnavailable`` when the node does not answer."""
    job = read_job(step, "confirm: read escrow job before the claim")
    if job is None:
        raise NodeUnavailable("Escrow node did not answer; nothing was changed, retry the confirm")
    if held_by_bridge(step.bridge, step.order, job) or watch.in_custody(step.bridge, step.order, job):
        return job
    step.flush()
    try:
        after = watch.check_escrow(step.bridge, step.order, job)
    except ConcurrentUpdate:
        # Another confirm claimed it (its own release moved the job) or the watch acted first.
        raise Conflict("Order is no longer matched (already settling or settled)") from None
    if after is not None and after.status == Status.MATCHED:
        # Someone delivered as the bridge's worker; the watch accepted the job into custody:
        # the match stands, and the release pays from the worker wallet.
        step.order = after
        job = read_job(step, "confirm: re-read after taking the escrow into custody")
        if job is not None and watch.in_custody(step.bridge, after, job):
            return job
    raise Conflict(ESCROW_TAKEN_BACK, details=f"escrow job is {job.status} with worker {job.worker_wallet!r}",
                   order_id=step.order.order_id)
