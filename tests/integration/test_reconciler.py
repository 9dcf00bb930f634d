"""The full reconciler against the dev node: every state it drives, its lease and back-off."""

from __future__ import annotations

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH, WORKER, matched_buy, matched_sell, open_sell

from otc_bridge.settlement import reconcile
from otc_bridge.storage import leases

GRACE = 301  # past the default OTC_SETTLEMENT_STUCK_SECONDS


def later(bridge, seconds: int) -> None:
    """Move the bridge's clock forward by ``seconds``."""
    base = bridge.clock
    bridge.clock = lambda: base() + seconds


def row(bridge, order_id: str):
    return bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (order_id,))


def only_order(bridge):
    return bridge.db.read_one("SELECT * FROM orders ORDER BY created_at DESC LIMIT 1")


def test_lost_create_answer_is_found_by_reference_and_refunded(api, dev_node, seller, bridge):
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="timeout_after", latency_ms=6000, count=1)
    status, body = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=2_000_000,
                                    price_nano_quote=50_000_000, eth_address=SELLER_ETH)
    assert status == 502 and body["status"] == "locking" and "htlc_secret" not in body
    assert dev_node.balance(seller.address) == 1_000_000_000 - 2_100_000  # the node did lock it
    assert reconcile.run_once(bridge)["adopted"] == 0  # still inside the grace period
    later(bridge, GRACE)
    result = reconcile.run_once(bridge)
    assert (result["adopted"], result["refunded"]) == (1, 1)
    order = row(bridge, body["order_id"])
    assert (order["status"], order["end_cause"]) == ("cancelled", "escrow_outcome_lost")
    assert order["escrow_job_id"] and dev_node.job(order["escrow_job_id"])["status"] == "cancelled"
    assert dev_node.balance(seller.address) == 1_000_000_000
    dev_node.assert_conserved()


def test_intent_without_any_job_is_abandoned(api, dev_node, seller, bridge):
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="drop_before", count=1)
    status, body = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=2_000_000,
                                    price_nano_quote=50_000_000, eth_address=SELLER_ETH)
    assert status == 502
    later(bridge, GRACE)
    assert reconcile.run_once(bridge)["abandoned"] == 1
    order = row(bridge, body["order_id"])
    assert (order["status"], order["end_cause"]) == ("cancelled", "escrow_refused")
    assert dev_node.state()["jobs_by_status"] == {}
    assert dev_node.balance(seller.address) == 1_000_000_000


def test_lost_buy_match_answer_refunds_the_taker_and_reopens_the_order(api, dev_node, seller, buyer, bridge):
    status, created = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                                       price_nano_quote=50_000_000, eth_address=BUYER_ETH)
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="timeout_after", latency_ms=6000, count=1)
    status, body = api.match(seller, created["order_id"], SELLER_ETH)
    assert status == 502 and "htlc_secret" not in body
    later(bridge, GRACE)
    assert reconcile.run_once(bridge)["refunded"] == 1
    order = row(bridge, created["order_id"])
    assert order["status"] == "open" and order["taker_wallet"] is None and order["htlc_hash"] is None
    assert dev_node.balance(seller.address) == 1_000_000_000
    assert api.get("/api/orders")[1]["total"] == 1  # back on the book


def test_settling_left_by_a_dead_request_is_resumed_after_the_grace(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    # The deliver's answer is lost (5xx): the claim stands, nothing is known to have moved.
    dev_node.add_fault(endpoint="POST /agent/jobs/<job_id>/deliver", kind="error_5xx", count=1)
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xq")
    assert (status, body["status"]) == (200, "settling")
    assert reconcile.run_once(bridge)["released"] == 0  # a live confirm may still be working on it
    later(bridge, GRACE)
    assert reconcile.run_once(bridge)["released"] == 1
    assert row(bridge, order_id)["status"] == "payout_pending"
    dev_node.confirm_pending()
    assert reconcile.run_once(bridge)["promoted"] == 1
    assert dev_node.balance(buyer.address) == 1_010_000_000


def test_unwind_returns_a_sell_order_to_the_book(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    later(bridge, 48 * 3600)
    assert reconcile.run_once(bridge)["unwound"] == 1
    order = row(bridge, order_id)
    assert order["status"] == "open" and order["taker_wallet"] is None and order["settle_by"] is None
    assert dev_node.job(order["escrow_job_id"])["worker_wallet"] == WORKER  # escrow still held
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xlate")
    assert status == 409 and "must be matched" in body["error"]  # the unwind won the CAS


def test_unwind_past_the_order_ttl_refunds_the_seller(api, dev_node, seller, buyer, bridge):
    order_id, _ = matched_sell(api, seller, buyer, ttl_seconds=3600)
    later(bridge, 48 * 3600)
    result = reconcile.run_once(bridge)
    assert (result["unwound"], result["refunded"]) == (1, 1)
    order = row(bridge, order_id)
    assert (order["status"], order["end_cause"]) == ("expired", "settle_deadline_passed")
    assert dev_node.balance(seller.address) == 1_000_000_000


def test_unwind_of_a_buy_order_refunds_the_taker_and_relists(api, dev_node, seller, buyer, bridge):
    order_id, _ = matched_buy(api, buyer, seller)
    later(bridge, 48 * 3600)
    result = reconcile.run_once(bridge)
    assert (result["unwound"], result["refunded"]) == (1, 1)
    assert row(bridge, order_id)["status"] == "open"
    assert dev_node.balance(seller.address) == 1_000_000_000
    dev_node.assert_conserved()


def test_confirm_just_before_the_unwind_wins(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    later(bridge, 48 * 3600)  # past settle_by, but the confirm gets there first
    assert api.confirm(order_id, secret=secret, quote_tx="0xq")[1]["status"] == "payout_pending"
    assert reconcile.run_once(bridge)["unwound"] == 0


def test_escrow_refunded_behind_the_bridge_ends_the_match_and_a_confirm_is_refused(api, dev_node, seller, buyer,
                                                                                    bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    order = row(bridge, order_id)
    # A third party (or the seller) takes the escrow back through the node's open routes:
    # deliver as the bridge's worker string, dispute and cancel as the poster.
    for action, body in (("deliver", {"worker_wallet": WORKER, "result_summary": "x"}),
                         ("dispute", {"poster_wallet": seller.address, "reason": "x"}),
                         ("cancel", {"poster_wallet": seller.address})):
        assert dev_node.post(f"/agent/jobs/{order['escrow_job_id']}/{action}", body).status_code == 200
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xq")
    assert status == 409 and body["error"].startswith("The escrow was taken back on the node"), body
    ended = row(bridge, order_id)
    assert (ended["status"], ended["end_cause"], ended["htlc_secret"]) == ("cancelled", "escrow_tampered", None)
    assert ended["escrow_tampered_at"] is not None
    assert dev_node.balance(seller.address) == 1_000_000_000  # the node refunded reward and fee
    assert api.confirm(order_id, secret=secret, quote_tx="0xq")[0] == 409
    assert reconcile.run_once(bridge)["tampered"] == 0  # no longer watched


def test_recovered_payout_found_queued_moves_forward(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="timeout_after", latency_ms=6000, count=1)
    dev_node.add_fault(endpoint="GET /wallet/tx/<tx_hash>", kind="error_5xx", count=1)
    assert api.confirm(order_id, secret=secret, quote_tx="0xq")[1]["status"] == "settlement_recovery"
    assert reconcile.run_once(bridge)["resolved"] == 1  # the node proves the payout was queued
    assert row(bridge, order_id)["status"] == "payout_pending"
    dev_node.confirm_pending()
    assert reconcile.run_once(bridge)["promoted"] == 1
    assert dev_node.balance(buyer.address) == 1_010_000_000


def test_voided_payout_in_recovery_waits_for_an_operator(api, dev_node, seller, buyer, bridge):
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xq")
    dev_node.post("/pending/void", {"tx_hash": row(bridge, order_id)["payout_tx_hash"]}, admin=True)
    assert reconcile.run_once(bridge)["recovered"] == 1
    assert reconcile.run_once(bridge)["waiting"] == 1
    assert row(bridge, order_id)["status"] == "settlement_recovery"


def test_a_second_reconciler_is_kept_out_by_the_lease(bridge):
    other = leases.try_hold(bridge.db, reconcile.LEASE_NAME)  # another driver holds it
    assert other is not None
    assert reconcile.run_once(bridge)["skipped_locked"] == 1
    other.release()
    assert reconcile.run_once(bridge)["skipped_locked"] == 0


@pytest.mark.parametrize("retry_after", [30])
def test_rate_limited_payout_waits_and_the_pass_backs_off(api, dev_node, seller, buyer, bridge, retry_after):
    order_id, secret = matched_sell(api, seller, buyer)
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="rate_limit")
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xq")
    assert status == 503 and body["retry_after_seconds"] > 0
    assert row(bridge, order_id)["status"] == "settling"  # escrow released to the worker, payout not sent
    later(bridge, GRACE)
    result = reconcile.run_once(bridge)
    assert result["backoff_seconds"] > 0 and result["released"] == 0
    dev_node.clear_faults()
    assert reconcile.run_once(bridge)["released"] == 1
    assert row(bridge, order_id)["status"] == "payout_pending"
    assert dev_node.state()["pending"]["pending"]["count"] == 1


def test_open_sell_order_with_a_held_escrow_is_untouched(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    result = reconcile.run_once(bridge)
    assert result["watched"] == 1  # its escrow job was read, and found held
    assert sum(v for k, v in result.items() if k not in ("skipped_locked", "watched")) == 0
    assert row(bridge, order_id)["status"] == "open"


def test_a_refund_stuck_for_an_hour_alerts_once(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    dev_node.add_fault(endpoint="GET /agent/jobs/<job_id>", kind="error_5xx")  # the node cannot be read
    assert api.cancel(seller, order_id)[1]["status"] == "refund_pending"
    reconcile.run_once(bridge)
    later(bridge, 3600)
    reconcile.run_once(bridge)
    reconcile.run_once(bridge)
    codes = [r["event_key"].split(":")[1] for r in bridge.db.read("SELECT event_key FROM outbox WHERE topic = 'alert'")]
    assert codes == ["refund_stuck"]
    dev_node.clear_faults()
    assert reconcile.run_once(bridge)["refunded"] == 1
