"""Opening a database written by the reference bridge migrates it in place (docs/protocol.md §6)."""

from __future__ import annotations

import sqlite3

import pytest

from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.storage import schema
from otc_bridge.storage.db import Database

# The reference's tables as its files hold them (integer money; the legacy REAL variant
# differs only in the three money columns).
REFERENCE_ORDERS = """
CREATE TABLE orders (order_id TEXT PRIMARY KEY, side TEXT NOT NULL, pair TEXT NOT NULL,
  maker_wallet TEXT NOT NULL, {money}, status TEXT DEFAULT 'open', escrow_job_id TEXT,
  htlc_hash TEXT, htlc_secret TEXT, taker_wallet TEXT, taker_eth_address TEXT,
  maker_eth_address TEXT, settlement_tx TEXT, created_at INTEGER NOT NULL, matched_at INTEGER,
  confirmed_at INTEGER, expires_at INTEGER NOT NULL, ip_hash TEXT)"""
REFERENCE_TRADES = """
CREATE TABLE trades (trade_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, pair TEXT NOT NULL,
  side TEXT NOT NULL, maker_wallet TEXT NOT NULL, taker_wallet TEXT NOT NULL, {money},
  rtc_tx TEXT, quote_tx TEXT, completed_at INTEGER NOT NULL)"""
INTEGER_MONEY = ("amount_micro_rtc INTEGER NOT NULL, price_per_rtc_nano_quote INTEGER NOT NULL, "
                 "total_quote_nano INTEGER NOT NULL")
REAL_MONEY = "amount_rtc REAL NOT NULL, price_per_rtc REAL NOT NULL, total_quote REAL NOT NULL"
SELLER, BUYER = "RTC" + "a" * 40, "RTC" + "b" * 40


def make_reference_db(path, money: str, rows: list[tuple]) -> None:
    conn = sqlite3.connect(path)
    conn.execute(REFERENCE_ORDERS.format(money=money))
    conn.execute(REFERENCE_TRADES.format(money=money))
    conn.execute("CREATE TABLE rate_limits (ip_hash TEXT NOT NULL, timestamp INTEGER NOT NULL)")
    conn.execute("CREATE INDEX idx_orders_status ON orders(status, pair)")
    for order_id, status, secret, amount, price, total in rows:
        conn.execute(
            "INSERT INTO orders VALUES (?, 'sell', 'RTC/USDC', ?, ?, ?, ?, ?, 'job_' || ?, 'h' || ?, ?, ?, '0xb', "
            "'0xa', 'tx', 1000, 1100, 1200, 5000, 'iphash')",
            (order_id, SELLER, amount, price, total, status, order_id, order_id, secret,
             BUYER if status != "open" else None))
    conn.execute("INSERT INTO trades VALUES ('trade_x', 'otc_done', 'RTC/USDC', 'sell', ?, ?, ?, ?, ?, NULL, "
                 "'tx', 1200)", (SELLER, BUYER, rows[0][3], rows[0][4], rows[0][5]))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("money", "amount", "price", "total"), [
    (INTEGER_MONEY, 10_000_000, 50_000_000, 500_000_000),
    (REAL_MONEY, 10.0, 0.05, 0.5),
])
def test_reference_database_is_imported_in_place(tmp_path, money, amount, price, total):
    path = str(tmp_path / "otc_bridge.storage.db")
    make_reference_db(path, money, [
        ("otc_done", "completed", "s" * 64, amount, price, total),
        ("otc_open", "open", "t" * 64, amount, price, total),
        ("otc_pend", "payout_pending", None, amount, price, total),
    ])
    db = Database(path)
    assert db.migrate() == max(v for v, _ in schema.MIGRATIONS)
    orders = {r["order_id"]: r for r in db.read("SELECT * FROM orders")}
    assert set(orders) == {"otc_done", "otc_open", "otc_pend"}
    done, opened, pending = orders["otc_done"], orders["otc_open"], orders["otc_pend"]
    assert (done["amount_micro_rtc"], done["price_nano_quote"], done["total_quote_nano"]) == (
        10_000_000, 50_000_000, 500_000_000)
    # The preimage survives only where it was already revealed.
    assert done["htlc_secret"] == "s" * 64 and opened["htlc_secret"] is None
    assert opened["escrow_wallet"] == SELLER and opened["escrow_reward_micro_rtc"] == 10_000_000
    assert opened["escrow_total_micro_rtc"] == 10_500_000
    # A payout in flight keeps the reference's key, so it is found and never re-sent anew.
    assert pending["payout_key"] == "otc_payout:otc_pend"
    assert pending["payout_tx_hash"] == payout_tx_hash("otc_payout:otc_pend")
    trade = db.read_one("SELECT * FROM trades")
    assert (trade["order_id"], trade["seller_wallet"], trade["buyer_wallet"]) == ("otc_done", SELLER, BUYER)
    tables = {r[0] for r in db.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"legacy_orders", "legacy_trades", "legacy_rate_limits"} <= tables
    events = db.read("SELECT order_id, kind, actor FROM order_events")
    assert {(e["kind"], e["actor"]) for e in events} == {("note", "migration")} and len(events) == 3
    assert db.migrate() == max(v for v, _ in schema.MIGRATIONS)  # idempotent


def test_fresh_database_has_no_legacy_tables(tmp_path):
    db = Database(str(tmp_path / "fresh.db"))
    db.migrate()
    tables = {r[0] for r in db.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not any(t.startswith("legacy_") for t in tables)
