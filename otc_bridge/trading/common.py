"""What every trading service shares: the single-use signature check, the order read and
the buyer-held mode's precondition.
"""

from __future__ import annotations

import secrets

from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import BridgeError, Invalid, NotFound
from otc_bridge.domain.order import Order
from otc_bridge.domain.quote_lock import verified_on_chain
from otc_bridge.storage import orders, signatures


def verify_and_burn(bridge: Bridge, wallet: str, wallet_auth: object, action: str, order_id: str,
            bound: dict) -> wallets.VerifiedWallet:
    """Verify the signature and burn it at once, in its own committed transaction.

    Single use means single use: a signed request refused later for any reason (order
    not open, lost race, node refusal) must not stay replayable for the rest of its 300 s
    window. A captured buy-order match could otherwise be replayed once the order reopens,
    locking the victim's RTC and handing the preimage to the replayer.
    """
    now = bridge.now()
    try:
        verified = wallets.verify(wallet, wallet_auth, action=action, order_id=order_id, bound=bound, now=now)
        with bridge.db.transaction() as tx:
            signatures.consume(tx, verified, action, now)
    except wallets.AuthError as exc:
        raise BridgeError(exc.code, http_status=401) from None
    return verified


#: The 409 for a buyer-held hashlock some order already carried (docs/protocol.md §12.5).
HASHLOCK_REUSED = "htlc_hash was used by an earlier order; make a new preimage and send its sha256"


def check_buyer_held(bridge: Bridge, pair: str) -> None:
    """The buyer-held mode needs a lock the bridge can verify: an ETH or USDC pair on a bridge
    watching the chain. Raises 400 naming ``htlc_hash`` otherwise."""
    q = bridge.config.quote_chain
    if bridge.chain is None or q is None or not verified_on_chain(pair, q.usdc_address):
        raise Invalid(f"htlc_hash (buyer-held mode) needs a quote lock verified on chain; {pair} is settled on "
                      "evidence here", field="htlc_hash")


def new_order_id() -> str:
    """``otc_`` + 16 hex characters, as the reference's ids look."""
    return "otc_" + secrets.token_hex(8)


def order_or_404(bridge: Bridge, order_id: str) -> Order:
    """The order, read once; raises 404 ``Order not found``."""
    order = orders.get_order(bridge.db.connection(), order_id)
    if order is None:
        raise NotFound("Order not found")
    return order
