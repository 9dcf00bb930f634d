"""The money path against a faked node (`responses` at the requests edge): pay the
buyer, release escrow, refund it. Each case asserts the order's end state, the alerts, and
exactly which node calls were made (docs/protocol.md §4 rules 3-4, §5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
import requests
import responses
from bridge_support import broken_orders

from otc_bridge.app import build_bridge
from otc_bridge.config import Config
from otc_bridge.context import Bridge
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.settlement import payout, refund, release
from otc_bridge.storage import events, orders

NODE = "http://127.0.0.1:9"
ADMIN_KEY = "unit-test-admin-key-0123456789abcdef"
NOW = 1_800_000_000
ORDER_ID = "otc_0123456789abcdef"
JOB_ID = "job_0011aabb"
SELLER, BUYER, WORKER = "RTC" + "a1" * 20, "RTC" + "b2" * 20, "otc_bridge_worker"
SECRET = "5e" * 32
HTLC_HASH = hashlib.sha256(bytes.fromhex(SECRET)).hexdigest()
KEY = f"otc_payout:{ORDER_ID}"
TX = payout_tx_hash(KEY)
REWARD, ESCROW = 10_000_000, 10_500_000
JOB_URL, TRANSFER_URL, TX_URL = f"{NODE}/agent/jobs/{JOB_ID}", f"{NODE}/wallet/transfer", f"{NODE}/wallet/tx/{TX}"
GET_JOB, TRANSFER, GET_TX = f"GET /agent/jobs/{JOB_ID}", "POST /wallet/transfer", f"GET /wallet/tx/{TX}"
STEP = f"POST /agent/jobs/{JOB_ID}/"
DELIVER, ACCEPT, DISPUTE, CANCEL = (STEP + a for a in ("deliver", "accept", "dispute", "cancel"))
TIMEOUT = {"body": requests.exceptions.ReadTimeout("read timed out")}
NOT_FOUND = {"json": {"ok": False, "status": "not_found", "error": "transaction_not_found"}, "status": 404}


@pytest.fixture
def bridge(tmp_path) -> Bridge:
    cfg = Config.from_env({"OTC_DB_PATH": str(tmp_path / "b.db"), "RUSTCHAIN_NODE": NODE, "RC_ADMIN_KEY": ADMIN_KEY})
    return build_bridge(cfg, clock=lambda: NOW)


@pytest.fixture
def node() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def insert_order(bridge: Bridge, status: str, **overrides):
    """A matched sell order, in ``status``; ``settling`` rows carry the confirm's columns."""
    columns = {
        "order_id": ORDER_ID, "side": "sell", "pair": "RTC/USDC", "status": status, "order_version": 4,
        "maker_wallet": SELLER, "maker_quote_address": "0x" + "11" * 20, "amount_micro_rtc": REWARD,
        "price_nano_quote": 50_000_000, "total_quote_nano": 500_000_000, "ttl_seconds": 86_400,
        "created_at": NOW - 1000, "expires_at": NOW + 80_000, "updated_at": NOW - 10,
        "taker_wallet": BUYER, "taker_quote_address": "0x" + "22" * 20, "matched_at": NOW - 500,
        "settle_by": NOW + 170_000, "htlc_hash": HTLC_HASH, "escrow_wallet": SELLER,
        "escrow_ref": f"{ORDER_ID}:v1", "escrow_job_id": JOB_ID, "escrow_reward_micro_rtc": REWARD,
        "escrow_total_micro_rtc": ESCROW, "escrow_ttl_seconds": 400_000, "payout_wallet": BUYER,
    }
    if status == "settling":
        columns |= {"htlc_secret": SECRET, "quote_tx": "0xquote", "settling_at": NOW - 5, "payout_key": KEY,
                    "payout_tx_hash": TX, "payout_micro_rtc": REWARD}
    columns |= overrides
    names, marks = ", ".join(columns), ", ".join(f":{k}" for k in columns)
    with bridge.db.transaction() as tx:
        tx.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", columns)  # noqa: S608
    return orders.get_order(bridge.db.connection(), ORDER_ID)


def bridge_already_delivered(bridge: Bridge) -> None:
    """The history of a release resumed after the bridge's own deliver (its intent note)."""
    with bridge.db.transaction() as tx:
        events.record_event(tx, ORDER_ID, 4, "node_call", actor="bridge", reason="release step from claimed: intent",
                           now=NOW - 4, node=events.NodeRef("POST /agent/jobs/<job_id>/deliver", "intent", JOB_ID))


def job(status: str, worker: str | None = WORKER, **overrides) -> dict:
    body = {"job_id": JOB_ID, "poster_wallet": SELLER, "worker_wallet": worker, "status": status,
            "reward_i64": REWARD, "escrow_i64": ESCROW, "platform_fee_i64": ESCROW - REWARD,
            "expires_at": NOW + 400_000, "title": "OTC Bridge Escrow", "description": "Escrowed RTC for OTC",
            "tags": '["otc_bridge"]'} | overrides
    return {"ok": True, "job": body}


def reads(node, *bodies: dict) -> None:
    for body in bodies:
        node.get(JOB_URL, json=body)


def step_ok(node, action: str, status: str, **extra) -> None:
    node.post(f"{JOB_URL}/{action}", json={"ok": True, "job_id": JOB_ID, "status": status, **extra})


def transfer(phase: str) -> dict:
    return {"ok": True, "phase": phase, "pending_id": 7, "tx_hash": TX, "confirms_at": NOW + 86_400}


def calls(node) -> list[str]:
    return [f"{c.request.method} {c.request.url.removeprefix(NODE)}" for c in node.calls]


def fresh(bridge: Bridge):
    return orders.get_order(bridge.db.connection(), ORDER_ID)


def alerts(bridge: Bridge) -> list[str]:
    return [r["event_key"] for r in bridge.db.read("SELECT event_key FROM outbox WHERE topic = 'alert'")]


def assert_sound(bridge: Bridge) -> None:
    assert broken_orders(bridge.db.connection()) == {}


# --- pay_buyer --------------------------------------------------------------------------------

def test_pay_pending_goes_payout_pending(bridge, node):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, json=transfer("pending"))
    out = payout.pay_buyer(bridge, order)
    assert (out.status, out.order_version, out.htlc_secret) == ("payout_pending", 5, SECRET)
    assert calls(node) == [TRANSFER]
    request = node.calls[0].request
    assert request.headers["X-Admin-Key"] == ADMIN_KEY
    assert json.loads(request.body) == {"from_miner": WORKER, "to_miner": BUYER, "amount_rtc": 10.0,
                                        "reason": KEY, "idempotency_key": KEY}
    assert bridge.db.read("SELECT * FROM trades") == [] and alerts(bridge) == []
    kinds = [r["kind"] for r in bridge.db.read("SELECT kind FROM order_events ORDER BY event_id")]
    assert kinds == ["node_call", "transition"]
    assert_sound(bridge)


def test_pay_confirmed_completes_with_a_trade(bridge, node):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, json=transfer("confirmed"))
    out = payout.pay_buyer(bridge, order)
    assert (out.status, out.confirmed_at, out.ended_at) == ("completed", NOW, NOW)
    [trade] = bridge.db.read("SELECT * FROM trades")
    assert trade["trade_id"] == "trade_0123456789abcdef"
    assert (trade["seller_wallet"], trade["buyer_wallet"], trade["payout_micro_rtc"]) == (SELLER, BUYER, REWARD)
    assert (trade["payout_tx_hash"], trade["escrow_job_id"], trade["quote_tx"]) == (TX, JOB_ID, "0xquote")
    assert calls(node) == [TRANSFER]
    assert_sound(bridge)


@pytest.mark.parametrize(("answer", "code"), [
    ({"json": transfer("voided")}, "payout_voided"),
    ({"json": {"error": "Insufficient available balance"}, "status": 400}, "payout_refused"),
    ({"json": {"error": "idempotency_key_conflict", "tx_hash": TX}, "status": 409}, "payout_refused"),
])
def test_pay_voided_or_refused_goes_to_recovery_with_alert(bridge, node, answer, code):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, **answer)
    out = payout.pay_buyer(bridge, order)
    assert out.status == "settlement_recovery"
    assert alerts(bridge) == [f"alert:{code}:{ORDER_ID}:5"]
    assert calls(node) == [TRANSFER]
    assert bridge.db.read("SELECT * FROM trades") == []
    assert_sound(bridge)


@pytest.mark.parametrize(("lookup", "status", "code"), [
    ({"json": {"ok": True, "tx_hash": TX, "status": "pending"}}, "payout_pending", None),
    ({"json": {"ok": True, "tx_hash": TX, "status": "confirmed"}}, "completed", None),
    ({"json": {"ok": True, "tx_hash": TX, "status": "failed"}}, "settlement_recovery", "payout_voided"),
    (TIMEOUT, "settlement_recovery", "payout_unknown"),
    ({"body": "<html>bad gateway</html>", "status": 502}, "settlement_recovery", "payout_unknown"),
    ({"json": {"ok": True, "status": "weird"}}, "settlement_recovery", "payout_unknown"),
    ({"json": {"error": "nope"}, "status": 404}, "settlement_recovery", "payout_unknown"),
])
def test_pay_timeout_is_resolved_by_the_tx_lookup(bridge, node, lookup, status, code):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, **TIMEOUT)
    node.get(TX_URL, **lookup)
    out = payout.pay_buyer(bridge, order)
    assert out.status == status
    assert alerts(bridge) == ([f"alert:{code}:{ORDER_ID}:5"] if code else [])
    assert calls(node) == [TRANSFER, GET_TX]
    assert_sound(bridge)


def test_pay_timeout_then_not_found_resends_once_with_the_same_key(bridge, node):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, **TIMEOUT)
    node.post(TRANSFER_URL, json=transfer("pending"))
    node.get(TX_URL, **NOT_FOUND)
    out = payout.pay_buyer(bridge, order)
    assert out.status == "payout_pending"
    assert calls(node) == [TRANSFER, GET_TX, TRANSFER]
    first, second = (json.loads(node.calls[i].request.body) for i in (0, 2))
    assert second == first and second["idempotency_key"] == KEY
    assert alerts(bridge) == []


def test_pay_never_sends_a_third_time(bridge, node):
    order = insert_order(bridge, "settling")
    node.post(TRANSFER_URL, **TIMEOUT)
    node.get(TX_URL, **NOT_FOUND)
    out = payout.pay_buyer(bridge, order)
    assert out.status == "settlement_recovery"
    assert alerts(bridge) == [f"alert:payout_unknown:{ORDER_ID}:5"]
    assert calls(node) == [TRANSFER, GET_TX] * 2


@pytest.mark.parametrize(("phase", "status", "version"), [
    ("pending", "payout_pending", 4), ("confirmed", "completed", 5), ("voided", "settlement_recovery", 5)])
def test_pay_again_from_payout_pending(bridge, node, phase, status, version):
    order = insert_order(bridge, "settling")
    with bridge.db.transaction() as tx:
        tx.execute("UPDATE orders SET status = 'payout_pending' WHERE order_id = ?", (ORDER_ID,))
    order = fresh(bridge)
    node.post(TRANSFER_URL, json=transfer(phase))
    out = payout.pay_buyer(bridge, order)
    assert (out.status, out.order_version) == (status, version)


# --- advance_release ---------------------------------------------------------------------------

@pytest.mark.parametrize(("first", "expected"), [
    ("claimed", [GET_JOB, DELIVER, ACCEPT, TRANSFER]),  # back to back, no reads between
    ("delivered", [GET_JOB, ACCEPT, TRANSFER]),
    ("completed", [GET_JOB, TRANSFER]),
])
def test_release_resumes_from_the_job_status(bridge, node, first, expected):
    order = insert_order(bridge, "settling")
    reads(node, job(first))
    step_ok(node, "deliver", "delivered")
    step_ok(node, "accept", "completed", reward_paid_rtc=10.0)
    node.post(TRANSFER_URL, json=transfer("pending"))
    out = release.advance_release(bridge, order)
    assert out.status == "payout_pending"
    assert calls(node) == expected
    if ACCEPT in expected:
        accept = node.calls[expected.index(ACCEPT)].request
        assert json.loads(accept.body) == {"poster_wallet": SELLER, "rating": 5}
    if DELIVER in expected:
        assert json.loads(node.calls[1].request.body)["worker_wallet"] == WORKER
    assert_sound(bridge)


@pytest.mark.parametrize("answer", [TIMEOUT, {"json": {"error": "Job is not in claimed state"}, "status": 409}])
def test_release_continues_when_the_re_read_shows_the_step_landed(bridge, node, answer):
    order = insert_order(bridge, "settling")
    reads(node, job("claimed"), job("delivered"))
    node.post(f"{JOB_URL}/deliver", **answer)
    step_ok(node, "accept", "completed", reward_paid_rtc=10.0)
    node.post(TRANSFER_URL, json=transfer("confirmed"))
    assert release.advance_release(bridge, order).status == "completed"
    assert calls(node) == [GET_JOB, DELIVER, GET_JOB, ACCEPT, TRANSFER]
    assert_sound(bridge)


@pytest.mark.parametrize("moved", [
    job("claimed", worker="RTCthief"),
    job("delivered", worker="RTCthief"),
    job("completed", worker="RTCthief"),
    job("cancelled", worker=None),
    job("expired"),
    job("disputed"),
    job("open", worker=None),
    job("claimed", reward_i64=REWARD - 1),
    job("claimed", escrow_i64=ESCROW + 1),
    job("claimed", poster_wallet="RTCsomeoneelse"),
], ids=["claimed_by_other", "delivered_by_other", "completed_by_other", "cancelled", "expired", "disputed",
        "open", "wrong_reward", "wrong_total", "wrong_poster"])
def test_release_of_a_moved_job_goes_to_recovery_without_transfer(bridge, node, moved):
    order = insert_order(bridge, "settling")
    reads(node, moved)
    out = release.advance_release(bridge, order)
    assert out.status == "settlement_recovery"
    assert alerts(bridge) == [f"alert:escrow_job_moved:{ORDER_ID}:5"]
    assert calls(node) == [GET_JOB]
    assert_sound(bridge)


def test_release_accept_credit_mismatch_goes_to_recovery(bridge, node):
    order = insert_order(bridge, "settling")
    bridge_already_delivered(bridge)
    reads(node, job("delivered"))
    step_ok(node, "accept", "completed", reward_paid_rtc=9.999999)
    out = release.advance_release(bridge, order)
    assert out.status == "settlement_recovery"
    assert alerts(bridge) == [f"alert:escrow_credit_mismatch:{ORDER_ID}:5"]
    assert TRANSFER not in calls(node)


def test_deliver_refused_while_still_claimed_returns_to_matched(bridge, node):
    order = insert_order(bridge, "settling")
    reads(node, job("claimed"), job("claimed"))
    node.post(f"{JOB_URL}/deliver", json={"error": "Job is not in claimed state"}, status=409)
    out = release.advance_release(bridge, order)
    assert (out.status, out.order_version) == ("matched", 5)
    assert (out.htlc_secret, out.quote_tx, out.settling_at) == (None, None, None)
    assert calls(node) == [GET_JOB, DELIVER, GET_JOB]
    assert alerts(bridge) == []
    assert_sound(bridge)


@pytest.mark.parametrize(("first", "step", "answer", "re_read"), [
    ("claimed", "deliver", {"body": "oops", "status": 500}, TIMEOUT),
    ("claimed", "deliver", TIMEOUT, {"json": job("claimed")}),
    ("delivered", "accept", TIMEOUT, {"json": job("delivered")}),
    ("delivered", "accept", {"json": {"error": "Job is not delivered"}, "status": 409}, {"json": job("delivered")}),
])
def test_release_without_progress_leaves_settling(bridge, node, first, step, answer, re_read):
    order = insert_order(bridge, "settling")
    bridge_already_delivered(bridge)
    reads(node, job(first))
    node.get(JOB_URL, **re_read)
    node.post(f"{JOB_URL}/{step}", **answer)
    out = release.advance_release(bridge, order)
    assert (out.status, out.order_version, out.htlc_secret) == ("settling", 4, SECRET)
    assert calls(node) == [GET_JOB, STEP + step, GET_JOB]
    assert alerts(bridge) == []


def test_release_of_a_job_delivered_by_someone_else_alerts_but_still_pays(bridge, node):
    # No release step in the history: the bridge never delivered, so someone else did (docs/protocol.md §5).
    order = insert_order(bridge, "settling")
    reads(node, job("delivered"))
    step_ok(node, "accept", "completed", reward_paid_rtc=REWARD / 1e6)
    node.post(TRANSFER_URL, json=transfer("pending"))
    out = release.advance_release(bridge, order)
    assert out.status == "payout_pending"
    assert alerts(bridge) == [f"alert:escrow_job_moved:{ORDER_ID}:4"]


def test_release_with_unreadable_job_changes_nothing(bridge, node):
    order = insert_order(bridge, "settling")
    node.get(JOB_URL, **TIMEOUT)
    assert release.advance_release(bridge, order).status == "settling"
    assert calls(node) == [GET_JOB]


# --- advance_refund ----------------------------------------------------------------------------

@pytest.mark.parametrize(("job_status", "cause", "end"), [
    ("cancelled", "cancelled", "cancelled"), ("expired", "cancelled", "cancelled"),
    ("cancelled", "expired", "expired"), ("expired", "settle_deadline_passed", "expired"),
    ("cancelled", "escrow_rejected", "cancelled"),
], ids=["cancelled", "expired_job", "expired_order", "deadline", "rejected"])
def test_refund_of_an_already_returned_job_ends_the_order(bridge, node, job_status, cause, end):
    order = insert_order(bridge, "refund_pending", end_cause=cause)
    reads(node, job(job_status))
    out = refund.safe_refund_escrow(bridge, order)
    assert (out.status, out.ended_at, out.order_version) == (end, NOW, 5)
    assert calls(node) == [GET_JOB]
    assert_sound(bridge)


@pytest.mark.parametrize(("first", "expected"), [
    ("claimed", [GET_JOB, DELIVER, DISPUTE, CANCEL]),  # back to back, no reads between
    ("delivered", [GET_JOB, DISPUTE, CANCEL]),
    ("disputed", [GET_JOB, CANCEL]),
    ("open", [GET_JOB, CANCEL]),
])
def test_refund_walks_the_job_back_to_the_poster(bridge, node, first, expected):
    order = insert_order(bridge, "refund_pending", end_cause="cancelled")
    reads(node, job(first, worker=None if first == "open" else WORKER))
    step_ok(node, "deliver", "delivered")
    step_ok(node, "dispute", "disputed")
    step_ok(node, "cancel", "cancelled", refunded_rtc=10.5)
    out = refund.safe_refund_escrow(bridge, order)
    assert (out.status, out.ended_at) == ("cancelled", NOW)
    assert calls(node) == expected
    assert json.loads(node.calls[len(expected) - 1].request.body) == {"poster_wallet": SELLER}
    assert_sound(bridge)


def test_refund_returns_a_job_holding_the_wrong_amount(bridge, node):
    order = insert_order(bridge, "refund_pending", end_cause="escrow_rejected")
    reads(node, job("open", worker=None, reward_i64=REWARD - 1, escrow_i64=ESCROW - 1))
    step_ok(node, "cancel", "cancelled", refunded_rtc=10.499998)
    assert refund.safe_refund_escrow(bridge, order).status == "cancelled"
    assert calls(node) == [GET_JOB, CANCEL] and alerts(bridge) == []


def test_refund_without_a_job_ends_without_node_calls(bridge, node):
    order = insert_order(bridge, "refund_pending", escrow_job_id=None, end_cause="expired")
    assert refund.safe_refund_escrow(bridge, order).status == "expired"
    assert calls(node) == []


@pytest.mark.parametrize(("moved", "code"), [
    (job("completed", worker="RTCthief"), "escrow_released_during_refund"),
    (job("claimed", poster_wallet="RTCother"), "escrow_job_mismatch"),
], ids=["completed_by_other", "foreign_poster"])
def test_refund_of_a_released_or_foreign_job_goes_to_recovery(bridge, node, moved, code):
    order = insert_order(bridge, "refund_pending", end_cause="cancelled")
    reads(node, moved)
    out = refund.safe_refund_escrow(bridge, order)
    assert (out.status, out.htlc_secret) == ("settlement_recovery", None)
    assert alerts(bridge) == [f"alert:{code}:{ORDER_ID}:5"]
    assert calls(node) == [GET_JOB]
    assert_sound(bridge)  # recovery without a preimage is valid when reached from a refund


def test_refund_of_a_job_completed_into_the_worker_is_paid_back_from_custody(bridge, node):
    order = insert_order(bridge, "refund_pending", end_cause="escrow_tampered", escrow_tampered_at=NOW - 60)
    refund_key = f"otc_refund:{ORDER_ID}:v4"
    refund_tx = payout_tx_hash(refund_key)
    reads(node, job("completed"), job("completed"))
    own_payout = payout_tx_hash(f"otc_payout:{ORDER_ID}")
    node.get(f"{NODE}/wallet/tx/{own_payout}", **NOT_FOUND)  # the bridge never paid this order itself
    node.post(TRANSFER_URL, json=transfer("pending") | {"tx_hash": refund_tx})
    out = refund.safe_refund_escrow(bridge, order)
    assert (out.status, out.refund_key, out.refund_tx_hash, out.refund_micro_rtc) == (
        "refund_pending", refund_key, refund_tx, REWARD)
    sent = json.loads(node.calls[-1].request.body)
    assert (sent["from_miner"], sent["to_miner"], sent["idempotency_key"], sent["amount_rtc"]) == (
        WORKER, SELLER, refund_key, REWARD / 1_000_000)
    # Next pass: the node confirmed the keyed transfer; the order ends, nothing is sent again.
    node.get(f"{NODE}/wallet/tx/{refund_tx}", json={"ok": True, "tx_hash": refund_tx, "status": "confirmed",
                                                    "confirmations": 1, "block_height": 9})
    out = refund.safe_refund_escrow(bridge, out)
    assert (out.status, out.end_cause) == ("cancelled", "escrow_tampered")
    assert calls(node) == [GET_JOB, f"GET /wallet/tx/{own_payout}", TRANSFER, GET_JOB, f"GET /wallet/tx/{refund_tx}"]
    assert_sound(bridge)


def test_a_custody_refund_of_an_order_the_node_shows_paid_goes_to_recovery(bridge, node):
    """A restored database may have lost the bridge's own settlement: the job completed into
    the worker is its release, and the buyer's payout exists. Refunding the seller too would
    pay both; the order goes to settlement_recovery, nothing is sent."""
    order = insert_order(bridge, "refund_pending", end_cause="escrow_outcome_lost")
    reads(node, job("completed"))
    own_payout = payout_tx_hash(f"otc_payout:{ORDER_ID}")
    node.get(f"{NODE}/wallet/tx/{own_payout}", json={"ok": True, "tx_hash": own_payout, "status": "confirmed",
                                                     "confirmations": 1, "block_height": 9})
    out = refund.safe_refund_escrow(bridge, order)
    assert out.status == "settlement_recovery"
    assert TRANSFER not in calls(node)
    assert any(a.startswith("alert:settlement_found_on_node:") for a in alerts(bridge))


def test_a_voided_custody_refund_goes_to_recovery(bridge, node):
    refund_key = f"otc_refund:{ORDER_ID}:v4"
    order = insert_order(bridge, "refund_pending", end_cause="escrow_tampered", escrow_tampered_at=NOW - 60,
                         refund_key=refund_key, refund_tx_hash=payout_tx_hash(refund_key), refund_micro_rtc=REWARD)
    reads(node, job("completed"))
    node.get(f"{NODE}/wallet/tx/{payout_tx_hash(refund_key)}",
             json={"ok": True, "status": "failed", "confirmations": 0, "block_height": None})
    out = refund.safe_refund_escrow(bridge, order)
    assert out.status == "settlement_recovery"
    assert alerts(bridge) == [f"alert:custody_refund_voided:{ORDER_ID}:5"]


def test_refund_of_a_job_claimed_by_a_third_party_waits_and_alerts_once(bridge, node):
    order = insert_order(bridge, "refund_pending", end_cause="cancelled")
    reads(node, job("claimed", worker="RTCthief"))
    for _ in range(2):
        out = refund.safe_refund_escrow(bridge, order)
        assert (out.status, out.order_version) == ("refund_pending", 4)
    assert alerts(bridge) == [f"alert:escrow_claimed_by_third_party:{ORDER_ID}:4"]
    alert_events = bridge.db.read("SELECT reason FROM order_events WHERE kind = 'alert'")
    assert len(alert_events) == 1 and "RTCthief" in alert_events[0]["reason"]
    assert calls(node) == [GET_JOB] * 2


@pytest.mark.parametrize(("first", "step", "answer"), [
    ("claimed", "deliver", {"body": "x", "status": 503}),
    ("claimed", "deliver", TIMEOUT),
    ("delivered", "dispute", {"json": {"error": "Job is not delivered"}, "status": 409}),
    ("open", "cancel", TIMEOUT),
])
def test_refund_without_progress_stays_refund_pending(bridge, node, first, step, answer):
    order = insert_order(bridge, "refund_pending", end_cause="cancelled")
    reads(node, job(first), job(first))
    node.post(f"{JOB_URL}/{step}", **answer)
    out = refund.safe_refund_escrow(bridge, order)
    assert (out.status, out.order_version) == ("refund_pending", 4)
    assert calls(node) == [GET_JOB, STEP + step, GET_JOB]


def test_refund_timeout_whose_cancel_landed_ends_the_order(bridge, node):
    order = insert_order(bridge, "refund_pending", end_cause="expired")
    reads(node, job("open", worker=None), job("cancelled", worker=None))
    node.post(f"{JOB_URL}/cancel", **TIMEOUT)
    assert refund.safe_refund_escrow(bridge, order).status == "expired"
    assert calls(node) == [GET_JOB, CANCEL, GET_JOB]
