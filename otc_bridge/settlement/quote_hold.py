"""The seller-held refund hold (docs/protocol.md §12.4): while a lock with the order's hashlock
paying its seller can still be claimed, the escrow is not refunded to the seller.

Why: in the seller-held mode the seller knows the preimage. If the bridge refunded the RTC
while such a lock were open, the seller could still claim the buyer's quote on chain and
keep both legs. Once the lock's timelock has passed (by chain time) only its buyer can
take it back, and the refund is safe. A lock the seller did claim makes the preimage public:
the buyer can then confirm; a refund is never right again, so the hold stays and the
operator is alerted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.quote_lock import EVM_PAIRS
from otc_bridge.storage import quote_locks

log = logging.getLogger(__name__)


#: The alert of a hold that no time will lift: the seller claimed a lock with the hashlock.
CLAIMED_HOLD = "escrow_refund_held_claimed"


@dataclass(frozen=True)
class Hold:
    """Why a refund waits (``reason``, a sentence for the log and the alert); ``claimed``:
    the seller already claimed a lock with the hashlock, so no time will lift the hold."""

    reason: str
    claimed: bool = False


def refund_hold(bridge: Bridge, order: Order) -> Hold | None:
    """Why ``order``'s escrow may not be refunded yet, or ``None``. Only seller-held EVM
    orders with a chain configured can be held.

    When the chain's time cannot be read the bridge cannot tell whether a lock is still
    claimable: that is a hold too (fail closed), and the refund waits for the next pass.
    """
    if bridge.chain is None or order.buyer_holds_preimage or order.pair not in EVM_PAIRS:
        return None
    if order.htlc_hash is None or order.seller_quote_address is None:
        return None
    conn = bridge.db.connection()
    claimed = conn.execute("SELECT swap_id FROM quote_locks WHERE hashlock = ? AND seller = ? AND state = 'claimed'",
                           (order.htlc_hash.lower(), order.seller_quote_address.lower())).fetchone()
    if claimed is not None:
        return Hold(f"the seller claimed quote lock {claimed['swap_id']} with this order's hashlock: the preimage "
                    "is public and the buyer may confirm; the escrow is never refunded to the seller", claimed=True)
    open_locks = quote_locks.open_with_hashlock(conn, order.htlc_hash, order.seller_quote_address)
    if not open_locks:
        return None
    from otc_bridge.chain.reader import ChainUnavailable  # web3 is loaded only with a chain configured

    try:
        now = bridge.chain.latest_time()
    except ChainUnavailable as exc:
        return Hold(f"quote locks with this order's hashlock exist and the chain's time is unreadable ({exc})")
    live = [row for row in open_locks if row.lock.timelock > now]
    if not live:
        return None
    until = max(row.lock.timelock for row in live)
    return Hold(f"quote lock {live[0].lock.swap_id} with this order's hashlock pays the seller and can be "
                f"claimed until {until} (chain time); the refund waits until then")
