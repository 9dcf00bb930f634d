"""Which quote-chain lock counts for an order (docs/protocol.md §12.2): pure rules, no I/O.

A lock is one ``SwapCreated`` of our HTLC contract. The watcher matches it to an order by
``rtcOrderId`` **and** by hashlock, and accepts it only when every rule below holds; the
first valid lock of an order is its lock for good (sticky), later or invalid ones change
nothing and are listed with their reason. Each rule answers to an attack: a lock that pays
someone else, locks less, or expires before the seller could claim must never release the RTC.

Amounts are integers in the asset's smallest unit (wei, USDC's 6 decimals); times are unix
seconds of **chain time** (the block's timestamp), never the bridge's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from otc_bridge.domain import money
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status

#: ``token`` of an ETH swap in our contract.
ETH_TOKEN = "0x" + "00" * 20
#: Pairs whose quote leg is an EVM HTLC the watcher can verify (ERG stays evidence-only).
EVM_PAIRS = frozenset({"RTC/ETH", "RTC/USDC"})


@dataclass(frozen=True)
class Lock:
    """The facts of one ``SwapCreated``: ``swap_id``/``hashlock`` as 0x hex (lower case),
    addresses as 0x hex, ``amount`` in base units, ``timelock`` and ``block_time`` in unix
    seconds (chain time)."""

    swap_id: str
    rtc_order_id: str
    seller: str
    token: str
    amount: int
    hashlock: str
    timelock: int
    block_time: int


@dataclass(frozen=True)
class TimelockRule:
    """The timelock range of a preimage mode. Seller-held: absolute bounds from the match
    (``[matched_at + htlc_min, settle_by - claim_margin]``, the instructions' range).
    Buyer-held: ``[block_time + min, block_time + max]`` of the lock's own block."""

    htlc_min_seconds: int
    claim_margin_seconds: int
    buyer_min_seconds: int
    buyer_max_seconds: int

    def bounds(self, order: Order, block_time: int) -> tuple[int, int]:
        """``(lowest, highest)`` timelock accepted for ``order`` from a lock mined at ``block_time``."""
        if order.buyer_holds_preimage:
            return block_time + self.buyer_min_seconds, block_time + self.buyer_max_seconds
        return order.matched_at + self.htlc_min_seconds, order.settle_by - self.claim_margin_seconds


def verified_on_chain(pair: str, token_address: str | None) -> bool:
    """True if the pair's lock can be checked on chain: an EVM pair whose token is configured
    (ETH needs none; USDC needs ``OTC_USDC_ADDRESS``)."""
    return pair == "RTC/ETH" or (pair == "RTC/USDC" and token_address is not None)


def expected_token(pair: str, usdc_address: str | None) -> str | None:
    """The ``token`` a lock of ``pair`` must carry (lower-case 0x hex), or ``None`` if the
    pair is not verified on chain."""
    if pair == "RTC/ETH":
        return ETH_TOKEN
    if pair == "RTC/USDC" and usdc_address is not None:
        return usdc_address.lower()
    return None


def invalid_reason(order: Order | None, lock: Lock, *, token: str | None, rule: TimelockRule) -> str | None:
    """Why ``lock`` is not a valid lock of ``order`` (the order its ``rtcOrderId`` names), or
    ``None`` if it is. The reason is a short sentence shown to both traders in ``quote_leg``."""
    if order is None:
        return "no order has this rtcOrderId"
    if order.matched_at is None or order.settle_by is None or order.lock_by is None:
        return "the order is not matched"
    if lock.hashlock.lower() != (order.htlc_hash or "").lower():
        return "wrong hashlock: not the order's htlc_hash"
    if lock.seller.lower() != (order.seller_quote_address or "").lower():
        return "wrong seller: the lock does not pay the order's pay_to_address"
    if token is None or lock.token.lower() != token:
        return f"wrong token: {order.pair} needs token {token}"
    asset = money.PAIRS[order.pair]
    due = money.total_quote_base_units(order.amount_micro_rtc, order.price_nano_quote, asset.decimals)
    if lock.amount < due:
        return f"amount too small: {lock.amount} < {due} base units"
    low, high = rule.bounds(order, lock.block_time)
    if lock.timelock < low:
        return f"timelock too short: {lock.timelock} < {low}"
    if lock.timelock > high:
        return f"timelock too long: {lock.timelock} > {high}"
    if lock.block_time < order.matched_at:
        return "locked before the match"
    if lock.block_time > order.lock_by:
        return "locked after lock_by"
    if order.status not in (Status.MATCHED, Status.SETTLING, Status.PAYOUT_PENDING, Status.COMPLETED):
        return f"the order is {order.status}"
    return None
