"""Fault injection: each kind over real HTTP, counting, seeded probability, rule parsing."""

from __future__ import annotations

import time

import pytest
import requests
from devnode_support import ADMIN, ADMIN_KEY, POSTER, WORKER, Node

from otc_bridge.dev.node import create_app
from otc_bridge.dev.node.faults import FaultSpecError, parse_fault_spec

TRANSFER = {"from_miner": WORKER, "to_miner": "carol", "amount_rtc": 1,
            "idempotency_key": "payout-1"}


def add_fault(node: Node, **rule) -> dict:
    status, body = node.post("/dev/faults", rule)
    assert status == 200, body
    return body


def pending_rows(node: Node) -> list[dict]:
    return node.get("/pending/list?status=all", headers=ADMIN)[1]["pending"]


def post_transfer(http, live, timeout: float = 5) -> requests.Response:
    return http.post(f"{live.url}/wallet/transfer", json=TRANSFER, headers=ADMIN,
                     timeout=timeout)


def test_timeout_after_applies_the_effect_but_the_client_times_out(node, live, http):
    node.fund(WORKER, "10")
    add_fault(node, endpoint="POST /wallet/transfer", kind="timeout_after", count=1,
              latency_ms=1500)
    with pytest.raises(requests.Timeout):
        post_transfer(http, live, timeout=0.3)
    assert len(pending_rows(node)) == 1  # committed before the answer was held back
    replay = post_transfer(http, live)
    assert (replay.status_code, replay.json()["phase"]) == (200, "pending")
    assert len(pending_rows(node)) == 1


def test_timeout_after_on_job_creation_locks_the_escrow(node, live, http):
    node.fund(POSTER, "100")
    add_fault(node, endpoint="POST /agent/jobs", kind="timeout_after", latency_ms=1500,
              count=1)
    with pytest.raises(requests.Timeout):
        http.post(f"{live.url}/agent/jobs", json=node.job_body(10), timeout=0.3)
    assert node.get("/agent/jobs")[1]["total"] == 1
    assert node.balance(POSTER) == 89_500_000


def test_drop_before_gives_connection_error_and_no_effect(node, live, http):
    node.fund(WORKER, "10")
    add_fault(node, endpoint="POST /wallet/transfer", kind="drop_before", count=1)
    with pytest.raises(requests.ConnectionError):
        post_transfer(http, live)
    assert pending_rows(node) == []
    assert node.get("/dev/faults")[1]["faults"] == []  # count consumed
    assert post_transfer(http, live).json()["phase"] == "pending"


def test_drop_before_on_accept_keeps_the_job_delivered(node, live, http):
    node.fund(POSTER, "100")
    job_id = node.create_job(10)
    node.to_delivered(job_id)
    add_fault(node, endpoint="POST /agent/jobs/<job_id>/accept", kind="drop_before", count=1)
    url = f"{live.url}/agent/jobs/{job_id}/accept"
    with pytest.raises(requests.ConnectionError):
        http.post(url, json={"poster_wallet": POSTER}, timeout=5)
    assert node.job(job_id)["status"] == "delivered"
    assert http.post(url, json={"poster_wallet": POSTER}, timeout=5).status_code == 200


def test_drop_before_under_the_test_client_explains_itself(node):
    add_fault(node, endpoint="GET /wallet/balance", kind="drop_before")
    status, body = node.get("/wallet/balance?miner_id=x")
    assert status == 500 and "werkzeug" in body["error"]


def test_error_5xx_json_and_html(node, live, http):
    node.fund(WORKER, "10")
    add_fault(node, endpoint="POST /wallet/transfer", kind="error_5xx", status=503, count=1)
    add_fault(node, endpoint="POST /wallet/transfer", kind="error_5xx", html=True, count=1)
    first = post_transfer(http, live)
    assert (first.status_code, first.json()) == (503, {"error": "Internal error"})
    assert first.headers["X-Request-Id"]
    second = post_transfer(http, live)
    assert second.status_code == 500
    assert second.headers["Content-Type"].startswith("text/html")
    assert "Internal Server Error" in second.text
    assert pending_rows(node) == []


def test_latency_delays_then_serves(node, live, http):
    node.fund(WORKER, "10")
    add_fault(node, endpoint="POST /wallet/transfer", kind="latency", latency_ms=300, count=1)
    started = time.monotonic()
    response = post_transfer(http, live)
    assert time.monotonic() - started >= 0.3
    assert (response.status_code, response.json()["phase"]) == (200, "pending")
    with pytest.raises(requests.Timeout):  # and a client shorter than the latency times out
        add_fault(node, endpoint="GET /wallet/balance", kind="latency", latency_ms=1000)
        http.get(f"{live.url}/wallet/balance?miner_id=x", timeout=0.2)


def test_rate_limit_fault(node, live, http):
    node.fund(WORKER, "10")
    add_fault(node, endpoint="POST /wallet/transfer", kind="rate_limit", count=1)
    response = post_transfer(http, live)
    assert response.status_code == 429
    assert response.json() == {"ok": False, "error": "rate_limited", "code": "ADMIN_RATE_LIMIT",
                               "limit": 12, "window_seconds": 60}
    assert response.headers["Retry-After"] == "60"
    assert pending_rows(node) == []
    assert post_transfer(http, live).status_code == 200


def test_count_fires_on_the_next_n_matching_calls_only(node):
    add_fault(node, endpoint="GET /wallet/balance", kind="error_5xx", count=2)
    node.get("/wallet/tx/" + "0" * 32)  # another endpoint does not consume the count
    codes = [node.get("/wallet/balance?miner_id=x")[0] for _ in range(4)]
    assert codes == [500, 500, 200, 200]


def test_seeded_probability_is_reproducible(tmp_path):
    def pattern(db_name: str) -> list[int]:
        app = create_app(str(tmp_path / db_name), ADMIN_KEY, faults=[{
            "endpoint": "GET /wallet/balance", "kind": "error_5xx", "probability": 0.5,
            "seed": 7}])
        client = app.test_client()
        return [client.get("/wallet/balance?miner_id=x").status_code for _ in range(30)]

    first = pattern("a.sqlite3")
    assert first == pattern("b.sqlite3")
    assert set(first) == {200, 500}
    assert 5 <= first.count(500) <= 25


def test_probability_bounds(node):
    add_fault(node, endpoint="GET /wallet/balance", kind="error_5xx", probability=0)
    assert node.get("/wallet/balance?miner_id=x")[0] == 200
    add_fault(node, endpoint="GET /wallet/balance", kind="error_5xx", probability=1, count=1)
    assert node.get("/wallet/balance?miner_id=x")[0] == 500
    rule = node.get("/dev/faults")[1]["faults"][0]
    assert (rule["matched"], rule["fired"]) == (2, 0)


def test_endpoint_matching(node):
    node.fund(POSTER, "100")
    one, two = node.create_job(1), node.create_job(2)
    add_fault(node, endpoint=f"post /agent/jobs/{two}/claim", kind="error_5xx", status=502)
    assert node.act(one, "claim", worker_wallet=WORKER)[0] == 200
    assert node.act(two, "claim", worker_wallet=WORKER)[0] == 502
    node.client.delete("/dev/faults")
    add_fault(node, endpoint="POST /agent/jobs/<job_id>/claim", kind="error_5xx")
    assert node.act(two, "claim", worker_wallet=WORKER)[0] == 500
    assert node.act(one, "deliver", worker_wallet=WORKER, result_summary="x")[0] == 200
    node.client.delete("/dev/faults")
    add_fault(node, endpoint="GET *", kind="error_5xx")
    assert node.get("/agent/jobs")[0] == 500
    assert node.get("/dev/state")[0] == 200  # /dev/* is never faulted
    node.client.delete("/dev/faults")
    add_fault(node, endpoint="*", kind="error_5xx")
    assert node.post("/agent/jobs", node.job_body(1))[0] == 500
    assert node.get("/wallet/balance?miner_id=x")[0] == 500
    assert node.client.delete("/dev/faults").json == {"ok": True, "cleared": 1}
    assert node.get("/wallet/balance?miner_id=x")[0] == 200


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"kind": "latency"}, "endpoint"),
        ({"endpoint": "wallet/transfer", "kind": "latency"}, "endpoint"),
        ({"endpoint": "*", "kind": "explode"}, "kind"),
        ({"endpoint": "*", "kind": "latency", "count": 0}, "count"),
        ({"endpoint": "*", "kind": "latency", "count": True}, "count"),
        ({"endpoint": "*", "kind": "latency", "probability": 1.5}, "probability"),
        ({"endpoint": "*", "kind": "error_5xx", "status": 404}, "status"),
        ({"endpoint": "*", "kind": "latency", "latency_ms": -1}, "latency_ms"),
        ({"endpoint": "*", "kind": "latency", "typo": 1}, "typo"),
    ],
)
def test_invalid_rules_name_the_field(node, rule, field):
    status, body = node.post("/dev/faults", rule)
    assert status == 400 and field in body["error"]
    assert node.get("/dev/faults")[1]["faults"] == []


def test_parse_fault_spec_compact_and_json():
    assert parse_fault_spec("POST /wallet/transfer=timeout_after:count=1,latency_ms=200") == [{
        "endpoint": "POST /wallet/transfer", "kind": "timeout_after", "count": 1,
        "probability": None, "seed": None, "latency_ms": 200, "status": None, "html": False}]
    rule = parse_fault_spec("* =error_5xx:status=502,html=true,probability=0.25,seed=3")[0]
    assert (rule["endpoint"], rule["status"], rule["html"], rule["probability"]) == (
        "*", 502, True, 0.25)
    assert parse_fault_spec("POST /agent/jobs=latency")[0]["latency_ms"] == 1000
    rules = parse_fault_spec('[{"endpoint": "*", "kind": "drop_before", "count": 2}]')
    assert (rules[0]["kind"], rules[0]["count"]) == ("drop_before", 2)
    for bad in ("POST /x", "POST /x=latency:count", "{not json", "*=nope"):
        with pytest.raises(FaultSpecError):
            parse_fault_spec(bad)


def test_create_app_faults_replace_the_stored_rules(make_app):
    node = Node(make_app(faults=[{"endpoint": "GET /wallet/balance", "kind": "error_5xx"}])
                .test_client())
    assert node.get("/wallet/balance?miner_id=x")[0] == 500
    node = Node(make_app().test_client())  # None keeps what is stored
    assert node.get("/wallet/balance?miner_id=x")[0] == 500
    node = Node(make_app(faults=[]).test_client())
    assert node.get("/wallet/balance?miner_id=x")[0] == 200
    with pytest.raises(ValueError, match="kind"):
        make_app(faults=[{"endpoint": "*", "kind": "boom"}])
