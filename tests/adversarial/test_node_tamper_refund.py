"""A refund that stops halfway, and a third party who acts in the gap.

The bridge refunds a held job as deliver -> dispute -> cancel (docs/escrow-node.md §1.9). A 5xx on
one step leaves the order ``refund_pending`` with the job part-way; Mallory then does the
worst the node lets her: release a ``claimed``/``delivered`` job to the worker wallet with
the public strings, or poke a ``disputed`` one (which only a cancel can end). The next
reconcile pass must end the order from the node's state: ``cancelled`` only if the node
refunded the poster, else ``settlement_recovery`` with an alert. Never a double refund,
never a payout.
"""

from __future__ import annotations

import threading

import pytest
from attack_helpers import SELL_ESCROW, SELL_FEE, Mallory, alert_codes, no_payout, order_row, transitions, watch
from bridge_support import ADMIN_TOKEN, BUYER_ETH, WORKER, open_sell

from otc_bridge.client import BridgeClient

# (refund step the node fails with a 5xx, job status the refund stops at, what Mallory does)
CASES = [
    ("deliver", "claimed", "steal"),
    ("dispute", "delivered", "steal"),
    ("cancel", "disputed", "steal"),
    ("cancel", "disputed", "cancel_as_poster"),
    ("cancel", "disputed", "nothing"),
]


def _mallory_acts(mallory: Mallory, job_id: str, stopped_at: str, move: str) -> None:
    if move == "steal" and stopped_at == "claimed":
        assert mallory.deliver(job_id).status_code == 200  # as otc_bridge_worker: a public string
        assert mallory.accept(job_id).status_code == 200
    elif move == "steal" and stopped_at == "delivered":
        assert mallory.accept(job_id).status_code == 200
    elif move == "steal":  # a disputed job can only be cancelled: every other move is refused
        for response in (mallory.accept(job_id), mallory.deliver(job_id), mallory.claim(job_id),
                         mallory.dispute(job_id)):
            assert response.status_code == 409, response.text
        assert mallory.node.job(job_id)["status"] == "disputed"
    elif move == "cancel_as_poster":
        assert mallory.cancel(job_id).status_code == 200


@pytest.mark.parametrize(("failing_step", "stopped_at", "move"), CASES)
def test_reconcile_ends_a_half_done_refund_from_the_nodes_state(failing_step, stopped_at, move, api, dev_node,
                                                                  seller, buyer, bridge):
    mallory = Mallory(dev_node)
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    dev_node.add_fault(endpoint=f"POST /agent/jobs/{job_id}/{failing_step}", kind="error_5xx", count=1)

    status, body = api.cancel(seller, order_id)

    assert (status, body["status"], body["escrow_refunded"]) == (200, "refund_pending", False), body
    assert dev_node.job(job_id)["status"] == stopped_at
    assert api.match(buyer, order_id, BUYER_ETH) == (409, {"error": "Order is not open (status: refund_pending)"})

    _mallory_acts(mallory, job_id, stopped_at, move)
    status, body = api.reconcile(ADMIN_TOKEN)
    assert status == 200, body

    order = order_row(bridge, order_id)
    job = dev_node.job(job_id)
    if job["status"] == "completed":  # Mallory released it into the worker: paid back from custody, alerted
        assert job["worker_wallet"] == WORKER
        assert (order["status"], order["refund_key"] is not None) == ("refund_pending", True)
        assert alert_codes(bridge, order_id) == ["escrow_released_during_refund"]
        assert dev_node.balance(WORKER) == 10_000_000
        assert dev_node.confirm_pending() == 1
        assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["refunded"] == 1
        assert order_row(bridge, order_id)["status"] == "cancelled"
        assert transitions(bridge, order_id)[-1] == ("refund_pending", "cancelled")
        assert dev_node.balance(seller.address) == before - SELL_FEE  # the node keeps its fee
        assert dev_node.balance(WORKER) == 0
        assert dev_node.state()["founder_community_i64"] == SELL_FEE
        order = order_row(bridge, order_id)
    else:  # the node refunded the poster (by the bridge's cancel or Mallory's): cancelled, once
        assert move != "steal" or stopped_at == "disputed"
        assert (job["status"], body["summary"]["refunded"]) == ("cancelled", 1)
        assert (order["status"], order["end_cause"]) == ("cancelled", "cancelled")
        assert dev_node.balance(seller.address) == before
        assert dev_node.balance(WORKER) == 0
        actions = [entry["action"] for entry in job["activity_log"]]
        assert actions.count("escrow_refunded") == 1
    # Whatever happened, a second pass changes nothing, and nothing but that refund was paid.
    again = api.reconcile(ADMIN_TOKEN)[1]["summary"]
    assert (again["refunded"], again["recovered"]) == (0, 0)
    assert order_row(bridge, order_id)["order_version"] == order["order_version"]
    assert no_payout(dev_node) or dev_node.state()["pending"] == {"confirmed": {"count": 1, "amount_i64": 10_000_000}}
    dev_node.assert_conserved()


def test_refund_never_reports_cancelled_while_the_job_still_holds_the_escrow(api, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    # Every cancel fails: the job stays disputed, escrow locked, however often we reconcile.
    dev_node.add_fault(endpoint=f"POST /agent/jobs/{job_id}/cancel", kind="error_5xx")

    assert api.cancel(seller, order_id)[1]["status"] == "refund_pending"
    for _ in range(3):
        assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["refund_waiting"] == 1
        assert order_row(bridge, order_id)["status"] == "refund_pending"
    assert dev_node.job(job_id)["status"] == "disputed"
    assert dev_node.balance(seller.address) == before - SELL_ESCROW

    dev_node.clear_faults()
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["refunded"] == 1
    assert order_row(bridge, order_id)["status"] == "cancelled"
    assert dev_node.balance(seller.address) == before
    dev_node.assert_conserved()


def test_accept_slipped_between_the_refunds_deliver_and_dispute_is_caught(live_bridge, dev_node, seller, bridge):
    api = BridgeClient(live_bridge)
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    # The node serves the bridge's dispute 1.5 s late: a window after the refund's deliver.
    dev_node.add_fault(endpoint=f"POST /agent/jobs/{job_id}/dispute", kind="latency", latency_ms=1500, count=1)
    answers: list = []
    canceller = threading.Thread(target=lambda: answers.append(api.cancel(seller, order_id)))
    canceller.start()
    watch(lambda: dev_node.job(job_id)["status"] == "delivered", "the refund's deliver")
    assert Mallory(dev_node).accept(job_id).status_code == 200
    canceller.join(30)

    status, body = answers[0]
    assert (status, body["status"], body["escrow_refunded"]) == (200, "refund_pending", False), body
    assert alert_codes(bridge, order_id) == ["escrow_released_during_refund"]
    # The reward sits in the worker: it goes back to the seller with one keyed transfer.
    assert dev_node.state()["pending"] == {"pending": {"count": 1, "amount_i64": 10_000_000}}
    assert dev_node.confirm_pending() == 1
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert order_row(bridge, order_id)["status"] == "cancelled"
    assert dev_node.balance(WORKER) == 0
    assert dev_node.balance(seller.address) == before - SELL_FEE
    dev_node.assert_conserved()
