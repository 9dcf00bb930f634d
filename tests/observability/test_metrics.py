"""``/metrics``: parses with prometheus_client's parser and moves when orders move."""

from __future__ import annotations

import dataclasses

import pytest
from bridge_support import ADMIN_TOKEN, matched_sell, open_sell
from sse_support import sample, scrape

from otc_bridge.app import create_app
from otc_bridge.domain.status import Status
from otc_bridge.notify import metrics
from otc_bridge.storage import heartbeats, invariants, orders


def _scrape(api) -> dict:
    response = api.session.get(api.base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return scrape(response.text)


def test_metrics_move_through_a_lifecycle(api, dev_node, seller, buyer):
    before = _scrape(api)
    order_id, secret = matched_sell(api, seller, buyer)
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[1]["status"] == "payout_pending"
    dev_node.confirm_pending()
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 1
    after = _scrape(api)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("otc_orders", status="completed") == 1
    assert sample(after, "otc_orders", status="open") == 0
    for frm, to in [("none", "locking"), ("locking", "open"), ("open", "matched"), ("matched", "settling"),
                    ("settling", "payout_pending"), ("payout_pending", "completed")]:
        assert moved("otc_order_transitions_total", **{"from": frm, "to": to}) == 1, (frm, to)
    for endpoint in ("create_job", "claim", "accept", "transfer", "tx_status"):
        assert moved("otc_node_calls_total", endpoint=endpoint, outcome="ok") >= 1, endpoint
        assert moved("otc_node_call_seconds_count", endpoint=endpoint, outcome="ok") >= 1, endpoint
    assert moved("otc_node_call_seconds_sum", endpoint="create_job", outcome="ok") > 0
    assert sample(after, "otc_outbox_rows", state="pending") >= 6  # one row per transition, nothing delivers yet
    assert sample(after, "otc_outbox_oldest_pending_age_seconds") >= 0


def test_a_refused_node_call_is_counted_as_failed(api, dev_node, seller):
    before = _scrape(api)
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="rate_limit", count=1)  # the node refuses the job
    status, _ = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                 price_nano_quote=50_000_000, eth_address="0x" + "11" * 20)
    assert status >= 400
    after = _scrape(api)
    assert sample(after, "otc_node_calls_total", endpoint="create_job", outcome="failed") == \
        sample(before, "otc_node_calls_total", endpoint="create_job", outcome="failed") + 1


def test_stuck_orders_and_outbox_age_follow_the_clock(api, bridge, seller, buyer):
    order_id, secret = matched_sell(api, seller, buyer)
    assert api.confirm(order_id, secret=secret, quote_tx="0xquote")[1]["status"] == "payout_pending"
    assert sample(_scrape(api), "otc_stuck_orders", status="payout_pending") == 0
    real_clock = bridge.clock
    bridge.clock = lambda: real_clock() + metrics.STUCK_PAYOUT_SECONDS + 1
    later = _scrape(api)
    assert sample(later, "otc_stuck_orders", status="payout_pending") == 1
    assert sample(later, "otc_outbox_oldest_pending_age_seconds") >= metrics.STUCK_PAYOUT_SECONDS + 1


def test_reconcile_passes_are_recorded_and_summed(api, bridge):
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 2, "expired": 1, "errors": 0, "backoff_seconds": 0,
                                                   "skipped_locked": 0}, now=1_700_000_000)
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 1, "skipped_locked": 0}, now=1_700_000_060)
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 9, "skipped_locked": 1}, now=1_700_000_090)
    got = _scrape(api)
    assert sample(got, "otc_reconcile_last_run_timestamp_seconds") == 1_700_000_060
    assert sample(got, "otc_worker_last_run_timestamp_seconds", worker="reconciler") == 1_700_000_060
    assert sample(got, "otc_reconcile_passes_total") == 2
    assert sample(got, "otc_reconcile_actions_total", action="promoted") == 3
    assert sample(got, "otc_reconcile_actions_total", action="expired") == 1
    assert ("otc_reconcile_actions_total", (("action", "errors"),)) not in got


def test_record_pass_never_raises(bridge, caplog):
    bridge.db.connection().execute("DROP TABLE heartbeats")
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 1}, now=1)
    assert "could not record the reconciler heartbeat" in caplog.text


def test_invariant_failures_are_counted(api, seller, bridge):
    order_id, _ = open_sell(api, seller)
    completed = orders.get_order(bridge.db.connection(), order_id).replace(status=Status.COMPLETED)
    before = sample(_scrape(api), "otc_invariant_failures_total", code="completed_without_trade")
    with pytest.raises(invariants.InvariantBroken):
        invariants.check_after_commit(bridge.db, completed, has_trade=False)
    assert sample(_scrape(api), "otc_invariant_failures_total", code="completed_without_trade") == before + 1


def test_metrics_token_when_configured(bridge):
    token = "metrics-token-0123456789abcdef"
    app = create_app(bridge=dataclasses.replace(bridge, config=bridge.config.replace(metrics_token=token)))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789abc"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and b"otc_orders" in response.data
