"""Confirm a matched order with the HTLC preimage (``POST /api/orders/<id>/confirm``).

One read of the order, one compare-and-swap into ``settling`` that also commits the payout
key and the release intent, the node calls of the release, and one compare-and-swap with
their outcome: two write transactions on the happy path (tests/unit/test_confirm_cost.py
holds the count).
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import Conflict, Forbidden, Invalid
from otc_bridge.domain.hashlock import is_preimage_format, preimage_matches
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement import settle
from otc_bridge.storage.orders import ConcurrentUpdate
from otc_bridge.trading.common import order_or_404


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
    try:
        return settle.settle_with_preimage(bridge, order, secret=secret.lower(), quote_tx=quote_tx,
                                           actor=wallet or "preimage holder")
    except ConcurrentUpdate:
        # The reconciler finished this settlement meanwhile: report where it stands.
        return order_or_404(bridge, order_id)
