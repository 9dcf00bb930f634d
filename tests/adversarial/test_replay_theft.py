"""A refused match stays replayable, and a buy-order match hands the preimage to the sender.

A signature is consumed only by the request that wins the order's compare-and-swap
(``orders.match_order``). A taker's match refused for a state reason (the order was
``locking`` for another taker, or the CAS was lost) leaves the signed body valid for the
rest of its 300 s window. If the order returns to ``open`` (the other taker's lock
failed), whoever holds the body can replay it: for a buy order the bridge then locks the
victim's RTC and returns the preimage to the replayer, who can confirm and release the
victim's RTC to the buy order's maker. docs/protocol.md §3: a replayed ``wallet_auth`` is refused
(401 ``wallet_auth_replayed``).
"""

from __future__ import annotations

import threading

from attack_helpers import match_body, order_row, post, watch
from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH

from otc_bridge.client import BridgeClient, Wallet


def test_refused_buy_match_replayed_after_reopen_cannot_lock_and_release_the_victims_rtc(api, live_bridge, dev_node,
                                                                                         buyer, bridge):
    maker = buyer  # Mallory's buy order; she also controls an unfunded puppet taker
    status, created = api.create_order(maker, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                       price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, created
    order_id = created["order_id"]
    puppet, victim = Wallet.generate(), Wallet.generate()
    dev_node.fund(puppet.address, "6")  # enough for 5 RTC + fee: the bridge's balance check passes
    dev_node.fund(victim.address, "100")
    maker_before = dev_node.balance(maker.address)

    # The puppet takes the order first; the node answers its escrow request slowly.
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="latency", latency_ms=1500, count=1)
    puppet_result: list = []
    taker = threading.Thread(target=lambda: puppet_result.append(
        BridgeClient(live_bridge).match(puppet, order_id, SELLER_ETH)))
    taker.start()
    watch(lambda: order_row(bridge, order_id)["status"] == "locking", "the order locking")
    watch(lambda: dev_node.get("/dev/faults").json()["faults"] == [], "the escrow request held by the node")
    # Mallory drains her puppet on the node meanwhile (any wallet can post a job): the bridge's
    # escrow request, past the balance check and held by the node, will be refused.
    drain = {"poster_wallet": puppet.address, "title": "drain", "description": "drain the puppet wallet",
             "reward_rtc": 5, "ttl_seconds": 3600}
    drained = dev_node.post("/agent/jobs", drain)
    assert drained.status_code == 201, drained.text
    # The victim's signed match arrives meanwhile and is refused; Mallory captures the body.
    captured = match_body(victim, order_id, SELLER_ETH)
    assert post(api, f"/api/orders/{order_id}/match", captured) == (
        409, {"error": "Order is not open (status: locking)"})
    taker.join(30)
    assert puppet_result[0][0] == 400  # the node refused the puppet's escrow: the order is open again
    assert order_row(bridge, order_id)["status"] == "open"

    status, replayed = post(api, f"/api/orders/{order_id}/match", captured)
    if status == 200:  # what happens today: Mallory holds the preimage of the victim's escrow
        api.confirm(order_id, secret=replayed["htlc_secret"], quote_tx="0xnever-paid")
        dev_node.confirm_pending()
        api.reconcile(ADMIN_TOKEN)

    assert dev_node.balance(victim.address) == 100_000_000, "the victim's RTC was locked and released"
    assert dev_node.balance(maker.address) == maker_before
    assert (status, replayed) == (401, {"error": "wallet_auth_replayed"})
    assert order_row(bridge, order_id)["status"] == "open"
