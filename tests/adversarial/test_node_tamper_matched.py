"""A third party on the node's unauthenticated ``/agent/*`` routes, against matched orders.

The escrow may only leave for the buyer, only with the preimage, and only once. If
Mallory (or the seller, using the public worker string) moves the job between match and
confirm, the bridge notices at the next confirm or reconcile pass, whichever comes first: a
job taken back, expired or frozen in ``disputed`` ends the match (a confirm answers 409 and
never stores the preimage), and the escrow returns to the seller by the node's state; a job
delivered or released to the bridge's own worker is held in custody for the match, so the
buyer's preimage pays the buyer exactly once, and the seller is paid back at ``settle_by``.
"""

from __future__ import annotations

import secrets
import threading

import pytest
from attack_helpers import Mallory, alert_codes, no_payout, order_row, transitions, watch
from bridge_support import ADMIN_TOKEN, WORKER, matched_buy, matched_sell

from otc_bridge.client import BridgeClient

SIDES = ["sell", "buy"]


def _matched(side: str, api, seller, buyer) -> tuple[str, str, int]:
    """A matched order whose escrow the seller locked: ``(order_id, preimage, amount)``."""
    if side == "sell":
        return (*matched_sell(api, seller, buyer), 10_000_000)
    return (*matched_buy(api, buyer, seller), 5_000_000)


def _escrow(amount: int) -> int:
    return amount * 105 // 100


@pytest.mark.parametrize("attack", ["deliver+dispute", "refund_to_poster", "expire"])
@pytest.mark.parametrize("side", SIDES)
def test_confirm_after_the_escrow_went_back_is_refused_and_the_match_ends(side, attack, api, dev_node, seller,
                                                                          buyer, bridge):
    """Attacks 1 and 3: the escrow is taken back (or frozen in ``disputed``) while matched. A
    confirm answers 409 without storing the preimage or trying a release; the order leaves
    the match and the escrow returns to the seller by the node's state; nobody is paid."""
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret, amount = _matched(side, api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")

    assert status == 409 and body["error"].startswith("The escrow was taken back on the node"), body
    order = order_row(bridge, order_id)
    # A sell order ends; a buy order (the taker's escrow was taken) goes back on the book.
    assert order["status"] == ("cancelled" if side == "sell" else "open"), dict(order)
    assert order["htlc_secret"] is None
    assert alert_codes(bridge, order_id) == ["escrow_tampered"]
    moves = transitions(bridge, order_id)
    assert moves[moves.index(("matched", "settling")) + 1] == ("settling", "matched")  # undone at once
    assert ("settling", "payout_pending") not in moves
    job = dev_node.job(job_id)
    assert job["status"] == {"deliver+dispute": "cancelled", "refund_to_poster": "cancelled",
                             "expire": "expired"}[attack]
    assert [entry["action"] for entry in job["activity_log"]].count("completed") == 0
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[0] == 409
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert no_payout(dev_node)
    assert dev_node.balance(buyer.address) == buyer_before
    assert dev_node.balance(WORKER) == 0
    assert dev_node.balance(seller.address) == seller_before  # reward and fee came back
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", ["deliver", "deliver+dispute", "refund_to_poster", "steal_to_worker"])
@pytest.mark.parametrize("side", SIDES)
def test_the_watch_sees_a_matched_escrow_move_within_one_pass(side, attack, api, dev_node, seller, buyer, bridge):
    """The reconcile pass's escrow watch, before anyone confirms: a job delivered as the worker
    is taken into custody at once (the seller can no longer dispute it away), a job completed
    into the worker is kept for the match, a job taken back ends the match."""
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret, amount = _matched(side, api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["tampered"] == 1
    order = order_row(bridge, order_id)
    assert alert_codes(bridge, order_id) == ["escrow_tampered"]
    relisted = side == "buy" and attack in ("deliver+dispute", "refund_to_poster")
    # Both traders see it, until a buy order goes back on the book without its taker.
    view = api.order(order_id)[1]["order"]
    assert view["escrow_tampered"] is not relisted and ("escrow_notice" in view) is not relisted
    if not relisted:
        assert view["escrow_notice"].startswith("The escrow was taken back on the node")
    if attack in ("deliver", "steal_to_worker"):
        assert order["status"] == "matched"
        assert (dev_node.job(job_id)["status"], dev_node.balance(WORKER)) == ("completed", amount)
        # The seller cannot take it back any more; the buyer's preimage still settles, once.
        assert Mallory(dev_node).dispute(job_id).status_code == 409
        status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")
        assert (status, body["status"]) == (200, "payout_pending"), body
        assert dev_node.confirm_pending() == 1
        assert api.reconcile(ADMIN_TOKEN)[0] == 200
        assert order_row(bridge, order_id)["status"] == "completed"
        assert dev_node.balance(buyer.address) == buyer_before + amount
        assert dev_node.balance(seller.address) == seller_before - _escrow(amount)
    else:
        assert order["status"] == ("cancelled" if side == "sell" else "open")
        assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[0] == 409
        assert no_payout(dev_node)
        assert dev_node.balance(buyer.address) == buyer_before
        assert dev_node.balance(seller.address) == seller_before
    assert dev_node.balance(WORKER) == 0
    dev_node.assert_conserved()


@pytest.mark.parametrize("side", SIDES)
def test_a_match_held_in_custody_unwinds_to_a_refund_from_the_worker(side, api, dev_node, seller, buyer, bridge):
    """Nobody confirms a match whose escrow the bridge took into custody: at ``settle_by`` the
    seller is paid back from the worker wallet (the node keeps its fee), never twice."""
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret, amount = _matched(side, api, seller, buyer)
    Mallory(dev_node).hit(order_row(bridge, order_id)["escrow_job_id"], "steal_to_worker")
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["tampered"] == 1
    past_settle_by = bridge.now() + 49 * 3600
    bridge.clock = lambda: past_settle_by
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["unwound"] == 1
    assert order_row(bridge, order_id)["status"] == "refund_pending"
    assert dev_node.confirm_pending() == 1
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    order = order_row(bridge, order_id)
    assert order["status"] == ("cancelled" if side == "sell" else "open")
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[0] in (409, 410)
    assert dev_node.balance(seller.address) == seller_before - (_escrow(amount) - amount)
    assert (dev_node.balance(buyer.address), dev_node.balance(WORKER)) == (buyer_before, 0)
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", ["deliver", "steal_to_worker"])
@pytest.mark.parametrize("side", SIDES)
def test_confirm_after_third_party_release_to_the_worker_pays_the_buyer_once(side, attack, api, dev_node, seller,
                                                                             buyer, bridge):
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret, amount = _matched(side, api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")

    # The job ends completed with the bridge's worker as worker: the "completed -> pay" branch.
    assert (status, body["status"]) == (200, "payout_pending"), body
    job = dev_node.job(job_id)
    assert (job["status"], job["worker_wallet"]) == ("completed", WORKER)
    assert [entry["action"] for entry in job["activity_log"]].count("completed") == 1
    assert dev_node.state()["pending"] == {"pending": {"count": 1, "amount_i64": amount}}
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[0] == 409

    assert dev_node.confirm_pending() == 1
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 1
    assert order_row(bridge, order_id)["status"] == "completed"
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 0
    assert dev_node.state()["pending"] == {"confirmed": {"count": 1, "amount_i64": amount}}
    assert dev_node.balance(buyer.address) == buyer_before + amount
    assert dev_node.balance(seller.address) == seller_before - _escrow(amount)
    assert dev_node.balance(WORKER) == 0
    dev_node.assert_conserved()


@pytest.mark.parametrize("attack", ["deliver", "steal_to_worker"])
def test_third_party_release_before_confirm_is_alerted(attack, api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    Mallory(dev_node).hit(order_row(bridge, order_id)["escrow_job_id"], attack)
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[0] == 200
    assert alert_codes(bridge, order_id) != []


@pytest.mark.parametrize("side", SIDES)
def test_no_release_without_the_valid_preimage(side, api, dev_node, seller, buyer, bridge):
    order_id, secret, _ = _matched(side, api, seller, buyer)
    order = order_row(bridge, order_id)
    job_id, version = order["escrow_job_id"], order["order_version"]
    refusals = [
        ({"secret": secrets.token_hex(32)}, 400, "Invalid HTLC secret"),
        ({"secret": order["htlc_hash"]}, 400, "Invalid HTLC secret"),  # the public hash is not the preimage
        ({"secret": "zz" * 32}, 400, "Invalid HTLC secret format"),
        ({"secret": secret, "wallet": "RTC" + "ab" * 20}, 403, "Only the RTC seller or buyer can confirm settlement"),
    ]
    for extra, code, error in refusals:
        status, body = api.confirm(order_id, quote_tx="0xquote", **extra)
        assert (status, body["error"]) == (code, error), extra
    assert order_row(bridge, order_id)["order_version"] == version
    assert dev_node.job(job_id)["status"] == "claimed"

    # Even with the reward already in the bridge's worker wallet, a wrong preimage pays nobody.
    Mallory(dev_node).hit(job_id, "steal_to_worker")
    assert api.confirm(order_id, secret=secrets.token_hex(32), quote_tx="0xquote")[0] == 400
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert order_row(bridge, order_id)["status"] == "matched"
    assert no_payout(dev_node)
    dev_node.assert_conserved()


def test_dispute_slipped_between_the_bridges_deliver_and_accept_is_caught(live_bridge, dev_node, seller, buyer,
                                                                          bridge):
    api = BridgeClient(live_bridge)
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret = matched_sell(api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    mallory = Mallory(dev_node)
    # The node serves the bridge's accept 1.5 s late: a window after its deliver.
    dev_node.add_fault(endpoint=f"POST /agent/jobs/{job_id}/accept", kind="latency", latency_ms=1500, count=1)
    answers: list = []
    confirmer = threading.Thread(target=lambda: answers.append(api.confirm(order_id, secret=secret, quote_tx="0xq")))
    confirmer.start()
    watch(lambda: dev_node.job(job_id)["status"] == "delivered", "the bridge's deliver")
    assert mallory.dispute(job_id).status_code == 200  # with the seller's public wallet string
    confirmer.join(30)

    status, body = answers[0]
    assert (status, body["status"]) == (200, "settlement_recovery"), body
    assert alert_codes(bridge, order_id) == ["escrow_job_moved"]
    assert dev_node.job(job_id)["status"] == "disputed"
    # The seller (or anyone) can now take the escrow back; the bridge already alerted and pays nobody.
    assert mallory.cancel(job_id).status_code == 200
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert order_row(bridge, order_id)["status"] == "settlement_recovery"
    assert no_payout(dev_node)
    assert dev_node.balance(buyer.address) == buyer_before
    assert dev_node.balance(seller.address) == seller_before
    dev_node.assert_conserved()
