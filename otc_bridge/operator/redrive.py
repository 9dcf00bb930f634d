"""Operator re-drive of a buyer's payout (docs/protocol.md §7): same key, or an audited new key.

The payout is a keyed transfer from the bridge's worker wallet to the buyer
(``payout.pay_buyer``). Re-sending it with the **same** key can never pay twice: the node
answers a repeated key with the existing row (docs/escrow-node.md §1.11). A key the node has
**voided** can never be re-used (§4), so paying after a void needs a **new** key,
``otc_payout:<order_id>:<n>``; that is only issued when no key of the order is pending or
confirmed on the node (``GET /wallet/tx``), or the buyer would be paid twice.

Order of work (docs/protocol.md §4 rules 1-3): refuse unless the node's state allows it (nothing
written); commit the intent (the key about to be sent, the operator and the reason) with a
compare-and-swap on the order as read, which is also the claim; send; record the answer;
move the order from what the node says. An unanswered transfer is looked up by its
``tx_hash``; if that is still unknown the order stays in ``settlement_recovery``.
"""

from __future__ import annotations

from dataclasses import dataclass

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import Conflict, NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import NodeResult
from otc_bridge.operator import common
from otc_bridge.settlement import escrow_job, payout
from otc_bridge.settlement.record import Step, node_ref
from otc_bridge.storage.events import NodeRef


@dataclass(frozen=True)
class Redriven:
    """Outcome of a re-drive: the fresh order row, the key sent and the node's ``phase``
    (``pending`` or ``confirmed``)."""

    order: Order
    payout_key: str
    phase: str

    @property
    def message(self) -> str:
        """One line for the operator."""
        return (f"payout {payout_tx_hash(self.payout_key)} is {self.phase} on the node; "
                f"order is {self.order.status}")


def _check_order(order: Order, new_key: bool) -> None:
    allowed = (Status.SETTLEMENT_RECOVERY,) if new_key else (Status.SETTLEMENT_RECOVERY, Status.PAYOUT_PENDING)
    if order.status not in allowed:
        raise Conflict(f"A payout can be re-driven{' with a new key' if new_key else ''} only from "
                       f"{' or '.join(allowed)} (current: {order.status})")
    if not order.payout_key or not order.payout_wallet or not order.payout_micro_rtc:
        raise Conflict("The order never reached its payout; there is nothing to re-drive")


def _check_escrow_released(bridge: Bridge, order: Order) -> None:
    """The worker wallet pays the buyer from a pool shared by all orders: pay only once this
    order's escrow provably went to it (job completed, worker = bridge, amounts right)."""
    job = common.read_job_or_refuse(bridge, order)
    problem = escrow_job.job_problem(order, job)
    if problem is None and (job.status != "completed" or job.worker_wallet != bridge.config.worker_wallet):
        problem = f"escrow job is {job.status} with worker {job.worker_wallet!r}"
    if problem:
        raise Conflict(f"The node does not show this order's escrow released to the bridge ({problem}); "
                       "a payout now would be paid from other orders' funds")


def _choose_key(order: Order, states: dict[str, str], new_key: bool) -> str:
    """The key to send; ``Conflict`` if sending it could pay the buyer twice."""
    current = order.payout_key
    if not new_key:
        if states.get(current) == "failed":
            raise Conflict(f"The node voided payout {order.payout_tx_hash}; a voided key can never be "
                           "re-used. Re-drive with a new key (--new-key / \"new_key\": true) and a reason")
        live = [k for k, s in states.items() if k != current and s in common.LIVE_PAYOUT]
    else:
        live = [k for k, s in states.items() if s in common.LIVE_PAYOUT]
    if live:
        raise Conflict(f"Payout {payout_tx_hash(live[0])} of this order is {states[live[0]]} on the node; "
                       "another payout would pay the buyer twice")
    if not new_key:
        return current
    numbers = [n for n in (common.redrive_number(order.order_id, k) for k in states) if n]
    return f"otc_payout:{order.order_id}:{1 + max(numbers, default=0)}"


def redrive_payout(bridge: Bridge, order_id: str, *, operator_name: str, reason: object,
                   new_key: bool = False) -> Redriven:
    """Re-send the buyer's payout of a ``settlement_recovery`` (or ``payout_pending``) order.

    Same key (default): refused if the node voided it. ``new_key``: only from
    ``settlement_recovery`` and only if every earlier key of the order reads ``failed`` or
    ``not_found``; the key is ``otc_payout:<order_id>:<n>`` with ``n`` = 1 + the earlier
    re-drive keys. Either way the escrow job must read completed by the bridge's worker.
    The intent (``payout_key``/``payout_tx_hash`` and a ``note`` event naming
    ``operator:<operator_name>`` and the reason) is committed before the transfer. Then:
    ``pending`` -> ``payout_pending``, ``confirmed`` -> ``completed``.

    Raises ``Invalid`` (``operator``, ``reason``), ``NotFound``, ``Conflict`` (state or node
    refuses, or another operator action on the order is in progress; a refusal before the
    intent writes nothing), ``NodeUnavailable`` (the node did
    not answer: before the intent nothing is written; after it the outcome is recorded and
    the order stays in ``settlement_recovery`` for another same-key re-drive).
    """
    actor, why = common.operator_actor(operator_name), common.check_reason(reason)
    common.get_order(bridge, order_id)
    with common.exclusive(bridge, order_id):  # checks, intent and send: one operator at a time
        return _redrive(bridge, common.get_order(bridge, order_id), actor, why, new_key)


def _redrive(bridge: Bridge, order: Order, actor: str, why: str, new_key: bool) -> Redriven:
    _check_order(order, new_key)
    _check_escrow_released(bridge, order)
    key = _choose_key(order, common.payout_states(bridge, common.payout_keys(bridge, order)), new_key)
    intent = NodeRef("POST /wallet/transfer", "intent", key, {"tx_hash": payout_tx_hash(key)})
    with common.claimed():
        order = common.operator_note(
            bridge, order, actor=actor, node=intent,
            reason=f"re-drive payout with {'a new' if new_key else 'the same'} key {key}: {why}",
            changes={"payout_key": key, "payout_tx_hash": payout_tx_hash(key)})
        with Step(bridge, order) as step:
            phase, ref = _send(step, key)
            return Redriven(_apply(step, phase, ref, actor), key, phase)


def _send(step: Step, key: str) -> tuple[str, NodeRef]:
    """Send the keyed transfer (recorded); ``(phase, ref)`` or raise after recording."""
    bridge, order = step.bridge, step.order
    result = bridge.node.transfer(from_wallet=bridge.config.worker_wallet, to_wallet=order.payout_wallet,
                                  amount_micro_rtc=order.payout_micro_rtc, reason=key, idempotency_key=key)
    step.call(result, ref=key, reason="operator payout re-drive")
    if result.ok:
        return str(result.body["phase"]), node_ref(result, key)
    if result.failed and result.retry_after_seconds is not None:  # 429: nothing was applied
        raise NodeUnavailable(f"Escrow node is rate limiting; nothing was sent. Re-drive again (same key) "
                              f"in {result.retry_after_seconds} s", retry_after_seconds=result.retry_after_seconds)
    if result.failed:
        raise Conflict(f"The node refused the payout: {result.error}; the order stays {order.status} "
                       "with this key recorded: re-drive again (same key) once the cause is fixed")
    return _look_up(step, key, result)


def _look_up(step: Step, key: str, sent: NodeResult) -> tuple[str, NodeRef]:
    status = step.bridge.node.tx_status(payout_tx_hash(key))
    step.call(status.result, ref=key, reason="payout status after an unanswered re-drive")
    phase = payout.phase_of_tx_status(status.status)
    if phase is None:
        raise NodeUnavailable(f"Payout outcome unknown ({sent.error}; lookup: {status.status or status.result.error}); "
                              f"the order stays {step.order.status}: re-drive again with the same key (safe)")
    return phase, node_ref(status.result, key)


def _apply(step: Step, phase: str, ref: NodeRef, actor: str) -> Order:
    order = step.order
    if phase == "confirmed":
        return payout.complete_step(step, ref)
    if phase == "voided":  # voided between our check and the send
        raise Conflict(f"The node answered that payout {order.payout_tx_hash} is voided; "
                       "re-drive with a new key if the buyer is still unpaid")
    if order.status == Status.PAYOUT_PENDING:
        return order
    return step.move(Status.PAYOUT_PENDING, actor=actor, node=ref,
                     reason="payout re-driven by an operator; queued on the node, preimage withheld")
