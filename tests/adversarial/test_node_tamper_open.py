"""A third party on the node's unauthenticated ``/agent/*`` routes, against open sell orders.

(a) While the bridge holds the job (claimed by its worker), every move Mallory can make
is refused by the node, and the trade still settles end to end. (b, c) When a move does
succeed (Mallory sends the public worker string ``otc_bridge_worker`` or the poster's
wallet, or the job passes its TTL), the bridge must notice at the next touch: a match is
refused (409, recorded, alerted), a cancel never reports a refund the node did not make,
and nobody is ever paid from that escrow. Front-running is in ``test_node_front_run.py``.
"""

from __future__ import annotations

import pytest
from attack_helpers import (
    MALLORY,
    SELL_AMOUNT,
    SELL_ESCROW,
    SELL_FEE,
    Mallory,
    alert_codes,
    no_payout,
    order_row,
    transitions,
)
from bridge_support import ADMIN_TOKEN, BUYER_ETH, WORKER, open_sell

WITHDRAWN = "Order escrow is no longer held on the node; the order was withdrawn"
# What each successful attack leaves on the node before the bridge looks again.
REFUNDABLE = ["deliver", "deliver+dispute", "refund_to_poster", "expire"]


def _assert_every_move_refused(mallory: Mallory, job_id: str, poster: str) -> None:
    refusals = [
        (mallory.claim(job_id), 409, "Job is not open (status: claimed)"),
        (mallory.claim(job_id, worker=WORKER), 409, "Job is not open (status: claimed)"),
        (mallory.deliver(job_id, worker=MALLORY), 403, "Only the assigned worker can deliver"),
        (mallory.dispute(job_id, poster), 409, "Can only dispute delivered jobs (current: claimed)"),
        (mallory.accept(job_id, poster), 409, "Job must be in 'delivered' status (current: claimed)"),
        (mallory.cancel(job_id, poster), 409, "Can only cancel open or disputed jobs (current: claimed)"),
        (mallory.cancel(job_id, MALLORY), 403, "Only the poster can cancel"),
    ]
    for response, code, error in refusals:
        assert (response.status_code, response.json()["error"]) == (code, error)
    job = mallory.node.job(job_id)
    assert (job["status"], job["worker_wallet"], job["escrow_i64"]) == ("claimed", WORKER, SELL_ESCROW)


def test_held_escrow_resists_every_third_party_move_and_still_settles(api, dev_node, seller, buyer, bridge):
    mallory = Mallory(dev_node)
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    poster = mallory.poster_of(job_id)  # public: the job detail names the poster
    assert poster == seller.address

    _assert_every_move_refused(mallory, job_id, poster)
    assert api.match(buyer, order_id, BUYER_ETH)[0] == 200
    _assert_every_move_refused(mallory, job_id, poster)

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")
    assert (status, body["status"]) == (200, "payout_pending")
    assert dev_node.confirm_pending() == 1
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 1
    assert order_row(bridge, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == buyer_before + 10_000_000
    assert dev_node.balance(seller.address) == seller_before - SELL_ESCROW
    assert dev_node.balance(WORKER) == 0
    assert alert_codes(bridge, order_id) == []
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", REFUNDABLE)
def test_match_after_escrow_moved_is_refused_recorded_and_refunded_once(attack, api, dev_node, seller, buyer,
                                                                        bridge):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)

    status, body = api.match(buyer, order_id, BUYER_ETH)

    assert (status, body["error"]) == (409, WITHDRAWN), body
    order = order_row(bridge, order_id)
    assert (order["status"], order["end_cause"], order["taker_wallet"]) == ("cancelled", "escrow_moved", None)
    assert ("open", "matched") not in transitions(bridge, order_id)
    assert alert_codes(bridge, order_id) == ["escrow_job_moved"]
    # The node says the escrow went back to the poster, once: by Mallory, by expiry, or by
    # the bridge finishing the refund from where Mallory left the job.
    assert dev_node.job(job_id)["status"] == ("expired" if attack == "expire" else "cancelled")
    assert dev_node.balance(seller.address) == before
    assert no_payout(dev_node) and dev_node.balance(WORKER) == 0
    dev_node.assert_conserved()


@pytest.mark.parametrize("action", ["match", "cancel", "watch"])
def test_escrow_stolen_into_the_worker_while_open_is_paid_back_to_the_seller(action, api, dev_node, seller, buyer,
                                                                              bridge):
    """Attack 2 of the escrow-under-attack issue: anyone delivers as the worker and accepts as
    the poster; the reward lands in the bridge's worker wallet. The order leaves the book and
    the worker pays it back to the seller with a keyed transfer (the node keeps its fee)."""
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, "steal_to_worker")  # deliver as otc_bridge_worker, accept as the poster
    assert dev_node.balance(WORKER) == SELL_AMOUNT

    if action == "match":
        status, body = api.match(buyer, order_id, BUYER_ETH)
        assert (status, body["error"]) == (409, WITHDRAWN), body
        expected_alerts = ["escrow_job_moved"]
    elif action == "cancel":
        status, body = api.cancel(seller, order_id)
        assert (status, body["status"], body["escrow_refunded"]) == (200, "refund_pending", False), body
        expected_alerts = ["escrow_released_during_refund"]
    else:
        assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["tampered"] == 1
        expected_alerts = ["escrow_tampered"]
    assert alert_codes(bridge, order_id) == expected_alerts
    order = order_row(bridge, order_id)
    assert (order["status"], order["taker_wallet"]) == ("refund_pending", None)
    assert order["refund_key"] == f"otc_refund:{order_id}:v{order['order_version'] - 1}"
    assert dev_node.state()["pending"] == {"pending": {"count": 1, "amount_i64": SELL_AMOUNT}}
    # Passes before the node confirms change nothing; the keyed transfer is never sent twice.
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert dev_node.state()["pending"] == {"pending": {"count": 1, "amount_i64": SELL_AMOUNT}}
    assert dev_node.confirm_pending() == 1
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert order_row(bridge, order_id)["status"] == "cancelled"
    assert dev_node.balance(WORKER) == 0
    assert dev_node.balance(seller.address) == before - SELL_FEE  # only the node's fee is lost
    assert dev_node.state()["founder_community_i64"] == SELL_FEE
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", REFUNDABLE)
def test_cancel_after_escrow_moved_ends_cancelled_only_with_the_nodes_refund(attack, api, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)

    status, body = api.cancel(seller, order_id)

    assert (status, body["status"], body["escrow_refunded"]) == (200, "cancelled", True), body
    assert dev_node.job(job_id)["status"] in ("cancelled", "expired")
    assert dev_node.balance(seller.address) == before  # refunded exactly once
    assert no_payout(dev_node)
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", ["deliver", "deliver+dispute", "refund_to_poster"])
def test_cancel_after_escrow_moved_by_a_third_party_is_alerted(attack, api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)
    assert api.cancel(seller, order_id)[1]["status"] == "cancelled"
    assert alert_codes(bridge, order_id) != []
