"""``resolve``: a ``settlement_recovery`` order moves forward only when the node proves the
target, never back into a retryable state, and every refusal leaves the book unchanged."""

from __future__ import annotations

import pytest
from bridge_support import matched_sell, open_sell
from operator_support import (
    ADMIN,
    PAYOUT,
    admin_post,
    db_snapshot,
    events,
    node_snapshot,
    recovery_after_lost_answers,
    recovery_after_void,
    row,
    to_recovery_while_matched,
)

RESOLVE = "/admin/orders/{}/resolve"


def test_completed_only_once_the_payout_is_confirmed(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_lost_answers(api, dev_node, seller, buyer, bridge)
    before = db_snapshot(bridge)

    status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": "completed", "reason": "paid?"})
    assert status == 409 and "pending" in body["error"] and "confirmed" in body["error"], body
    assert db_snapshot(bridge) == before

    dev_node.confirm_pending()
    status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": "completed", "reason": "node says paid"},
                              operator="bob")

    assert (status, body["order"]["status"]) == (200, "completed"), body
    assert body["order"]["htlc_secret"]
    assert bridge.db.read_one("SELECT COUNT(*) FROM trades WHERE order_id = ?", (order_id,))[0] == 1
    mine = [e for e in events(bridge, order_id) if e["actor"] == "operator:bob"]
    assert len(mine) == 1 and "node says paid" in mine[0]["reason"] and "confirmed" in mine[0]["reason"]
    assert dev_node.balance(buyer.address) == 1_000_000_000 + PAYOUT


def test_payout_pending_when_the_payout_is_queued(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_lost_answers(api, dev_node, seller, buyer, bridge)
    status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": "payout_pending", "reason": "queued"})
    assert (status, body["order"]["status"]) == (200, "payout_pending"), body
    last = events(bridge, order_id)[-1]
    assert (last["kind"], last["actor"], last["to_status"]) == ("transition", "operator:alice", "payout_pending")
    assert "htlc_secret" not in body["order"]


def test_refund_proven_by_the_node_ends_the_order(api, dev_node, seller, buyer, bridge, http_client):
    order_id, secret = matched_sell(api, seller, buyer)
    job_id = row(bridge, order_id)["escrow_job_id"]
    assert dev_node.post(f"/dev/jobs/{job_id}/expire").status_code == 200  # lazily refunded on the next read
    to_recovery_while_matched(bridge, order_id)
    assert dev_node.job(job_id)["status"] == "expired"
    assert dev_node.balance(seller.address) == 1_000_000_000  # reward and fee back

    status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": "expired", "reason": "job expired"})

    assert (status, body["order"]["status"]) == (200, "expired"), body
    assert "htlc_secret" not in body["order"]
    assert row(bridge, order_id)["ended_at"] is not None


def test_cancelled_refused_while_the_escrow_was_released(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    before, node_before = db_snapshot(bridge), node_snapshot(dev_node)
    for to in ("cancelled", "expired"):
        status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": to, "reason": "give up"})
        assert status == 409 and "completed" in body["error"], body
    for to in ("completed", "payout_pending"):
        status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": to, "reason": "hope"})
        assert status == 409 and "failed" in body["error"], body
    assert db_snapshot(bridge) == before and node_snapshot(dev_node) == node_before


@pytest.mark.parametrize("to", ["matched", "open", "settling", "refund_pending", "locking", "bogus", "", 3, None])
def test_never_back_to_a_retryable_state(to, api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    before = db_snapshot(bridge)
    status, body = admin_post(http_client, RESOLVE.format(order_id), {"to": to, "reason": "undo"})
    assert (status, body["field"]) == (400, "to"), body
    assert db_snapshot(bridge) == before


def test_refusals_name_the_field_or_the_state(api, dev_node, seller, bridge, http_client):
    order_id, _ = open_sell(api, seller)
    before = db_snapshot(bridge)
    path = RESOLVE.format(order_id)
    cases = [({"to": "completed"}, "alice", 400, "reason"),
             ({"to": "completed", "reason": ""}, "alice", 400, "reason"),
             ({"to": "completed", "reason": "x"}, "", 400, "X-Operator"),
             ({"to": "completed", "reason": "x"}, "a b", 400, "X-Operator"),
             ({"to": "completed", "reason": "x", "force": True}, "alice", 400, "force"),
             ({"to": "completed", "reason": "x"}, "alice", 409, None)]
    for payload, operator, code, field in cases:
        status, body = _post(http_client, path, payload, {"X-Operator": operator})
        assert (status, body.get("field")) == (code, field), (payload, body)
    status, body = _post(http_client, path, {"to": "completed", "reason": "x"}, {})  # operator defaults to admin
    assert status == 409 and "settlement_recovery" in body["error"] and "open" in body["error"]
    assert _post(http_client, RESOLVE.format("otc_ffffffffffffffff"), {"to": "completed", "reason": "x"}, {})[0] == 404
    assert http_client.post(path, json={"to": "completed", "reason": "x"}).status_code == 401
    assert db_snapshot(bridge) == before


def _post(http_client, path, payload, headers):
    response = http_client.post(path, json=payload, headers={**ADMIN, **headers})
    return response.status_code, response.get_json()
