"""Balances, admin transfers, the pending pool and /wallet/tx (docs/escrow-node.md §1.10-1.12, 4)."""

from __future__ import annotations

import hashlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from devnode_support import ADMIN, ADMIN_KEY, WORKER, Node

from otc_bridge.dev.node.wallet import idempotency_tx_hash, quantize_rtc


def key_hash(key: str) -> str:
    return hashlib.sha256(f"wallet_transfer_idempotency:{key}".encode()).hexdigest()[:32]


# --- balance --------------------------------------------------------------------------------


def test_balance_shapes_and_rules(node):
    node.fund("alice", "1.5")
    assert node.get("/wallet/balance?miner_id=alice") == (
        200, {"miner_id": "alice", "amount_i64": 1_500_000, "amount_rtc": 1.5})
    assert node.get("/wallet/balance?address=alice")[1]["amount_i64"] == 1_500_000
    assert node.get("/wallet/balance?miner_id=alice&address=alice")[0] == 200
    assert node.get("/wallet/balance?miner_id=nobody")[1]["amount_i64"] == 0
    assert node.get("/wallet/balance?miner_id=alice&address=bob") == (400, {
        "ok": False, "error": "miner_id and address must match when both are provided"})
    assert node.get("/wallet/balance") == (
        400, {"ok": False, "error": "miner_id or address required"})
    for bad in ("%20alice", "a" * 81, "al%2Fice"):
        assert node.get(f"/wallet/balance?miner_id={bad}") == (
            400, {"ok": False, "error": "invalid miner_id"})


# --- transfer -------------------------------------------------------------------------------


def test_transfer_needs_the_admin_key(node):
    node.fund(WORKER, "10")
    assert node.transfer(1, headers={}) == (401, {
        "error": "Unauthorized - admin key required",
        "hint": "Use /wallet/transfer/signed for user transfers"})
    assert node.transfer(1, headers={"X-Admin-Key": ADMIN_KEY + "x"})[0] == 401
    assert node.transfer(1, headers={"X-API-Key": ADMIN_KEY})[0] == 401


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([1], "invalid_json_body"),
        ({"to_miner": "c", "amount_rtc": 1}, "missing_from_or_to"),
        ({"from_miner": " ", "to_miner": "c", "amount_rtc": 1}, "missing_from_or_to"),
        ({"from_miner": 5, "to_miner": "c", "amount_rtc": 1}, "invalid_from_or_to_type"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": "1"}, "amount_not_number"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": True}, "amount_not_number"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": 0}, "amount_must_be_positive"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": -1}, "amount_must_be_positive"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": 1e-7},
         "amount_too_small_after_quantization"),
        ({"from_miner": "b", "to_miner": "c", "amount_rtc": 1e20}, "amount_exceeds_i64"),
    ],
)
def test_transfer_body_codes(node, body, code):
    status, answer = node.post("/wallet/transfer", body, headers=ADMIN)
    assert (status, answer["error"]) == (400, code)
    assert "details" in answer


def test_transfer_rejects_non_finite_amount(client):
    response = client.post(
        "/wallet/transfer", headers={**ADMIN, "Content-Type": "application/json"},
        data='{"from_miner": "b", "to_miner": "c", "amount_rtc": Infinity}')
    assert (response.status_code, response.json["error"]) == (400, "amount_not_finite")


def test_transfer_without_json_content_type_is_invalid_json_body(client):
    response = client.post("/wallet/transfer", headers=ADMIN, data='{"from_miner": "b"}')
    assert (response.status_code, response.json["error"]) == (400, "invalid_json_body")


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, 7, "ümlaut"])
def test_invalid_idempotency_key(node, key):
    node.fund(WORKER, "10")
    assert node.transfer(1, key=key) == (400, {"error": "invalid_idempotency_key"})


def test_transfer_queues_without_moving_money(make_app, frozen_clock):
    node = Node(make_app(confirm_delay_seconds=86_400).test_client())
    node.fund(WORKER, "10")
    status, body = node.transfer(2.01, key="order-1:payout")
    now = node.get("/dev/clock")[1]["now"]
    assert status == 200
    assert body == {
        "ok": True, "phase": "pending", "pending_id": 1, "tx_hash": key_hash("order-1:payout"),
        "from_miner": WORKER, "to_miner": "carol", "amount_rtc": 2.01,
        "confirms_at": now + 86_400, "confirms_in_hours": 24.0,
        "message": "Transfer pending. Will confirm in 24 hours unless voided.",
    }
    assert node.balance(WORKER) == 10_000_000 and node.balance("carol") == 0


def test_amounts_are_quantized_down_with_decimal():
    assert quantize_rtc(2.01) == 2_010_000  # unlike the job's float truncation
    assert quantize_rtc(2.0000019) == 2_000_001
    assert quantize_rtc(3) == 3_000_000
    assert idempotency_tx_hash("k") == key_hash("k")


def test_payout_of_the_untruncated_reward_fails(node):
    # docs/escrow-node.md §0: after a 2.01-RTC job the worker holds 2,009,999 µRTC, not 2.01 RTC.
    node.fund(WORKER, "2.009999")
    status, body = node.transfer(2.01, key="k")
    assert status == 400
    assert body == {"error": "Insufficient available balance", "balance_rtc": 2.009999,
                    "pending_debits_rtc": 0.0, "available_rtc": 2.009999,
                    "requested_rtc": 2.01}
    assert node.transfer(2.009999, key="k")[0] == 200


def test_available_balance_subtracts_pending_outgoing(node):
    node.fund(WORKER, "10")
    assert node.transfer(6, key="a")[0] == 200
    status, body = node.transfer(5, key="b")
    assert status == 400
    assert (body["pending_debits_rtc"], body["available_rtc"]) == (6.0, 4.0)
    assert node.transfer(4, key="c")[0] == 200


def test_self_transfer_and_unkeyed_transfers_are_accepted(node):
    node.fund(WORKER, "10")
    first = node.transfer(1, frm=WORKER, to=WORKER)[1]
    second = node.transfer(1)[1]
    assert first["ok"] and second["ok"]
    assert first["tx_hash"] != second["tx_hash"] and len(first["tx_hash"]) == 32


def test_idempotent_replay_and_conflicts(node):
    node.fund(WORKER, "10")
    first = node.transfer(3, key="k1")[1]
    status, replay = node.transfer(3, key="k1")
    assert status == 200
    assert replay["message"] == "Transfer already pending for idempotency key."
    assert (replay["pending_id"], replay["tx_hash"], replay["phase"]) == (
        first["pending_id"], first["tx_hash"], "pending")
    # An omitted reason is stored as "admin_transfer": an explicit other reason conflicts.
    assert node.transfer(3, key="k1", reason="admin_transfer")[0] == 200
    for changed in ({"amount_rtc": 3.000001}, {"to": "dave"}, {"frm": "carol"},
                    {"reason": "payout"}):
        args = {"amount_rtc": 3, "key": "k1", **changed}
        assert node.transfer(**args) == (
            409, {"error": "idempotency_key_conflict", "tx_hash": key_hash("k1")})
    assert node.get("/pending/list?status=all", headers=ADMIN)[1]["count"] == 1


def test_replay_reports_confirmed_and_voided_phases(node):
    node.fund(WORKER, "10")
    node.transfer(1, key="paid")
    node.transfer(2, key="dead")
    assert node.post("/pending/void", {"tx_hash": key_hash("dead")}, headers=ADMIN)[0] == 200
    assert node.post("/pending/confirm", headers=ADMIN)[1]["confirmed_count"] == 1
    assert node.transfer(1, key="paid")[1]["phase"] == "confirmed"
    status, body = node.transfer(2, key="dead")
    assert (status, body["ok"], body["phase"]) == (200, True, "voided")
    # A voided key is burned: different fields conflict, it never pays again.
    assert node.transfer(1.5, key="dead")[0] == 409
    assert node.balance("carol") == 1_000_000


def test_concurrent_identical_keyed_transfers_insert_one_row(node, live, http):
    node.fund(WORKER, "100")
    body = {"from_miner": WORKER, "to_miner": "carol", "amount_rtc": 10,
            "idempotency_key": "race-1"}

    def send(_: int):
        response = http.post(f"{live.url}/wallet/transfer", json=body, headers=ADMIN, timeout=10)
        return response.status_code, response.json()["pending_id"]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(send, range(10)))
    assert {status for status, _ in results} == {200}
    assert len({pending_id for _, pending_id in results}) == 1
    rows = node.get("/pending/list?status=all", headers=ADMIN)[1]["pending"]
    assert len(rows) == 1 and rows[0]["tx_hash"] == key_hash("race-1")


# --- pending pool ---------------------------------------------------------------------------


def test_confirm_waits_for_the_delay_then_moves_money(make_app, tmp_path, frozen_clock):
    node = Node(make_app(confirm_delay_seconds=3600).test_client())
    node.fund(WORKER, "10")
    tx = node.transfer(4, key="k")[1]["tx_hash"]
    assert node.post("/pending/confirm", headers=ADMIN)[1]["confirmed_count"] == 0
    assert node.get(f"/wallet/tx/{tx}") == (200, {
        "ok": True, "tx_hash": tx, "status": "pending", "confirmations": 0,
        "block_height": None})
    node.advance(3700)
    status, body = node.post("/pending/confirm", headers=ADMIN)
    assert status == 200
    assert (body["selected_count"], body["confirmed_count"], body["confirmed_ids"]) == (1, 1, [1])
    assert (body["stale_pending_count_before"], body["max_confirm_overdue_seconds_before"]) == (
        1, 100)
    assert (body["stale_pending_count"], body["errors"], body["overdue_stats_error"]) == (
        0, None, None)
    assert node.balance(WORKER) == 6_000_000 and node.balance("carol") == 4_000_000
    status, body = node.get(f"/wallet/tx/{tx}")
    assert (status, body["status"], body["confirmations"]) == (200, "confirmed", 1)
    assert isinstance(body["block_height"], int)
    conn = sqlite3.connect(tmp_path / "devnode.sqlite3")
    try:
        ledger = conn.execute("SELECT miner_id, delta_i64, reason FROM ledger ORDER BY id").fetchall()
    finally:
        conn.close()
    assert ledger == [(WORKER, -4_000_000, f"transfer_out:carol:{tx}"),
                      ("carol", 4_000_000, f"transfer_in:{WORKER}:{tx}")]


def test_confirm_voids_when_sender_balance_dropped(node):
    node.fund(WORKER, "10")
    node.transfer(8, key="payout")
    # Job creation ignores pending debits, so the sender can spend the money meanwhile.
    assert node.post("/agent/jobs", node.job_body(5, poster=WORKER))[0] == 201
    body = node.post("/pending/confirm", headers=ADMIN)[1]
    assert (body["selected_count"], body["confirmed_count"]) == (1, 0)
    row = node.get("/pending/list?status=all", headers=ADMIN)[1]["pending"][0]
    assert (row["status"], row["voided_by"], row["voided_reason"]) == (
        "voided", "system", "insufficient_balance_at_confirm")
    assert node.get(f"/wallet/tx/{key_hash('payout')}")[1]["status"] == "failed"
    assert node.balance("carol") == 0


def test_confirm_runs_oldest_first_within_limit(node):
    node.fund(WORKER, "10")
    for i in range(3):
        node.transfer(1, key=f"k{i}")
    assert node.post("/pending/confirm?limit=2", headers=ADMIN)[1]["confirmed_ids"] == [1, 2]
    assert node.post("/pending/confirm", {"limit": 5}, headers=ADMIN)[1]["confirmed_ids"] == [3]
    assert node.post("/pending/confirm?limit=x", headers=ADMIN) == (
        400, {"ok": False, "error": "limit must be an integer"})
    assert node.post("/pending/confirm")[0] == 401
    assert node.post("/dev/confirm")[1]["selected_count"] == 0


def test_void_rules(node):
    node.fund(WORKER, "10")
    first = node.transfer(1, key="a")[1]
    node.transfer(1, key="b")
    assert node.post("/pending/void", {"pending_id": 1})[0] == 401
    assert node.post("/pending/void", {}, headers=ADMIN) == (
        400, {"error": "Provide pending_id or tx_hash"})
    assert node.post("/pending/void", {"pending_id": 99}, headers=ADMIN) == (
        404, {"error": "Pending transfer not found"})
    assert node.post("/pending/void", {"pending_id": first["pending_id"], "reason": "oops"},
                     headers=ADMIN) == (200, {
        "ok": True, "voided_id": 1, "from_miner": WORKER, "to_miner": "carol",
        "amount_rtc": 1.0, "voided_by": "admin", "reason": "oops"})
    assert node.post("/pending/void", {"pending_id": 1}, headers=ADMIN) == (400, {
        "error": "Cannot void - status is 'voided'",
        "hint": "Only pending transfers can be voided"})
    assert node.post("/dev/void", {"tx_hash": key_hash("b")})[1]["voided_by"] == "dev"
    assert node.balance(WORKER) == 10_000_000


def test_pending_list_access_order_and_ignored_offset(node):
    node.fund(WORKER, "10")
    node.fund("carol", "10")
    for i in range(3):
        node.transfer(1, key=f"w{i}")
    node.transfer(1, key="c0", frm="carol", to="erin")
    assert node.get("/pending/list") == (401, {
        "error": "Unauthorized. Provide miner_id for public check or Admin Key for full list."})
    assert node.get("/pending/list", headers={"X-Admin-Key": "wrong"})[0] == 401
    all_rows = node.get("/pending/list", headers=ADMIN)[1]
    assert [row["id"] for row in all_rows["pending"]] == [4, 3, 2, 1]
    assert set(all_rows["pending"][0]) == {
        "id", "ts", "from_miner", "to_miner", "amount_rtc", "reason", "status", "confirms_at",
        "voided_by", "voided_reason", "tx_hash"}
    assert node.get("/pending/list", headers={"X-API-Key": ADMIN_KEY})[1]["count"] == 4
    public = node.get("/pending/list?miner_id=erin")[1]
    assert [row["id"] for row in public["pending"]] == [4]
    # A wrong key with miner_id is silently public.
    assert node.get("/pending/list?miner_id=erin", headers={"X-Admin-Key": "no"})[1]["count"] == 1
    page0 = node.get("/pending/list?limit=1&offset=0", headers=ADMIN)[1]["pending"]
    page1 = node.get("/pending/list?limit=1&offset=1", headers=ADMIN)[1]["pending"]
    assert page0 == page1 and page0[0]["id"] == 4
    assert node.get("/pending/list?limit=0", headers=ADMIN)[1]["count"] == 1
    assert node.get("/pending/list?limit=x", headers=ADMIN) == (
        400, {"ok": False, "error": "limit must be an integer"})
    node.post("/pending/confirm", headers=ADMIN)
    assert node.get("/pending/list", headers=ADMIN)[1]["count"] == 0
    assert node.get("/pending/list?status=confirmed", headers=ADMIN)[1]["count"] == 4
    assert node.get("/pending/list?status=all", headers=ADMIN)[1]["count"] == 4


def test_tx_status_not_found_and_bad_hash(node):
    assert node.get(f"/wallet/tx/{'0' * 32}") == (
        404, {"ok": False, "status": "not_found", "error": "transaction_not_found"})
    for bad in ("abc", "g" * 32, "0" * 33):
        assert node.get(f"/wallet/tx/{bad}") == (
            400, {"ok": False, "error": "tx_hash must be exactly 32 hexadecimal characters"})


# --- admin rate limit -----------------------------------------------------------------------


def test_rate_limit_is_off_by_default(node):
    for _ in range(15):
        assert node.get("/pending/list", headers=ADMIN)[0] == 200


def test_admin_rate_limit_per_bucket_counted_before_auth(make_app):
    node = Node(make_app(admin_rate_limit_max=3, admin_rate_limit_window_seconds=60)
                .test_client())
    node.fund(WORKER, "10")
    assert node.transfer(1, headers={})[0] == 401  # counted although unauthorized
    assert node.transfer(1)[0] == 200
    assert node.transfer(1)[0] == 200
    response = node.client.post("/wallet/transfer", json={}, headers=ADMIN)
    assert response.status_code == 429
    assert response.json == {"ok": False, "error": "rate_limited", "code": "ADMIN_RATE_LIMIT",
                             "limit": 3, "window_seconds": 60}
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # /pending/* is another bucket, shared by all its routes; /agent and /wallet/tx are free.
    assert node.get("/pending/list", headers=ADMIN)[0] == 200
    assert node.post("/pending/confirm", headers=ADMIN)[0] == 200
    # (already confirmed by the call above, so not voidable: 400, not 429)
    assert node.post("/pending/void", {"pending_id": 1}, headers=ADMIN)[0] == 400
    assert node.get("/pending/list", headers=ADMIN)[0] == 429
    assert node.get(f"/wallet/tx/{'0' * 32}")[0] == 404
    assert node.get("/wallet/balance?miner_id=x")[0] == 200
    node.advance(60)
    assert node.transfer(1)[0] == 200
