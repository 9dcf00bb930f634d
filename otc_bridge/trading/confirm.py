"""Confirm a matched order with the HTLC preimage (``POST /api/orders/<id>/confirm``).

One read of the order, one compare-and-swap into ``settling`` that also commits the payout
key and the release intent, the node calls of the release, and one compare-and-swap with
their outcome: two write transactions on the happy path (tests/unit/test_confirm_cost.py
holds the count).
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import BridgeError, Conflict, Forbidden, Invalid, NodeUnavailable
from otc_bridge.domain.hashlock import is_preimage_format, preimage_matches
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import Job
from otc_bridge.settlement import release, watch
from otc_bridge.settlement.escrow_job import held_by_bridge, read_job
from otc_bridge.settlement.record import Step
from otc_bridge.storage import pauses
from otc_bridge.storage.orders import ConcurrentUpdate
from otc_bridge.trading.common import order_or_404

#: The 409 of a confirm whose escrow was taken back on the node (docs/protocol.md §11).
ESCROW_TAKEN_BACK = ("The escrow was taken back on the node; this order cannot settle. Do not reveal the "
                     "preimage; refund your HTLC after its timelock.")
#: The 503 of a confirm while releases are paused (settlement.coverage).
RELEASES_PAUSED = ("Releases are paused: the bridge's worker wallet does not cover what is queued from it; "
                   "an operator was alerted. Retry later; nothing was changed.")


def confirm_order(bridge: Bridge, order_id: str, *, secret: str, quote_tx: str,
                  wallet: str | None) -> Order:
    """Settle a matched order with the HTLC preimage; returns the order after the attempt.

    Authorised by the preimage (docs/protocol.md §3); ``wallet``, if given, must be the RTC
    seller or buyer (403). Raises 404, 409 ``Order must be matched to confirm``, 400
    ``Invalid HTLC secret format`` / ``Invalid HTLC secret``, 409 when another confirm (or
    the unwind) won the claim. The returned status is ``completed``, ``payout_pending``,
    ``settlement_recovery``, ``matched`` (nothing left escrow) or ``settling``.
    """
    order = order_or_404(bridge, order_id)
    if order.status != Status.MATCHED:
        raise Conflict(f"Order must be matched to confirm (current: {order.status})")
    if wallet is not None:
        canonical = wallets.canonical_wallet(wallet) if wallets.is_native_wallet(wallet) else None
        if canonical not in (order.maker_wallet, order.taker_wallet):
            raise Forbidden("Only the RTC seller or buyer can confirm settlement")
    if not is_preimage_format(secret):
        raise Invalid("Invalid HTLC secret format", field="secret")
    if not preimage_matches(secret, order.htlc_hash):
        raise Invalid("Invalid HTLC secret", field="secret")
    key = f"otc_payout:{order_id}"
    changes = {"htlc_secret": secret.lower(), "quote_tx": quote_tx, "settling_at": bridge.now(), "payout_key": key,
               "payout_tx_hash": payout_tx_hash(key), "payout_micro_rtc": order.escrow_reward_micro_rtc}
    with Step(bridge, order) as step:
        job = _escrow_before_release(step)
        try:
            order = step.move(Status.SETTLING, actor=wallet or "preimage holder",
                              reason="preimage verified; settlement claimed", changes=changes,
                              intent=release.RELEASE_INTENT, guard=pauses.NO_RELEASE_PAUSE)
        except ConcurrentUpdate:
            if pauses.current(bridge.db.connection(), pauses.RELEASES) is not None:
                raise BridgeError(RELEASES_PAUSED, http_status=503, order_id=order_id) from None
            raise Conflict("Order is no longer matched (already settling or settled)") from None
    try:
        return release.advance_release(bridge, order, just_claimed=True, job=job)
    except ConcurrentUpdate:
        # The reconciler finished this settlement meanwhile: report where it stands.
        return order_or_404(bridge, order_id)


def _escrow_before_release(step: Step) -> Job:
    """Read the escrow job right before the claim: release only an escrow the bridge still
    holds (claimed by its worker, or already in its custody). A job someone else moved makes
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
