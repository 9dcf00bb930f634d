"""Confirm a matched order with the HTLC preimage (``POST /api/orders/<id>/confirm``).

One read of the order, one compare-and-swap into ``settling`` that also commits the payout
key and the release intent, the node calls of the release, and one compare-and-swap with
their outcome: two write transactions on the happy path (tests/unit/test_confirm_cost.py
holds the count).
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import BridgeError, Conflict, Forbidden, Invalid
from otc_bridge.domain.hashlock import is_preimage_format, preimage_matches
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement import settle
from otc_bridge.storage.orders import ConcurrentUpdate
from otc_bridge.trading.common import order_or_404, verify_and_burn


def confirm_order(bridge: Bridge, order_id: str, *, secret: str, quote_tx: str | None,
                  wallet: str | None, wallet_auth: object = None) -> Order:
    """Settle a matched order with the HTLC preimage; returns the order after the attempt.

    Authorised by the preimage (docs/protocol.md §3); ``wallet``, if given, must be the RTC
    seller or buyer (403). Raises 404, 409 ``Order must be matched to confirm``, 400
    ``Invalid HTLC secret format`` / ``Invalid HTLC secret``, 409 when another confirm (or
    the unwind) won the claim. The returned status is ``completed``, ``payout_pending``,
    ``settlement_recovery``, ``matched`` (nothing left escrow) or ``settling``.
    """
    order = order_or_404(bridge, order_id)
    if quote_tx is None and not order.buyer_holds_preimage:
        raise Invalid("quote_tx required", field="quote_tx")
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
    if order.buyer_holds_preimage:
        check_reveal(bridge, order, secret.lower(), wallet, wallet_auth)
    elif order.quote_leg_state == "locked" and bridge.chain is not None:
        check_not_near_timelock(bridge, order)
    try:
        return settle.settle_with_preimage(bridge, order, secret=secret.lower(), quote_tx=quote_tx,
                                           actor=wallet or "preimage holder")
    except ConcurrentUpdate:
        # The reconciler finished this settlement meanwhile: report where it stands.
        return order_or_404(bridge, order_id)


def check_reveal(bridge: Bridge, order: Order, secret: str, wallet: str | None, wallet_auth: object) -> None:
    """The buyer-held reveal's checks (docs/protocol.md §12.5), before anything is stored:
    the matched buyer signed it (action ``confirm_order``, no bound field but the order id);
    the order's lock is verified; chain time is before ``timelock - margin``; and an
    ``eth_call`` of ``claim(swap_id, preimage)`` would succeed, so the bridge's claim for the
    seller can land once the RTC is paid. Raises 403/401 on the signature, 409 naming what is
    missing, 503 when the chain cannot be read."""
    if wallet is None:
        raise Forbidden("A buyer-held reveal must be signed by the RTC buyer: send wallet and wallet_auth")
    verified = verify_and_burn(bridge, wallet, wallet_auth, "confirm_order", order.order_id, {})
    if verified.wallet != order.buyer_wallet:
        raise Forbidden("Only the RTC buyer reveals the preimage of a buyer-held order")
    if bridge.chain is None:
        raise BridgeError("This buyer-held order needs the quote chain, and none is configured now; nothing was "
                          "stored", http_status=503, order_id=order.order_id)
    if order.quote_leg_state != "locked" or order.quote_swap_id is None or order.quote_timelock is None:
        raise Conflict("No verified quote lock for this order yet: lock in our HTLC, wait until quote_leg is "
                       "'locked', then reveal. Nothing was stored.")
    from otc_bridge.chain.reader import ChainUnavailable  # loaded with the chain

    margin = bridge.config.quote_chain.buyer_margin_seconds
    try:
        now = bridge.chain.latest_time()
        if now >= order.quote_timelock - margin:
            raise Conflict(f"Too late to reveal: chain time {now} is past the lock's timelock minus the "
                           f"{margin} s margin; refund your HTLC after its timelock. Nothing was stored.")
        refusal = bridge.chain.claim_refusal(order.quote_swap_id, secret)
    except ChainUnavailable as exc:
        raise BridgeError(f"The quote chain did not answer ({exc}); nothing was stored, retry the reveal",
                          http_status=503, order_id=order.order_id) from None
    if refusal is not None:
        raise Conflict(f"The seller's claim of your lock would revert ({refusal}); the RTC is not released and "
                       "nothing was stored. Refund your HTLC after its timelock.")


def check_not_near_timelock(bridge: Bridge, order: Order) -> None:
    """Seller-held, the order's lock verified but not yet claimed: from ``timelock - margin``
    (chain time) on, a confirm releases only against the seller's final ``SwapClaimed``,
    which the watcher settles by itself (docs/protocol.md §12.4). Otherwise a buyer could
    copy the preimage from a claim stuck in the mempool, take the RTC, and refund the quote
    once the timelock passes. Raises 409 (nothing stored), or 503 without chain time."""
    from otc_bridge.chain.reader import ChainUnavailable  # loaded with the chain

    margin = bridge.config.quote_chain.buyer_margin_seconds
    try:
        now = bridge.chain.latest_time()
    except ChainUnavailable as exc:
        raise BridgeError(f"The quote chain did not answer ({exc}); nothing was stored, retry the confirm",
                          http_status=503, order_id=order.order_id) from None
    if now >= order.quote_timelock - margin:
        raise Conflict(f"The quote lock's timelock is near (chain time {now}, timelock {order.quote_timelock}, "
                       f"margin {margin} s): the RTC is released only against the seller's final on-chain claim, "
                       "which settles the order by itself. Nothing was stored.")
