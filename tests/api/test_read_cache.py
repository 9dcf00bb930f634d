"""The kept reads (otc_bridge/api/readcache.py): never a stale answer after any transition or
once time alone changes it, and byte for byte what rendering them afresh gives."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from api_checks import complete_sell, create
from bridge_support import ADMIN_TOKEN, BUYER_ETH
from flask import Flask, jsonify
from hypothesis import given, settings
from hypothesis import strategies as st

from otc_bridge.api import readcache
from otc_bridge.domain import views
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.settlement import reconcile
from otc_bridge.storage import events, orders, reads

HOUR, DAY = 3600, 86400
BOOK_READS = ["/api/orders", "/api/orders?pair=RTC/USDC", "/api/orders?pair=RTC/USDC&side=sell&limit=2",
              "/api/orderbook", "/api/orderbook?pair=RTC/ETH", "/api/stats", "/api/stats?pair=RTC/USDC",
              "/api/trades", "/api/trades?pair=RTC/USDC"]


def assert_fresh(app, client, paths: list[str]) -> None:
    """Each read answers now (from what is kept, if anything) exactly what it answers with
    nothing kept; and leaves an entry behind, so the next check can catch a stale one."""
    kept = {path: client.get(path) for path in paths}
    readcache.for_app(app).clear()
    for path in paths:
        fresh = client.get(path)
        assert (kept[path].status_code, kept[path].data) == (fresh.status_code, fresh.data), path
        assert kept[path].headers == fresh.headers or _same_but_request_id(kept[path], fresh), path


def _same_but_request_id(a, b) -> bool:
    strip = lambda r: [(k, v) for k, v in r.headers if k != "X-Request-Id"]  # noqa: E731
    return strip(a) == strip(b)


@pytest.fixture
def check(bridge_app, http_client):
    """``check(*order_ids)``: :func:`assert_fresh` on the book reads and those orders' details."""
    def run(*order_ids: str) -> None:
        assert_fresh(bridge_app, http_client, BOOK_READS + [f"/api/orders/{o}" for o in order_ids])
    return run


def test_every_transition_shows_at_once(api, bridge, dev_node, check, seller, buyer):
    check()
    sell = create(api, seller, "sell", amount=2_000_000, price=60_000_000)
    check(sell["order_id"])
    buy = create(api, buyer, "buy", amount=3_000_000, price=50_000_000)
    check(sell["order_id"], buy["order_id"])
    assert api.match(buyer, sell["order_id"], BUYER_ETH)[0] == 200
    check(sell["order_id"], buy["order_id"])
    assert api.cancel(buyer, buy["order_id"])[0] == 200
    check(sell["order_id"], buy["order_id"])
    status, body = api.confirm(sell["order_id"], secret=sell["htlc_secret"], quote_tx="0xq1")
    assert (status, body["status"]) == (200, "payout_pending")
    check(sell["order_id"], buy["order_id"])
    dev_node.confirm_pending()
    assert api.reconcile(ADMIN_TOKEN)[0] == 200  # completed: the trade row and the preimage
    check(sell["order_id"], buy["order_id"])
    detail = api.order(sell["order_id"])[1]["order"]
    assert detail["status"] == "completed" and detail["htlc_secret"] == sell["htlc_secret"]
    other = complete_sell(api, bridge, dev_node, seller, buyer, pair="RTC/ETH", amount=1_000_000, price=300_000)
    check(sell["order_id"], buy["order_id"], other)


def test_expiry_by_time_alone_and_then_by_the_reconciler(api, bridge, clock, check, http_client, seller, buyer):
    short = create(api, buyer, "buy", amount=1_000_000, price=40_000_000, ttl_seconds=HOUR)
    long = create(api, buyer, "buy", amount=2_000_000, price=45_000_000)
    expires_at = short["expires_at"]
    clock.now = expires_at - 1
    check(short["order_id"])
    assert short["order_id"] in _listed(http_client)
    clock.now = expires_at  # no write at all: the order leaves the book by time
    check(short["order_id"])
    assert short["order_id"] not in _listed(http_client)
    assert http_client.get("/api/stats").get_json()["stats"]["open_buys"]["count"] == 1
    clock.now = expires_at - 10  # a clock set back: the entry rendered later is not used
    check(short["order_id"])
    assert short["order_id"] in _listed(http_client)
    clock.now = expires_at + 5
    check(short["order_id"])
    reconcile.run_once(bridge)  # open -> expired, an event
    assert http_client.get(f"/api/orders/{short['order_id']}").get_json()["order"]["status"] == "expired"
    check(short["order_id"], long["order_id"])
    assert _listed(http_client) == [long["order_id"]]


def test_trades_leave_the_24h_and_7d_windows_on_time(api, bridge, dev_node, clock, check, http_client, seller,
                                                      buyer):
    complete_sell(api, bridge, dev_node, seller, buyer, amount=2_000_000, price=65_000_000)
    made = bridge.db.read_one("SELECT created_at FROM trades")[0]
    for now, day_volume, week_volume in [(made + DAY - 1, 2.0, 2.0), (made + DAY, 0.0, 2.0),
                                         (made + 7 * DAY - 1, 0.0, 2.0), (made + 7 * DAY, 0.0, 0.0)]:
        clock.now = now
        check()
        stats = http_client.get("/api/stats?pair=RTC/USDC").get_json()["stats"]
        assert (stats["volume_24h_rtc"], stats["volume_7d_rtc"]) == (day_volume, week_volume), now
        book = http_client.get("/api/orderbook").get_json()
        assert book["volume_24h_rtc"] == day_volume


def test_a_kept_answer_is_served_without_rendering(api, bridge_app, http_client, seller, monkeypatch):
    create(api, seller, "sell")
    first = http_client.get("/api/orders?pair=RTC/USDC")
    rendered = []
    real = views.book_entry
    monkeypatch.setattr(views, "book_entry", lambda order: rendered.append(order) or real(order))
    again = http_client.get("/api/orders?pair=RTC/USDC")
    assert (again.data, rendered) == (first.data, [])
    assert again.headers["Content-Type"] == "application/json"
    assert int(again.headers["Content-Length"]) == len(again.data)
    create(api, seller, "sell", amount=2_000_000)  # another body: not a replayed signature
    assert len(http_client.get("/api/orders?pair=RTC/USDC").get_json()["orders"]) == len(rendered) == 2


def test_errors_and_missing_orders_are_not_kept(http_client, api, seller):
    create(api, seller, "sell")
    for _ in range(2):
        response = http_client.get("/api/orders/otc_00000000deadbeef")
        assert (response.status_code, response.get_json()) == (404, {"error": "Order not found"})
        response = http_client.get("/api/orders?limit=0")
        assert (response.status_code, response.get_json()) == (400, {"error": "limit_must_be_positive",
                                                                     "field": "limit"})


def test_a_write_during_a_render_is_seen_by_the_next_request(api, bridge, bridge_app, http_client, seller,
                                                             monkeypatch):
    """The render reads one snapshot; the counter it is kept under is that snapshot's, so a
    commit in the middle of it makes the next request render again."""
    create(api, seller, "sell")
    real = reads.open_orders

    def with_a_commit_in_between(conn, **kw):
        found = real(conn, **kw)
        worker = threading.Thread(target=create, args=(api, seller, "sell"), kwargs={"amount": 2_000_000})
        worker.start()
        worker.join()
        assert real(conn, **kw)[1] == found[1]  # still the snapshot of before the create
        return found

    monkeypatch.setattr(reads, "open_orders", with_a_commit_in_between)
    assert http_client.get("/api/orders").get_json()["total"] == 1
    monkeypatch.setattr(reads, "open_orders", real)
    assert http_client.get("/api/orders").get_json()["total"] == 2


def test_escrow_watch_events_keep_what_is_kept(api, bridge, http_client, seller, monkeypatch):
    """Each reconcile pass logs a node_call event per watched order: no order changed, so the
    kept answers stay (only a transition or note moves the version)."""
    sells = [create(api, seller, "sell", amount=n * 1_000_000)["order_id"] for n in (1, 2)]
    before = {path: http_client.get(path).data for path in BOOK_READS + [f"/api/orders/{o}" for o in sells]}
    events = bridge.db.read_one("SELECT COUNT(*) FROM order_events")[0]
    assert reconcile.run_once(bridge)["watched"] == 2
    assert bridge.db.read_one("SELECT COUNT(*) FROM order_events")[0] == events + 2
    rendered = []
    monkeypatch.setattr(reads, "book_levels", lambda *a, **kw: rendered.append(a) or [])
    monkeypatch.setattr(views, "book_entry", lambda order: rendered.append(order) or {})
    monkeypatch.setattr(views, "order_view", lambda order: rendered.append(order) or {})
    assert {path: http_client.get(path).data for path in before} == before and rendered == []


def test_the_orders_version(api, bridge, buyer, monkeypatch):
    order_id = create(api, buyer, "buy")["order_id"]
    cache, conn = readcache.ReadCache(), bridge.db.connection()

    def log(kind: str) -> None:  # an event that changes no order
        order = orders.get_order(conn, order_id)
        with bridge.db.transaction() as tx:
            events.record_event(tx, order_id, order.order_version, kind, actor="test", reason=kind, now=1)

    def annotate() -> None:  # a change to the row: a note event
        order = orders.get_order(conn, order_id)
        with bridge.db.transaction() as tx:
            orders.annotate(tx, order, {"attention_reason": "looked at"}, actor="test", reason="note", now=1)

    first = cache.orders_version(conn)
    assert first == reads.newest_event_id(conn)
    log("node_call")
    log("alert")
    assert cache.orders_version(conn) == first  # nothing a read shows changed
    annotate()
    second = cache.orders_version(conn)
    assert second == reads.newest_event_id(conn) > first
    older = sqlite3.connect(bridge.db.path, isolation_level=None)
    older.execute("BEGIN")
    assert cache.orders_version(older) == second  # a snapshot read while nothing moved
    assert api.cancel(buyer, order_id)[0] == 200  # a transition
    assert cache.orders_version(conn) > second
    assert cache.orders_version(older) is None  # older than one seen since: keeps nothing
    older.execute("COMMIT")
    older.close()
    monkeypatch.setattr(readcache, "MAX_SCAN_EVENTS", 1)
    third = cache.orders_version(conn)
    log("node_call")
    log("node_call")
    assert cache.orders_version(conn) > third  # too far to look: moves without looking


def test_only_order_writes_that_log_an_event_exist():
    """A kept read trusts that every statement writing ``orders`` or ``trades`` sits where a
    ``transition`` or ``note`` event is appended in the same transaction (insert_order, the
    CAS of transition and annotate, the completed transition, the legacy import)."""
    allowed = {"otc_bridge/storage/orders.py": 2, "otc_bridge/settlement/payout.py": 1,
               "otc_bridge/storage/legacy.py": 2}
    writes = re.compile(r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+(orders|trades)\b",
                        re.IGNORECASE)
    root = Path(__file__).resolve().parents[2]
    found = {}
    for path in sorted((root / "otc_bridge").rglob("*.py")):
        count = len(writes.findall(path.read_text()))
        if count:
            found[str(path.relative_to(root))] = count
    assert found == allowed


# --- the cheaper renderers: the same values -------------------------------------------------------

def _from_row_as_before(row) -> Order:
    """``Order.from_row`` as it was: a dict of the columns named like fields, then the class."""
    columns = row.keys()  # (``in`` a sqlite3.Row looks at its values)
    values = {name: row[name] for name in (f.name for f in dataclasses.fields(Order)) if name in columns}
    values["status"] = Status(values["status"])
    return Order(**values)


def test_from_row_and_book_entry_are_what_they_were(api, bridge, dev_node, seller, buyer):
    complete_sell(api, bridge, dev_node, seller, buyer)
    create(api, seller, "sell", pair="RTC/ETH", price=300_000)
    made = create(api, buyer, "buy", amount=3_000_000)
    assert api.cancel(buyer, made["order_id"])[0] == 200
    conn = bridge.db.connection()
    rows = conn.execute("SELECT * FROM orders").fetchall()
    rows += conn.execute("SELECT *, 1 AS has_trade FROM orders").fetchall()  # a computed column, ignored
    assert len(rows) == 6
    for row in rows:
        order = Order.from_row(row)
        assert order == _from_row_as_before(row) == Order.from_row(dict(zip(row.keys(), row, strict=True)))
        assert type(order.status) is Status and hash(order) == hash(_from_row_as_before(row))
        full = views.order_view(order)
        assert views.book_entry(order) == {key: full[key] for key in views.BOOK_ENTRY_KEYS}
        assert tuple(views.book_entry(order)) == views.BOOK_ENTRY_KEYS
    partial = dict(zip(rows[0].keys(), rows[0], strict=True))
    del partial["quote_leg_state"], partial["lock_by"]
    assert Order.from_row(partial) == _from_row_as_before(partial)  # missing columns: the fields' defaults
    with pytest.raises(ValueError, match="'nonsense' is not a valid Status"):
        Order.from_row(dict(partial, status="nonsense"))
    with pytest.raises(TypeError):
        Order.from_row({key: value for key, value in partial.items() if key != "pair"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        Order.from_row(rows[0]).status = Status.OPEN  # type: ignore[misc]


# --- the cache and the encoder ------------------------------------------------------------------

def test_cache_versions_windows_and_bounds():
    cache = readcache.ReadCache(max_entries=3, max_bytes=100)
    cache.put("a", 5, 1000, 1010, b"x" * 10)
    assert cache.get("a", 5, 1000) == b"x" * 10
    assert cache.get("a", 5, 1009) == b"x" * 10
    assert cache.get("a", 5, 1010) is None  # the window ends
    assert cache.get("a", 5, 999) is None  # a clock set back
    assert cache.get("a", 6, 1000) is None  # the orders changed
    cache.put("a", 4, 1000, None, b"old")  # rendered from an older counter: the newer one stays
    assert cache.get("a", 5, 1005) == b"x" * 10
    for key in "bcd":
        cache.put(key, 1, 0, None, key.encode())
    assert len(cache) == 3 and cache.get("a", 5, 1000) is None  # least recently used out
    cache.put("e", 1, 0, None, b"y" * 99)
    assert len(cache) == 2 and cache.get("d", 1, 0) == b"d"  # 4 entries, then 101 bytes: b and c out
    cache.put("f", 1, 0, None, b"z" * 101)
    assert cache.get("f", 1, 0) is None and cache.get("e", 1, 0) == b"y" * 99


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from([1e-06, 5e-05, 0.0001, 0.065, 1e16, 1.5e16, 0.0, -0.0, "\x7f", "é", "\u2028"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


#: A bare app: the encoder needs only Flask's JSON settings, which the bridge leaves at their defaults.
_PLAIN = Flask("encode")


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=6))
def test_encode_is_jsonify_byte_for_byte(payload):
    with _PLAIN.app_context():
        assert readcache.encode(payload) == jsonify(payload).get_data()


def test_encode_of_the_reads_is_jsonify(bridge_app):
    entry = {"amount_rtc": 1e-06, "price_per_rtc": 5e-05, "total_quote": 0.065, "wallet": "RTC\x7f\u00e9"}
    with bridge_app.app_context():
        for payload in ({"ok": True}, {"ok": True, "orders": [entry] * 3, "total": 3}, {"n": 2**80}):
            assert readcache.encode(payload) == jsonify(payload).get_data()
        assert json.loads(readcache.encode({"a": [1.5, None]})) == {"a": [1.5, None]}
    debug = Flask("debug")
    debug.debug = True  # jsonify indents then: so does the encoder
    with debug.app_context():
        assert readcache.encode({"b": [1], "a": 0.5}) == jsonify({"b": [1], "a": 0.5}).get_data() == (
            b'{\n  "a": 0.5,\n  "b": [\n    1\n  ]\n}\n')


def _listed(client) -> list[str]:
    return [o["order_id"] for o in client.get("/api/orders").get_json()["orders"]]
