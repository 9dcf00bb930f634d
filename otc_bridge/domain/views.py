"""Public JSON shapes of orders, trades and settlement instructions.

One place decides what leaves the process: internal bookkeeping (``escrow_ref``,
``payout_key``, ``attention_reason``) never does, and the preimage only once the order is
``completed`` (docs/protocol.md §3, §4 rule 4). Field names follow the reference so its clients keep
working; the exact integers sit next to the display numbers, which are derived from them.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from otc_bridge.domain import money
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status

#: What both traders are told once the escrow watch saw the job moved by someone else
#: (docs/protocol.md §11).
TAMPER_NOTICE = ("The escrow was taken back on the node: do not lock the quote and do not reveal the "
                 "preimage; if you already locked an HTLC, refund it after its timelock.")


def _rtc(micro: int | None) -> float | None:
    # Display only: the exact value is the integer field beside it (never parsed back).
    return None if micro is None else micro / money.MICRO_RTC_PER_RTC


def _quote(nano: int | None) -> float | None:
    return None if nano is None else nano / money.NANO_PER_QUOTE


def order_view(order: Order) -> dict[str, Any]:
    """The public view of one order (``GET /api/orders/<id>``, lists, stream events)."""
    view = _book_fields(order) | {
        "maker_eth_address": order.maker_quote_address,
        "taker_wallet": order.taker_wallet,
        "taker_eth_address": order.taker_quote_address,
        "matched_at": order.matched_at,
        "settle_by": order.settle_by,
        "confirmed_at": order.confirmed_at,
        "settlement_tx": order.quote_tx,
        "payout_tx_hash": order.payout_tx_hash,
        "end_cause": order.end_cause,
        "escrow_tampered": order.escrow_tampered_at is not None,
        "escrow_tampered_at": order.escrow_tampered_at,
        "refund_tx_hash": order.refund_tx_hash,
    }
    view["quote_leg"] = quote_leg(order)
    view["preimage_holder"] = order.preimage_holder or "seller"
    if order.buyer_holds_preimage and order.side == "sell":
        view["seller_secret_void"] = True  # the buyer's hashlock replaced the one made at create
    if order.escrow_tampered_at is not None and order.status != Status.COMPLETED:
        view["escrow_notice"] = TAMPER_NOTICE
    if order.status == Status.COMPLETED or (order.buyer_holds_preimage and order.status == Status.PAYOUT_PENDING):
        # Buyer-held: once the payout is committed the seller may read the preimage and claim
        # the lock himself (the bridge claims for him too): docs/protocol.md §12.5.
        view["htlc_secret"] = order.htlc_secret
    return view


def quote_leg(order: Order) -> dict[str, Any] | None:
    """The quote leg as the chain watcher saw it (docs/protocol.md §12), or ``None`` for an
    order not verified on chain (ERG, or no chain configured, or not matched yet):
    ``{"state", "swap_id", "lock_tx", "claim_tx", "timelock", "reason"}``; ``state`` is
    ``awaiting_lock``, ``locked``, ``invalid`` (only invalid locks exist: ``reason``),
    ``claimed`` or ``refunded``."""
    if order.quote_leg_state is None:
        return None
    return {"state": order.quote_leg_state, "swap_id": order.quote_swap_id, "lock_tx": order.quote_lock_tx,
            "claim_tx": order.quote_claim_tx, "timelock": order.quote_timelock, "reason": order.quote_leg_reason}


def book_entry(order: Order) -> dict[str, Any]:
    """The compact view used by ``GET /api/orders`` (the reference's list item fields): the
    :data:`BOOK_ENTRY_KEYS`, which :func:`order_view` extends. Built directly, not cut from the
    full view: a page builds 50 of them (docs/performance.md, "Profile")."""
    return _book_fields(order)


def _book_fields(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "order_version": order.order_version,
        "side": order.side,
        "pair": order.pair,
        "maker_wallet": order.maker_wallet,
        "amount_micro_rtc": order.amount_micro_rtc,
        "amount_rtc": _rtc(order.amount_micro_rtc),
        "price_per_rtc_nano_quote": order.price_nano_quote,
        "price_per_rtc": _quote(order.price_nano_quote),
        "total_quote_nano": order.total_quote_nano,
        "total_quote": _quote(order.total_quote_nano),
        "quote_currency": money.PAIRS[order.pair].symbol,
        "status": str(order.status),
        "htlc_hash": order.htlc_hash,
        "created_at": order.created_at,
        "expires_at": order.expires_at,
        "escrow_job_id": order.escrow_job_id,
    }


#: The keys of :func:`book_entry`, in its order.
BOOK_ENTRY_KEYS = ("order_id", "order_version", "side", "pair", "maker_wallet", "amount_micro_rtc",
                   "amount_rtc", "price_per_rtc_nano_quote", "price_per_rtc", "total_quote_nano",
                   "total_quote", "quote_currency", "status", "htlc_hash", "created_at", "expires_at",
                   "escrow_job_id")


#: The seller-held mode's warning for an EVM pair (docs/protocol.md §12.4).
SELLER_HELD_WARNING = ("Seller-held mode: the RTC seller knows the preimage. The escrow node authenticates "
                       "nothing, so a seller who takes the escrow back on the node could still claim your lock. "
                       "Use the buyer-held mode (send htlc_hash with the match) to be protected.")


@dataclass(frozen=True)
class ChainTerms:
    """What the instructions say about an EVM quote chain: its id, our HTLC contract, the
    USDC token (0x hex, or None when not configured), and the buyer-held timelock range and
    margin (seconds after the lock's block / before the timelock)."""

    chain_id: int
    htlc_contract: str
    usdc_contract: str | None
    buyer_timelock_min_seconds: int
    buyer_timelock_max_seconds: int
    buyer_margin_seconds: int


def settlement_instructions(order: Order, *, htlc_min_seconds: int, claim_margin_seconds: int,
                            chain: ChainTerms | None = None) -> dict[str, Any]:
    """What the RTC buyer must lock on the quote chain, and by when (docs/protocol.md §4, timelocks).

    ``total_quote_base_units`` is an integer string in the asset's smallest unit (wei,
    USDC's 6 dp, nanoERG), rounded up. The HTLC timelock must lie in
    [``htlc_timelock_min``, ``htlc_timelock_max``] (unix seconds): late enough for the seller
    to claim, early enough that the buyer can still present the preimage before ``settle_by``.
    """
    asset = money.PAIRS[order.pair]
    total = money.format_units(order.total_quote_nano, money.PRICE_DECIMALS)
    base_units = money.total_quote_base_units(order.amount_micro_rtc, order.price_nano_quote,
                                              asset.decimals)
    if order.side == "sell":
        step = "Send quote currency to complete the swap"
        note = (f"Lock {total} {asset.symbol} in an HTLC with the hashlock htlc_hash, paying "
                "pay_to_address. When the seller claims it, the preimage becomes public; present it "
                "to POST /api/orders/<id>/confirm to release the RTC to you.")
    else:
        step = "RTC is locked in escrow. Buyer sends quote currency."
        note = (f"The buyer must lock {total} {asset.symbol} in an HTLC with the hashlock htlc_hash, "
                "paying pay_to_address. The seller then claims it with the preimage and confirms here, "
                "which releases the RTC escrow to the buyer.")
    return {
        "step": step,
        "note": note,
        "amount": _quote(order.total_quote_nano),
        "currency": asset.symbol,
        "total_quote_nano": order.total_quote_nano,
        "total_quote_base_units": str(base_units),
        "quote_decimals": asset.decimals,
        "htlc_hash": order.htlc_hash,
        "hash_algorithm": "sha256",
        "pay_to_address": order.seller_quote_address,
        "rtc_recipient": order.buyer_wallet,
        "settle_by": order.settle_by,
        "htlc_timelock_min": order.matched_at + htlc_min_seconds,
        "htlc_timelock_max": order.settle_by - claim_margin_seconds,
        **_chain_terms(order, chain),
    }


def _chain_terms(order: Order, chain: ChainTerms | None) -> dict[str, Any]:
    """The on-chain part of the instructions (docs/protocol.md §12): ``quote_verification``
    is ``evm`` when the watcher checks the lock, else ``evidence``."""
    token = None if order.pair != "RTC/USDC" else (chain.usdc_contract if chain else None)
    if chain is None or order.quote_leg_state is None or (order.pair == "RTC/USDC" and token is None):
        return {"quote_verification": "evidence", "preimage_holder": order.preimage_holder or "seller"}
    terms = {"quote_verification": "evm", "chain_id": chain.chain_id, "htlc_contract": chain.htlc_contract,
             "token_contract": token, "preimage_holder": order.preimage_holder or "seller", "lock_by": order.lock_by,
             "quote_leg": quote_leg(order)}
    if order.buyer_holds_preimage:
        terms |= {"htlc_timelock_min_after_lock": chain.buyer_timelock_min_seconds,
                  "htlc_timelock_max_after_lock": chain.buyer_timelock_max_seconds,
                  "reveal_margin_seconds": chain.buyer_margin_seconds}
    else:
        terms["warning"] = SELLER_HELD_WARNING
    return terms


def trade_view(trade: sqlite3.Row) -> dict[str, Any]:
    """Public view of a trade row (``GET /api/trades``)."""
    return {
        "trade_id": trade["trade_id"],
        "order_id": trade["order_id"],
        "pair": trade["pair"],
        "side": trade["side"],
        "seller_wallet": trade["seller_wallet"],
        "buyer_wallet": trade["buyer_wallet"],
        # The reference names the parties by role in the order, not by what they bought.
        "maker_wallet": trade["seller_wallet"] if trade["side"] == "sell" else trade["buyer_wallet"],
        "taker_wallet": trade["buyer_wallet"] if trade["side"] == "sell" else trade["seller_wallet"],
        "amount_micro_rtc": trade["amount_micro_rtc"],
        "amount_rtc": _rtc(trade["amount_micro_rtc"]),
        "price_per_rtc_nano_quote": trade["price_nano_quote"],
        "price_per_rtc": _quote(trade["price_nano_quote"]),
        "total_quote_nano": trade["total_quote_nano"],
        "total_quote": _quote(trade["total_quote_nano"]),
        "quote_tx": trade["quote_tx"],
        "escrow_job_id": trade["escrow_job_id"],
        "payout_tx_hash": trade["payout_tx_hash"],
        "completed_at": trade["created_at"],
    }


def event_view(event: sqlite3.Row) -> dict[str, Any]:
    """Public view of an ``order_events`` row (``GET /api/orders/<id>/events``, the stream)."""
    return {
        "event_id": event["event_id"],
        "order_id": event["order_id"],
        "order_version": event["order_version"],
        "kind": event["kind"],
        "from_status": event["from_status"],
        "to_status": event["to_status"],
        "actor": event["actor"],
        "reason": event["reason"],
        "node_endpoint": event["node_endpoint"],
        "node_outcome": event["node_outcome"],
        "node_ref": event["node_ref"],
        "detail": json.loads(event["detail"]) if event["detail"] else None,
        "created_at": event["created_at"],
    }
