"""The typed :class:`Order`: one ``orders`` row, built once when it is read.

A service or a reconcile step reads the order once, passes the :class:`Order` on, and gets
the next one back from the compare-and-swap that changed it (``UPDATE ... RETURNING``), so
no step re-reads a row it already holds (docs/architecture.md, "One read per step").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otc_bridge.domain.status import Status


@dataclass(frozen=True, slots=True)
class Order:
    """One order as stored. Money in integer units named in each field (micro-RTC,
    nano-quote); times in unix seconds; ``None`` where the column is NULL.

    ``status`` and ``order_version`` are the pair every compare-and-swap checks.
    """

    order_id: str
    side: str  # "buy" | "sell": the maker's side
    pair: str  # "RTC/ETH" | "RTC/USDC" | "RTC/ERG"
    status: Status
    order_version: int
    maker_wallet: str
    maker_quote_address: str
    amount_micro_rtc: int
    price_nano_quote: int
    total_quote_nano: int
    ttl_seconds: int
    created_at: int
    expires_at: int
    updated_at: int
    taker_wallet: str | None = None
    taker_quote_address: str | None = None
    matched_at: int | None = None
    settle_by: int | None = None
    htlc_hash: str | None = None
    htlc_secret: str | None = None
    quote_tx: str | None = None
    escrow_wallet: str | None = None
    escrow_ref: str | None = None
    escrow_job_id: str | None = None
    escrow_reward_micro_rtc: int | None = None
    escrow_total_micro_rtc: int | None = None
    escrow_ttl_seconds: int | None = None
    payout_wallet: str | None = None
    payout_key: str | None = None
    payout_tx_hash: str | None = None
    payout_micro_rtc: int | None = None
    settling_at: int | None = None
    confirmed_at: int | None = None
    ended_at: int | None = None
    end_cause: str | None = None
    attention_reason: str | None = None
    escrow_tampered_at: int | None = None  # when the escrow watch saw the job moved by others
    refund_key: str | None = None  # idempotency key of a refund paid from the worker's custody
    refund_tx_hash: str | None = None
    refund_micro_rtc: int | None = None
    # The quote leg on chain (docs/protocol.md §12).
    preimage_holder: str | None = None  # "seller" | "buyer"; None: seller (orders before it existed)
    lock_by: int | None = None  # the buyer's lock must be mined by then (chain time), or the match unwinds
    quote_leg_state: str | None = None  # awaiting_lock | locked | invalid | claimed | refunded; None: not on chain
    quote_leg_reason: str | None = None  # why the locks seen are invalid (state invalid)
    quote_lock_tx: str | None = None
    quote_swap_id: str | None = None  # the order's lock: its first valid SwapCreated, sticky
    quote_timelock: int | None = None
    quote_claim_tx: str | None = None  # the final SwapClaimed of that lock
    quote_claimed_at: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Order:
        """Build from an ``orders`` row (``sqlite3.Row`` or a mapping with every column;
        extra keys such as computed columns are ignored)."""
        keys = row.keys()
        values = {name: row[name] for name in _FIELDS if name in keys}
        values["status"] = Status(values["status"])
        return cls(**values)

    def replace(self, **changes: Any) -> Order:
        """A copy with ``changes`` applied (for tests and in-memory previews only: stored
        orders change through ``storage.orders.transition``)."""
        return dataclasses.replace(self, **changes)

    @property
    def seller_wallet(self) -> str | None:
        """The RTC seller: the maker of a sell order, the taker of a buy order."""
        return self.maker_wallet if self.side == "sell" else self.taker_wallet

    @property
    def buyer_wallet(self) -> str | None:
        """The RTC buyer: the taker of a sell order, the maker of a buy order."""
        return self.taker_wallet if self.side == "sell" else self.maker_wallet

    @property
    def buyer_holds_preimage(self) -> bool:
        """True in the buyer-held mode: the RTC buyer chose the hashlock and reveals last."""
        return self.preimage_holder == "buyer"

    @property
    def seller_quote_address(self) -> str | None:
        """Where the buyer's HTLC pays: the RTC seller's quote-chain address."""
        return self.maker_quote_address if self.side == "sell" else self.taker_quote_address


_FIELDS = tuple(field.name for field in dataclasses.fields(Order))
