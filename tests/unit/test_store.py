"""Order rows: the compare-and-swap transition, the audit log, the outbox (docs/protocol.md §4 rule 5,
§6), including a race between two real threads."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from otc_bridge.domain.order import Order
from otc_bridge.domain.status import IllegalTransition, Status
from otc_bridge.storage import orders, outbox
from otc_bridge.storage.db import Database
from otc_bridge.storage.events import NodeRef
from otc_bridge.storage.orders import ConcurrentUpdate

NOW = 1_800_000_000
ORDER_ID = "otc_00112233aabbccdd"
SELLER = "RTC" + "a1" * 20
BUYER = "RTC" + "b2" * 20


def insert_order(db: Database, **overrides) -> Order:
    """A sell order on the book, as ``orders.create_order`` leaves it (columns overridable)."""
    columns = {
        "order_id": ORDER_ID, "side": "sell", "pair": "RTC/USDC", "status": "open", "order_version": 1,
        "maker_wallet": SELLER, "maker_quote_address": "0x" + "11" * 20,
        "amount_micro_rtc": 10_000_000, "price_nano_quote": 50_000_000, "total_quote_nano": 500_000_000,
        "ttl_seconds": 86_400, "created_at": NOW - 100, "expires_at": NOW + 86_300, "updated_at": NOW - 100,
        "htlc_hash": "ab" * 32, "escrow_wallet": SELLER, "escrow_ref": f"{ORDER_ID}:v1",
        "escrow_job_id": "job_1", "escrow_reward_micro_rtc": 10_000_000,
        "escrow_total_micro_rtc": 10_500_000, "escrow_ttl_seconds": 86_400 + 3 * 86_400,
    } | overrides
    names, marks = ", ".join(columns), ", ".join(f":{k}" for k in columns)
    with db.transaction() as tx:
        tx.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", columns)  # noqa: S608
    return orders.get_order(db.connection(), columns["order_id"])


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    return database


def _counts(conn: sqlite3.Connection) -> tuple[int, int]:
    events = conn.execute("SELECT COUNT(*) FROM order_events").fetchone()[0]
    outbox = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    return events, outbox


def _move(db: Database, order: Order, to: Status, **kwargs) -> int:
    """The transition's new order version."""
    with db.transaction() as tx:
        new = orders.transition(tx, order, to, actor=kwargs.pop("actor", "tester"),
                                reason=kwargs.pop("reason", "because"), now=kwargs.pop("now", NOW), **kwargs)
    return new.order_version


MATCH = {"taker_wallet": BUYER, "taker_quote_address": "0x" + "22" * 20, "payout_wallet": BUYER,
         "matched_at": NOW, "settle_by": NOW + 172_800}


def test_successful_transition_writes_row_event_and_outbox(db):
    order = insert_order(db)
    node = NodeRef("GET /agent/jobs/<job_id>", "ok", "job_1", {"status_code": 200})
    assert _move(db, order, Status.MATCHED, actor=BUYER, reason="taker matched", changes=MATCH, node=node) == 2
    row = orders.get_order(db.connection(), ORDER_ID)
    assert (row.status, row.order_version, row.updated_at) == ("matched", 2, NOW)
    assert {k: getattr(row, k) for k in MATCH} == MATCH
    events = db.read("SELECT * FROM order_events")
    assert len(events) == 1
    event = events[0]
    assert (event["order_id"], event["order_version"], event["kind"]) == (ORDER_ID, 2, "transition")
    assert (event["from_status"], event["to_status"], event["actor"], event["reason"]) == (
        "open", "matched", BUYER, "taker matched")
    assert (event["node_endpoint"], event["node_outcome"], event["node_ref"]) == (
        "GET /agent/jobs/<job_id>", "ok", "job_1")
    assert json.loads(event["detail"]) == {"status_code": 200}
    assert event["created_at"] == NOW
    outbox = db.read("SELECT * FROM outbox")
    assert len(outbox) == 1
    assert outbox[0]["event_key"] == f"order.matched:{ORDER_ID}:2"
    assert (outbox[0]["topic"], outbox[0]["order_id"], outbox[0]["order_version"]) == ("order.matched", ORDER_ID, 2)
    assert (outbox[0]["state"], outbox[0]["attempts"], outbox[0]["next_attempt_at"]) == ("pending", 0, NOW)
    payload = json.loads(outbox[0]["payload"])
    view = payload.pop("order")
    assert payload == {"order_id": ORDER_ID, "from": "open", "to": "matched", "order_version": 2,
                       "reason": "taker matched"}
    # The public view as of this transition, never a secret.
    assert (view["status"], view["order_version"]) == ("matched", 2) and "htlc_secret" not in view


def test_each_transition_bumps_version_by_exactly_one(db):
    order = insert_order(db)
    path = [Status.MATCHED, Status.OPEN, Status.REFUND_PENDING, Status.CANCELLED]
    changes = {Status.MATCHED: MATCH, Status.OPEN: dict.fromkeys(MATCH)}
    for expected, to in enumerate(path, start=2):
        assert _move(db, order, to, changes=changes.get(to)) == expected
        order = orders.get_order(db.connection(), ORDER_ID)
        assert order.order_version == expected
    keys = [r["event_key"] for r in db.read("SELECT event_key FROM outbox ORDER BY outbox_id")]
    assert keys == [f"order.{to}:{ORDER_ID}:{v}" for v, to in enumerate(path, start=2)]
    versions = [r["order_version"] for r in db.read("SELECT order_version FROM order_events ORDER BY event_id")]
    assert versions == [2, 3, 4, 5]


def _stale_by_version(db, order):
    with db.transaction() as tx:
        orders.annotate(tx, order, {"end_cause": "x"}, actor="other", reason="someone else", now=NOW)


def _stale_by_status(db, order):
    with db.transaction() as tx:  # status changed, version left alone (a raw write)
        tx.execute("UPDATE orders SET status = 'matched' WHERE order_id = ?", (ORDER_ID,))


def _stale_by_transition(db, order):
    _move(db, order, Status.MATCHED, changes=MATCH)


@pytest.mark.parametrize("make_stale", [_stale_by_version, _stale_by_status, _stale_by_transition])
def test_stale_row_raises_concurrent_update_and_writes_nothing(db, make_stale):
    stale = insert_order(db)
    make_stale(db, stale)
    before_row = orders.get_order(db.connection(), ORDER_ID)
    before = _counts(db.connection())
    with db.transaction() as tx:
        with pytest.raises(ConcurrentUpdate, match=ORDER_ID):
            orders.transition(tx, stale, Status.REFUND_PENDING, actor="a", reason="r", now=NOW + 5,
                             changes={"end_cause": "cancelled"})
        assert _counts(tx.conn) == before  # nothing written, even inside the transaction
    assert _counts(db.connection()) == before
    assert orders.get_order(db.connection(), ORDER_ID) == before_row


@pytest.mark.parametrize(("status", "to"), [
    ("open", Status.COMPLETED), ("open", Status.OPEN), ("completed", Status.OPEN),
    ("cancelled", Status.REFUND_PENDING), ("settling", Status.OPEN), ("matched", Status.PAYOUT_PENDING),
])
def test_illegal_edge_raises_before_any_write(db, status, to):
    order = insert_order(db, status=status)
    with db.transaction() as tx:
        with pytest.raises(IllegalTransition):
            orders.transition(tx, order, to, actor="a", reason="r", now=NOW, changes={"end_cause": "x"})
        assert _counts(tx.conn) == (0, 0)
    row = orders.get_order(db.connection(), ORDER_ID)
    assert (row.status, row.order_version, row.end_cause) == (status, 1, None)


def test_illegal_edge_wins_over_stale_row(db):
    stale = insert_order(db)
    _stale_by_version(db, stale)
    with pytest.raises(IllegalTransition), db.transaction() as tx:
        orders.transition(tx, stale, Status.COMPLETED, actor="a", reason="r", now=NOW)


@pytest.mark.parametrize("column", [
    "status", "order_version", "amount_micro_rtc", "maker_wallet", "price_nano_quote", "order_id",
    "updated_at", "side", "end_cause = 'x', status", "nonexistent",
])
def test_non_whitelisted_column_is_refused(db, column):
    order = insert_order(db)
    with db.transaction() as tx:
        with pytest.raises(ValueError, match="not settable"):
            orders.transition(tx, order, Status.MATCHED, actor="a", reason="r", now=NOW,
                             changes={**MATCH, column: 1})
        with pytest.raises(ValueError, match="not settable"):
            orders.annotate(tx, order, {column: 1}, actor="a", reason="r", now=NOW)
        assert _counts(tx.conn) == (0, 0)
    assert orders.get_order(db.connection(), ORDER_ID).order_version == 1


def test_annotate_bumps_version_with_a_note_and_keeps_status(db):
    order = insert_order(db, status="locking", escrow_job_id=None)
    with db.transaction() as tx:
        version = orders.annotate(tx, order, {"escrow_job_id": "job_9"}, actor="bridge",
                                 reason="escrow job created", now=NOW + 1).order_version
    assert version == 2
    row = orders.get_order(db.connection(), ORDER_ID)
    assert (row.status, row.order_version, row.escrow_job_id, row.updated_at) == (
        "locking", 2, "job_9", NOW + 1)
    events = db.read("SELECT kind, order_version, from_status, to_status, reason FROM order_events")
    assert [tuple(e) for e in events] == [("note", 2, None, None, "escrow job created")]
    assert db.read("SELECT * FROM outbox") == []


def test_annotate_needs_changes_and_a_fresh_row(db):
    order = insert_order(db)
    with pytest.raises(ValueError, match="nothing to set"), db.transaction() as tx:
        orders.annotate(tx, order, {}, actor="a", reason="r", now=NOW)
    _stale_by_version(db, order)
    with pytest.raises(ConcurrentUpdate), db.transaction() as tx:
        orders.annotate(tx, order, {"end_cause": "y"}, actor="a", reason="r", now=NOW)
    assert orders.get_order(db.connection(), ORDER_ID).end_cause == "x"


def test_alert_deduplicates_per_order_version_and_code(db):
    order = insert_order(db)
    with db.transaction() as tx:
        outbox.alert(tx, order, code="escrow_job_moved", message="moved", now=NOW)
        outbox.alert(tx, order, code="escrow_job_moved", message="moved again", now=NOW + 1)
        outbox.alert(tx, order, code="other_code", message="else", now=NOW)
    with db.transaction() as tx:
        outbox.alert(tx, order, code="escrow_job_moved", message="third time", now=NOW + 2)
    _move(db, order, Status.MATCHED, changes=MATCH)
    fresh = orders.get_order(db.connection(), ORDER_ID)
    with db.transaction() as tx:
        outbox.alert(tx, fresh, code="escrow_job_moved", message="on the new version", now=NOW + 3)
    alerts = db.read("SELECT event_key, topic, order_version, payload FROM outbox WHERE topic = 'alert'"
                     " ORDER BY outbox_id")
    assert [a["event_key"] for a in alerts] == [
        f"alert:escrow_job_moved:{ORDER_ID}:1", f"alert:other_code:{ORDER_ID}:1",
        f"alert:escrow_job_moved:{ORDER_ID}:2"]
    assert json.loads(alerts[0]["payload"]) == {"code": "escrow_job_moved", "order_id": ORDER_ID,
                                                "message": "moved", "status": "open"}
    events = db.read("SELECT order_version, reason, actor FROM order_events WHERE kind = 'alert' ORDER BY event_id")
    assert [tuple(e) for e in events] == [(1, "escrow_job_moved: moved", "bridge"), (1, "other_code: else", "bridge"),
                                          (2, "escrow_job_moved: on the new version", "bridge")]
    assert orders.get_order(db.connection(), ORDER_ID).order_version == 2  # alerts do not bump


def test_enqueue_same_key_twice_is_refused(db):
    with db.transaction() as tx:
        outbox.enqueue(tx, topic="t", payload={}, now=NOW, event_key="k")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as tx:
        outbox.enqueue(tx, topic="t", payload={}, now=NOW, event_key="k")


@pytest.mark.parametrize("sql", [
    "UPDATE order_events SET reason = 'rewritten'",
    "UPDATE order_events SET to_status = 'completed' WHERE kind = 'transition'",
    "DELETE FROM order_events",
    "DELETE FROM order_events WHERE event_id = 1",
])
def test_order_events_is_append_only(db, sql):
    order = insert_order(db)
    _move(db, order, Status.MATCHED, changes=MATCH)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"), db.transaction() as tx:
        tx.execute(sql)
    rows = db.read("SELECT reason, to_status FROM order_events")
    assert [tuple(r) for r in rows] == [("because", "matched")]


def test_get_order_missing(db):
    assert orders.get_order(db.connection(), "otc_nope") is None


def test_two_threads_race_on_the_same_row_exactly_one_wins(db):
    insert_order(db)
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[str, object] = {}

    def contender(name: str, to: Status, changes: dict) -> None:
        try:
            order = orders.get_order(db.connection(), ORDER_ID)  # both read version 1
            barrier.wait()
            with db.transaction() as tx:
                outcomes[name] = orders.transition(tx, order, to, actor=name, reason=name, now=NOW,
                                                  changes=changes)
        except Exception as exc:
            outcomes[name] = exc
        finally:
            db.close()

    threads = [threading.Thread(target=contender, args=("matcher", Status.MATCHED, MATCH)),
               threading.Thread(target=contender, args=("canceller", Status.REFUND_PENDING,
                                                        {"end_cause": "cancelled"}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 2
    winners = [n for n, o in outcomes.items() if isinstance(o, Order) and o.order_version == 2]
    losers = [n for n, o in outcomes.items() if isinstance(o, ConcurrentUpdate)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    row = orders.get_order(db.connection(), ORDER_ID)
    assert row.order_version == 2
    assert row.status == ("matched" if winners == ["matcher"] else "refund_pending")
    events = db.read("SELECT actor FROM order_events")
    assert [e["actor"] for e in events] == winners
    assert db.read_one("SELECT COUNT(*) FROM outbox")[0] == 1
