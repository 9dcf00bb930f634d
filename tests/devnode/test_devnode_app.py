"""App factory, shared conventions (docs/escrow-node.md §1.1) and the /dev/* endpoints."""

from __future__ import annotations

import json
import sqlite3

import pytest
from devnode_support import ADMIN, ADMIN_KEY, POSTER, WORKER, Node

from otc_bridge.dev.node import create_app
from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY

# --- factory --------------------------------------------------------------------------------


def test_short_admin_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="32"):
        create_app(str(tmp_path / "n.sqlite3"), "short")
    assert not (tmp_path / "n.sqlite3").exists()  # refused before touching the disk
    assert len(DEFAULT_DEV_ADMIN_KEY) >= 32
    create_app(str(tmp_path / "n.sqlite3"), DEFAULT_DEV_ADMIN_KEY)


@pytest.mark.parametrize(
    "kwargs",
    [{"confirm_delay_seconds": -1}, {"admin_rate_limit_max": True},
     {"admin_rate_limit_window_seconds": 0}],
)
def test_bad_settings_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        create_app(str(tmp_path / "n.sqlite3"), ADMIN_KEY, **kwargs)


def test_db_is_created_in_wal_mode_and_reopened_with_its_data(make_app, tmp_path):
    Node(make_app().test_client()).fund(POSTER, "5")
    conn = sqlite3.connect(tmp_path / "devnode.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        conn.close()
    assert Node(make_app().test_client()).balance(POSTER) == 5_000_000


# --- conventions ----------------------------------------------------------------------------


def test_request_id_is_echoed_or_generated(client):
    echoed = client.get("/wallet/balance?miner_id=a", headers={"X-Request-Id": "req-42"})
    assert echoed.headers["X-Request-Id"] == "req-42"
    generated = client.post("/agent/jobs/nope/claim", json={"worker_wallet": "w"})
    assert generated.status_code == 404 and len(generated.headers["X-Request-Id"]) == 32
    assert generated.headers["X-Content-Type-Options"] == "nosniff"
    unauthorized = client.post("/wallet/transfer", json={})
    assert unauthorized.status_code == 401 and unauthorized.headers["X-Request-Id"]


def test_json_keys_are_sorted(client):
    text = client.get("/wallet/balance?miner_id=a").get_data(as_text=True)
    keys = list(json.loads(text))
    assert keys == sorted(keys) and text.index('"amount_i64"') < text.index('"miner_id"')


def test_body_over_one_megabyte_is_413(client, live, http):
    big = json.dumps({"poster_wallet": "x" * (1024 * 1024)})
    expected = {"ok": False, "code": "REQUEST_TOO_LARGE",
                "error": "request body exceeds the 1 MB limit"}
    response = client.post("/agent/jobs", data=big, content_type="application/json")
    assert (response.status_code, response.json) == (413, expected)
    response = http.post(f"{live.url}/wallet/transfer", data=big, timeout=10,
                         headers={**ADMIN, "Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (413, expected)
    assert response.headers["X-Request-Id"]


def test_body_without_json_content_type_counts_as_missing(node, client):
    response = client.post("/agent/jobs", data=json.dumps(node.job_body()))
    assert (response.status_code, response.json) == (400, {"error": "JSON body required"})
    response = client.post("/agent/jobs/x/claim", data='{"worker_wallet": "w"}')
    assert response.json == {"error": "worker_wallet required"}


def test_database_errors_give_json_500_on_agent_and_html_500_on_transfer(node, tmp_path):
    node.fund(WORKER, "10")
    conn = sqlite3.connect(tmp_path / "devnode.sqlite3")
    conn.execute("ALTER TABLE balances RENAME TO balances_gone")
    conn.commit()
    conn.close()
    assert node.post("/agent/jobs", node.job_body(1)) == (500, {"error": "Internal error"})
    response = node.client.post("/wallet/transfer", headers=ADMIN, json={
        "from_miner": WORKER, "to_miner": "c", "amount_rtc": 1})
    assert response.status_code == 500
    assert response.content_type.startswith("text/html")


def test_agent_routes_need_no_auth_at_all(node):
    # docs/escrow-node.md §2: anyone naming the public poster string can accept.
    node.fund(POSTER, "100")
    job_id = node.create_job(10)
    node.to_delivered(job_id, worker="mallory")
    assert node.act(job_id, "accept", poster_wallet=POSTER)[0] == 200
    assert node.balance("mallory") == 10_000_000


# --- /dev/* ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"amount_rtc": "1"}, "wallet"),
        ({"wallet": "", "amount_rtc": "1"}, "wallet"),
        ({"wallet": "a", "amount_rtc": True}, "amount_rtc"),
        ({"wallet": "a", "amount_rtc": None}, "amount_rtc"),
        ({"wallet": "a", "amount_rtc": "abc"}, "amount_rtc"),
        ({"wallet": "a", "amount_rtc": "NaN"}, "amount_rtc must be finite"),
        ({"wallet": "a", "amount_rtc": "-1"}, "amount_rtc must not be negative"),
        ({"wallet": "a", "amount_rtc": "0.0000001"}, "at most 6 decimals"),
        ({"wallet": "a", "amount_rtc": 1e30}, "too large"),
    ],
)
def test_fund_validation(node, body, fragment):
    status, answer = node.post("/dev/fund", body)
    assert status == 400 and fragment in answer["error"]
    assert node.state()["total_balance_i64"] == 0


def test_fund_adds_and_reports_the_new_balance(node):
    assert node.post("/dev/fund", {"wallet": "a", "amount_rtc": "2.000001"}) == (200, {
        "ok": True, "wallet": "a", "amount_i64": 2_000_001, "amount_rtc": 2.000001})
    assert node.post("/dev/fund", {"wallet": "a", "amount_rtc": 0.5})[1]["amount_i64"] == 2_500_001
    assert node.post("/dev/fund", {"wallet": "a", "amount_rtc": "1.500000000"})[0] == 200


def test_clock_moves_and_can_be_reset(node):
    start = node.get("/dev/clock")[1]
    assert start["offset_seconds"] == 0
    moved = node.post("/dev/clock", {"advance_seconds": 3600})[1]
    assert moved["offset_seconds"] == 3600 and moved["now"] >= start["now"] + 3600
    assert node.post("/dev/clock", {"advance_seconds": 60})[1]["offset_seconds"] == 3660
    assert node.post("/dev/clock", {"set_offset_seconds": -5})[1]["offset_seconds"] == -5
    assert node.post("/dev/clock", {"advance_seconds": "1"})[0] == 400
    assert node.post("/dev/clock", {})[0] == 400


def test_expire_endpoint(node):
    assert node.post("/dev/jobs/job_missing/expire") == (404, {"error": "Job not found"})
    node.fund(POSTER, "10")
    job_id = node.create_job(1)
    status, body = node.post(f"/dev/jobs/{job_id}/expire")
    assert status == 200 and body["expires_at"] == node.get("/dev/clock")[1]["now"] - 1
    assert body["status"] == "open"  # lazy: nothing happens until the job is touched
    assert node.job(job_id)["status"] == "expired"


def test_state_reports_totals(node):
    node.fund(POSTER, "100")
    node.fund(WORKER, "5")
    job_id = node.create_job(10)
    node.create_job(20)
    node.transfer(2, key="k")
    node.post("/dev/void", {"tx_hash": node.transfer(1, key="v")[1]["tx_hash"]})
    node.act(job_id, "cancel", poster_wallet=POSTER)
    state = node.state()
    assert state["balances"] == {"agent_escrow": 21_000_000, POSTER: 79_000_000,
                                 WORKER: 5_000_000}
    assert state["total_balance_i64"] == state["minted_i64"] == 105_000_000
    assert state["agent_escrow_i64"] == state["escrow_locked_i64"] == 21_000_000
    assert state["pending"] == {"pending": {"count": 1, "amount_i64": 2_000_000},
                                "voided": {"count": 1, "amount_i64": 1_000_000}}
    assert state["jobs_by_status"] == {"cancelled": 1, "open": 1}
