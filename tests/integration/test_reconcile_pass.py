"""The first reconcile pass against the dev node: promotion, voids, refunds, expiry."""

from __future__ import annotations

import pytest
from bridge_support import ADMIN_TOKEN, SELLER_ETH, matched_sell, open_sell

import otc_bridge.node.client as escrow_module
from otc_bridge.domain.status import Status
from otc_bridge.settlement import reconcile


def outbox_topics(bridge, order_id: str) -> list[str]:
    return [r["topic"] for r in bridge.db.read("SELECT topic FROM outbox WHERE order_id = ? ORDER BY outbox_id",
                                                (order_id,))]


def test_voided_payout_goes_to_recovery_with_an_alert(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xq")
    order = bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (order_id,))
    assert dev_node.post("/pending/void", {"tx_hash": order["payout_tx_hash"]}, admin=True).status_code == 200

    summary = api.reconcile(ADMIN_TOKEN)[1]["summary"]
    assert summary["recovered"] == 1 and summary["promoted"] == 0
    order = api.order(order_id)[1]["order"]
    assert order["status"] == "settlement_recovery" and "htlc_secret" not in order
    assert "alert" in outbox_topics(bridge, order_id)
    # The alert is not raised again by the next pass.
    reconcile.run_once(bridge)
    assert outbox_topics(bridge, order_id).count("alert") == 1
    assert dev_node.balance(buyer.address) == 1_000_000_000  # nothing paid


def test_pending_payout_stays_pending_until_the_node_confirms(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xq")
    assert reconcile.run_once(bridge)["still_pending"] == 1
    assert api.order(order_id)[1]["order"]["status"] == "payout_pending"
    dev_node.confirm_pending()
    assert reconcile.run_once(bridge)["promoted"] == 1


def test_expired_orders_end_and_sell_escrow_is_refunded(api, dev_node, seller, buyer, bridge):
    sell_id, _ = open_sell(api, seller, ttl_seconds=3600)
    status, body = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                                    price_nano_quote=10_000_000, ttl_seconds=3600)
    assert status == 201
    buy_id = body["order_id"]
    real_clock = bridge.clock
    bridge.clock = lambda: real_clock() + 3601
    assert api.get("/api/orders")[1]["total"] == 0  # expired orders are not listed
    summary = reconcile.run_once(bridge)
    assert summary["expired"] == 2 and summary["refunded"] == 1
    assert api.order(buy_id)[1]["order"]["status"] == "expired"
    sell = api.order(sell_id)[1]["order"]
    assert (sell["status"], sell["end_cause"]) == ("expired", "expired")
    assert dev_node.balance(seller.address) == 1_000_000_000
    dev_node.assert_conserved()


def test_refund_interrupted_by_a_node_error_is_finished_by_the_reconciler(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    dev_node.add_fault(endpoint="POST /agent/jobs/<job_id>/cancel", kind="error_5xx", count=1)
    status, body = api.cancel(seller, order_id)
    assert (status, body["status"], body["escrow_refunded"]) == (200, "refund_pending", False)
    job = dev_node.job(body["escrow_job_id"])
    assert job["status"] == "disputed"  # delivered + disputed, cancel failed: escrow still locked
    summary = reconcile.run_once(bridge)
    assert summary["refunded"] == 1
    assert api.order(order_id)[1]["order"]["status"] == "cancelled"
    assert dev_node.balance(seller.address) == 1_000_000_000
    dev_node.assert_conserved()


def test_job_with_a_wrong_amount_is_refunded_and_the_order_refused(api, dev_node, seller, bridge, monkeypatch):
    # Send the naive float: the node truncates 2.01 RTC to 2,009,999 micro-RTC
    # (docs/escrow-node.md §0, the rounding trap).
    monkeypatch.setattr(escrow_module, "reward_rtc_wire", lambda micro: micro / 1e6)
    status, body = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=2_010_000,
                                    price_nano_quote=50_000_000, eth_address=SELLER_ETH)
    assert status == 502
    assert "does not hold" in body["error"] and "2009999" in body["details"]
    order = bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (body["order_id"],))
    assert (order["status"], order["end_cause"]) == (Status.CANCELLED, "escrow_rejected")
    assert dev_node.job(order["escrow_job_id"])["status"] == "cancelled"
    assert dev_node.balance(seller.address) == 1_000_000_000
    assert "alert" in outbox_topics(bridge, order["order_id"])
    assert api.get("/api/orders")[1]["total"] == 0


@pytest.mark.parametrize("wallet_has", ["0.5"])
def test_node_refusing_the_escrow_ends_the_order_with_nothing_held(api, dev_node, bridge, wallet_has):
    from otc_bridge.client import Wallet

    poor = Wallet.generate()
    dev_node.fund(poor.address, wallet_has)
    # No balance read first: the node's own check at job creation refuses the job.
    status, body = api.create_order(poor, side="sell", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                                    price_nano_quote=50_000_000, eth_address=SELLER_ETH)
    assert status == 400
    assert (body["error"], body["balance_micro_rtc"], body["required_micro_rtc"]) == (
        "Insufficient RTC balance", 500_000, 1_050_000), body
    order = bridge.db.read_one("SELECT status, end_cause FROM orders")
    assert (order["status"], order["end_cause"]) == ("cancelled", "escrow_refused")
    assert dev_node.balance(poor.address) == 500_000
