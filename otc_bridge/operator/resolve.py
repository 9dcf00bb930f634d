"""Resolve: move an order out of ``settlement_recovery`` only when the node's state proves
the target (an audited operator action).
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import Conflict, Invalid
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.operator.common import (
    LIVE_PAYOUT,
    check_reason,
    claimed,
    exclusive,
    get_order,
    operator_actor,
    payout_keys,
    payout_states,
    read_job_or_refuse,
)
from otc_bridge.settlement import payout, record
from otc_bridge.storage.events import NodeRef

#: Where ``resolve`` may move a ``settlement_recovery`` order: forward only, never back into
#: a retryable state (``matched``, ``open``, ...), each edge in ``model.TRANSITIONS``.
RESOLVE_TARGETS = (Status.COMPLETED, Status.PAYOUT_PENDING, Status.CANCELLED, Status.EXPIRED)


# --- resolve --------------------------------------------------------------------------------

def resolve_target(to: object) -> Status:
    """The ``to`` status of a resolve; ``Invalid`` (field ``to``) unless one of
    :data:`RESOLVE_TARGETS` (a move back to a retryable state is never offered)."""
    allowed = ", ".join(str(s) for s in RESOLVE_TARGETS)
    if not isinstance(to, str) or to.strip().lower() not in {str(s) for s in RESOLVE_TARGETS}:
        raise Invalid(f"to must be one of {allowed}; a settlement_recovery order only moves forward", field="to")
    return Status(to.strip().lower())


def _prove_payout(bridge: Bridge, order: Order, needed: str) -> NodeRef:
    states = payout_states(bridge, payout_keys(bridge, order))
    current = states.get(order.payout_key) if order.payout_key else None
    if current != needed:
        raise Conflict(f"The node reports payout {order.payout_tx_hash} as {current or 'absent'}; "
                       f"resolving to {'completed' if needed == 'confirmed' else 'payout_pending'} needs it {needed}")
    others = [k for k, s in states.items() if k != order.payout_key and s in LIVE_PAYOUT]
    if needed == "pending" and others:
        raise Conflict(f"Another payout of this order is {states[others[0]]} on the node ({payout_tx_hash(others[0])})")
    return NodeRef("GET /wallet/tx/<tx_hash>", "ok", order.payout_tx_hash, {"status": needed})


def _prove_refund(bridge: Bridge, order: Order) -> NodeRef:
    job = read_job_or_refuse(bridge, order)
    if job.poster_wallet != order.escrow_wallet:
        raise Conflict(f"Escrow job poster is {job.poster_wallet!r}, not the order's escrow wallet")
    if job.status not in ("cancelled", "expired"):
        raise Conflict(f"The node reports escrow job {job.job_id} as {job.status}; "
                       "a refund is proven only by cancelled or expired")
    states = payout_states(bridge, payout_keys(bridge, order))
    live = [k for k, s in states.items() if s in LIVE_PAYOUT]
    if live:
        raise Conflict(f"A payout of this order is {states[live[0]]} on the node ({payout_tx_hash(live[0])}); "
                       "the buyer was or will be paid, so it cannot end as refunded")
    return NodeRef("GET /agent/jobs/<job_id>", "ok", job.job_id, {"status": job.status})


def resolve(bridge: Bridge, order_id: str, to: object, *, operator_name: str, reason: object) -> Order:
    """Move a ``settlement_recovery`` order forward once the node proves ``to``; fresh row.

    ``completed``: the current payout reads ``confirmed`` (``payout.complete`` writes the
    trade row). ``payout_pending``: it reads ``pending`` and no other key of the order is
    live. ``cancelled`` / ``expired``: the escrow job reads cancelled or expired with the
    order's escrow wallet as poster (reward and fee refunded, docs/escrow-node.md §1.7, §1.9) and no
    payout key is pending or confirmed. ``operator_name`` is the bare name. Raises ``Invalid``
    (``to``, ``reason``, ``operator``), ``NotFound``, ``Conflict`` (not in recovery, node
    state does not prove it, lost race, another operator action on the order in progress),
    ``NodeUnavailable``; every refusal writes nothing.
    """
    actor, why, target = operator_actor(operator_name), check_reason(reason), resolve_target(to)
    get_order(bridge, order_id)
    with exclusive(bridge, order_id):
        return _resolve(bridge, get_order(bridge, order_id), target, actor, why)


def _resolve(bridge: Bridge, order: Order, target: Status, actor: str, why: str) -> Order:
    if order.status != Status.SETTLEMENT_RECOVERY:
        raise Conflict(f"Only a settlement_recovery order can be resolved (current: {order.status})")
    if target in (Status.COMPLETED, Status.PAYOUT_PENDING):
        proof = _prove_payout(bridge, order, "confirmed" if target == Status.COMPLETED else "pending")
    else:
        proof = _prove_refund(bridge, order)
    note = f"resolve to {target} (node: {proof.detail['status']}): {why}"
    with claimed():
        if target == Status.COMPLETED:
            return payout.complete(bridge, order, proof, actor=actor, reason=note)
        # An ended order holds no preimage (invariants: only settling..completed or recovery may).
        changes = {} if target == Status.PAYOUT_PENDING else {
            "ended_at": bridge.now(), "end_cause": order.end_cause or f"operator_{target}", "htlc_secret": None}
        return record.move(bridge, order, target, actor=actor, reason=note, node=proof, changes=changes)
