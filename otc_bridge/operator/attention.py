"""The attention list: orders an operator should look at, with their event history.
"""

from __future__ import annotations

from typing import Any

from otc_bridge.context import Bridge
from otc_bridge.domain import views
from otc_bridge.domain.status import Status
from otc_bridge.operator.common import order_events
from otc_bridge.storage import orders

DEFAULT_ATTENTION_AGE_SECONDS = 3600


def attention(bridge: Bridge, *, older_than_seconds: int = DEFAULT_ATTENTION_AGE_SECONDS) -> list[dict[str, Any]]:
    """Orders an operator should look at, least recently changed first (docs/protocol.md §7).

    Every ``settlement_recovery`` and ``refund_pending`` order; ``payout_pending`` orders
    unchanged for ``older_than_seconds`` or more; ``locking`` and ``settling`` orders
    unchanged for ``config.settlement_stuck_seconds``; ``matched`` orders whose escrow the
    watch found tampered with (held in the worker's custody until a confirm or ``settle_by``).
    Each item is the public order view plus ``updated_at``, ``age_seconds`` (since
    ``updated_at``) and ``events`` (the audit trail, oldest first). Read-only. Raises ``ValueError`` for a negative age.
    """
    if older_than_seconds < 0:
        raise ValueError("older_than_seconds must be >= 0")
    now = bridge.now()
    found = orders.find(
        bridge.db.connection(),
        "status IN (?, ?) OR (status = ? AND updated_at <= ?) OR (status IN (?, ?) AND updated_at <= ?)"
        " OR (status = 'matched' AND escrow_tampered_at IS NOT NULL)",
        (Status.SETTLEMENT_RECOVERY, Status.REFUND_PENDING, Status.PAYOUT_PENDING, now - older_than_seconds,
         Status.LOCKING, Status.SETTLING, now - bridge.config.settlement_stuck_seconds))
    return [{**views.order_view(order), "updated_at": order.updated_at, "age_seconds": now - order.updated_at,
             "events": order_events(bridge, order.order_id)} for order in found]
