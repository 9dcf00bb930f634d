"""The worker wallet itself is exposed: anyone can post a job that debits it, and the node's
balance check ignores queued debits (docs/escrow-node.md §0, §1.2).

Every reconcile pass cancels open jobs posted in the worker's name (the bridge never posts as
its worker) and checks that the worker's confirmed balance covers what is queued from it; a
breach pauses releases (a confirm is refused before anything is stored), alerts, and shows in
``/metrics``; it clears by itself once the worker is covered again.
"""

from __future__ import annotations

import json

from attack_helpers import MALLORY, no_payout, order_row
from bridge_support import ADMIN_TOKEN, WORKER, matched_sell

from otc_bridge.settlement.settle import RELEASES_PAUSED


def post_in_the_workers_name(dev_node, reward_rtc: float) -> str:
    """Mallory posts a job that debits the bridge's worker wallet."""
    response = dev_node.post("/agent/jobs", {"poster_wallet": WORKER, "title": "free money",
                                             "description": "a job the bridge never posted", "reward_rtc": reward_rtc,
                                             "ttl_seconds": 3600})
    assert response.status_code == 201, response.text
    return response.json()["job_id"]


def alerts(bridge, code: str) -> list[dict]:
    rows = bridge.db.read("SELECT payload FROM outbox WHERE topic = 'alert'")
    return [p for p in (json.loads(r["payload"]) for r in rows) if p["code"] == code]


def test_an_open_job_posted_in_the_workers_name_is_cancelled(api, dev_node, bridge):
    dev_node.fund(WORKER, "21")
    job_id = post_in_the_workers_name(dev_node, 20.0)
    assert dev_node.balance(WORKER) == 0  # 20 RTC + the 5 % fee locked from the worker

    summary = api.reconcile(ADMIN_TOKEN)[1]["summary"]

    assert summary["foreign_jobs"] == 1
    assert dev_node.job(job_id)["status"] == "cancelled"
    assert dev_node.balance(WORKER) == 21_000_000
    assert [a["message"].split(" ")[1] for a in alerts(bridge, "foreign_worker_job")] == [job_id]
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["foreign_jobs"] == 0
    dev_node.assert_conserved()


def test_a_drained_worker_pauses_releases_until_it_is_covered_again(api, dev_node, seller, buyer, bridge):
    first, first_secret = matched_sell(api, seller, buyer)
    assert api.confirm(first, secret=first_secret, quote_tx="0xq")[1]["status"] == "payout_pending"
    second, second_secret = matched_sell(api, seller, buyer, amount_micro_rtc=9_000_000)
    # Mallory drains the worker before the node confirms the queued payout: a job in its
    # name, claimed, delivered and accepted by her in one burst.
    job_id = post_in_the_workers_name(dev_node, 9.0)
    for action, body in (("claim", {"worker_wallet": MALLORY}),
                         ("deliver", {"worker_wallet": MALLORY, "result_summary": "x"}),
                         ("accept", {"poster_wallet": WORKER})):
        assert dev_node.post(f"/agent/jobs/{job_id}/{action}", body).status_code == 200
    assert dev_node.balance(WORKER) == 550_000  # 10 RTC in, 9.45 RTC out: the payout is not covered

    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["coverage_breach"] == 1
    [breach] = alerts(bridge, "worker_coverage_breach")
    assert "10000000 micro-RTC is queued" in breach["message"]
    metrics = api.session.get(api.base_url + "/metrics", timeout=10).text
    assert "otc_releases_paused 1.0" in metrics and "otc_worker_owed_micro_rtc 1e+07" in metrics
    ready = api.session.get(api.base_url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert ready.status_code == 503 and "worker_coverage" in ready.json()["failed"], ready.text

    status, body = api.confirm(second, secret=second_secret, quote_tx="0xq")
    assert (status, body["error"]) == (503, RELEASES_PAUSED)
    order = order_row(bridge, second)
    assert (order["status"], order["htlc_secret"]) == ("matched", None)  # nothing was stored
    assert dev_node.job(order["escrow_job_id"])["status"] == "claimed"  # nothing was released
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["coverage_breach"] == 1
    assert len(alerts(bridge, "worker_coverage_breach")) == 1  # alerted once per breach

    dev_node.fund(WORKER, "10")  # the operator tops the worker up
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["coverage_breach"] == 0
    ready = api.session.get(api.base_url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert ready.json()["checks"]["worker_coverage"] == {"ok": True}, ready.text
    assert api.confirm(second, secret=second_secret, quote_tx="0xq")[1]["status"] == "payout_pending"
    assert not no_payout(dev_node)
    dev_node.assert_conserved()
