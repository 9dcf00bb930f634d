"""Full lifecycles over real HTTP against the dev node: balances, statuses, events."""

from __future__ import annotations

from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH, WORKER, matched_buy, matched_sell, open_sell

from otc_bridge.domain.status import Status


def test_sell_order_swap_pays_buyer_exactly_once(api, dev_node, seller, buyer, bridge):
    before_seller, before_buyer = dev_node.balance(seller.address), dev_node.balance(buyer.address)
    order_id, secret = matched_sell(api, seller, buyer)

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote1")
    assert status == 200
    assert body["status"] == "payout_pending" and body["ok"] is False
    assert "htlc_secret" not in api.order(order_id)[1]["order"]

    assert dev_node.confirm_pending() == 1
    status, body = api.reconcile(ADMIN_TOKEN)
    assert status == 200 and body["summary"]["promoted"] == 1

    order = api.order(order_id)[1]["order"]
    assert order["status"] == "completed" and order["htlc_secret"] == secret
    assert dev_node.balance(seller.address) == before_seller - 10_500_000  # reward + 5 % fee
    assert dev_node.balance(buyer.address) == before_buyer + 10_000_000
    assert dev_node.balance(WORKER) == 0
    trades = api.get("/api/trades")[1]["trades"]
    assert [t["order_id"] for t in trades] == [order_id]
    dev_node.assert_conserved()
    # A second pass changes nothing: completed is final and the payout is not re-sent.
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 0
    assert dev_node.state()["pending"]["confirmed"]["count"] == 1


def test_buy_order_swap_locks_taker_escrow(api, dev_node, seller, buyer):
    before_seller = dev_node.balance(seller.address)
    order_id, secret = matched_buy(api, buyer, seller)
    order = api.order(order_id)[1]["order"]
    assert order["status"] == "matched"
    job = dev_node.job(order["escrow_job_id"])
    assert (job["poster_wallet"], job["worker_wallet"], job["status"]) == (seller.address, WORKER, "claimed")
    assert dev_node.balance(seller.address) == before_seller - 5_250_000

    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote2", wallet=seller.address)
    assert (status, body["status"]) == (200, "payout_pending")
    dev_node.confirm_pending()
    api.reconcile(ADMIN_TOKEN)
    assert api.order(order_id)[1]["order"]["status"] == "completed"
    dev_node.assert_conserved()


def test_cancel_sell_order_refunds_reward_and_fee(api, dev_node, seller):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    assert dev_node.balance(seller.address) == before - 10_500_000
    status, body = api.cancel(seller, order_id)
    assert status == 200
    assert body["status"] == "cancelled" and body["escrow_refunded"] is True
    assert dev_node.balance(seller.address) == before
    job = dev_node.job(body["escrow_job_id"])
    assert job["status"] == "cancelled"
    dev_node.assert_conserved()


def test_order_events_tell_the_whole_story(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xquote3")
    dev_node.confirm_pending()
    api.reconcile(ADMIN_TOKEN)
    rows = bridge.db.read("SELECT * FROM order_events WHERE order_id = ? ORDER BY event_id", (order_id,))
    path = [(r["from_status"], r["to_status"]) for r in rows if r["kind"] == "transition"]
    assert path == [(None, "locking"), ("locking", "open"), ("open", "matched"), ("matched", "settling"),
                    ("settling", "payout_pending"), ("payout_pending", "completed")]
    calls = [r["node_endpoint"] for r in rows if r["kind"] == "node_call"]
    assert "POST /agent/jobs" in calls and "POST /wallet/transfer" in calls
    assert all(secret not in (r["reason"] + (r["detail"] or "")) for r in rows)
    final = bridge.db.read_one("SELECT order_version, status FROM orders WHERE order_id = ?", (order_id,))
    assert final["status"] == Status.COMPLETED and final["order_version"] == rows[-1]["order_version"]
    assert SELLER_ETH and BUYER_ETH
