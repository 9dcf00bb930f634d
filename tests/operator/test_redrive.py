"""``redrive-payout``: the same key is safe to re-send; a voided key needs an audited new key,
which is never issued while any payout of the order is pending or confirmed."""

from __future__ import annotations

from operator_support import (
    PAYOUT,
    WORKER,
    admin_post,
    db_snapshot,
    events,
    node_snapshot,
    payout_status,
    pending_count,
    recovery_after_lost_answers,
    recovery_after_void,
    row,
    to_recovery_while_matched,
)

from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.settlement import reconcile

REDRIVE = "/admin/orders/{}/redrive-payout"


def test_same_key_after_a_lost_answer_queues_nothing_new(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_lost_answers(api, dev_node, seller, buyer, bridge)
    key = row(bridge, order_id)["payout_key"]

    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "transfer answer lost"})

    assert status == 200, body
    assert (body["order"]["status"], body["phase"]) == ("payout_pending", "pending")
    assert row(bridge, order_id)["payout_key"] == key == f"otc_payout:{order_id}"
    assert pending_count(dev_node) == 1  # the node answered with the row it already had
    note = [e for e in events(bridge, order_id) if e["actor"] == "operator:alice"]
    assert len(note) == 2 and "transfer answer lost" in note[0]["reason"] and note[0]["node_ref"] == key
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert row(bridge, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == 1_000_000_000 + PAYOUT
    dev_node.assert_conserved()


def test_same_key_from_payout_pending_is_a_harmless_replay(api, dev_node, seller, buyer, bridge, http_client):
    from operator_support import payout_pending_sell

    order_id = payout_pending_sell(api, seller, buyer, bridge)
    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "buyer asked", "new_key": False})
    assert (status, body["order"]["status"]) == (200, "payout_pending"), body
    assert pending_count(dev_node) == 1


def test_after_a_void_the_same_key_is_refused_and_nothing_changes(api, dev_node, seller, buyer, bridge,
                                                                  http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    db_before, node_before = db_snapshot(bridge), node_snapshot(dev_node)

    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "try again"})

    assert status == 409 and "new key" in body["error"] and "voided" in body["error"], body
    assert db_snapshot(bridge) == db_before
    assert node_snapshot(dev_node) == node_before


def test_new_key_after_a_void_pays_exactly_once(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    worker_before = dev_node.balance(WORKER)

    status, body = admin_post(http_client, REDRIVE.format(order_id),
                              {"reason": "node operator voided it by mistake (ticket 42)", "new_key": True})

    assert status == 200, body
    new_key = f"otc_payout:{order_id}:1"
    order = row(bridge, order_id)
    assert (order["status"], order["payout_key"], order["payout_tx_hash"]) == (
        "payout_pending", new_key, payout_tx_hash(new_key))
    assert body["order"]["payout_tx_hash"] == payout_tx_hash(new_key)
    intent = next(e for e in events(bridge, order_id) if e["node_ref"] == new_key)
    assert (intent["kind"], intent["actor"], intent["node_outcome"]) == ("note", "operator:alice", "intent")
    assert "ticket 42" in intent["reason"]
    assert payout_status(dev_node, f"otc_payout:{order_id}") == "failed"
    assert payout_status(dev_node, new_key) == "pending"

    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert row(bridge, order_id)["status"] == "completed"
    assert api.order(order_id)[1]["order"]["htlc_secret"]
    assert dev_node.balance(buyer.address) == 1_000_000_000 + PAYOUT
    assert dev_node.balance(WORKER) == worker_before - PAYOUT
    dev_node.assert_conserved()


def test_second_new_key_while_the_first_is_pending_is_refused(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    # The first new-key transfer lands but its answer and the lookup are lost: still recovery.
    first = f"otc_payout:{order_id}:1"
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="timeout_after", latency_ms=2500, count=1)
    dev_node.add_fault(endpoint=f"GET /wallet/tx/{payout_tx_hash(first)}", kind="error_5xx", status=503, count=1)
    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "first", "new_key": True})
    assert status == 502 and "unknown" in body["error"], body
    assert row(bridge, order_id)["status"] == "settlement_recovery"
    assert row(bridge, order_id)["payout_key"] == first and payout_status(dev_node, first) == "pending"
    db_before, node_before = db_snapshot(bridge), node_snapshot(dev_node)

    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "second", "new_key": True})

    assert status == 409 and "pending" in body["error"] and "twice" in body["error"], body
    assert db_snapshot(bridge) == db_before and node_snapshot(dev_node) == node_before
    # The same (first new) key is the way on, and still pays once.
    assert admin_post(http_client, REDRIVE.format(order_id), {"reason": "same key"})[0] == 200
    assert pending_count(dev_node) == 1
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert dev_node.balance(buyer.address) == 1_000_000_000 + PAYOUT
    dev_node.assert_conserved()


def test_new_key_is_refused_while_the_current_payout_is_pending(api, dev_node, seller, buyer, bridge,
                                                                http_client):
    order_id = recovery_after_lost_answers(api, dev_node, seller, buyer, bridge)
    db_before, node_before = db_snapshot(bridge), node_snapshot(dev_node)

    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "impatient", "new_key": True})

    assert status == 409 and "pending" in body["error"] and "twice" in body["error"], body
    assert db_snapshot(bridge) == db_before and node_snapshot(dev_node) == node_before


def test_numbering_continues_after_a_voided_new_key(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    assert admin_post(http_client, REDRIVE.format(order_id), {"reason": "first", "new_key": True})[0] == 200
    first = row(bridge, order_id)["payout_tx_hash"]
    assert dev_node.post("/pending/void", {"tx_hash": first}, admin=True).status_code == 200
    reconcile.run_once(bridge)
    assert row(bridge, order_id)["status"] == "settlement_recovery"

    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "second", "new_key": True})

    assert status == 200, body
    assert row(bridge, order_id)["payout_key"] == f"otc_payout:{order_id}:2"
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert dev_node.balance(buyer.address) == 1_000_000_000 + PAYOUT
    dev_node.assert_conserved()


def test_bad_input_is_refused_before_anything(api, dev_node, seller, buyer, bridge, http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    before = db_snapshot(bridge)
    path = REDRIVE.format(order_id)
    cases = [
        (path, {}, "alice", 400, None),  # {} is "JSON body required", as the reference has it
        (path, {"reason": "   "}, "alice", 400, "reason"),
        (path, {"reason": "x", "new_key": "yes"}, "alice", 400, "new_key"),
        (path, {"reason": "x", "extra": 1}, "alice", 400, "extra"),
        (path, {"reason": "x"}, "bad name!", 400, "X-Operator"),
        (REDRIVE.format("otc_0000000000000000"), {"reason": "x"}, "alice", 404, None),
    ]
    for url, payload, operator, code, field in cases:
        status, body = admin_post(http_client, url, payload, operator=operator)
        assert (status, body.get("field")) == (code, field), (payload, body)
    assert http_client.post(path, json={"reason": "x"}).status_code == 401
    assert db_snapshot(bridge) == before


def test_an_order_that_never_settled_has_nothing_to_redrive(api, dev_node, seller, buyer, bridge, http_client):
    from bridge_support import open_sell

    order_id, _ = open_sell(api, seller)
    before = db_snapshot(bridge)
    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "x"})
    assert status == 409 and "open" in body["error"]
    assert db_snapshot(bridge) == before


def test_escrow_not_released_to_the_bridge_is_never_paid_from_the_pool(api, dev_node, seller, buyer, bridge,
                                                                       http_client):
    from bridge_support import matched_sell

    order_id, secret = matched_sell(api, seller, buyer)
    job_id = row(bridge, order_id)["escrow_job_id"]
    assert dev_node.post(f"/dev/jobs/{job_id}/expire").status_code == 200
    to_recovery_while_matched(bridge, order_id, with_payout_key=True)
    before = db_snapshot(bridge)

    for new_key in (False, True):
        status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "x", "new_key": new_key})
        assert status == 409 and "expired" in body["error"], body
    assert db_snapshot(bridge) == before
    assert pending_count(dev_node) == 0


def test_rate_limited_or_refused_transfer_leaves_the_order_in_recovery(api, dev_node, seller, buyer, bridge,
                                                                       http_client):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="rate_limit", count=1)
    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "first", "new_key": True})
    assert status == 502 and "rate limiting" in body["error"] and body["retry_after_seconds"] > 0, body
    order = row(bridge, order_id)
    assert (order["status"], order["payout_key"]) == ("settlement_recovery", f"otc_payout:{order_id}:1")
    assert pending_count(dev_node) == 0

    # The recorded key was never sent: re-driving it (same key) pays once.
    status, body = admin_post(http_client, REDRIVE.format(order_id), {"reason": "after the limit"})
    assert (status, body["order"]["status"]) == (200, "payout_pending"), body
    assert pending_count(dev_node) == 1 and payout_status(dev_node, f"otc_payout:{order_id}:1") == "pending"


def test_a_second_operator_cannot_slip_in_between_intent_and_send(api, dev_node, seller, buyer, bridge):
    """The order's CAS alone would let a second new-key re-drive read the first one's key
    (recorded, not yet sent, so ``not_found`` on the node) and issue another: a double pay."""
    import threading

    from otc_bridge.domain.errors import Conflict
    from otc_bridge.operator import redrive

    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    first = f"otc_payout:{order_id}:1"
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="latency", latency_ms=1000, count=1)
    alice = threading.Thread(target=redrive.redrive_payout, args=(bridge, order_id),
                             kwargs={"operator_name": "alice", "reason": "first", "new_key": True})
    alice.start()
    while bridge.db.read_one("SELECT 1 FROM order_events WHERE node_ref = ?", (first,)) is None:
        assert alice.is_alive()  # watch for Alice's recorded intent (a read, no sleep)
    assert payout_status(dev_node, first) == "not_found"  # her transfer is still on its way

    try:
        redrive.redrive_payout(bridge, order_id, operator_name="bob", reason="second", new_key=True)
        raise AssertionError("a second new key was issued while the first was in flight")
    except Conflict as exc:
        assert "in progress" in exc.error
    alice.join(30)

    assert row(bridge, order_id)["payout_key"] == first and row(bridge, order_id)["status"] == "payout_pending"
    assert pending_count(dev_node) == 1
