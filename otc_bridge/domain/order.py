"""The typed :class:`Order`: one ``orders`` row, built once when it is read.

A service or a reconcile step reads the order once, passes the :class:`Order` on, and gets
the next one back from the compare-and-swap that changed it (``UPDATE ... RETURNING``), so
no step re-reads a row it already holds (docs/architecture.md, "One read per step").
"""

from __future__ import annotations

import dataclasses
import sqlite3
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
        extra keys such as computed columns are ignored). ``ValueError`` for an unknown
        status, ``TypeError`` when a field without a default has no column.

        Hot: a page of the book builds 50 of these per request (docs/performance.md,
        "Profile"). So the columns are matched to the fields once per column list
        (:func:`_plan`) and the values are taken by position: a ``sqlite3.Row`` finds a
        name by scanning its columns, and ``name in keys`` scanned a list for every field.
        """
        keys = tuple(row.keys())
        plan = _PLANS.get(keys) or _plan(keys)
        if plan is None:  # a column is missing (tests' partial mappings): fields' defaults
            values = {name: row[name] for name in _FIELDS if name in keys}
            values["status"] = Status(values["status"])
            return cls(**values)
        values = tuple(row) if type(row) is sqlite3.Row else tuple(row[key] for key in keys)
        args = [values[i] for i in plan]
        status = args[_STATUS_INDEX]
        args[_STATUS_INDEX] = _STATUSES[status] if type(status) is str and status in _STATUSES else Status(status)
        if cls is not Order:
            return cls(*args)
        # What the generated __init__ does (it only sets the fields), without the frozen
        # class's object.__setattr__ call per field: half the cost of a row.
        order = object.__new__(Order)
        for set_field, value in zip(_SETTERS, args, strict=True):
            set_field(order, value)
        return order

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
#: Each field's slot setter, in field order (see :meth:`Order.from_row`).
_SETTERS = tuple(Order.__dict__[name].__set__ for name in _FIELDS)
if hasattr(Order, "__post_init__"):  # pragma: no cover - a guard for whoever adds one
    raise TypeError("Order.from_row bypasses __init__, which must then only set the fields")
_STATUS_INDEX = _FIELDS.index("status")
_STATUSES = {status.value: status for status in Status}
#: Column list -> the index of each field's column, in field order. The bridge reads
#: ``orders`` with a few column lists (``*``; ``*`` and ``has_trade``), so this holds a few
#: entries; it stops growing at ``_MAX_PLANS`` all the same.
_PLANS: dict[tuple[str, ...], tuple[int, ...]] = {}
_MAX_PLANS = 64


def _plan(keys: tuple[str, ...]) -> tuple[int, ...] | None:
    """For rows whose columns are ``keys``: the column index of every field of :class:`Order`
    in field order, or ``None`` when some field has no column."""
    index: dict[str, int] = {}
    for i, name in enumerate(keys):
        index.setdefault(name, i)  # a duplicated name: the first, as sqlite3.Row[name] finds it
    if any(name not in index for name in _FIELDS):
        return None
    plan = tuple(index[name] for name in _FIELDS)
    if len(_PLANS) < _MAX_PLANS:
        _PLANS[keys] = plan
    return plan
