"""The payout phase: the keyed transfer from the worker wallet to the buyer, and what its
phase on the node means for the order (docs/escrow-node.md §1.11, §1.12).

Every decision about a payout's phase goes through :func:`apply_phase`, and every node
answer is first mapped onto a phase: ``/wallet/transfer`` names it (``pending``,
``confirmed``, ``voided``), ``GET /wallet/tx`` gives a status that :data:`PHASE_OF_TX_STATUS`
maps onto the same phases.
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import NodeBusy, NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.settlement.record import Step, node_ref
from otc_bridge.storage import orders
from otc_bridge.storage.events import NodeRef

#: ``GET /wallet/tx`` status -> the payout phase ``/wallet/transfer`` reports for the same row
#: (docs/escrow-node.md §1.12: a voided transfer reads ``failed``).
PHASE_OF_TX_STATUS = {"pending": "pending", "confirmed": "confirmed", "failed": "voided"}


def phase_of_tx_status(status: str | None) -> str | None:
    """The payout phase of a ``GET /wallet/tx`` status, or ``None`` (``not_found`` or no
    usable answer: not a phase, the caller decides)."""
    return PHASE_OF_TX_STATUS.get(status or "")


def pay_buyer(bridge: Bridge, order: Order) -> Order:
    """Queue the keyed payout from the worker wallet to the buyer; returns the new order
    (see :func:`pay`)."""
    with Step(bridge, order) as step:
        return pay(step)


def pay(step: Step) -> Order:
    """Queue the keyed payout of ``step.order`` from the worker wallet to the buyer.

    The key ``otc_payout:<order_id>`` was fixed when the confirm won the claim, so a
    repeat of this call can never pay twice (docs/escrow-node.md §1.11: same key + same
    fields -> the existing row). The outcome decides the status: queued ->
    ``payout_pending``, confirmed -> ``completed``, voided or refused ->
    ``settlement_recovery`` (alert). A lost answer is resolved by ``GET /wallet/tx/<tx_hash>``;
    if the node has no such transfer, one re-send with the same key is safe; anything else is
    recovery. A 429 (the node's admin rate limit) applied nothing: raises
    :class:`~otc_bridge.domain.errors.NodeBusy` and leaves the order as it is.
    """
    bridge, order = step.bridge, step.order
    key = order.payout_key
    for attempt in range(2):
        result = bridge.node.transfer(from_wallet=bridge.config.worker_wallet, to_wallet=order.payout_wallet,
                                      amount_micro_rtc=order.payout_micro_rtc, reason=key, idempotency_key=key)
        step.call(result, ref=order.payout_tx_hash, reason="payout transfer")
        if result.ok:
            return apply_phase(step, str(result.body["phase"]), node_ref(result, key))
        if result.failed and result.retry_after_seconds is not None:
            # Rate limited: the node applied nothing. Not a refusal; retry after Retry-After.
            raise NodeBusy(result.retry_after_seconds, order_id=order.order_id, status=order.status)
        if result.failed:
            message = f"payout refused by the node after the escrow was released: {result.error}"
            return step.to_recovery(message, "payout_refused", node_ref(result, key))
        status = bridge.node.tx_status(order.payout_tx_hash)
        step.call(status.result, ref=order.payout_tx_hash, reason="payout status after an unanswered transfer")
        if status.status == "not_found" and attempt == 0:
            continue
        phase = phase_of_tx_status(status.status)
        if phase:
            return apply_phase(step, phase, node_ref(status.result, order.payout_tx_hash))
        break
    return step.to_recovery("payout outcome unknown after the escrow was released", "payout_unknown")


def apply_phase(step: Step, phase: str, ref: NodeRef) -> Order:
    """Map the node's payout ``phase`` onto the order (from ``settling``, ``payout_pending``
    or ``settlement_recovery``); a phase the order already reflects changes nothing."""
    order = step.order
    if phase == "confirmed":
        return complete_step(step, ref)
    if phase == "pending":
        if order.status == Status.PAYOUT_PENDING:
            return order
        return step.move(Status.PAYOUT_PENDING, reason="payout queued on the node; preimage withheld until it confirms",
                         node=ref)
    message = f"payout {order.payout_tx_hash} was voided on the node"
    if order.status == Status.SETTLEMENT_RECOVERY:
        return order
    return step.move(Status.SETTLEMENT_RECOVERY, reason=message, node=ref, alert=("payout_voided", message))


def complete(bridge: Bridge, order: Order, ref: NodeRef, *, actor: str = "bridge",
             reason: str = "payout confirmed by the node; trade recorded, preimage readable") -> Order:
    """:func:`complete_step` for a caller outside a step (an operator resolving an order
    passes its own ``actor`` and ``reason``)."""
    with Step(bridge, order) as step:
        return complete_step(step, ref, actor=actor, reason=reason)


def complete_step(step: Step, ref: NodeRef, *, actor: str = "bridge",
                  reason: str = "payout confirmed by the node; trade recorded, preimage readable") -> Order:
    """``completed``: the node confirmed the payout. The trade row is written in the same
    transaction, before the transition, so completed <=> trade exists (checked after commit)."""
    order, now = step.order, step.bridge.now()
    with step.writing() as (tx, pending):
        tx.execute(
            "INSERT INTO trades (trade_id, order_id, pair, side, seller_wallet, buyer_wallet,"
            " amount_micro_rtc, price_nano_quote, total_quote_nano, payout_micro_rtc, quote_tx,"
            " escrow_job_id, payout_tx_hash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("trade_" + order.order_id.removeprefix("otc_"), order.order_id, order.pair, order.side,
             order.seller_wallet, order.payout_wallet, order.amount_micro_rtc, order.price_nano_quote,
             order.total_quote_nano, order.payout_micro_rtc, order.quote_tx, order.escrow_job_id,
             order.payout_tx_hash, now),
        )
        new = orders.transition(tx, order, Status.COMPLETED, actor=actor, reason=reason, now=now,
                                changes={"confirmed_at": now, "ended_at": now}, node=ref,
                                earlier=pending)
    step.order = new
    return new


def paid_on_node(step: Step) -> bool:
    """True if the node holds the order's own payout (key ``otc_payout:<order>``), pending or
    confirmed: the bridge itself released and paid this order, even if its database no longer
    says so (restored from a backup or replica, docs/backups.md). Then a job completed into
    the worker is no tampering, and refunding the seller from it would pay both sides.
    Raises ``NodeUnavailable`` without a usable answer: nothing may be decided then."""
    key = f"otc_payout:{step.order.order_id}"
    status = step.bridge.node.tx_status(payout_tx_hash(key))
    step.call(status.result, ref=payout_tx_hash(key), reason="look for the order's own payout")
    if status.status is None:
        step.flush()
        raise NodeUnavailable("Escrow node did not answer the payout lookup; nothing was changed, retry")
    return phase_of_tx_status(status.status) in ("pending", "confirmed")
