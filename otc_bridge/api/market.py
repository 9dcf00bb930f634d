"""Market reads: ``/api/trades``, ``/api/orderbook``, ``/api/stats`` (no node calls, no writes)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from otc_bridge import money, views
from otc_bridge.api import body
from otc_bridge.api.orders import bridge

bp = Blueprint("market", __name__)

_DAY = 86400


def _rtc(micro: int | None) -> float:
    return (micro or 0) / money.MICRO_RTC_PER_RTC


def _quote(nano: int | None) -> float | None:
    return None if nano is None else nano / money.NANO_PER_QUOTE


@bp.get("/api/trades")
def trades():
    """Completed trades, newest first: ``pair``, ``limit`` (1..200)."""
    b = bridge()
    limit, _ = body.page_args()
    pair = body.pair_arg()
    if pair:
        rows = b.db.read("SELECT * FROM trades WHERE pair = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
                         (pair, limit))
    else:
        rows = b.db.read("SELECT * FROM trades ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,))
    return jsonify(ok=True, trades=[views.trade_view(r) for r in rows])


def _levels(b, pair: str, side: str, now: int) -> list[dict]:
    # Asks best-first ascending, bids best-first descending: sort on a signed key, no SQL text.
    direction = 1 if side == "sell" else -1
    rows = b.db.read(
        "SELECT price_nano_quote, SUM(amount_micro_rtc) AS micro, COUNT(*) AS n FROM orders "
        "WHERE pair = ? AND side = ? AND status = 'open' AND expires_at > ? "
        "GROUP BY price_nano_quote ORDER BY price_nano_quote * ? LIMIT 20",
        (pair, side, now, direction))
    return [{"price": _quote(r["price_nano_quote"]), "price_per_rtc_nano_quote": r["price_nano_quote"],
             "total_rtc": _rtc(r["micro"]), "total_micro_rtc": r["micro"], "order_count": r["n"]} for r in rows]


@bp.get("/api/orderbook")
def orderbook():
    """Aggregated asks (ascending) and bids (descending), spread, last price, 24 h volume."""
    b = bridge()
    pair = body.pair_arg("RTC/USDC")
    now = b.now()
    asks, bids = _levels(b, pair, "sell", now), _levels(b, pair, "buy", now)
    last = b.db.read_one("SELECT price_nano_quote FROM trades WHERE pair = ? ORDER BY created_at DESC, "
                         "rowid DESC LIMIT 1", (pair,))
    day = b.db.read_one("SELECT COALESCE(SUM(amount_micro_rtc), 0), COUNT(*) FROM trades "
                        "WHERE pair = ? AND created_at > ?", (pair, now - _DAY))
    spread_nano = (asks[0]["price_per_rtc_nano_quote"] - bids[0]["price_per_rtc_nano_quote"]
                   if asks and bids else None)
    return jsonify(ok=True, pair=pair, asks=asks, bids=bids,
                   last_price=_quote(last[0]) if last else None,
                   last_price_nano_quote=last[0] if last else None,
                   spread=_quote(spread_nano), spread_nano_quote=spread_nano,
                   volume_24h_rtc=_rtc(day[0]), volume_24h_micro_rtc=day[0], trades_24h=day[1],
                   reference_rate=0.1)


@bp.get("/api/stats")
def stats():
    """Market statistics, for one ``pair`` or (without it) across all pairs as the reference."""
    b = bridge()
    pair = body.pair_arg()
    now = b.now()
    tf, tp = ("WHERE pair = ?", (pair,)) if pair else ("WHERE 1 = 1", ())
    of = "AND pair = ?" if pair else ""

    def one(sql: str, params: tuple = ()):
        return b.db.read_one(sql, tp + params)

    totals = one(f"SELECT COUNT(*), COALESCE(SUM(amount_micro_rtc), 0) FROM trades {tf}")  # noqa: S608
    vol = {n: one(f"SELECT COALESCE(SUM(amount_micro_rtc), 0) FROM trades {tf} AND created_at > ?",  # noqa: S608
                  (now - days * _DAY,))[0] for n, days in (("24h", 1), ("7d", 7))}
    hi_lo = one(f"SELECT MAX(price_nano_quote), MIN(price_nano_quote) FROM trades {tf} AND created_at > ?",  # noqa: S608
                (now - _DAY,))
    last = one(f"SELECT price_nano_quote FROM trades {tf} ORDER BY created_at DESC, rowid DESC LIMIT 1")  # noqa: S608
    sides = {side: b.db.read_one(
        f"SELECT COUNT(*), COALESCE(SUM(amount_micro_rtc), 0) FROM orders WHERE status = 'open' "  # noqa: S608
        f"AND expires_at > ? AND side = ? {of}", (now, side, *tp)) for side in ("sell", "buy")}
    return jsonify(ok=True, pair=pair, stats={
        "total_trades": totals[0],
        "total_volume_rtc": round(_rtc(totals[1]), 2), "total_volume_micro_rtc": totals[1],
        "volume_24h_rtc": round(_rtc(vol["24h"]), 2), "volume_7d_rtc": round(_rtc(vol["7d"]), 2),
        "open_orders": sides["sell"][0] + sides["buy"][0],
        "open_sells": {"count": sides["sell"][0], "total_rtc": round(_rtc(sides["sell"][1]), 2)},
        "open_buys": {"count": sides["buy"][0], "total_rtc": round(_rtc(sides["buy"][1]), 2)},
        "last_price": _quote(last[0]) if last else None,
        "high_24h": _quote(hi_lo[0]), "low_24h": _quote(hi_lo[1]),
        "supported_pairs": list(money.PAIRS),
    })
