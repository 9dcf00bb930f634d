"""``audit``: silent on a healthy book, one stable code per kind of disagreement with the
node, and strictly read-only (no database row, no node state changes)."""

from __future__ import annotations

import pytest
from bridge_support import BUYER_ETH, matched_buy, open_sell
from operator_support import (
    ADMIN,
    MALLORY,
    PAYOUT,
    WORKER,
    completed_sell,
    db_snapshot,
    node_snapshot,
    order_of,
    payout_pending_sell,
    row,
    third_party,
)

from otc_bridge.domain.status import Status
from otc_bridge.operator import audit as operator_audit
from otc_bridge.operator import common
from otc_bridge.operator.audit import audit
from otc_bridge.settlement import reconcile, record
from otc_bridge.storage.events import NodeRef


def codes(found, order_id=None) -> list[str]:
    return [m.code for m in found if order_id is None or m.order_id == order_id]


def post_job(dev_node, poster: str, tags: list[str]) -> str:
    """A job posted straight on the node (anyone may post for any wallet, docs/escrow-node.md §2)."""
    response = dev_node.post("/agent/jobs", {"poster_wallet": poster, "title": "OTC Bridge Escrow: lost",
                                             "description": "escrow whose create answer was lost",
                                             "reward_rtc": 1.0, "ttl_seconds": 86400, "tags": tags})
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def test_healthy_book_has_no_mismatch(api, dev_node, seller, buyer, bridge, http_client):
    completed_sell(api, dev_node, seller, buyer, bridge)
    buy_id, secret = matched_buy(api, buyer, seller)
    assert api.confirm(buy_id, secret=secret, quote_tx="0xq2")[1]["status"] == "payout_pending"
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert row(bridge, buy_id)["status"] == "completed"
    open_sell(api, seller, amount_micro_rtc=3_000_000)
    assert api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                            price_nano_quote=10_000_000, eth_address=BUYER_ETH)[0] == 201
    payout_pending_sell(api, seller, buyer, bridge, amount_micro_rtc=4_000_000)

    assert audit(bridge) == []
    assert audit(bridge, include_terminal=True) == []
    response = http_client.get("/admin/audit?all=1", headers=ADMIN)
    assert (response.status_code, response.get_json()) == (200, {"ok": True, "mismatches": []})


def test_job_moved_on_the_node_by_someone_else(api, dev_node, seller, bridge):
    delivered, _ = open_sell(api, seller)
    expired, _ = open_sell(api, seller, amount_micro_rtc=3_000_000)
    assert third_party(dev_node, row(bridge, delivered)["escrow_job_id"], "deliver", worker_wallet=WORKER,
                       result_summary="not the bridge").status_code == 200
    assert dev_node.post(f"/dev/jobs/{row(bridge, expired)['escrow_job_id']}/expire").status_code == 200

    found = audit(bridge)

    assert codes(found) == ["job_moved_by_third_party"] * 2
    by_order = {m.order_id: m.detail for m in found}
    assert "delivered" in by_order[delivered] and "expired" in by_order[expired]


def test_escrow_left_behind_by_an_ended_order(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    # Simulate a bug that ends a sell order without refunding its escrow (an allowed edge).
    record.move(bridge, order_of(bridge, order_id), Status.CANCELLED, actor="bug", reason="simulated bug",
                    changes={"end_cause": "cancelled", "ended_at": bridge.now()})
    assert audit(bridge) == []  # terminal orders only with include_terminal
    found = audit(bridge, include_terminal=True)
    assert [(m.code, m.order_id) for m in found] == [("stranded_escrow", order_id)]
    assert "claimed" in found[0].detail and "10500000" in found[0].detail


def test_amounts_differing_from_the_order(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    order = order_of(bridge, order_id)
    record.Step(bridge, order).annotate({"escrow_total_micro_rtc": order.escrow_total_micro_rtc + 1},
                                        reason="simulated corruption")
    found = audit(bridge)
    assert [(m.code, m.order_id) for m in found] == [("amount_mismatch", order_id)]
    assert "10500001" in found[0].detail


def test_payout_voided_under_a_pending_order(api, dev_node, seller, buyer, bridge):
    order_id = payout_pending_sell(api, seller, buyer, bridge)
    dev_node.post("/pending/void", {"tx_hash": row(bridge, order_id)["payout_tx_hash"]}, admin=True)
    found = audit(bridge)
    assert [(m.code, m.order_id) for m in found] == [("payout_missing", order_id)]
    assert "failed" in found[0].detail


def test_two_payouts_for_one_order(api, dev_node, seller, buyer, bridge):
    order_id = completed_sell(api, dev_node, seller, buyer, bridge)
    rogue = f"otc_payout:{order_id}:1"
    # A tool that skipped the checks: its key is recorded, then sent, and the node pays it too.
    common.operator_note(bridge, order_of(bridge, order_id), actor="operator:rogue", reason="no checks",
                           node=NodeRef("POST /wallet/transfer", "intent", rogue))
    dev_node.fund(WORKER, "10")
    sent = dev_node.post("/wallet/transfer", {"from_miner": WORKER, "to_miner": buyer.address, "amount_rtc": 10.0,
                                              "reason": rogue, "idempotency_key": rogue}, admin=True)
    assert sent.status_code == 200, sent.text

    found = audit(bridge, include_terminal=True)
    assert [(m.code, m.order_id) for m in found] == [("payout_doubled", order_id)]
    assert "pending or confirmed" in found[0].detail
    dev_node.confirm_pending()
    found = audit(bridge, include_terminal=True)
    assert codes(found) == ["payout_doubled"] and "2 payouts confirmed" in found[0].detail
    assert dev_node.balance(buyer.address) == 1_000_000_000 + 2 * PAYOUT


def test_orphan_escrow_jobs_open_and_claimed(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    orphan = post_job(dev_node, seller.address, ["otc_bridge", "escrow", f"{order_id}:v9"])
    post_job(dev_node, seller.address, ["otc_bridge", "escrow", "otc_ffffffffffffffff:v1"])  # not our order
    post_job(dev_node, seller.address, ["other"])

    found = audit(bridge)
    assert [(m.code, m.order_id) for m in found] == [("orphan_escrow_job", order_id)]
    assert orphan in found[0].detail and "open" in found[0].detail

    assert third_party(dev_node, orphan, "claim", worker_wallet=MALLORY).status_code == 200
    found = audit(bridge)
    assert codes(found) == ["orphan_escrow_job"] and "claimed" in found[0].detail and MALLORY in found[0].detail


def test_orphan_search_pages_through_the_job_list(api, dev_node, seller, bridge, monkeypatch):
    monkeypatch.setattr(operator_audit, "PAGE_SIZE", 2)
    order_id, _ = open_sell(api, seller)
    orphans = {post_job(dev_node, seller.address, ["otc_bridge", f"{order_id}:v{n}"]) for n in range(2, 7)}
    found = audit(bridge)
    assert {m.detail.split()[1] for m in found} == orphans and set(codes(found)) == {"orphan_escrow_job"}


def test_audit_writes_nothing_and_moves_nothing_on_the_node(api, dev_node, seller, buyer, bridge, http_client):
    completed_sell(api, dev_node, seller, buyer, bridge)
    moved, _ = open_sell(api, seller, amount_micro_rtc=3_000_000)
    third_party(dev_node, row(bridge, moved)["escrow_job_id"], "deliver", worker_wallet=WORKER, result_summary="x")
    voided = payout_pending_sell(api, seller, buyer, bridge, amount_micro_rtc=4_000_000)
    dev_node.post("/pending/void", {"tx_hash": row(bridge, voided)["payout_tx_hash"]}, admin=True)
    post_job(dev_node, seller.address, ["otc_bridge", f"{moved}:v7"])
    db_before, node_before = db_snapshot(bridge), node_snapshot(dev_node)

    found = audit(bridge, include_terminal=True)
    response = http_client.get("/admin/audit", headers=ADMIN, query_string={"all": "1"})

    assert set(codes(found)) == {"job_moved_by_third_party", "payout_missing", "orphan_escrow_job"}
    assert response.get_json() == {"ok": False, "mismatches": [m.as_dict() for m in found]}
    assert db_snapshot(bridge) == db_before
    assert node_snapshot(dev_node) == node_before


def test_audit_route_input_and_auth(http_client):
    assert http_client.get("/admin/audit").status_code == 401
    response = http_client.get("/admin/audit?all=maybe", headers=ADMIN)
    assert (response.status_code, response.get_json()["field"]) == (400, "all")


@pytest.mark.parametrize("fault", ["GET /agent/jobs/<job_id>", "GET /agent/jobs"])
def test_an_unreadable_node_is_a_mismatch_not_a_pass(fault, api, dev_node, seller, bridge):
    open_sell(api, seller)
    dev_node.add_fault(endpoint=fault, kind="error_5xx", status=502)
    assert "node_unreadable" in codes(audit(bridge))
