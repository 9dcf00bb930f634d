"""A database restored from a backup or replica can lose a settlement the bridge already made
(docs/backups.md): the order reads ``open`` or ``matched`` while on the node its job is
completed into the worker and the buyer's payout is queued under the order's own key. The
escrow watch must not take that for tampering: a custody refund would pay the seller as
well as the buyer. It stops in ``settlement_recovery`` with an alert instead."""

from __future__ import annotations

import pytest
from attack_helpers import Mallory, alert_codes, order_row
from bridge_support import WORKER, matched_sell, open_sell

from otc_bridge.settlement import reconcile


@pytest.mark.parametrize("status", ["open", "matched"])
def test_a_settlement_lost_by_a_restore_is_not_refunded_twice(api, bridge, dev_node, seller, buyer, status):
    if status == "open":
        order_id, _ = open_sell(api, seller)
    else:
        order_id, _ = matched_sell(api, seller, buyer)
    job_id = order_row(bridge, order_id)["escrow_job_id"]
    # What the lost confirm had done on the node: release into the worker, pay the buyer.
    Mallory(dev_node).hit(job_id, "steal_to_worker")
    paid = bridge.node.transfer(from_wallet=WORKER, to_wallet=buyer.address, amount_micro_rtc=10_000_000,
                                reason="otc payout", idempotency_key=f"otc_payout:{order_id}")
    assert paid.ok, paid
    assert dev_node.confirm_pending() == 1
    seller_before = dev_node.balance(seller.address)

    summary = reconcile.run_once(bridge)
    assert summary["errors"] == 0, summary
    row = order_row(bridge, order_id)
    assert row["status"] == "settlement_recovery"
    assert "settlement_found_on_node" in alert_codes(bridge, order_id)
    for _ in range(3):  # later passes leave it to the operator: nothing is refunded
        reconcile.run_once(bridge)
        assert dev_node.confirm_pending() == 0
    assert dev_node.balance(seller.address) == seller_before
    assert dev_node.balance(WORKER) == 0
    assert order_row(bridge, order_id)["status"] == "settlement_recovery"
