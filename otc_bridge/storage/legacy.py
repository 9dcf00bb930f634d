"""Import a database created by the reference bridge, in place (docs/protocol.md §6).

The reference keeps ``orders``, ``trades``, ``rate_limits`` (and, in its newest version,
``reconcile_lock``) with ``PRAGMA user_version`` 0. Older files hold money as REAL
columns (``amount_rtc``, ``price_per_rtc``, ``total_quote``), newer ones as integers, and
some both. The first migration renames those tables to ``legacy_*`` (kept for audit), then
this module copies every order and trade into the new schema:

* money from the integer columns when present, else from the REAL ones (rounded half-up to
  the unit, as the reference's own backfill does);
* escrow intent (poster = the RTC seller, reward = amount, total = reward + the node's fee)
  and, for orders past the confirm, the reference's payout key ``otc_payout:<order_id>``
  (the same key this bridge uses, so the payout is found, never re-sent under a new key);
* the preimage only for ``completed`` orders: the reference stored it in plain text from
  creation; the seller already has it, and this bridge keeps it only once revealed;
* one ``note`` event per order saying it was imported.

Imported escrow jobs were not claimed by this bridge's worker; the first action on such an
order reads the job and treats anything unexpected as the spec says (recovery, alert).
"""

from __future__ import annotations

import sqlite3
from decimal import ROUND_HALF_UP, Decimal

from otc_bridge.node.amounts import expected_escrow_micro_rtc, payout_tx_hash

LEGACY_TABLES = ("orders", "trades", "rate_limits", "reconcile_lock")
_STATUSES = {"locking", "open", "matched", "settling", "payout_pending", "settlement_recovery",
             "refund_pending", "completed", "cancelled", "expired"}
_PAID = {"settling", "payout_pending", "settlement_recovery", "completed"}


def has_reference_tables(conn: sqlite3.Connection) -> bool:
    """True if this file is a reference database not yet imported."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'orders'").fetchone() is not None


def rename_reference_tables(conn: sqlite3.Connection) -> None:
    """``orders`` -> ``legacy_orders`` etc., and drop the reference's indexes (names clash)."""
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    for table in LEGACY_TABLES:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
            conn.execute(f'ALTER TABLE "{table}" RENAME TO "legacy_{table}"')


def _units(row: sqlite3.Row, int_col: str, real_col: str, scale: int) -> int | None:
    keys = row.keys()
    if int_col in keys and row[int_col] is not None:
        return int(row[int_col])
    if real_col in keys and row[real_col] is not None:
        # The legacy column is a REAL already; its shortest repr is the decimal the reference
        # wrote. Rounded half-up to the unit, as the reference's own backfill did.
        return int(Decimal(repr(row[real_col])).scaleb(scale).to_integral_value(ROUND_HALF_UP))
    return None


def import_reference_rows(conn: sqlite3.Connection, now: int) -> int:
    """Copy legacy orders and trades into the new tables; returns the number of orders."""
    conn.row_factory = sqlite3.Row
    count = 0
    for row in conn.execute("SELECT * FROM legacy_orders").fetchall():
        _import_order(conn, row, now)
        count += 1
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'legacy_trades'").fetchone():
        for row in conn.execute("SELECT * FROM legacy_trades").fetchall():
            _import_trade(conn, row)
    return count


def _import_order(conn: sqlite3.Connection, row: sqlite3.Row, now: int) -> None:
    amount = _units(row, "amount_micro_rtc", "amount_rtc", 6)
    price = _units(row, "price_per_rtc_nano_quote", "price_per_rtc", 9)
    total = _units(row, "total_quote_nano", "total_quote", 9)
    status = row["status"] if row["status"] in _STATUSES else "settlement_recovery"
    seller = row["maker_wallet"] if row["side"] == "sell" else row["taker_wallet"]
    buyer = row["taker_wallet"] if row["side"] == "sell" else row["maker_wallet"]
    key = f"otc_payout:{row['order_id']}" if status in _PAID else None
    values = {
        "order_id": row["order_id"], "side": row["side"], "pair": row["pair"], "status": status,
        "order_version": 1, "maker_wallet": row["maker_wallet"],
        "maker_quote_address": row["maker_eth_address"] or "", "amount_micro_rtc": amount,
        "price_nano_quote": price, "total_quote_nano": total,
        "ttl_seconds": max(0, row["expires_at"] - row["created_at"]), "created_at": row["created_at"],
        "expires_at": row["expires_at"], "updated_at": now, "taker_wallet": row["taker_wallet"],
        "taker_quote_address": row["taker_eth_address"], "matched_at": row["matched_at"],
        "htlc_hash": row["htlc_hash"],
        "htlc_secret": row["htlc_secret"] if status == "completed" else None,
        "quote_tx": row["settlement_tx"], "confirmed_at": row["confirmed_at"],
        "escrow_job_id": row["escrow_job_id"], "escrow_wallet": seller if row["escrow_job_id"] else None,
        "escrow_reward_micro_rtc": amount if row["escrow_job_id"] else None,
        "escrow_total_micro_rtc": expected_escrow_micro_rtc(amount) if row["escrow_job_id"] else None,
        "payout_wallet": buyer, "payout_key": key, "payout_micro_rtc": amount if key else None,
        "payout_tx_hash": payout_tx_hash(key) if key else None,
        "end_cause": status if status in ("cancelled", "expired") else None,
    }
    names = ", ".join(values)
    marks = ", ".join(f":{k}" for k in values)
    conn.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", values)  # noqa: S608
    conn.execute(
        "INSERT INTO order_events (order_id, order_version, kind, to_status, actor, reason, created_at)"
        " VALUES (?, 1, 'note', ?, 'migration', 'imported from the reference bridge database', ?)",
        (row["order_id"], status, now))


def _import_trade(conn: sqlite3.Connection, row: sqlite3.Row) -> None:
    amount = _units(row, "amount_micro_rtc", "amount_rtc", 6)
    side = row["side"]
    seller, buyer = ((row["maker_wallet"], row["taker_wallet"]) if side == "sell"
                     else (row["taker_wallet"], row["maker_wallet"]))
    conn.execute(
        "INSERT OR IGNORE INTO trades (trade_id, order_id, pair, side, seller_wallet, buyer_wallet,"
        " amount_micro_rtc, price_nano_quote, total_quote_nano, payout_micro_rtc, quote_tx, escrow_job_id,"
        " payout_tx_hash, created_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, o.escrow_job_id, o.payout_tx_hash, ?"
        " FROM orders o WHERE o.order_id = ?",
        (row["trade_id"], row["order_id"], row["pair"], side, seller, buyer, amount,
         _units(row, "price_per_rtc_nano_quote", "price_per_rtc", 9),
         _units(row, "total_quote_nano", "total_quote", 9), amount, row["quote_tx"],
         row["completed_at"], row["order_id"]))
