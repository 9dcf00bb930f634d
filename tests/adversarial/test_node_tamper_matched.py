"""A third party on the node's unauthenticated ``/agent/*`` routes, against matched orders.

The escrow may only leave for the buyer, only with the preimage, and only once. If
Mallory (or the seller, using the public worker string) moves the job between match and
confirm, the confirm must notice: a job refunded, expired or frozen in ``disputed`` puts
the order in ``settlement_recovery`` with an alert and pays nobody; a job already
released to the bridge's own worker wallet is the "completed -> pay" branch, which pays
the buyer exactly once.
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
def test_confirm_after_escrow_moved_goes_to_recovery_and_pays_nobody(side, attack, api, dev_node, seller, buyer,
                                                                     bridge):
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret, amount = _matched(side, api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    Mallory(dev_node).hit(job_id, attack)

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")

    assert (status, body["ok"], body["status"], body["rtc_transfer_status"]) == (
        200, False, "settlement_recovery", "manual_recovery_required"), body
    assert transitions(bridge, order_id)[-2:] == [("matched", "settling"), ("settling", "settlement_recovery")]
    assert alert_codes(bridge, order_id) == ["escrow_job_moved"]
    assert "htlc_secret" not in api.order(order_id)[1]["order"]
    job = dev_node.job(job_id)
    assert job["status"] == {"deliver+dispute": "disputed", "refund_to_poster": "cancelled",
                             "expire": "expired"}[attack]
    assert [entry["action"] for entry in job["activity_log"]].count("completed") == 0
    # A retry, and the reconciler, leave it for an operator: nothing is paid from here.
    retry = api.confirm(order_id, secret=secret, quote_tx="0xquote")
    assert retry == (409, {"error": "Order must be matched to confirm (current: settlement_recovery)"})
    assert api.reconcile(ADMIN_TOKEN)[0] == 200
    assert order_row(bridge, order_id)["status"] == "settlement_recovery"
    assert no_payout(dev_node)
    assert dev_node.balance(buyer.address) == buyer_before
    assert dev_node.balance(WORKER) == 0
    still_locked = _escrow(amount) if attack == "deliver+dispute" else 0
    assert dev_node.balance(seller.address) == seller_before - still_locked
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
