"""The quote-chain watcher: a reconcile step that reads our HTLC contract's logs and keeps
every EVM order's ``quote_leg`` true to the chain (docs/protocol.md §12).

Each pass, in two halves:

1. **Scan** (chain reads first, then one write transaction): the contract's ``SwapCreated``,
   ``SwapClaimed`` and ``SwapRefunded`` logs from the persisted block cursor, re-scanning
   the last ``reorg_window_blocks`` blocks, up to the safe head (the ``finalized`` block, or
   ``latest - confirmations``). A ``SwapCreated`` is judged once against the order its
   ``rtcOrderId`` names (:func:`otc_bridge.domain.quote_lock.invalid_reason`) and stored
   with its verdict; a lock the re-scan no longer finds left the chain and is un-counted.
2. **Apply**, per order whose quote leg is still open: the first valid lock mined since the
   match is the order's lock for good (sticky); the order's ``quote_leg`` columns follow its
   state (``locked``, ``claimed``, ``refunded``) or say why only invalid locks exist. In
   the seller-held mode a final ``SwapClaimed`` **of the order's own lock** settles the order
   with the preimage it revealed, with no confirm needed: the buyer's recourse needs no human.

Every order change is a compare-and-swap, so the watcher, a confirm and the reconciler's
other steps never act twice. Costs: one ``eth_getLogs`` per ``log_chunk_blocks`` span, one
``eth_getBlockByNumber`` per block holding a new lock, one SQL read per open quote leg.
"""

from __future__ import annotations

import logging
from collections import Counter

from hexbytes import HexBytes

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import BridgeError
from otc_bridge.domain.order import Order
from otc_bridge.domain.quote_lock import Lock, TimelockRule, expected_token, invalid_reason
from otc_bridge.domain.status import Status
from otc_bridge.settlement import settle
from otc_bridge.settlement.record import Step
from otc_bridge.storage import orders, quote_locks
from otc_bridge.storage.orders import ConcurrentUpdate

log = logging.getLogger(__name__)

#: Quote-leg states that can still change; ``claimed`` and ``refunded`` are final.
OPEN_LEG = ("awaiting_lock", "locked", "invalid")
_LEG_OF_LOCK = {"open": "locked", "claimed": "claimed", "refunded": "refunded"}
TOPIC = "quote_leg"


def timelock_rule(bridge: Bridge) -> TimelockRule:
    """This bridge's timelock ranges for both preimage modes (settings in seconds)."""
    cfg, q = bridge.config, bridge.config.quote_chain
    return TimelockRule(htlc_min_seconds=cfg.htlc_min_seconds, claim_margin_seconds=cfg.claim_margin_seconds,
                        buyer_min_seconds=q.buyer_timelock_min_seconds, buyer_max_seconds=q.buyer_timelock_max_seconds)


def watch_quote_chain(bridge: Bridge, counts: Counter) -> int | None:
    """One watcher pass (scan, then apply); returns the safe head's chain time (unix
    seconds), by which the reconciler unwinds matches past ``lock_by``, or ``None`` when no
    chain is configured or the chain did not answer (counted ``chain_unavailable``: nothing
    is decided on a missing answer)."""
    chain = bridge.chain
    if chain is None:
        return None
    from otc_bridge.chain.reader import ChainUnavailable  # web3 is loaded only with a chain configured

    try:
        chain.check_chain_id()
        safe = chain.safe_head()
        _scan(bridge, safe, counts)
    except ChainUnavailable as exc:
        log.warning("quote chain unavailable: %s", exc)
        counts["chain_unavailable"] += 1
        return None
    _apply(bridge, counts)
    return safe.time


# --- scan ------------------------------------------------------------------------------------

def _scan(bridge: Bridge, safe, counts: Counter) -> None:
    from otc_bridge.chain import htlc

    chain, q = bridge.chain, bridge.config.quote_chain
    conn = bridge.db.connection()
    cursor = quote_locks.cursor_of(conn, chain.chain_id, q.htlc_address)
    start = max(0, (safe.number if cursor is None else min(cursor[0], safe.number)) - q.reorg_window_blocks + 1)
    events = chain.events(start, safe.number, q.log_chunk_blocks) if start <= safe.number else []
    times = {n: chain.block(n).time for n in {e.at.block_number for e in events if isinstance(e, htlc.SwapCreated)}}
    created = [(e, _lock_of(e, times[e.at.block_number])) for e in events if isinstance(e, htlc.SwapCreated)]
    verdicts = {lock.swap_id: _judge(bridge, lock) for _, lock in created}
    now = bridge.now()
    with bridge.db.transaction() as tx:
        for event, lock in created:
            order_id = lock.rtc_order_id if verdicts[lock.swap_id][0] else None
            if quote_locks.insert(tx.conn, chain_id=chain.chain_id, lock=lock, buyer=event.buyer, order_id=order_id,
                                  tx_hash=event.at.tx_hash, block_number=event.at.block_number,
                                  block_hash=event.at.block_hash, log_index=event.at.log_index,
                                  reason=verdicts[lock.swap_id][1], now=now):
                counts["quote_locks_seen"] += 1
        for event in events:
            swap_id = HexBytes(event.swap_id).to_0x_hex()
            if isinstance(event, htlc.SwapClaimed):
                quote_locks.mark_claimed(tx.conn, swap_id, preimage=HexBytes(event.preimage).hex(),
                                         tx_hash=event.at.tx_hash, block_number=event.at.block_number)
            elif isinstance(event, htlc.SwapRefunded):
                quote_locks.mark_refunded(tx.conn, swap_id, tx_hash=event.at.tx_hash)
        gone = quote_locks.mark_reorged(tx.conn, from_block=start, kept={lock.swap_id for _, lock in created})
        counts["quote_locks_reorged"] += len(gone)
        quote_locks.set_cursor(tx.conn, chain.chain_id, q.htlc_address, safe.number, safe.hash)


def _lock_of(event, block_time: int) -> Lock:
    return Lock(swap_id=HexBytes(event.swap_id).to_0x_hex(), rtc_order_id=event.rtc_order_id,
                seller=event.seller.lower(), token=event.token.lower(), amount=event.amount,
                hashlock=HexBytes(event.hashlock).hex(), timelock=event.timelock, block_time=block_time)


def _judge(bridge: Bridge, lock: Lock) -> tuple[bool, str | None]:
    """``(names_an_order, invalid_reason)`` of a new lock against the order its
    ``rtcOrderId`` names, as that order stands now."""
    order = orders.get_order(bridge.db.connection(), lock.rtc_order_id) if len(lock.rtc_order_id) <= 64 else None
    if order is None:
        return False, "no order has this rtcOrderId"
    token = expected_token(order.pair, bridge.config.quote_chain.usdc_address)
    return True, invalid_reason(order, lock, token=token, rule=timelock_rule(bridge))


# --- apply -----------------------------------------------------------------------------------

def _apply(bridge: Bridge, counts: Counter) -> None:
    # An ended order without a lock of its own has nothing left to follow (its leg never changes).
    found = orders.find(bridge.db.connection(), "quote_leg_state IN (?, ?, ?) AND matched_at IS NOT NULL AND NOT "
                        "(status IN ('cancelled', 'expired') AND quote_swap_id IS NULL)", OPEN_LEG, order_by="order_id")
    for order in found:
        try:
            follow_lock(bridge, order, counts)
        except ConcurrentUpdate:
            log.info("order %s moved during the quote watch; skipped", order.order_id)
        except BridgeError as exc:  # a refused settlement step: the next pass retries
            log.warning("quote watch of order %s: %s", order.order_id, exc.error)
            counts["waiting"] += 1
        except Exception:
            log.exception("quote watch failed for order %s", order.order_id)
            counts["errors"] += 1


def follow_lock(bridge: Bridge, order: Order, counts: Counter) -> Order:
    """Bring ``order``'s quote leg in line with its counted locks; settle a seller-held match
    whose own lock was claimed. Returns the order after any change."""
    rows = [row for row in quote_locks.for_order(bridge.db.connection(), order.order_id)
            if row.lock.block_time >= order.matched_at]
    mine = next((row for row in rows if row.lock.swap_id == order.quote_swap_id), None)
    if mine is None and order.quote_swap_id is not None and order.status != Status.MATCHED:
        # The lock the bridge acted on left the chain: deeper than the configured confirmations.
        # Nothing automatic is safe now; the operator decides (docs/protocol.md §12.2).
        with Step(bridge, order) as step:
            step.alert("quote_lock_reorged", f"quote lock {order.quote_swap_id} left the chain while the order is "
                                             f"{order.status}; raise OTC_EVM_CONFIRMATIONS")
        return order
    if mine is None and order.status == Status.MATCHED:
        mine = next((row for row in rows if row.valid), None)  # the first valid lock since the match: sticky
    if mine is not None:
        want = {"quote_leg_state": _LEG_OF_LOCK[mine.state], "quote_leg_reason": None, "quote_swap_id":
                mine.lock.swap_id, "quote_lock_tx": mine.tx_hash, "quote_timelock": mine.lock.timelock}
        if mine.state == "claimed":
            want["quote_claim_tx"] = mine.claim_tx
    elif order.status != Status.MATCHED:
        return order  # it left the match without a lock: nothing more to say
    else:  # no valid lock (or the one counted was reorged away before the bridge acted on it)
        invalid = [row for row in rows if not row.valid]
        want = {"quote_leg_state": "invalid" if invalid else "awaiting_lock",
                "quote_leg_reason": invalid[-1].reason if invalid else None,
                "quote_swap_id": None, "quote_lock_tx": None, "quote_timelock": None}
    changes = {k: v for k, v in want.items() if getattr(order, k) != v}
    if changes:
        with Step(bridge, order) as step:
            order = step.annotate(changes, reason=f"quote leg {want['quote_leg_state']}: "
                                                  f"{want.get('quote_swap_id') or want.get('quote_leg_reason')}",
                                  topic=TOPIC)
        counts["quote_leg_changes"] += 1
    if (mine is not None and mine.state == "claimed" and order.status == Status.MATCHED
            and not order.buyer_holds_preimage and mine.preimage):
        # Seller-held: the seller's claim of the order's own lock revealed the preimage on chain.
        order = settle.settle_with_preimage(bridge, order, secret=mine.preimage.lower(), quote_tx=mine.claim_tx,
                                            actor="quote chain watcher")
        counts["settled_from_chain"] += 1
    return order
