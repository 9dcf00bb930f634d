"""Claim a buyer-held lock for its seller (docs/protocol.md §12.5): a reconcile step.

Once the buyer's RTC payout is committed (``payout_pending``: the job completed into the
bridge's worker and the keyed transfer queued with its ``tx_hash``), the bridge holds the
preimage and the seller is owed the quote. With ``OTC_EVM_CLAIMER_KEY`` set the bridge sends
``claim(swap_id, preimage)`` itself, so the seller needs to do nothing; the watcher marks the
leg ``claimed`` once the ``SwapClaimed`` is final. Without a key the page and the API show
the preimage to the seller from ``payout_pending`` on, and anyone may claim (the contract
always pays the seller).

Safety of each send:

* before it, chain time must be before ``timelock - margin`` and the swap still open;
  otherwise the claim can no longer land safely: stop and alert (``quote_claim_late``);
* gas is always estimated, so a claim that would revert is never broadcast (a reverted
  claim would still put the preimage on chain in its input);
* one claim in flight per claimer: while the claimer has a pending transaction nothing new is
  sent, so a crash or a slow block never makes two claims compete (the reconciler's next pass
  sends again if the first was dropped);
* the fee is the node's suggestion, refused above ``OTC_EVM_MAX_FEE_WEI`` per gas (alert);
* a claimer balance below ``OTC_EVM_CLAIMER_LOW_BALANCE_WEI`` raises ``claimer_low_gas``.
"""

from __future__ import annotations

import logging
from collections import Counter

from otc_bridge import crashpoints
from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement.record import Step
from otc_bridge.settlement.refund import UNCLAIMABLE, safe_refund_escrow
from otc_bridge.storage import orders, outbox

log = logging.getLogger(__name__)

#: Orders whose lock the bridge claims for the seller: the payout is committed (or done, or
#: under recovery with the escrow released) and the lock is still open.
_DUE = ("preimage_holder = 'buyer' AND quote_leg_state = 'locked' AND htlc_secret IS NOT NULL "
        "AND status IN ('payout_pending', 'completed', 'settlement_recovery')")


def claim_for_sellers(bridge: Bridge, counts: Counter) -> None:
    """Send at most one claim per pass (one in flight per claimer); counts
    ``quote_claims_sent``. Does nothing without a chain or a claimer key."""
    q = bridge.config.quote_chain
    if bridge.chain is None or q is None or q.claimer_key is None:
        return
    due = orders.find(bridge.db.connection(), _DUE, order_by="quote_timelock, order_id", limit=1)
    if not due:
        return
    from web3.exceptions import Web3Exception

    from otc_bridge.chain import tx

    try:
        if _send_claim(bridge, due[0]) is not None:
            counts["quote_claims_sent"] += 1
    except (tx.ChainError, Web3Exception, OSError, ValueError) as exc:  # transport or node: next pass retries
        log.warning("claim for the seller of order %s not sent: %s", due[0].order_id, exc)
        counts["waiting"] += 1


def _send_claim(bridge: Bridge, order: Order) -> str | None:
    """Send the claim of ``order``'s lock if it is safe now; its tx hash, or None."""
    from eth_account import Account
    from hexbytes import HexBytes

    from otc_bridge.chain import htlc, tx

    q, chain = bridge.config.quote_chain, bridge.chain
    claimer = Account.from_key(q.claimer_key)
    w3 = chain.w3
    balance = w3.eth.get_balance(claimer.address)
    if balance < q.claimer_low_balance_wei:
        _alert_once(bridge, "claimer_low_gas", f"the claimer {claimer.address} holds {balance} wei, below "
                                               f"{q.claimer_low_balance_wei}; fund it or claims will stop",
                    key=str(bridge.now() // 86400))
    if w3.eth.get_transaction_count(claimer.address, "pending") > w3.eth.get_transaction_count(claimer.address):
        return None  # a claim is in flight: wait for it (or its drop) rather than race it
    swap = chain.swap(order.quote_swap_id)
    now = chain.latest_time()
    if swap.state is not htlc.SwapState.OPEN or now >= order.quote_timelock - q.buyer_margin_seconds:
        if swap.state is htlc.SwapState.OPEN:
            with Step(bridge, order) as step:
                step.alert("quote_claim_late", f"chain time {now} is past the timelock {order.quote_timelock} minus "
                                               f"the {q.buyer_margin_seconds} s margin and the lock is not claimed; "
                                               "the seller must claim at once with the published preimage")
        return None  # claimed or refunded already: the watcher records it
    fee = w3.eth.gas_price
    if fee > q.max_fee_per_gas_wei:
        _alert_once(bridge, "claim_fee_capped", f"gas price {fee} wei is above OTC_EVM_MAX_FEE_WEI "
                                                f"{q.max_fee_per_gas_wei}; claims wait", key=str(bridge.now() // 3600))
        return None
    call = chain.htlc.contract.functions.claim(bytes(HexBytes(order.quote_swap_id)), bytes.fromhex(order.htlc_secret))
    signed = tx.prepare(w3, claimer, call)  # estimates gas: a claim that would revert is never sent
    crashpoints.crash_point("before:claim_tx")
    sent = tx.broadcast(w3, signed)
    crashpoints.crash_point("after:claim_tx")
    log.info("claim of lock %s sent for the seller of order %s: %s", order.quote_swap_id, order.order_id, sent)
    return sent


def void_unclaimable_payouts(bridge: Bridge, counts: Counter) -> None:
    """Buyer-held orders whose payout is still pending on the node while the seller's claim
    of the lock can no longer land (chain time at the timelock, or the buyer refunded): void
    the payout and return the escrow to the seller (docs/protocol.md §12.6); the buyer
    refunds the quote. Counts ``payouts_voided``. Nothing is decided without chain time."""
    if bridge.chain is None:
        return
    from otc_bridge.chain import htlc
    from otc_bridge.chain.reader import ChainUnavailable

    due = orders.find(bridge.db.connection(), "preimage_holder = 'buyer' AND status = 'payout_pending' AND "
                      "quote_leg_state = 'locked'", order_by="quote_timelock, order_id")
    for order in due:
        try:
            swap = bridge.chain.swap(order.quote_swap_id)
            now = bridge.chain.latest_time()
        except ChainUnavailable as exc:
            log.warning("unclaimable-payout check of order %s waits: %s", order.order_id, exc)
            counts["waiting"] += 1
            continue
        if swap.state is htlc.SwapState.CLAIMED or (swap.state is htlc.SwapState.OPEN and now < swap.timelock):
            continue  # claimed (the watcher records it), or still claimable by the seller
        if _void_payout(bridge, order):
            counts["payouts_voided"] += 1


def _void_payout(bridge: Bridge, order: Order) -> bool:
    """Void ``order``'s pending payout and start the escrow's way back; True if voided."""
    with Step(bridge, order) as step:
        result = bridge.node.void_pending(tx_hash=order.payout_tx_hash, reason="quote claim can no longer land")
        step.call(result, ref=order.payout_tx_hash, reason="void the payout: the seller's claim cannot land")
        status = bridge.node.tx_status(order.payout_tx_hash)  # the node's word decides, not the void's answer
        step.call(status.result, ref=order.payout_tx_hash, reason="payout status after the void")
        if status.status != "failed":  # still pending (no usable answer), or confirmed: nothing to undo
            if status.status == "confirmed":
                step.alert("quote_claim_late", "the buyer's payout confirmed although the seller's claim can no "
                                               "longer land; the seller lost the quote: settle with the traders")
            return False
        message = (f"the seller's claim of lock {order.quote_swap_id} can no longer land (timelock "
                   f"{order.quote_timelock}); the buyer's payout was voided and the escrow goes back to the seller")
        moved = step.move(Status.REFUND_PENDING, actor="reconciler", reason=message,
                          changes={"end_cause": UNCLAIMABLE, "htlc_secret": None},
                          alert=("payout_voided_unclaimable", message))
    safe_refund_escrow(bridge, moved)
    return True


def _alert_once(bridge: Bridge, code: str, message: str, *, key: str) -> None:
    log.warning("alert %s: %s", code, message)
    with bridge.db.transaction() as txn:
        outbox.alert_once(txn, code=code, message=message, key=key, now=bridge.now())
