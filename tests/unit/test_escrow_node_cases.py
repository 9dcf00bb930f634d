"""Escrow-node client: per-endpoint answers beyond the generic table, and the admin-key rules.

Each case cites the docs/escrow-node.md section whose behaviour it pins down. Well-formed
answers come from tests/node_bodies.py (held against the dev node by tests/contract); the
hand-written bodies left here are the deliberately broken or partial ones.
"""

from __future__ import annotations

import json
import logging

import node_bodies as bodies
import pytest
import responses

from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.results import EscrowClientError, InsecureAdminTransport, Outcome

BASE = "http://127.0.0.1:8099"
ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnop"
JOB_ID = "job_0123456789abcdef"
PAY_KEY = "otc_payout:abc"
TX = payout_tx_hash(PAY_KEY)
JOB_ROW = bodies.job_row(
    job_id=JOB_ID, poster_wallet="alice", title="OTC order 42",
    description="Escrow for OTC order 42 (sell RTC)", reward_rtc=10.0, reward_i64=10_000_000,
    fee_i64=500_000, created_at=1_795_234_790, expires_at=1_795_839_590, tags='["otc_bridge"]')
TRANSFER_OK = bodies.transfer_answer(pending_id=7, tx_hash=TX, from_miner="otc_bridge_worker",
                                     to_miner="carol", amount_i64=10_000_000,
                                     confirms_at=1_795_234_790, confirm_delay_seconds=86_400)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> EscrowNodeClient:
    return EscrowNodeClient(BASE, admin_key=ADMIN_KEY)


def _transfer(client: EscrowNodeClient):
    return client.transfer(from_wallet="otc_bridge_worker", to_wallet="carol",
                           amount_micro_rtc=10_000_000, reason="otc_payout:42",
                           idempotency_key=PAY_KEY)


# -- GET /agent/jobs/<id> (§1.8) --------------------------------------------------------------

@pytest.mark.parametrize(("tags", "parsed"), [
    ('["otc_bridge", "escrow"]', ["otc_bridge", "escrow"]),
    (["otc_bridge"], ["otc_bridge"]),
    ("not json [", []),
    ('{"a": 1}', []),
    ('["ok", 3, null]', ["ok"]),
    (None, []),
])
def test_get_job_parses_tags_from_json_string(tags, parsed, rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs/{JOB_ID}", json={"ok": True, "job": {**JOB_ROW,
                                                                                "tags": tags}})
    read = client.get_job(JOB_ID)
    assert read.result.ok and read.job.tags == parsed
    assert read.job.worker_wallet is None


@pytest.mark.parametrize("change", [
    {"job_id": "job_somebody_else"},
    {"reward_i64": 10.0},
    {"reward_i64": "10000000"},
    {"escrow_i64": True},
    {"escrow_i64": None},
    {"platform_fee_i64": 1.5},
    {"status": None},
    {"worker_wallet": 42},
    {"expires_at": "soon"},
])
def test_get_job_with_unusable_job_is_unknown(change, rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs/{JOB_ID}", json={"ok": True, "job": {**JOB_ROW,
                                                                                **change}})
    read = client.get_job(JOB_ID)
    assert read.result.outcome is Outcome.UNKNOWN and read.job is None
    assert read.result.error.startswith("bad shape:")


def test_get_job_without_job_object_is_unknown(rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs/{JOB_ID}", json={"ok": True, "job": [JOB_ROW]})
    assert client.get_job(JOB_ID).result.unknown


def test_get_job_404_is_failed_not_found(rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs/{JOB_ID}", status=404,
             json=bodies.error(bodies.JOB_NOT_FOUND))
    read = client.get_job(JOB_ID)
    assert read.result.failed and read.not_found and read.job is None


@pytest.mark.parametrize("answer", [{"status": 500, "json": {"error": "Internal error"}},
                                    {"status": 404, "body": "<html>nginx</html>"}])
def test_get_job_ambiguous_answers_are_not_not_found(answer, rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs/{JOB_ID}", **answer)
    read = client.get_job(JOB_ID)
    assert read.result.unknown and not read.not_found


def test_job_id_is_quoted_into_one_path_segment(rsps, client):
    rsps.add("POST", f"{BASE}/agent/jobs/job%2F..%2Fx%3Fa%3D1/claim", status=409,
             json={"error": "Job is not open (status: claimed)"})
    result = client.claim_job("job/../x?a=1", worker_wallet="w")
    assert result.failed and result.endpoint == "POST /agent/jobs/<job_id>/claim"


# -- job transitions (§1.3-§1.7) --------------------------------------------------------------

@pytest.mark.parametrize(("status", "outcome"), [("cancelled", Outcome.OK),
                                                 ("expired", Outcome.OK),
                                                 ("open", Outcome.UNKNOWN)])
def test_cancel_answers(status, outcome, rsps, client):
    rsps.add("POST", f"{BASE}/agent/jobs/{JOB_ID}/cancel",
             json={**bodies.job_cancelled(job_id=JOB_ID, escrow_i64=10_500_000), "status": status})
    assert client.cancel_job(JOB_ID, poster_wallet="alice").outcome is outcome


def test_accept_without_rating_sends_no_rating(rsps, client):
    rsps.add("POST", f"{BASE}/agent/jobs/{JOB_ID}/accept",
             json=bodies.job_completed(job_id=JOB_ID, worker_wallet="otc_bridge_worker",
                                       reward_i64=10_000_000, fee_i64=500_000))
    assert client.accept_job(JOB_ID, poster_wallet="alice").ok
    assert json.loads(rsps.calls[0].request.body) == {"poster_wallet": "alice"}


def test_create_job_with_non_string_job_id_is_unknown(rsps, client):
    rsps.add("POST", f"{BASE}/agent/jobs", status=201, json={"ok": True, "job_id": 17})
    result = client.create_job(poster_wallet="alice", amount_micro_rtc=10_000_000,
                               ttl_seconds=3600, title="title", description="d" * 20, tags=[])
    assert result.unknown and result.status_code == 201


def test_list_open_jobs_pages_with_limit_and_offset(rsps, client):
    rsps.add("GET", f"{BASE}/agent/jobs", json={"ok": True, "jobs": [{"job_id": JOB_ID}]})
    assert client.list_open_jobs(limit=25, offset=50).body["jobs"] == [{"job_id": JOB_ID}]
    assert rsps.calls[0].request.params == {"status": "open", "limit": "25", "offset": "50"}


# -- /wallet/balance (§1.10) ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "outcome", "amount"), [
    (bodies.balance("alice", 0), Outcome.OK, 0),
    ({"miner_id": "bob", "amount_i64": 5, "amount_rtc": 0.000005}, Outcome.UNKNOWN, None),
    ({"miner_id": "alice", "amount_i64": True}, Outcome.UNKNOWN, None),
    ({"miner_id": "alice", "amount_i64": 5.0}, Outcome.UNKNOWN, None),
])
def test_balance_answers(body, outcome, amount, rsps, client):
    rsps.add("GET", f"{BASE}/wallet/balance", json=body)
    result, balance = client.balance_micro_rtc("alice")
    assert (result.outcome, balance) == (outcome, amount)


def test_balance_admin_gated_deployment_is_failed(rsps, client):
    rsps.add("GET", f"{BASE}/wallet/balance", status=401, json=bodies.error(bodies.ADMIN_REQUIRED))
    result, balance = client.balance_micro_rtc("alice")
    assert result.failed and balance is None


# -- /wallet/tx/<hash> (§1.12) ----------------------------------------------------------------

@pytest.mark.parametrize(("status_code", "body", "outcome", "status"), [
    (200, bodies.tx_answer(TX, "pending"), Outcome.OK, "pending"),
    (200, bodies.tx_answer(TX, "confirmed", 2_992_058), Outcome.OK, "confirmed"),
    (200, bodies.tx_answer(TX, "failed"), Outcome.OK, "failed"),
    (404, bodies.tx_not_found(), Outcome.OK, "not_found"),
    (200, {"ok": True, "status": "not_found"}, Outcome.UNKNOWN, None),
    (404, {"ok": False, "status": "pending", "error": "x"}, Outcome.UNKNOWN, None),
    (404, {"error": "Not Found"}, Outcome.UNKNOWN, None),
    (400, {"ok": False, "error": "tx_hash must be exactly 32 hexadecimal characters"},
     Outcome.FAILED, None),
])
def test_tx_status_answers(status_code, body, outcome, status, rsps, client):
    rsps.add("GET", f"{BASE}/wallet/tx/{TX}", status=status_code, json=body)
    answer = client.tx_status(TX)
    assert (answer.result.outcome, answer.status) == (outcome, status)
    assert answer.result.status_code == status_code


# -- /wallet/transfer (§1.11, §4) -------------------------------------------------------------

@pytest.mark.parametrize(("change", "outcome"), [
    ({}, Outcome.OK),
    ({"phase": "confirmed"}, Outcome.OK),
    ({"phase": "voided"}, Outcome.OK),  # replay of a voided key: ok, the caller reads phase
    ({"phase": "confirming"}, Outcome.UNKNOWN),
    ({"phase": None}, Outcome.UNKNOWN),
    ({"pending_id": True}, Outcome.UNKNOWN),
    ({"pending_id": None}, Outcome.UNKNOWN),
    ({"ok": False}, Outcome.UNKNOWN),
    ({"tx_hash": None}, Outcome.UNKNOWN),
])
def test_transfer_answers(change, outcome, rsps, client):
    rsps.add("POST", f"{BASE}/wallet/transfer", json={**TRANSFER_OK, **change})
    assert _transfer(client).outcome is outcome


def test_transfer_with_foreign_tx_hash_is_unknown_and_logged(rsps, client, caplog):
    rsps.add("POST", f"{BASE}/wallet/transfer", json={**TRANSFER_OK, "tx_hash": "f" * 32})
    with caplog.at_level(logging.ERROR, logger="otc_bridge.node"):
        result = _transfer(client)
    assert result.unknown and result.error.startswith("bad shape:")
    assert any(r.levelno == logging.ERROR and "f" * 32 in r.getMessage() for r in caplog.records)


def test_transfer_idempotency_conflict_is_failed(rsps, client):
    rsps.add("POST", f"{BASE}/wallet/transfer", status=409,
             json=bodies.error(bodies.IDEMPOTENCY_CONFLICT, tx_hash=TX))
    result = _transfer(client)
    assert result.failed and result.error == bodies.IDEMPOTENCY_CONFLICT


def test_payout_tx_hash_is_the_nodes_formula():
    assert payout_tx_hash(PAY_KEY) == "915d733f34397e4742408b9c49d528dc"


# -- retry-after, logging, error length ----------------------------------------------------------

@pytest.mark.parametrize(("header", "seconds"), [("0", 0), ("120", 120), (" 5 ", 5),
                                                 ("-5", 60), ("1.5", 60), ("", 60)])
def test_retry_after_parsing(header, seconds, rsps, client):
    rsps.add("POST", f"{BASE}/pending/confirm", status=429, headers={"Retry-After": header},
             json={"ok": False, "error": "rate_limited"})
    assert client.confirm_pending().retry_after_seconds == seconds


def test_non_ok_outcome_logged_once_as_warning(rsps, client, caplog):
    rsps.add("POST", f"{BASE}/agent/jobs/{JOB_ID}/claim", status=409,
             json={"error": "Job is not open (status: claimed)"})
    with caplog.at_level(logging.DEBUG, logger="otc_bridge.node"):
        client.claim_job(JOB_ID, worker_wallet="w")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("POST /agent/jobs/<job_id>/claim", "failed", "409", "not open", "latency_ms="):
        assert part in message


def test_ok_outcome_not_logged(rsps, client, caplog):
    rsps.add("POST", f"{BASE}/wallet/transfer", json=TRANSFER_OK)
    with caplog.at_level(logging.DEBUG, logger="otc_bridge.node"):
        assert _transfer(client).ok
    assert caplog.records == []


def test_long_node_error_is_cut(rsps, client):
    rsps.add("POST", f"{BASE}/pending/void", status=400, json={"error": "x" * 5000})
    result = client.void_pending(tx_hash=TX, reason="r")
    assert result.failed and len(result.error) == 300


# -- the admin key: TLS or loopback only (docs/protocol.md §5, docs/escrow-node.md §2) --------------------------------

@pytest.mark.parametrize(("base_url", "allow", "refused"), [
    ("http://example.com", False, True),
    ("http://example.com:8099/", False, True),
    ("http://10.0.0.5:8099", False, True),
    ("http://127.0.0.1.evil.example", False, True),
    ("http://localhost.evil.example", False, True),
    ("http://127.0.0.1:8099", False, False),
    ("http://127.9.8.7", False, False),
    ("http://localhost:8099", False, False),
    ("http://LOCALHOST", False, False),
    ("http://[::1]:8099", False, False),
    ("https://example.com", False, False),
    ("http://example.com", True, False),
])
def test_admin_key_transport_rule(base_url, allow, refused):
    if refused:
        with pytest.raises(InsecureAdminTransport):
            EscrowNodeClient(base_url, admin_key=ADMIN_KEY, allow_insecure_admin=allow)
    else:
        EscrowNodeClient(base_url, admin_key=ADMIN_KEY, allow_insecure_admin=allow)


def test_insecure_admin_transport_is_a_value_error():
    assert issubclass(InsecureAdminTransport, ValueError)
    assert issubclass(InsecureAdminTransport, EscrowClientError)


def test_plain_http_without_admin_key_is_allowed_for_public_calls(rsps):
    client = EscrowNodeClient("http://example.com", admin_key=None)
    rsps.add("GET", "http://example.com/wallet/tx/" + TX, json={"ok": True, "status": "pending"})
    assert client.tx_status(TX).result.ok


@pytest.mark.parametrize("invoke", [_transfer, lambda c: c.confirm_pending(),
                                    lambda c: c.void_pending(tx_hash=TX, reason="r")])
def test_admin_calls_without_key_refused_before_sending(invoke, rsps):
    client = EscrowNodeClient("http://example.com", admin_key=None)
    with pytest.raises(EscrowClientError):
        invoke(client)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("invoke", [_transfer, lambda c: c.confirm_pending(),
                                    lambda c: c.void_pending(tx_hash=TX, reason="r")])
def test_admin_transport_checked_again_on_every_admin_call(invoke, rsps):
    client = EscrowNodeClient("https://node.example", admin_key=ADMIN_KEY)
    client._transport.base_url = "http://node.example"  # whatever changed it, the key must not leave
    with pytest.raises(InsecureAdminTransport):
        invoke(client)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("base_url", ["ftp://node.example", "node.example:8099", "http://", ""])
def test_bad_base_url_refused(base_url):
    with pytest.raises(ValueError):
        EscrowNodeClient(base_url, admin_key=None)


def test_repr_hides_the_admin_key():
    text = repr(EscrowNodeClient(BASE + "/", admin_key=ADMIN_KEY))
    assert ADMIN_KEY not in text and "set" in text and BASE + "'" in text
