"""Confirm racing the unwind at ``settle_by``: real threads, one winner, money moves once."""

from __future__ import annotations

import pytest
from bridge_support import ADMIN_TOKEN, WORKER, matched_buy, matched_sell
from race_helpers import clients, race, transitions


def past_settle_by(bridge) -> None:
    base = bridge.clock
    bridge.clock = lambda: base() + 48 * 3600 + 1


@pytest.mark.parametrize("round_", range(4))
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_confirm_and_unwind_at_the_deadline_have_one_winner(side, round_, api, live_bridge, dev_node, seller,
                                                           buyer, bridge):
    if side == "sell":
        order_id, secret = matched_sell(api, seller, buyer)
    else:
        order_id, secret = matched_buy(api, buyer, seller)
    job_id = api.order(order_id)[1]["order"]["escrow_job_id"]
    seller_before, buyer_before = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    past_settle_by(bridge)
    confirmer, reconciler = clients(live_bridge, 2)

    confirm, pass_ = race([lambda: confirmer.confirm(order_id, secret=secret, quote_tx="0xq"),
                           lambda: reconciler.reconcile(ADMIN_TOKEN)])

    edges = transitions(bridge, order_id)
    confirm_won = ("matched", "settling") in edges
    unwind_won = any(frm == "matched" and to in ("open", "refund_pending") for frm, to in edges)
    assert confirm_won != unwind_won, edges  # exactly one of them took the matched order
    if confirm_won:
        assert confirm[0] == 200 and confirm[1]["status"] == "payout_pending"
        dev_node.confirm_pending()
        api.reconcile(ADMIN_TOKEN)
        assert api.order(order_id)[1]["order"]["status"] == "completed"
        assert dev_node.balance(buyer.address) - buyer_before == (10_000_000 if side == "sell" else 5_000_000)
    else:
        # Whether it read the order before or after the unwind, the confirm is refused.
        assert confirm[0] == 409 and "matched" in confirm[1]["error"], confirm
        assert pass_[1]["summary"]["unwound"] == 1
        job = dev_node.job(job_id)
        if side == "sell":  # back on the book, escrow still held by the bridge
            assert (job["status"], job["worker_wallet"]) == ("claimed", WORKER)
        else:  # the taker's escrow went back to the seller
            assert job["status"] == "cancelled"
            assert dev_node.balance(seller.address) - seller_before == 5_250_000
        assert dev_node.balance(buyer.address) == buyer_before
    assert len([e for e in dev_node.job(job_id)["activity_log"] if e["action"] == "completed"]) <= 1
    dev_node.assert_conserved()


@pytest.mark.parametrize("round_", range(4))
def test_cancel_and_expiry_refund_the_escrow_exactly_once(round_, api, live_bridge, dev_node, seller, bridge):
    from bridge_support import open_sell

    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller, ttl_seconds=3600)
    base = bridge.clock
    bridge.clock = lambda: base() + 3601  # the order is past its TTL: the reconciler will expire it
    canceller, reconciler = clients(live_bridge, 2)

    # Signed on the bridge's (moved) clock, or the signature would be stale.
    body = {"wallet": seller.address,
            "wallet_auth": seller.auth("cancel_order", order_id, {}, timestamp=bridge.now())}
    url = f"{live_bridge}/api/orders/{order_id}/cancel"

    def cancel_now():
        response = canceller.session.post(url, json=body, timeout=30)
        return response.status_code, response.json()

    cancel, _ = race([cancel_now, lambda: reconciler.reconcile(ADMIN_TOKEN)])

    edges = transitions(bridge, order_id)
    assert edges.count(("open", "refund_pending")) == 1, edges  # one of them claimed the refund
    if cancel[0] != 200:
        assert cancel[0] == 409 and "open" in cancel[1]["error"], cancel
    api.reconcile(ADMIN_TOKEN)  # whichever lost, the refund is finished once
    order = api.order(order_id)[1]["order"]
    assert order["status"] in ("cancelled", "expired")
    job = dev_node.job(order["escrow_job_id"])
    assert job["status"] == "cancelled"
    assert [e["action"] for e in job["activity_log"]].count("escrow_refunded") == 1
    assert dev_node.balance(seller.address) == before
    dev_node.assert_conserved()
