"""The API's read queries: the book, lists of orders, trades, market figures, events.

Reads only: no write lock is taken and the node is never called (docs/protocol.md §7).
Money comes back in integer units (micro-RTC, nano-quote); the views format it.
"""

from __future__ import annotations

import sqlite3

from otc_bridge.domain.order import Order

DAY_SECONDS = 86400
#: Best price first: bids (buy) by price descending, asks (sell) ascending, then oldest first.
_BOOK_ORDER = ("CASE side WHEN 'buy' THEN 0 ELSE 1 END, CASE side WHEN 'sell' THEN price_nano_quote END ASC, "
               "CASE side WHEN 'buy' THEN price_nano_quote END DESC, created_at ASC")


def open_orders(conn: sqlite3.Connection, *, now: int, pair: str | None, side: str | None,
                limit: int, offset: int) -> tuple[list[Order], int]:
    """Open, unexpired orders (``pair`` / ``side`` filters optional), best price first; the
    page and the total count."""
    where, params = ["status = 'open'", "expires_at > ?"], [now]
    for column, value in (("pair", pair), ("side", side)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    clause = " AND ".join(where)
    rows = conn.execute(f"SELECT * FROM orders WHERE {clause} ORDER BY {_BOOK_ORDER} LIMIT ? OFFSET ?",  # noqa: S608
                        (*params, limit, offset)).fetchall()
    total = conn.execute(f"SELECT COUNT(*) FROM orders WHERE {clause}", params).fetchone()[0]  # noqa: S608
    return [Order.from_row(row) for row in rows], total


def wallet_orders(conn: sqlite3.Connection, wallet: str, *, status: str | None, limit: int,
                  offset: int) -> tuple[list[Order], int]:
    """Orders of ``wallet`` (canonical) as maker or taker, newest first; page and total."""
    where, params = "(maker_wallet = ? OR taker_wallet = ?)", [wallet, wallet]
    if status:
        where += " AND status = ?"
        params.append(status)
    rows = conn.execute(f"SELECT * FROM orders WHERE {where} ORDER BY created_at DESC, rowid DESC "  # noqa: S608
                        "LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
    total = conn.execute(f"SELECT COUNT(*) FROM orders WHERE {where}", params).fetchone()[0]  # noqa: S608
    return [Order.from_row(row) for row in rows], total


def order_events(conn: sqlite3.Connection, order_id: str, *, after: int, limit: int) -> list[sqlite3.Row]:
    """The order's ``order_events`` rows with ``event_id > after``, oldest first."""
    return conn.execute("SELECT * FROM order_events WHERE order_id = ? AND event_id > ? ORDER BY event_id LIMIT ?",
                        (order_id, after, limit)).fetchall()


def trades(conn: sqlite3.Connection, *, pair: str | None, limit: int) -> list[sqlite3.Row]:
    """Trade rows, newest first, of one pair or all."""
    if pair:
        return conn.execute("SELECT * FROM trades WHERE pair = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                            (pair, limit)).fetchall()
    return conn.execute("SELECT * FROM trades ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()


def book_levels(conn: sqlite3.Connection, *, pair: str, side: str, now: int, depth: int = 20) -> list[sqlite3.Row]:
    """Price levels of one side of the book (``price_nano_quote``, ``micro`` = summed
    micro-RTC, ``n`` = order count), best first: asks ascending, bids descending."""
    direction = 1 if side == "sell" else -1  # sort on a signed key: no SQL text from the caller
    return conn.execute(
        "SELECT price_nano_quote, SUM(amount_micro_rtc) AS micro, COUNT(*) AS n FROM orders "
        "WHERE pair = ? AND side = ? AND status = 'open' AND expires_at > ? "
        "GROUP BY price_nano_quote ORDER BY price_nano_quote * ? LIMIT ?",
        (pair, side, now, direction, depth)).fetchall()


def last_price_nano_quote(conn: sqlite3.Connection, pair: str | None) -> int | None:
    """The price of the newest trade (of ``pair``, or of any pair), or ``None``."""
    where, params = ("WHERE pair = ?", (pair,)) if pair else ("", ())
    row = conn.execute(f"SELECT price_nano_quote FROM trades {where} "  # noqa: S608
                       "ORDER BY created_at DESC, rowid DESC LIMIT 1", params).fetchone()
    return row[0] if row else None


def trade_totals(conn: sqlite3.Connection, *, pair: str | None, since: int = 0) -> sqlite3.Row:
    """``(count, micro, high, low)`` of trades created after ``since``: count, summed
    micro-RTC, highest and lowest price in nano-quote (``None`` without trades)."""
    where, params = ("WHERE pair = ? AND created_at > ?", (pair, since)) if pair else ("WHERE created_at > ?", (since,))
    return conn.execute("SELECT COUNT(*), COALESCE(SUM(amount_micro_rtc), 0), MAX(price_nano_quote), "  # noqa: S608
                        f"MIN(price_nano_quote) FROM trades {where}", params).fetchone()


def open_totals(conn: sqlite3.Connection, *, pair: str | None, side: str, now: int) -> sqlite3.Row:
    """``(count, micro)`` of open, unexpired orders of ``side`` (and ``pair``)."""
    where, params = "status = 'open' AND expires_at > ? AND side = ?", [now, side]
    if pair:
        where += " AND pair = ?"
        params.append(pair)
    return conn.execute(f"SELECT COUNT(*), COALESCE(SUM(amount_micro_rtc), 0) FROM orders WHERE {where}",  # noqa: S608
                        params).fetchone()


# --- what a kept read depends on (otc_bridge/api/readcache.py) --------------------------------

#: The ``order_events`` kinds written with a change to an ``orders`` row: ``transition``
#: (insert and every status change) and ``note`` (``annotate``, the legacy import). A trade
#: row is written only with the ``completed`` transition. ``node_call`` and ``alert`` rows
#: (every escrow-watch read writes one) change no order.
ROW_CHANGE_KINDS = ("transition", "note")


def newest_event_id(conn: sqlite3.Connection) -> int | None:
    """The newest ``order_events.event_id`` (``None`` before the first event): one seek on
    the primary key. Ids only grow, in commit order (one writer at a time)."""
    return conn.execute("SELECT MAX(event_id) FROM order_events").fetchone()[0]


def rows_changed_between(conn: sqlite3.Connection, after: int, upto: int) -> bool:
    """True if an event with ``after < event_id <= upto`` records a change to an order or a
    trade (:data:`ROW_CHANGE_KINDS`): a range scan of those events' rows only."""
    return conn.execute("SELECT 1 FROM order_events WHERE event_id > ? AND event_id <= ? AND kind IN (?, ?) LIMIT 1",
                        (after, upto, *ROW_CHANGE_KINDS)).fetchone() is not None


def order_version(conn: sqlite3.Connection, order_id: str) -> int | None:
    """The order's ``order_version`` (``None``: no such order). Every change to its row, and
    only that, adds one (``storage.orders``' compare-and-swap; docs/protocol.md §6)."""
    row = conn.execute("SELECT order_version FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else row[0]


def open_expiry_after(conn: sqlite3.Connection, *, now: int, pair: str | None, side: str | None = None) -> int | None:
    """The earliest ``expires_at`` (unix seconds) of the open orders still on the book at
    ``now`` (``pair`` / ``side`` filters optional): the first second at which one of them
    leaves the book by time alone. ``None`` without such orders."""
    where, params = "status = 'open' AND expires_at > ?", [now]
    for column, value in (("pair", pair), ("side", side)):
        if value:
            where += f" AND {column} = ?"
            params.append(value)
    return conn.execute(f"SELECT MIN(expires_at) FROM orders WHERE {where}", params).fetchone()[0]  # noqa: S608


def window_exit_at(conn: sqlite3.Connection, *, pair: str | None, now: int, seconds: int) -> int | None:
    """When the oldest trade counted by :func:`trade_totals` with ``since = now - seconds``
    leaves that window (its ``created_at + seconds``, unix seconds), or ``None`` without such
    trades. Until then the window holds the same trades (new ones come with an event)."""
    where, params = ("WHERE pair = ? AND created_at > ?", (pair, now - seconds)) if pair else (
        "WHERE created_at > ?", (now - seconds,))
    oldest = conn.execute(f"SELECT MIN(created_at) FROM trades {where}", params).fetchone()[0]  # noqa: S608
    return None if oldest is None else oldest + seconds
