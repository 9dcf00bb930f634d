"""``attention``: the orders an operator must look at, each with its audit trail."""

from __future__ import annotations

from bridge_support import matched_sell, open_sell
from operator_support import ADMIN, payout_pending_sell, recovery_after_void, row

from otc_bridge.operator import attention


def _refund_pending(api, dev_node, seller) -> str:
    order_id, _ = open_sell(api, seller, amount_micro_rtc=2_000_000)
    dev_node.add_fault(endpoint="POST /agent/jobs/<job_id>/cancel", kind="error_5xx", count=1)
    status, body = api.cancel(seller, order_id)
    assert (status, body["status"]) == (200, "refund_pending"), body
    return order_id


def _stuck_settling(api, dev_node, seller, buyer) -> str:
    order_id, secret = matched_sell(api, seller, buyer, amount_micro_rtc=3_000_000)
    dev_node.add_fault(endpoint="POST /agent/jobs/<job_id>/accept", kind="error_5xx", count=1)
    assert api.confirm(order_id, secret=secret, quote_tx="0xq")[1]["status"] == "settling"
    return order_id


def test_lists_the_orders_needing_an_operator_with_their_events(api, dev_node, seller, buyer, bridge, http_client):
    recovery = recovery_after_void(api, dev_node, seller, buyer, bridge)
    refund = _refund_pending(api, dev_node, seller)
    pending = payout_pending_sell(api, seller, buyer, bridge, amount_micro_rtc=4_000_000)
    settling = _stuck_settling(api, dev_node, seller, buyer)
    open_sell(api, seller, amount_micro_rtc=5_000_000)

    listed = {item["order_id"]: item for item in attention.attention(bridge)}
    assert set(listed) == {recovery, refund}  # payout_pending and settling are still young

    item = listed[recovery]
    assert (item["status"], item["updated_at"]) == ("settlement_recovery", row(bridge, recovery)["updated_at"])
    assert [e["event_id"] for e in item["events"]] == sorted(e["event_id"] for e in item["events"])
    moves = [(e["from_status"], e["to_status"]) for e in item["events"] if e["kind"] == "transition"]
    assert moves[-2:] == [("settling", "payout_pending"), ("payout_pending", "settlement_recovery")]
    assert any(e["kind"] == "alert" and e["reason"].startswith("payout_voided") for e in item["events"])
    assert "htlc_secret" not in item and "payout_key" not in item

    real_clock = bridge.clock
    bridge.clock = lambda: real_clock() + bridge.config.settlement_stuck_seconds
    assert {i["order_id"] for i in attention.attention(bridge)} == {recovery, refund, settling}
    bridge.clock = lambda: real_clock() + 3600
    assert {i["order_id"] for i in attention.attention(bridge)} == {recovery, refund, settling, pending}
    bridge.clock = real_clock
    assert {i["order_id"] for i in attention.attention(bridge, older_than_seconds=0)} == {recovery, refund, pending}

    response = http_client.get("/admin/attention?older_than=0", headers=ADMIN)
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and {i["order_id"] for i in body["orders"]} == {recovery, refund, pending}
    assert http_client.get("/admin/attention").status_code == 401
    for bad in ("-1", "soon", "1.5", "²"):
        response = http_client.get("/admin/attention", headers=ADMIN, query_string={"older_than": bad})
        assert (response.status_code, response.get_json()["field"]) == (400, "older_than")


def test_nothing_needs_attention_on_a_quiet_book(api, seller, bridge, http_client):
    open_sell(api, seller)
    assert attention.attention(bridge) == []
    assert http_client.get("/admin/attention", headers=ADMIN).get_json() == {"ok": True, "orders": []}
