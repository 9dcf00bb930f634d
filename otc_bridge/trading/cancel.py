"""Cancel an open order (``POST /api/orders/<id>/cancel``); escrow is refunded.
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import Conflict, Forbidden, NotFound
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement.refund import safe_refund_escrow
from otc_bridge.storage import orders
from otc_bridge.storage.orders import ConcurrentUpdate
from otc_bridge.trading.common import order_or_404, verify_and_burn


def cancel_order(bridge: Bridge, order_id: str, wallet: str, wallet_auth: object) -> Order:
    """The maker withdraws an open order; escrow (sell) is refunded through ``refund_pending``.

    Raises 401, 404, 403 ``Only the order creator can cancel`` (before the status check,
    as the reference), 409 ``Can only cancel open orders``, 409 when a match won the race.
    """
    verified = verify_and_burn(bridge, wallet, wallet_auth, "cancel_order", order_id, {})
    now = bridge.now()
    try:
        with bridge.db.transaction() as tx:
            order = orders.get_order(tx.conn, order_id)
            if order is None:
                raise NotFound("Order not found")
            if order.maker_wallet != verified.wallet:
                raise Forbidden("Only the order creator can cancel")
            if order.status != Status.OPEN:
                raise Conflict(f"Can only cancel open orders (current: {order.status})")
            to = Status.REFUND_PENDING if order.side == "sell" else Status.CANCELLED
            changes = {"end_cause": "cancelled"} | ({} if order.side == "sell" else {"ended_at": now})
            order = orders.transition(tx, order, to, actor=verified.wallet, reason="maker cancelled", now=now,
                                      changes=changes)
    except ConcurrentUpdate:
        raise Conflict("Order is no longer open (matched or cancelled concurrently)") from None
    if order.status == Status.REFUND_PENDING:
        try:
            order = safe_refund_escrow(bridge, order)
        except ConcurrentUpdate:
            # The reconciler drove the same refund to its end meanwhile (the node's guards made
            # every step happen once): report the order as it now stands.
            order = order_or_404(bridge, order_id)
    return order
