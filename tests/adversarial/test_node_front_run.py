"""Front-running: Mallory claims a fresh escrow job before the bridge's own claim.

Open jobs are listed publicly (docs/escrow-node.md §2), and between ``POST /agent/jobs`` and the
bridge's claim there is a window. The dev node widens it: it commits the job, then answers
the bridge 1.5 s late. The bridge must notice at its claim (409, read back: worker is
``mallory``), keep the order off the book / unmatched, alert, and refund when the node
lets it; if Mallory goes on to steal the reward, the order lands in
``settlement_recovery`` with an alert, never ``cancelled``.
"""

from __future__ import annotations

import threading

import pytest
from attack_helpers import MALLORY, Mallory, alert_codes, no_payout, order_row, transitions, watch
from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH, WORKER

from otc_bridge.client import BridgeClient

AMOUNT = {"sell": 10_000_000, "buy": 5_000_000}


def _reconcile(base_url: str) -> dict:
    status, body = BridgeClient(base_url).reconcile(ADMIN_TOKEN)
    assert status == 200, body
    return body["summary"]


def _open_job_of(dev_node, poster: str) -> str | None:
    jobs = dev_node.get("/agent/jobs", status="open").json()["jobs"]
    return next((j["job_id"] for j in jobs if j["poster_wallet"] == poster), None)


@pytest.mark.parametrize("then", ["steal", "hold_until_ttl"])
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_front_run_claim_is_caught_and_the_order_never_trades(side, then, live_bridge, dev_node, seller, buyer,
                                                              bridge):
    mallory = Mallory(dev_node)
    api = BridgeClient(live_bridge)
    amount, escrow = AMOUNT[side], AMOUNT[side] * 105 // 100
    before = dev_node.balance(seller.address)  # the seller posts the escrow on both sides
    if side == "buy":
        status, created = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=amount,
                                           price_nano_quote=60_000_000, eth_address=BUYER_ETH)
        assert status == 201, created
        request = lambda: api.match(seller, created["order_id"], SELLER_ETH)  # noqa: E731
    else:
        request = lambda: api.create_order(seller, side="sell", pair="RTC/USDC",  # noqa: E731
                                           amount_micro_rtc=amount, price_nano_quote=50_000_000,
                                           eth_address=SELLER_ETH)
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="timeout_after", latency_ms=1500, count=1)
    answers: list = []
    requester = threading.Thread(target=lambda: answers.append(request()))
    requester.start()
    job_id = watch(lambda: _open_job_of(dev_node, seller.address), "the seller's job on the open list")
    assert mallory.claim(job_id).status_code == 200  # Mallory's claim lands first
    requester.join(30)

    status, body = answers[0]
    assert status == 502 and "htlc_secret" not in body, body
    order_id = body["order_id"]
    order = order_row(bridge, order_id)
    cause = "escrow_rejected" if side == "sell" else "taker_escrow_rejected"
    assert (order["status"], order["end_cause"]) == ("refund_pending", cause)
    assert not {("locking", "open"), ("locking", "matched")} & set(transitions(bridge, order_id))
    assert alert_codes(bridge, order_id) == ["escrow_rejected", "escrow_claimed_by_third_party"]
    assert dev_node.job(job_id)["worker_wallet"] == MALLORY

    if then == "steal":  # deliver as herself, accept with the public poster string: the node pays Mallory
        assert mallory.deliver(job_id, worker=MALLORY).status_code == 200
        assert mallory.accept(job_id).status_code == 200
        assert _reconcile(live_bridge)["recovered"] == 1
        assert order_row(bridge, order_id)["status"] == "settlement_recovery"
        assert alert_codes(bridge, order_id)[-1] == "escrow_released_during_refund"
        assert dev_node.balance(MALLORY) == amount
        assert dev_node.balance(seller.address) == before - escrow
    else:  # Mallory only freezes the escrow: the bridge waits (alerted once), refunds after the TTL
        assert _reconcile(live_bridge)["refund_waiting"] == 1
        assert order_row(bridge, order_id)["status"] == "refund_pending"
        assert alert_codes(bridge, order_id).count("escrow_claimed_by_third_party") == 1
        mallory.expire(job_id)
        assert _reconcile(live_bridge)["refunded"] == 1
        # The seller's escrow is refunded; a buy order goes back on the book (front-running a
        # taker's escrow must not be a way to kill other people's buy orders).
        reopened = side == "buy"
        final = order_row(bridge, order_id)
        assert final["status"] == ("open" if reopened else "cancelled")
        if reopened:
            assert final["taker_wallet"] is None and final["escrow_job_id"] is None
        assert dev_node.job(job_id)["status"] == "expired"
        assert dev_node.balance(seller.address) == before
    assert no_payout(dev_node) and dev_node.balance(WORKER) == 0
    dev_node.assert_conserved()
