"""Order statuses and the one table of allowed transitions (docs/protocol.md §4).

The table is data: :func:`check_transition` refuses any edge not listed, and
``store.transition`` calls it before every compare-and-swap UPDATE, so no code path can
write an edge that is not here. ``tests/unit/test_model.py`` walks the whole table.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    """An order's status, stored as its text value."""

    LOCKING = "locking"
    OPEN = "open"
    MATCHED = "matched"
    SETTLING = "settling"
    PAYOUT_PENDING = "payout_pending"
    SETTLEMENT_RECOVERY = "settlement_recovery"
    REFUND_PENDING = "refund_pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = Status

#: Every allowed edge, with the reason it exists.
TRANSITIONS: dict[tuple[Status, Status], str] = {
    # Sell create: escrow job verified and held -> on the book.
    (S.LOCKING, S.OPEN): "escrow adopted (sell create) or taker escrow abandoned (buy match)",
    # Buy match: the taker's escrow job is verified and held.
    (S.LOCKING, S.MATCHED): "taker escrow held (buy match)",
    # A job exists but is unusable (wrong amount, hijacked): it must be refunded.
    (S.LOCKING, S.REFUND_PENDING): "escrow job must be returned",
    # The node refused the job outright: nothing was locked.
    (S.LOCKING, S.CANCELLED): "escrow never created",
    (S.OPEN, S.MATCHED): "taker recorded (sell match)",
    (S.OPEN, S.LOCKING): "taker escrow being created (buy match)",
    (S.OPEN, S.REFUND_PENDING): "cancel or expiry of an order holding escrow",
    (S.OPEN, S.CANCELLED): "cancel of a buy order (nothing held)",
    (S.OPEN, S.EXPIRED): "expiry of a buy order (nothing held)",
    (S.MATCHED, S.SETTLING): "a confirm won the claim",
    (S.MATCHED, S.OPEN): "unwind past settle_by; sell order back on the book",
    (S.MATCHED, S.REFUND_PENDING): "unwind past settle_by; escrow to be refunded",
    (S.MATCHED, S.SETTLEMENT_RECOVERY): "escrow job moved by someone else while matched",
    (S.SETTLING, S.MATCHED): "release refused before any funds left escrow",
    (S.SETTLING, S.PAYOUT_PENDING): "payout queued on the node",
    (S.SETTLING, S.COMPLETED): "payout confirmed by the node",
    (S.SETTLING, S.SETTLEMENT_RECOVERY): "outcome ambiguous or failed after escrow left",
    (S.PAYOUT_PENDING, S.COMPLETED): "payout confirmed by the node",
    (S.PAYOUT_PENDING, S.SETTLEMENT_RECOVERY): "payout voided or missing on the node",
    # Buyer-held: the seller's claim of the quote lock can no longer land while the buyer's
    # payout is still pending: the bridge voided the payout; the escrow goes back to the seller.
    (S.PAYOUT_PENDING, S.REFUND_PENDING): "payout voided: the quote claim can no longer land",
    (S.SETTLEMENT_RECOVERY, S.PAYOUT_PENDING): "payout proven queued, or re-driven by an operator",
    (S.SETTLEMENT_RECOVERY, S.COMPLETED): "payout proven confirmed",
    (S.SETTLEMENT_RECOVERY, S.CANCELLED): "refund proven by the node (operator)",
    (S.SETTLEMENT_RECOVERY, S.EXPIRED): "refund proven by the node (operator)",
    (S.REFUND_PENDING, S.OPEN): "buy order's taker escrow refunded; back on the book",
    (S.REFUND_PENDING, S.CANCELLED): "refund confirmed by the node",
    (S.REFUND_PENDING, S.EXPIRED): "refund confirmed by the node",
    (S.REFUND_PENDING, S.SETTLEMENT_RECOVERY): "escrow job moved by someone else; refund impossible",
}

TERMINAL = frozenset({S.COMPLETED, S.CANCELLED, S.EXPIRED})

#: Statuses in which the bridge holds (or is acquiring) escrow on the node.
HOLDS_ESCROW = frozenset({S.LOCKING, S.MATCHED, S.SETTLING, S.REFUND_PENDING})


class IllegalTransition(RuntimeError):
    """A caller tried to write an edge that is not in :data:`TRANSITIONS` (a bug)."""


def check_transition(frm: Status | str, to: Status | str) -> None:
    """Raise :class:`IllegalTransition` unless ``frm -> to`` is in :data:`TRANSITIONS`."""
    if (Status(frm), Status(to)) not in TRANSITIONS:
        raise IllegalTransition(f"{frm} -> {to} is not an allowed order transition")
