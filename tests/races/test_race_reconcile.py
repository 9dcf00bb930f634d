"""Reconcile passes racing each other (and the node's own guards) over real HTTP.

Four ``POST /admin/reconcile`` requests released together over orders waiting for a
refund and orders waiting for a confirmed payout: every order must end exactly once
(one transition, one refund on the node, one trade), whichever pass gets there first.
"""

from __future__ import annotations

import pytest
from bridge_support import ADMIN_TOKEN, WORKER, matched_sell, open_sell
from race_helpers import clients, race, transitions

from otc_bridge.client import Wallet

ORDERS_PER_KIND = 3


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_reconcile_passes_end_every_order_exactly_once(round_, api, live_bridge, dev_node, seller,
                                                                  bridge):
    seller_before = dev_node.balance(seller.address)
    refunds = []
    for i in range(ORDERS_PER_KIND):
        order_id, _ = open_sell(api, seller, amount_micro_rtc=10_000_000 * (i + 1))
        job_id = api.order(order_id)[1]["order"]["escrow_job_id"]
        dev_node.add_fault(endpoint=f"POST /agent/jobs/{job_id}/cancel", kind="error_5xx", count=1)
        assert api.cancel(seller, order_id)[1]["status"] == "refund_pending"
        refunds.append((order_id, job_id))
    buyers = [Wallet.generate() for _ in range(ORDERS_PER_KIND)]
    payouts = []
    for i, buyer in enumerate(buyers):
        order_id, secret = matched_sell(api, seller, buyer, amount_micro_rtc=1_000_000 * (i + 1))
        assert api.confirm(order_id, secret=secret, quote_tx=f"0xq{i}")[1]["status"] == "payout_pending"
        payouts.append(order_id)
    assert dev_node.confirm_pending() == ORDERS_PER_KIND

    results = race([lambda c=c: c.reconcile(ADMIN_TOKEN) for c in clients(live_bridge, 4)])

    assert all(code == 200 for code, _ in results), results
    summaries = [body["summary"] for _, body in results]
    assert sum(s["refunded"] for s in summaries) == ORDERS_PER_KIND, summaries
    assert sum(s["promoted"] for s in summaries) == ORDERS_PER_KIND, summaries
    assert sum(s["errors"] for s in summaries) == 0, summaries
    for order_id, job_id in refunds:
        assert transitions(bridge, order_id).count(("refund_pending", "cancelled")) == 1
        assert api.order(order_id)[1]["order"]["status"] == "cancelled"
        actions = [entry["action"] for entry in dev_node.job(job_id)["activity_log"]]
        assert actions.count("escrow_refunded") == 1, actions
    for order_id in payouts:
        assert transitions(bridge, order_id).count(("payout_pending", "completed")) == 1
        assert api.order(order_id)[1]["order"]["status"] == "completed"
    assert bridge.db.read_one("SELECT COUNT(*) FROM trades")[0] == ORDERS_PER_KIND
    for i, buyer in enumerate(buyers):
        assert dev_node.balance(buyer.address) == 1_000_000 * (i + 1)
    # The seller paid reward + fee for the three trades only; every refund came back in full.
    assert dev_node.balance(seller.address) == seller_before - sum(1_050_000 * (i + 1) for i in range(3))
    assert dev_node.balance(WORKER) == 0
    dev_node.assert_conserved()
