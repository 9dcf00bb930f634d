"""Claim a buyer-held lock for its seller (docs/protocol.md §12.5, §12.8): a reconcile step.

Once the buyer's RTC payout is committed (``payout_pending``: the job completed into the
bridge's worker and the keyed transfer queued with its ``tx_hash``), the bridge holds the
preimage and the seller is owed the quote. With ``OTC_EVM_CLAIMER_KEY`` set the bridge sends
``claim(swap_id, preimage)`` itself, so the seller needs to do nothing; the watcher marks the
leg ``claimed`` once the ``SwapClaimed`` is final, whichever transaction carried it. Without a
key the page and the API show the preimage to the seller from ``payout_pending`` on, and
anyone may claim (the contract always pays the seller).

Safety of each pass (the transactions themselves: :mod:`otc_bridge.settlement.claimer`):

* one nonce in flight per claimer: a new claim goes out only at the key's mined transaction
  count, when no recorded transaction of the key waits at or above it and the node holds
  nothing else from the key. So two claims with different nonces for one lock never
  compete; replacements share the nonce and at most one of them can be mined;
* a new claim needs the swap open and chain time before ``timelock - margin`` (else alert
  ``quote_claim_late``); gas is estimated first, so a claim that would revert is never
  broadcast (a reverted claim would still put the preimage on chain in its input);
* the claim in flight is kept while its lock can still be claimed (open, chain time before
  the timelock): re-sent as recorded if the node lost it, replaced with raised fees once
  stuck (``OTC_EVM_CLAIM_BUMP_*``), never above ``OTC_EVM_MAX_FEE_WEI`` (at the cap: alert
  ``claim_bump_capped``). A claim whose lock closed (someone else's claim landed, a refund,
  the timelock) is replaced once stuck by the next due claim at the same nonce, or by a
  0-wei transfer that frees the nonce;
* fees start at the node's suggestion, refused above ``OTC_EVM_MAX_FEE_WEI`` per gas (alert
  ``claim_fee_capped``); a claimer balance below ``OTC_EVM_CLAIMER_LOW_BALANCE_WEI`` raises
  ``claimer_low_gas``.
"""

from __future__ import annotations

import logging
from collections import Counter

from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement.claimer import Claimer, fees_of
from otc_bridge.settlement.record import Step
from otc_bridge.settlement.refund import UNCLAIMABLE, safe_refund_escrow
from otc_bridge.storage import orders
from otc_bridge.storage.quote_locks import ClaimTx

log = logging.getLogger(__name__)

#: Orders whose lock the bridge claims for the seller: the payout is committed (or done, or
#: under recovery with the escrow released) and the lock is still open.
_DUE = ("preimage_holder = 'buyer' AND quote_leg_state = 'locked' AND htlc_secret IS NOT NULL "
        "AND status IN ('payout_pending', 'completed', 'settlement_recovery')")
#: Due orders looked at per pass, most urgent (earliest timelock) first: one past its margin
#: must not keep the next one from being claimed.
_DUE_BATCH = 20


def claim_for_sellers(bridge: Bridge, counts: Counter) -> None:
    """One step of the claimer per pass: a new claim (counted ``quote_claims_sent``), or
    follow the one in flight (wait, re-send, replace). Does nothing without a chain, a
    claimer key or an order due; a chain or node failure is logged and counted ``waiting``."""
    q = bridge.config.quote_chain
    if bridge.chain is None or q is None or q.claimer_key is None:
        return
    due = orders.find(bridge.db.connection(), _DUE, order_by="quote_timelock, order_id", limit=_DUE_BATCH)
    if not due:
        return
    from web3.exceptions import Web3Exception

    from otc_bridge.chain import tx

    try:
        if _claim_step(bridge, Claimer(bridge), due):
            counts["quote_claims_sent"] += 1
    except (tx.ChainError, Web3Exception, OSError, ValueError) as exc:  # transport or node: next pass retries
        log.warning("claim for the sellers of %s not sent: %s", due[0].order_id, exc)
        counts["waiting"] += 1


def _claim_step(bridge: Bridge, claimer: Claimer, due: list[Order]) -> bool:
    """Decide and do this pass's claimer step; True if a claim went out at a new nonce."""
    claimer.check_balance()
    mined, pending = claimer.nonces()
    last = claimer.last()
    if last is not None and last.nonce < mined:
        claimer.resolve(last)  # one of the transactions at its nonce was mined: nothing is in flight
        last = None
    if last is not None and last.nonce > mined:
        if pending > mined:
            log.info("claimer nonce %d is behind the recorded %d (a reorg): the node mines again", mined, last.nonce)
            return False
        # Nothing pending, so the recorded one cannot be mined before the nonces under it are
        # used: the chain was reset (a dev chain) or reorganised and lost them. Go on from here.
        log.warning("claimer nonce %d is behind the recorded %d with nothing pending: claims go on from %d",
                    mined, last.nonce, mined)
        last = None
    if last is None and pending > mined:
        return False  # a transaction this bridge did not record is pending from the key: never race it
    head = bridge.chain.block("latest")
    keep = _still_claimable(bridge, last, head.time) if last is not None else None
    target = keep or _first_sendable(bridge, due, head.time)
    if last is None:
        fees = claimer.market_fees() if target is not None else None
        if fees is None:
            return False
        claimer.send(target, action="claim", nonce=mined, fees=fees, head=head, reason="new claim")
        return True
    pooled, stuck = claimer.pooled(last), claimer.stuck(last, head)
    if keep is not None:
        if stuck and _replace(bridge, claimer, last, keep, action="claim", head=head):
            return False
        if not pooled:
            claimer.rebroadcast(last, keep)
        return False
    # The transaction in flight can no longer do any good (its lock closed, or it frees the nonce).
    if pooled and not stuck:
        return False  # it is mined (a claim then reverts) or dropped soon; the next claim follows
    if target is not None:  # the next due claim takes the nonce over (its first claim: counted)
        return _replace(bridge, claimer, last, target, action="claim", head=head, pooled=pooled)
    if pooled:
        _replace(bridge, claimer, last, orders.get_order(bridge.db.connection(), last.order_id), action="cancel",
                 head=head)
    return False


def _replace(bridge: Bridge, claimer: Claimer, last: ClaimTx, order: Order, *, action: str, head,
             pooled: bool = True) -> bool:
    """Send ``action`` for ``order`` at ``last``'s nonce with fees a node accepts as its
    replacement; True if sent. At the cap: alert ``claim_bump_capped`` (once per order
    version) and send nothing, unless ``last`` is not pooled and this is another order's
    claim, which then goes out at the market's fees (nothing to replace on this node)."""
    fees = claimer.replacement_fees(last)
    if fees is None and not pooled and order.order_id != last.order_id:
        fees = claimer.market_fees()
    if fees is None:
        stuck_order = orders.get_order(bridge.db.connection(), last.order_id)
        with Step(bridge, stuck_order) as step:
            step.alert("claim_bump_capped", f"the claimer's {last.action} {last.tx_hash} (nonce {last.nonce}) pays "
                                            f"at most {fees_of(last).ceiling_wei} wei per gas and is not mined; the "
                                            f"next replacement would exceed OTC_EVM_MAX_FEE_WEI "
                                            f"{claimer.settings.max_fee_per_gas_wei}")
        return False
    same = action == "claim" and last.action == "claim" and order.order_id == last.order_id
    claimer.send(order, action=action, nonce=last.nonce, fees=fees, head=head, gas=last.gas if same else None,
                 reason=f"replaces {last.tx_hash}")
    return True


def _still_claimable(bridge: Bridge, last: ClaimTx, chain_time: int) -> Order | None:
    """The order of the claim in flight if that claim can still land (the order still due,
    its lock open, chain time before the timelock), else None. Past ``timelock - margin`` it
    stays in flight (and is bumped) but the seller is alerted (``quote_claim_late``)."""
    from otc_bridge.chain import htlc

    if last.action != "claim":
        return None
    found = orders.find(bridge.db.connection(), _DUE + " AND order_id = ?", (last.order_id,))
    if not found:
        return None
    swap = bridge.chain.swap(found[0].quote_swap_id)
    if swap.state is not htlc.SwapState.OPEN or chain_time >= swap.timelock:
        return None
    if chain_time >= found[0].quote_timelock - bridge.config.quote_chain.buyer_margin_seconds:
        _late(bridge, found[0], chain_time, "the bridge's claim is still in flight")
    return found[0]


def _first_sendable(bridge: Bridge, due: list[Order], chain_time: int) -> Order | None:
    """The most urgent due order whose lock is open with chain time before ``timelock -
    margin``; those past the margin are alerted (``quote_claim_late``) and skipped."""
    from otc_bridge.chain import htlc

    margin = bridge.config.quote_chain.buyer_margin_seconds
    for order in due:
        if bridge.chain.swap(order.quote_swap_id).state is not htlc.SwapState.OPEN:
            continue  # claimed or refunded already: the watcher records it
        if chain_time < order.quote_timelock - margin:
            return order
        _late(bridge, order, chain_time, "the bridge no longer sends a claim")
    return None


def _late(bridge: Bridge, order: Order, chain_time: int, what: str) -> None:
    with Step(bridge, order) as step:
        step.alert("quote_claim_late", f"chain time {chain_time} is past the timelock {order.quote_timelock} minus "
                                       f"the {bridge.config.quote_chain.buyer_margin_seconds} s margin and the lock "
                                       f"is not claimed ({what}); the seller must claim at once with the published "
                                       "preimage")


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
