"""The quote-chain watcher's rows (schema v5): every counted ``SwapCreated`` with its verdict,
its later claim or refund, the block cursor, and the hashlocks orders have used.

A lock row is written once, when its block reaches the configured confirmations, and then
only moves ``open -> claimed | refunded`` (or ``-> reorged`` if its block left the chain).
Hex values (swap ids, hashes, hashlocks, addresses) are stored as lower-case 0x hex; amounts
as decimal strings (uint256 exceeds SQLite's 64-bit integers).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from otc_bridge.domain.quote_lock import Lock


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
