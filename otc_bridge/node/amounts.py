"""Integer micro-RTC amounts at the escrow node's wire edge, and the node's own arithmetic.

The bridge keeps every amount as an integer number of micro-RTC (1 RTC = 1,000,000). The
escrow node's API takes *floats* of RTC, so this module is the only place where floats appear:
each helper returns the exact float to put on the wire, chosen so that the node's own
conversion lands on the intended integer, and refuses (ValueError) when no such float exists.

The node converts in two different ways (docs/escrow-node.md §0 "Rounding trap"):

* ``POST /agent/jobs`` does ``int(reward_rtc * 1e6)`` (float multiply, truncation), so the
  naive ``2.01`` becomes 2,009,999 micro-RTC (§1.2);
* ``POST /wallet/transfer`` does ``Decimal(str(amount_rtc)) * 10**6`` rounded down (§1.11).
"""

from __future__ import annotations

import hashlib
import math
from decimal import ROUND_DOWN, Decimal, InvalidOperation

MICRO_RTC_PER_RTC = 1_000_000
#: The node's reward range, 0.01..10,000 RTC (docs/escrow-node.md §1.2), in micro-RTC.
REWARD_MIN_MICRO_RTC = 10_000
REWARD_MAX_MICRO_RTC = 10_000 * MICRO_RTC_PER_RTC
#: The node's i64 limit on transfer amounts (docs/escrow-node.md §1.11 ``amount_exceeds_i64``).
TRANSFER_MAX_MICRO_RTC = 2**63 - 1
#: The node's platform fee rate (docs/escrow-node.md §1.2); applied with float truncation.
PLATFORM_FEE_RATE = 0.05
# A correctly rounded start is at most a couple of ulps away; the bound only guards the loop.
_MAX_NEXTAFTER_STEPS = 64


def _require_amount(amount_micro_rtc: int, low: int, high: int) -> None:
    if not isinstance(amount_micro_rtc, int) or isinstance(amount_micro_rtc, bool):
        raise ValueError(f"amount must be an int of micro-RTC, got {type(amount_micro_rtc).__name__}")
    if not low <= amount_micro_rtc <= high:
        raise ValueError(f"amount {amount_micro_rtc} micro-RTC outside the node's range {low}..{high}")


def _node_reward_micro_rtc(reward_rtc: float) -> int:
    """The node's ``reward_i64 = int(reward_rtc * 1e6)`` (docs/escrow-node.md §1.2), verbatim."""
    return int(reward_rtc * 1e6)


def _node_transfer_micro_rtc(amount_rtc: float) -> int:
    """The node's ``Decimal(str(amount_rtc)) * 10**6`` rounded down (docs/escrow-node.md §1.11)."""
    return int((Decimal(str(amount_rtc)) * MICRO_RTC_PER_RTC).to_integral_value(rounding=ROUND_DOWN))


def reward_rtc_wire(amount_micro_rtc: int) -> float:
    """The float to send as ``reward_rtc`` so the node's job holds exactly ``amount_micro_rtc``.

    Starts from ``amount / 1e6`` and steps up one float at a time (``math.nextafter``) while
    the node's ``int(x * 1e6)`` is still below the amount (docs/escrow-node.md §0 "Rounding trap",
    §1.2). The float exists only because the node's API takes one.

    Raises ValueError if the amount is not an int within 10,000..10,000,000,000 micro-RTC
    (0.01..10,000 RTC, the node's reward range) or no float truncates to it exactly.
    """
    _require_amount(amount_micro_rtc, REWARD_MIN_MICRO_RTC, REWARD_MAX_MICRO_RTC)
    wire = amount_micro_rtc / MICRO_RTC_PER_RTC
    for _ in range(_MAX_NEXTAFTER_STEPS):
        if _node_reward_micro_rtc(wire) >= amount_micro_rtc:
            break
        wire = math.nextafter(wire, math.inf)
    if _node_reward_micro_rtc(wire) != amount_micro_rtc or not 0.01 <= wire <= 10000.0:
        raise ValueError(f"no reward_rtc float truncates to exactly {amount_micro_rtc} micro-RTC")
    return wire


def transfer_rtc_wire(amount_micro_rtc: int) -> float:
    """The float to send as ``amount_rtc`` to ``/wallet/transfer`` for exactly ``amount_micro_rtc``.

    The node quantises ``Decimal(str(x)) * 10**6`` down to an integer (docs/escrow-node.md §1.11);
    the result of this function is checked to quantise to the amount exactly. Exact for every
    amount up to at least 10**15 micro-RTC (far above the RTC supply).

    Raises ValueError if the amount is not a positive int within the node's i64 limit, or if
    no float quantises to it exactly (only possible for amounts beyond float precision).
    """
    _require_amount(amount_micro_rtc, 1, TRANSFER_MAX_MICRO_RTC)
    wire = amount_micro_rtc / MICRO_RTC_PER_RTC
    for _ in range(_MAX_NEXTAFTER_STEPS):
        if _node_transfer_micro_rtc(wire) >= amount_micro_rtc:
            break
        wire = math.nextafter(wire, math.inf)
    if _node_transfer_micro_rtc(wire) != amount_micro_rtc:
        raise ValueError(f"no amount_rtc float quantises to exactly {amount_micro_rtc} micro-RTC")
    return wire


def expected_fee_micro_rtc(reward_micro_rtc: int) -> int:
    """The platform fee the node charges on a job reward, in micro-RTC.

    The node computes ``platform_fee_i64 = int(reward_i64 * 0.05)``: a float multiply then
    truncation (docs/escrow-node.md §1.2). This reproduces that rule exactly, float and all, because
    the bridge must predict the integer the node will lock; it is not a rounding we chose.
    Raises ValueError for a non-int or negative reward.
    """
    _require_amount(reward_micro_rtc, 0, TRANSFER_MAX_MICRO_RTC)
    return int(reward_micro_rtc * PLATFORM_FEE_RATE)


def expected_escrow_micro_rtc(reward_micro_rtc: int) -> int:
    """The total the node locks for a job, ``reward + fee`` in micro-RTC (docs/escrow-node.md §1.2).

    This is what the poster's balance must cover and what ``job.escrow_i64`` must equal.
    Raises ValueError for a non-int or negative reward.
    """
    return reward_micro_rtc + expected_fee_micro_rtc(reward_micro_rtc)


def reward_from_wire(reward_rtc: object) -> int | None:
    """The micro-RTC reward the node holds for an echoed ``reward_rtc`` (its own
    ``int(reward_rtc * 1e6)``, docs/escrow-node.md §1.2: the create answer echoes the parsed
    float, not the truncated integer), or ``None`` if the value is not a finite number."""
    if isinstance(reward_rtc, bool) or not isinstance(reward_rtc, (int, float)) or not math.isfinite(reward_rtc):
        return None
    return _node_reward_micro_rtc(float(reward_rtc))


def payout_tx_hash(idempotency_key: str) -> str:
    """The node's ``tx_hash`` for a keyed ``/wallet/transfer``: 32 lower-case hex chars.

    ``sha256("wallet_transfer_idempotency:" + key).hexdigest()[:32]`` (docs/escrow-node.md §1.12). It
    depends on the key only, so the bridge knows a payout's hash before sending it and can
    look it up with ``GET /wallet/tx/<hash>``. Raises TypeError for a non-str key.
    """
    if not isinstance(idempotency_key, str):
        raise TypeError("idempotency_key must be a str")
    digest = hashlib.sha256(("wallet_transfer_idempotency:" + idempotency_key).encode("utf-8"))
    return digest.hexdigest()[:32]


def credited_micro_rtc(accept_body: dict | None) -> int | None:
    """``reward_paid_rtc`` of an accept answer in micro-RTC (exact), or ``None`` if absent or
    not a number of whole micro-RTC.

    The node computes it as ``reward_i64 / 1e6`` (docs/escrow-node.md §1.5); the shortest
    decimal repr of that float scales back to the integer exactly.
    """
    return rtc_to_micro_rtc((accept_body or {}).get("reward_paid_rtc"))


def rtc_to_micro_rtc(value: object) -> int | None:
    """An ``amount_rtc`` the node printed (a float of whole micro-RTC, docs/escrow-node.md §0)
    as exact micro-RTC, or ``None`` if it is not a non-negative number of whole micro-RTC."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        scaled = Decimal(repr(value)).scaleb(6)
    except InvalidOperation:  # not a finite number: unusable
        return None
    return int(scaled) if scaled == int(scaled) and scaled >= 0 else None
