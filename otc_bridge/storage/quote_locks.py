"""The quote-chain watcher's rows (schema v5): every counted ``SwapCreated`` with its verdict,
its later claim or refund, the block cursor, and the hashlocks orders have used; and the
transactions of the bridge's own claimer (docs/protocol.md §12.8), kept as ``order_events``
rows of the order each one is for (no table of their own).

A lock row is written once, when its block reaches the configured confirmations, and then
only moves ``open -> claimed | refunded`` (or ``-> reorged`` if its block left the chain).
Hex values (swap ids, hashes, hashlocks, addresses) are stored as lower-case 0x hex; amounts
as decimal strings (uint256 exceeds SQLite's 64-bit integers).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass

from otc_bridge.domain.quote_lock import Lock
from otc_bridge.storage import events
from otc_bridge.storage.db import Tx
from otc_bridge.storage.events import Event, NodeRef


@dataclass(frozen=True)
class LockRow:
    """One ``quote_locks`` row: the lock's facts, where it was mined, its verdict for the
    order its ``rtcOrderId`` names, and what became of it on chain."""

    lock: Lock
    order_id: str | None
    tx_hash: str
    block_number: int
    block_hash: str
    log_index: int
    valid: bool
    reason: str | None
    state: str  # open | claimed | refunded | reorged
    claim_tx: str | None
    preimage: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LockRow:
        lock = Lock(swap_id=row["swap_id"], rtc_order_id=row["rtc_order_id"], seller=row["seller"],
                    token=row["token"], amount=int(row["amount"]), hashlock=row["hashlock"],
                    timelock=row["timelock"], block_time=row["block_time"])
        return cls(lock=lock, order_id=row["order_id"], tx_hash=row["tx_hash"], block_number=row["block_number"],
                   block_hash=row["block_hash"], log_index=row["log_index"], valid=bool(row["valid"]),
                   reason=row["reason"], state=row["state"], claim_tx=row["claim_tx"], preimage=row["preimage"])


def insert(conn: sqlite3.Connection, *, chain_id: int, lock: Lock, buyer: str, order_id: str | None, tx_hash: str,
           block_number: int, block_hash: str, log_index: int, reason: str | None, now: int) -> bool:
    """Record a counted lock (a no-op if its swap id is already known, unless that row was
    reorged away and the lock is back); True if a row was written."""
    cursor = conn.execute(
        "INSERT INTO quote_locks (swap_id, chain_id, rtc_order_id, order_id, tx_hash, block_number, block_hash, "
        "log_index, block_time, buyer, seller, token, amount, hashlock, timelock, valid, reason, state, seen_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?) "
        "ON CONFLICT (swap_id) DO UPDATE SET tx_hash = excluded.tx_hash, block_number = excluded.block_number, "
        "block_hash = excluded.block_hash, log_index = excluded.log_index, block_time = excluded.block_time, "
        "valid = excluded.valid, reason = excluded.reason, state = 'open' WHERE quote_locks.state = 'reorged'",
        (lock.swap_id, chain_id, lock.rtc_order_id, order_id, tx_hash, block_number, block_hash, log_index,
         lock.block_time, buyer.lower(), lock.seller.lower(), lock.token.lower(), str(lock.amount),
         lock.hashlock.lower(), lock.timelock, int(reason is None), reason, now))
    return cursor.rowcount == 1


def mark_claimed(conn: sqlite3.Connection, swap_id: str, *, preimage: str, tx_hash: str, block_number: int) -> bool:
    """The lock paid its seller (a final ``SwapClaimed``); True if this changed the row."""
    cursor = conn.execute("UPDATE quote_locks SET state = 'claimed', preimage = ?, claim_tx = ?, claim_block = ? "
                          "WHERE swap_id = ? AND state = 'open'", (preimage, tx_hash, block_number, swap_id))
    return cursor.rowcount == 1


def mark_refunded(conn: sqlite3.Connection, swap_id: str, *, tx_hash: str) -> bool:
    """The lock paid its buyer back (a final ``SwapRefunded``); True if this changed the row."""
    cursor = conn.execute("UPDATE quote_locks SET state = 'refunded', refund_tx = ? WHERE swap_id = ? "
                          "AND state = 'open'", (tx_hash, swap_id))
    return cursor.rowcount == 1


def mark_reorged(conn: sqlite3.Connection, *, from_block: int, kept: set[str]) -> list[str]:
    """Un-count the locks mined at ``from_block`` or later that the re-scan of that window did
    not find again (their block left the chain); returns their swap ids."""
    rows = conn.execute("SELECT swap_id FROM quote_locks WHERE block_number >= ? AND state != 'reorged'",
                        (from_block,)).fetchall()
    gone = [row["swap_id"] for row in rows if row["swap_id"] not in kept]
    for swap_id in gone:
        conn.execute("UPDATE quote_locks SET state = 'reorged' WHERE swap_id = ?", (swap_id,))
    return gone


def for_order(conn: sqlite3.Connection, order_id: str) -> list[LockRow]:
    """The counted locks tagged with ``order_id``, in chain order (reorged ones left out)."""
    rows = conn.execute("SELECT * FROM quote_locks WHERE order_id = ? AND state != 'reorged' "
                        "ORDER BY block_number, log_index", (order_id,)).fetchall()
    return [LockRow.from_row(row) for row in rows]


def open_with_hashlock(conn: sqlite3.Connection, hashlock: str, seller: str) -> list[LockRow]:
    """Counted, still-open locks of ``hashlock`` paying ``seller``, whatever order they name:
    in the seller-held mode any of them lets the seller reveal the preimage by claiming."""
    rows = conn.execute("SELECT * FROM quote_locks WHERE hashlock = ? AND seller = ? AND state = 'open'",
                        (hashlock.lower(), seller.lower())).fetchall()
    return [LockRow.from_row(row) for row in rows]


def cursor_of(conn: sqlite3.Connection, chain_id: int, contract: str) -> tuple[int, str] | None:
    """The last block the watcher scanned to: ``(number, hash)``, or None before the first scan."""
    row = conn.execute("SELECT block_number, block_hash FROM chain_cursor WHERE chain_id = ? AND contract = ?",
                       (chain_id, contract.lower())).fetchone()
    return None if row is None else (row["block_number"], row["block_hash"])


def set_cursor(conn: sqlite3.Connection, chain_id: int, contract: str, number: int, block_hash: str) -> None:
    conn.execute("INSERT INTO chain_cursor (chain_id, contract, block_number, block_hash) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (chain_id, contract) DO UPDATE SET block_number = excluded.block_number, "
                 "block_hash = excluded.block_hash", (chain_id, contract.lower(), number, block_hash))


def hashlock_used(conn: sqlite3.Connection, hashlock: str) -> bool:
    """True if any order ever carried ``hashlock``."""
    return conn.execute("SELECT 1 FROM used_hashlocks WHERE hashlock = ?", (hashlock.lower(),)).fetchone() is not None


def hashlock_unused_guard(hashlock: str) -> str:
    """A condition for a compare-and-swap that sets ``hashlock`` (64 lower-case hex, checked
    by the caller, so it is safe inside SQL): no order ever used it. ``used_hashlocks`` is
    filled by triggers on ``orders`` (schema v5)."""
    if len(hashlock) != 64 or any(c not in "0123456789abcdef" for c in hashlock):
        raise ValueError("hashlock must be 64 lower-case hex characters")
    return f"NOT EXISTS (SELECT 1 FROM used_hashlocks WHERE hashlock = '{hashlock}')"  # noqa: S608 (hex only)


# --- the claimer's transactions ----------------------------------------------------------------

#: ``node_endpoint`` of the ``order_events`` rows about the claimer's transactions: outcome
#: ``intent`` for each transaction signed (written before its broadcast), then one row with
#: outcome ``ok`` / ``failed`` / ``unknown`` once its nonce was used on chain.
CLAIM_ENDPOINT = "eth_sendRawTransaction claim"
_SENT = ("SELECT event_id, order_id, node_ref, detail FROM order_events WHERE kind = 'node_call' "
         "AND node_endpoint = ? AND node_outcome = 'intent' AND json_extract(detail, '$.sender') = ?")


@dataclass(frozen=True)
class ClaimTx:
    """One transaction the claimer signed for ``order_id``, recorded before its broadcast.

    ``action`` is ``claim`` (the order's lock) or ``cancel`` (a 0-wei transfer to itself that
    uses up the nonce of a claim that can no longer land). ``sender`` is lower-case 0x hex.
    Fees are wei per gas: both EIP-1559 fees, or ``gas_price_wei`` alone. ``sent_block`` is
    the latest block's number and ``sent_at`` the bridge's clock (unix seconds) when it was
    recorded; ``event_id`` its row (0 before it is written).
    """

    order_id: str
    tx_hash: str
    sender: str
    nonce: int
    action: str
    gas: int
    max_fee_per_gas_wei: int | None
    max_priority_fee_per_gas_wei: int | None
    gas_price_wei: int | None
    sent_block: int
    sent_at: int
    event_id: int = 0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ClaimTx:
        detail = json.loads(row["detail"])
        return cls(order_id=row["order_id"], tx_hash=row["node_ref"], event_id=row["event_id"],
                   **{name: detail.get(name) for name in _DETAIL})


_DETAIL = ("sender", "nonce", "action", "gas", "max_fee_per_gas_wei", "max_priority_fee_per_gas_wei", "gas_price_wei",
           "sent_block", "sent_at")


def record_claim_tx(tx: Tx, claim: ClaimTx, *, order_version: int, reason: str, now: int) -> None:
    """Write ``claim`` (an ``intent`` row of its order) in the caller's transaction; commit
    it before broadcasting, so a crash right after the broadcast still leaves its nonce and
    hash known."""
    detail = {name: value for name, value in asdict(claim).items() if name in _DETAIL}
    detail["sender"] = claim.sender.lower()
    events.append(tx, claim.order_id, [Event(order_version, "node_call", "bridge", reason, now,
                                             node=NodeRef(CLAIM_ENDPOINT, "intent", claim.tx_hash, detail))])


def last_claim_tx(conn: sqlite3.Connection, sender: str) -> ClaimTx | None:
    """The newest transaction ``sender`` signed as the claimer, any order, or None. The scan
    runs from the newest row back and stops at the first match, so it reads the rows written
    since then (about 0.2 s per million when there is none; the claimer asks only while an
    order is due)."""
    row = conn.execute(_SENT + " ORDER BY event_id DESC LIMIT 1", (CLAIM_ENDPOINT, sender.lower())).fetchone()
    return None if row is None else ClaimTx.from_row(row)


def claim_txs_at(conn: sqlite3.Connection, order_id: str, sender: str, nonce: int) -> list[ClaimTx]:
    """Every transaction ``sender`` signed at ``nonce`` for ``order_id``, oldest first."""
    rows = conn.execute(_SENT + " AND order_id = ? AND json_extract(detail, '$.nonce') = ? ORDER BY event_id",
                        (CLAIM_ENDPOINT, sender.lower(), order_id, nonce)).fetchall()
    return [ClaimTx.from_row(row) for row in rows]


def claim_outcome_recorded(conn: sqlite3.Connection, order_id: str, sender: str, nonce: int) -> bool:
    """True if the outcome of ``sender``'s ``nonce`` was already written for ``order_id``."""
    return conn.execute("SELECT 1 FROM order_events WHERE order_id = ? AND kind = 'node_call' AND node_endpoint = ? "
                        "AND node_outcome != 'intent' AND json_extract(detail, '$.sender') = ? "
                        "AND json_extract(detail, '$.nonce') = ? LIMIT 1",
                        (order_id, CLAIM_ENDPOINT, sender.lower(), nonce)).fetchone() is not None


def record_claim_outcome(tx: Tx, order_id: str, order_version: int, *, sender: str, nonce: int, outcome: str,
                         tx_hash: str | None, block_number: int | None, reason: str, now: int) -> None:
    """What used ``sender``'s ``nonce``: ``ok`` (``tx_hash``, one of this order's, mined and
    succeeded), ``failed`` (mined and reverted) or ``unknown`` (none of them: another
    transaction took the nonce). Mined, not final: the watcher's ``SwapClaimed`` at the
    configured confirmations is what counts."""
    detail = {"sender": sender.lower(), "nonce": nonce, "block": block_number}
    events.append(tx, order_id, [Event(order_version, "node_call", "bridge", reason, now,
                                       node=NodeRef(CLAIM_ENDPOINT, outcome, tx_hash, detail))])
