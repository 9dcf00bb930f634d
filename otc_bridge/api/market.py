"""Market reads: ``/api/trades``, ``/api/orderbook``, ``/api/stats`` (no node calls, no writes).

Each answer is rendered once per change of the orders and query string
(:mod:`otc_bridge.api.readcache`), with the second until which time alone leaves it
unchanged: the next expiry on the book, the next trade leaving a 24 h or 7 d window.
"""

from __future__ import annotations

import sqlite3

from flask import Blueprint, request

from otc_bridge.api import body, readcache
from otc_bridge.api.orders import bridge
from otc_bridge.domain import money, views
from otc_bridge.storage import reads

bp = Blueprint("market", __name__)

_WEEK = 7 * reads.DAY_SECONDS
#: The reference bridge's fixed RTC reference price in USD (its ``RTC_REFERENCE_RATE``, not a
#: setting there either): ``reference_rate`` on ``/api/orderbook`` and ``reference_rate_usd``
#: on ``/api/stats``. Informational, a display number; nothing is priced from it.
REFERENCE_RATE_USD = 0.1


def _rtc(micro: int | None) -> float:
    return (micro or 0) / money.MICRO_RTC_PER_RTC


def _quote(nano: int | None) -> float | None:
    return None if nano is None else nano / money.NANO_PER_QUOTE


@bp.get("/api/trades")
def trades():
    """Completed trades, newest first: ``pair``, ``limit`` (1..200). An unknown pair is the
    reference's 400 ``unsupported pair`` (field ``pair``)."""
    b = bridge()
    return readcache.respond(b.db.connection(), ("trades", request.query_string), b.now(), _trades)


def _trades(conn: sqlite3.Connection, now: int) -> readcache.Rendered:
    limit, _ = body.page_args()
    pair = body.pair_arg(message="unsupported pair")
    rows = reads.trades(conn, pair=pair, limit=limit)
    return readcache.Rendered({"ok": True, "trades": [views.trade_view(r) for r in rows]})


@bp.get("/api/orderbook")
def orderbook():
    """Aggregated asks (ascending) and bids (descending), spread, last price, 24 h volume."""
    b = bridge()
    return readcache.respond(b.db.connection(), ("orderbook", request.query_string), b.now(), _orderbook)


def _levels(conn: sqlite3.Connection, pair: str, side: str, now: int) -> list[dict]:
    rows = reads.book_levels(conn, pair=pair, side=side, now=now)
    return [{"price": _quote(r["price_nano_quote"]), "price_per_rtc_nano_quote": r["price_nano_quote"],
             "total_rtc": _rtc(r["micro"]), "total_micro_rtc": r["micro"], "order_count": r["n"]} for r in rows]


def _orderbook(conn: sqlite3.Connection, now: int) -> readcache.Rendered:
    pair = body.pair_arg("RTC/USDC")
    asks, bids = _levels(conn, pair, "sell", now), _levels(conn, pair, "buy", now)
    last = reads.last_price_nano_quote(conn, pair)
    day = reads.trade_totals(conn, pair=pair, since=now - reads.DAY_SECONDS)
    spread_nano = (asks[0]["price_per_rtc_nano_quote"] - bids[0]["price_per_rtc_nano_quote"]
                   if asks and bids else None)
    until = readcache.earliest(reads.open_expiry_after(conn, now=now, pair=pair),
                               reads.window_exit_at(conn, pair=pair, now=now, seconds=reads.DAY_SECONDS))
    return readcache.Rendered({
        "ok": True, "pair": pair, "asks": asks, "bids": bids,
        "last_price": _quote(last), "last_price_nano_quote": last,
        "spread": _quote(spread_nano), "spread_nano_quote": spread_nano,
        "volume_24h_rtc": _rtc(day[1]), "volume_24h_micro_rtc": day[1], "trades_24h": day[0],
        "reference_rate": REFERENCE_RATE_USD}, until)


@bp.get("/api/stats")
def stats():
    """Market statistics, for one ``pair`` or (without it) across all pairs as the reference."""
    b = bridge()
    return readcache.respond(b.db.connection(), ("stats", request.query_string), b.now(), _stats)


def _stats(conn: sqlite3.Connection, now: int) -> readcache.Rendered:
    pair = body.pair_arg()
    totals = reads.trade_totals(conn, pair=pair)
    day = reads.trade_totals(conn, pair=pair, since=now - reads.DAY_SECONDS)
    week = reads.trade_totals(conn, pair=pair, since=now - _WEEK)
    last = reads.last_price_nano_quote(conn, pair)
    sides = {side: reads.open_totals(conn, pair=pair, side=side, now=now) for side in ("sell", "buy")}
    until = readcache.earliest(reads.open_expiry_after(conn, now=now, pair=pair),
                               reads.window_exit_at(conn, pair=pair, now=now, seconds=reads.DAY_SECONDS),
                               reads.window_exit_at(conn, pair=pair, now=now, seconds=_WEEK))
    return readcache.Rendered({"ok": True, "pair": pair, "stats": {
        "total_trades": totals[0],
        "total_volume_rtc": round(_rtc(totals[1]), 2), "total_volume_micro_rtc": totals[1],
        "volume_24h_rtc": round(_rtc(day[1]), 2), "volume_7d_rtc": round(_rtc(week[1]), 2),
        "open_orders": sides["sell"][0] + sides["buy"][0],
        "open_sells": {"count": sides["sell"][0], "total_rtc": round(_rtc(sides["sell"][1]), 2)},
        "open_buys": {"count": sides["buy"][0], "total_rtc": round(_rtc(sides["buy"][1]), 2)},
        "last_price": _quote(last),
        "high_24h": _quote(day[2]), "low_24h": _quote(day[3]),
        "reference_rate_usd": REFERENCE_RATE_USD,
        "supported_pairs": list(money.PAIRS),
    }}, until)
