"""The escrow-node client against a faked HTTP edge (`responses`): every call x every answer.

Each client call is described once (CALLS); each class of node answer once (ANSWERS). The main
table runs every pair and checks outcome, status code, error and Retry-After, following
docs/escrow-node.md (how the real node answers) and docs/protocol.md §4 rule 3 (ambiguity is "unknown").
The node's bodies come from tests/node_bodies.py, which the contract suite (tests/contract)
holds against the dev node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import node_bodies as bodies
import pytest
import requests
import responses

from otc_bridge.node.amounts import payout_tx_hash, reward_rtc_wire
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.results import JobRead, NodeResult, Outcome, TxStatus

BASE = "http://127.0.0.1:8099"
ADMIN_KEY = "test-admin-key-0123456789abcdefghijklmnop"
JOB_ID = "job_0123456789abcdef"
PAY_KEY = "otc_payout:abc"
TX = payout_tx_hash(PAY_KEY)
WORKER = "otc_bridge_worker"
JOB_ROW = bodies.job_row(
    job_id=JOB_ID, poster_wallet="alice", worker_wallet=WORKER, status="claimed",
    title="OTC order 42", description="Escrow for OTC order 42 (sell RTC)",
    reward_rtc=2.009999, reward_i64=2_009_999, fee_i64=100_499, created_at=1_795_234_790,
    claimed_at=1_795_234_791, expires_at=1_795_839_590, tags='["otc_bridge", "escrow"]')
HTML_PAGE = bodies.HTML_500


@dataclass(frozen=True)
class Call:
    """One client call: how to invoke it, where it goes, what the node says on success."""

    name: str
    method: str
    path: str
    endpoint: str
    invoke: Callable[[EscrowNodeClient], Any]
    ok_status: int
    ok_body: dict
    wrong_body: dict  # a 2xx body missing what the call needs
    sent_json: dict | None
    sent_query: dict | None = None
    admin: bool = False


def _job_answer(status: str, **extra: Any) -> dict:
    return {"ok": True, "job_id": JOB_ID, "status": status, "message": "...", **extra}


CALLS = [
    Call("create_job", "POST", "/agent/jobs", "POST /agent/jobs",
         lambda c: c.create_job(poster_wallet="alice", amount_micro_rtc=2_010_000,
                                ttl_seconds=86_400, title="OTC order 42",
                                description="Escrow for OTC order 42 (sell RTC)",
                                tags=["otc_bridge", "escrow"]),
         201, bodies.job_posted(job_id=JOB_ID, poster_wallet="alice", reward_rtc=2.01,
                                reward_i64=2_010_000, fee_i64=100_500, expires_at=1_795_839_590,
                                ttl_seconds=86_400),
         {"ok": True, "status": "open"},
         {"poster_wallet": "alice", "title": "OTC order 42",
          "description": "Escrow for OTC order 42 (sell RTC)", "category": "other",
          "reward_rtc": reward_rtc_wire(2_010_000), "ttl_seconds": 86_400,
          "tags": ["otc_bridge", "escrow"]}),
    Call("get_job", "GET", f"/agent/jobs/{JOB_ID}", "GET /agent/jobs/<job_id>",
         lambda c: c.get_job(JOB_ID), 200, bodies.job_read(JOB_ROW),
         {"ok": True, "job": {**JOB_ROW, "reward_i64": 2.009999}}, None),
    Call("list_open_jobs", "GET", "/agent/jobs", "GET /agent/jobs",
         lambda c: c.list_open_jobs(), 200,
         bodies.job_list([], total=0, limit=100, offset=0),
         {"ok": True, "jobs": "none"}, None,
         sent_query={"status": ["open"], "limit": ["100"], "offset": ["0"]}),
    Call("claim_job", "POST", f"/agent/jobs/{JOB_ID}/claim", "POST /agent/jobs/<job_id>/claim",
         lambda c: c.claim_job(JOB_ID, worker_wallet=WORKER), 200,
         bodies.job_claimed(job_id=JOB_ID, worker_wallet=WORKER, reward_rtc=2.009999,
                            expires_at=1_795_839_590),
         _job_answer("open"),
         {"worker_wallet": WORKER}),
    Call("deliver_job", "POST", f"/agent/jobs/{JOB_ID}/deliver",
         "POST /agent/jobs/<job_id>/deliver",
         lambda c: c.deliver_job(JOB_ID, worker_wallet=WORKER, result_summary="held"), 200,
         bodies.job_delivered(job_id=JOB_ID), {"ok": True, "job_id": JOB_ID},
         {"worker_wallet": WORKER, "result_summary": "held"}),
    Call("accept_job", "POST", f"/agent/jobs/{JOB_ID}/accept", "POST /agent/jobs/<job_id>/accept",
         lambda c: c.accept_job(JOB_ID, poster_wallet="alice", rating=5), 200,
         bodies.job_completed(job_id=JOB_ID, worker_wallet=WORKER, reward_i64=2_009_999,
                              fee_i64=100_499),
         _job_answer("completed"), {"poster_wallet": "alice", "rating": 5}),
    Call("dispute_job", "POST", f"/agent/jobs/{JOB_ID}/dispute",
         "POST /agent/jobs/<job_id>/dispute",
         lambda c: c.dispute_job(JOB_ID, poster_wallet="alice", reason="order unwound"), 200,
         bodies.job_disputed(job_id=JOB_ID), {**bodies.job_disputed(job_id=JOB_ID),
                                              "job_id": "job_other"},
         {"poster_wallet": "alice", "reason": "order unwound"}),
    Call("cancel_job", "POST", f"/agent/jobs/{JOB_ID}/cancel", "POST /agent/jobs/<job_id>/cancel",
         lambda c: c.cancel_job(JOB_ID, poster_wallet="alice"), 200,
         bodies.job_cancelled(job_id=JOB_ID, escrow_i64=2_110_498),
         {**bodies.job_cancelled(job_id=JOB_ID, escrow_i64=2_110_498), "ok": False},
         {"poster_wallet": "alice"}),
    Call("balance_micro_rtc", "GET", "/wallet/balance", "GET /wallet/balance",
         lambda c: c.balance_micro_rtc("alice"), 200,
         bodies.balance("alice", 895_000_000),
         {"miner_id": "alice", "amount_rtc": 895.0}, None, sent_query={"miner_id": ["alice"]}),
    Call("transfer", "POST", "/wallet/transfer", "POST /wallet/transfer",
         lambda c: c.transfer(from_wallet=WORKER, to_wallet="carol", amount_micro_rtc=2_009_999,
                              reason="otc_payout:42", idempotency_key=PAY_KEY), 200,
         bodies.transfer_answer(pending_id=1, tx_hash=TX, from_miner=WORKER, to_miner="carol",
                                amount_i64=2_009_999, confirms_at=1_795_234_790,
                                confirm_delay_seconds=86_400),
         {"ok": True, "phase": "pending", "pending_id": 1},
         {"from_miner": WORKER, "to_miner": "carol", "amount_rtc": 2.009999,
          "reason": "otc_payout:42", "idempotency_key": PAY_KEY}, admin=True),
    Call("tx_status", "GET", f"/wallet/tx/{TX}", "GET /wallet/tx/<tx_hash>",
         lambda c: c.tx_status(TX), 200,
         bodies.tx_answer(TX, "pending"),
         {"ok": True, "tx_hash": TX, "status": "mystery"}, None),
    Call("confirm_pending", "POST", "/pending/confirm", "POST /pending/confirm",
         lambda c: c.confirm_pending(), 200,
         bodies.confirm_answer(limit=100, selected=1, confirmed_ids=[1],
                               stats_before=bodies.overdue_stats(1, 0),
                               stats_after=bodies.overdue_stats(0, 0)),
         {"ok": True, "confirmed_ids": [1]}, {"limit": 100}, admin=True),
    Call("void_pending", "POST", "/pending/void", "POST /pending/void",
         lambda c: c.void_pending(tx_hash=TX, reason="operator void"), 200,
         bodies.void_answer(voided_id=1, from_miner=WORKER, to_miner="carol",
                            amount_i64=2_009_999, reason="operator void"),
         {"ok": True, "voided": True}, {"tx_hash": TX, "reason": "operator void"}, admin=True),
]
CALL_IDS = [call.name for call in CALLS]


@dataclass(frozen=True)
class Answer:
    """One class of node answer and what every call must make of it."""

    name: str
    response: Callable[[Call], dict]  # kwargs for responses.add
    outcome: Outcome
    status: int | None | str  # "ok_status": the call's own success code
    error: str | None  # "bad shape:" is matched as a prefix
    retry_after: int | None = None


def _err(status: int, error: str, **extra: Any) -> Callable[[Call], dict]:
    return lambda call: {"status": status, "json": {"error": error, **extra}}


def _raw(status: int, body: str, content_type: str = "text/html") -> Callable[[Call], dict]:
    return lambda call: {"status": status, "body": body, "content_type": content_type}


def _raises(exc: Exception) -> Callable[[Call], dict]:
    return lambda call: {"body": exc}


ANSWERS = [
    Answer("success", lambda c: {"status": c.ok_status, "json": c.ok_body},
           Outcome.OK, "ok_status", None),
    Answer("explicit_400", _err(400, "worker_wallet required"),
           Outcome.FAILED, 400, "worker_wallet required"),
    Answer("unauthorized_401", lambda c: {"status": 401, "json": bodies.admin_required()},
           Outcome.FAILED, 401, bodies.ADMIN_REQUIRED),
    Answer("forbidden_403", _err(403, bodies.WRONG_POSTER_CANCEL),
           Outcome.FAILED, 403, bodies.WRONG_POSTER_CANCEL),
    Answer("not_found_404", _err(404, bodies.JOB_NOT_FOUND),
           Outcome.FAILED, 404, bodies.JOB_NOT_FOUND),
    Answer("conflict_409", _err(409, bodies.not_open("claimed")),
           Outcome.FAILED, 409, bodies.not_open("claimed")),
    Answer("expired_410", _err(410, bodies.JOB_EXPIRED), Outcome.FAILED, 410, bodies.JOB_EXPIRED),
    Answer("too_large_413", lambda c: {"status": 413, "json": bodies.too_large()},
           Outcome.FAILED, 413, bodies.TOO_LARGE),
    Answer("rate_limited_429",
           lambda c: {"status": 429, "headers": {"Retry-After": "17"},
                      "json": bodies.rate_limited()},
           Outcome.FAILED, 429, bodies.RATE_LIMITED, retry_after=17),
    Answer("rate_limited_429_no_header", _err(429, bodies.ACTIVE_JOB_CAP, active_jobs=20),
           Outcome.FAILED, 429, bodies.ACTIVE_JOB_CAP, retry_after=60),
    Answer("rate_limited_429_html_date",
           lambda c: {"status": 429, "body": "<html>slow down</html>",
                      "headers": {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}},
           Outcome.FAILED, 429, "rate limited", retry_after=60),
    Answer("server_500_json", _err(500, bodies.INTERNAL_ERROR),
           Outcome.UNKNOWN, 500, bodies.INTERNAL_ERROR),
    Answer("server_503_json", _err(503, "RC_ADMIN_KEY not configured on server"),
           Outcome.UNKNOWN, 503, "RC_ADMIN_KEY not configured on server"),
    Answer("server_500_html", _raw(500, HTML_PAGE), Outcome.UNKNOWN, 500, "http 500"),
    Answer("gateway_502_empty", _raw(502, ""), Outcome.UNKNOWN, 502, "http 502"),
    Answer("html_404", _raw(404, "<html>404 Not Found</html>"), Outcome.UNKNOWN, 404, "bad json"),
    Answer("json_4xx_without_error", lambda c: {"status": 400, "json": {"ok": False}},
           Outcome.UNKNOWN, 400, "bad error body"),
    Answer("redirect_302",
           lambda c: {"status": 302, "headers": {"Location": "https://elsewhere.example/x"},
                      "body": ""},
           Outcome.UNKNOWN, 302, "http 302"),
    Answer("bad_json_2xx", lambda c: {"status": c.ok_status, "body": '{"ok": true, "job',
                                      "content_type": "application/json"},
           Outcome.UNKNOWN, "ok_status", "bad json"),
    Answer("json_array_2xx", lambda c: {"status": c.ok_status, "json": [c.ok_body]},
           Outcome.UNKNOWN, "ok_status", "bad json"),
    Answer("nan_2xx", lambda c: {"status": c.ok_status, "body": '{"ok": true, "x": NaN}',
                                 "content_type": "application/json"},
           Outcome.UNKNOWN, "ok_status", "bad json"),
    Answer("html_2xx", _raw(200, HTML_PAGE), Outcome.UNKNOWN, 200, "bad json"),
    Answer("wrong_shape_2xx", lambda c: {"status": c.ok_status, "json": c.wrong_body},
           Outcome.UNKNOWN, "ok_status", "bad shape:"),
    Answer("read_timeout", _raises(requests.exceptions.ReadTimeout("read timed out")),
           Outcome.UNKNOWN, None, "timeout"),
    Answer("connect_timeout", _raises(requests.exceptions.ConnectTimeout("connect timed out")),
           Outcome.UNKNOWN, None, "timeout"),
    Answer("connection_error", _raises(requests.exceptions.ConnectionError("reset by peer")),
           Outcome.UNKNOWN, None, "connection error"),
    Answer("broken_stream", _raises(requests.exceptions.ChunkedEncodingError("truncated")),
           Outcome.UNKNOWN, None, "transport error: ChunkedEncodingError"),
]
# /wallet/tx/<h> 404 is an answer only with status "not_found"; a plain "Job not found" 404 is
# not the node's tx answer, so it is ambiguous (docs/escrow-node.md §1.12).
OVERRIDES = {("tx_status", "not_found_404"): (Outcome.UNKNOWN, 404, "bad shape:")}


def node_result(value: Any) -> NodeResult:
    """The NodeResult inside whatever a client call returns."""
    if isinstance(value, (JobRead, TxStatus)):
        return value.result
    if isinstance(value, tuple):
        return value[0]
    return value


def typed_part(value: Any) -> Any:
    """The typed payload a call returns beside its NodeResult (None when it has none)."""
    if isinstance(value, JobRead):
        return value.job
    if isinstance(value, TxStatus):
        return value.status
    if isinstance(value, tuple):
        return value[1]
    return None


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> EscrowNodeClient:
    return EscrowNodeClient(BASE, admin_key=ADMIN_KEY)


@pytest.mark.parametrize("answer", ANSWERS, ids=[a.name for a in ANSWERS])
@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_every_call_maps_every_answer(call, answer, rsps, client, caplog):
    rsps.add(call.method, BASE + call.path, **answer.response(call))
    caplog.set_level(logging.DEBUG)

    returned = call.invoke(client)
    result = node_result(returned)

    outcome, status, error = OVERRIDES.get((call.name, answer.name),
                                           (answer.outcome, answer.status, answer.error))
    assert result.outcome is outcome
    assert result.status_code == (call.ok_status if status == "ok_status" else status)
    if error is not None and error.endswith(":"):
        assert result.error.startswith(error)
    else:
        assert result.error == error
    assert result.retry_after_seconds == answer.retry_after
    assert result.endpoint == call.endpoint
    assert isinstance(result.latency_ms, int) and result.latency_ms >= 0
    assert (result.ok, result.failed, result.unknown) == (
        outcome is Outcome.OK, outcome is Outcome.FAILED, outcome is Outcome.UNKNOWN)
    if outcome is not Outcome.OK:
        assert typed_part(returned) is None
    assert len(rsps.calls) == 1  # never retried, never redirected
    assert ADMIN_KEY not in caplog.text
    warnings = [r for r in caplog.records if r.name == "otc_bridge.node" and r.levelno >= 30]
    assert bool(warnings) == (outcome is not Outcome.OK)


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_sends_the_documented_request(call, rsps, client):
    rsps.add(call.method, BASE + call.path, status=call.ok_status, json=call.ok_body)
    call.invoke(client)
    request = rsps.calls[0].request
    sent = json.loads(request.body) if request.body else None
    assert sent == call.sent_json
    assert parse_qs(urlsplit(request.url).query) == (call.sent_query or {})
    # X-Admin-Key only where the node needs it (docs/escrow-node.md §2), never on /agent/* or public reads.
    assert request.headers.get("X-Admin-Key") == (ADMIN_KEY if call.admin else None)


@pytest.mark.parametrize("call", CALLS, ids=CALL_IDS)
def test_every_call_has_timeout_no_redirects_and_tls_setting(call, rsps):
    seen: list[dict] = []

    class RecordingSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            seen.append(kwargs)
            return super().request(*args, **kwargs)

    client = EscrowNodeClient(BASE, admin_key=ADMIN_KEY, session=RecordingSession(),
                              connect_timeout_seconds=1.5, read_timeout_seconds=7.0,
                              tls_verify="/etc/otc/node-ca.pem")
    rsps.add(call.method, BASE + call.path, status=call.ok_status, json=call.ok_body)
    assert node_result(call.invoke(client)).ok
    assert len(seen) == 1
    assert seen[0]["timeout"] == (1.5, 7.0)
    assert seen[0]["allow_redirects"] is False
    assert seen[0]["verify"] == "/etc/otc/node-ca.pem"
    assert rsps.calls[0].request.req_kwargs["timeout"] == (1.5, 7.0)


def test_success_results_carry_typed_values(rsps, client):
    for call in CALLS:
        rsps.add(call.method, BASE + call.path, status=call.ok_status, json=call.ok_body)
    read = client.get_job(JOB_ID)
    assert read.job is not None and not read.not_found
    assert (read.job.reward_i64, read.job.escrow_i64, read.job.platform_fee_i64) == (
        2_009_999, 2_110_498, 100_499)
    assert (read.job.worker_wallet, read.job.status, read.job.expires_at) == (
        WORKER, "claimed", 1_795_839_590)
    assert read.job.tags == ["otc_bridge", "escrow"]
    assert client.balance_micro_rtc("alice")[1] == 895_000_000
    assert client.tx_status(TX).status == "pending"
    assert client.create_job(poster_wallet="alice", amount_micro_rtc=2_010_000,
                             ttl_seconds=3600, title="t" * 5, description="d" * 20,
                             tags=[]).body["job_id"] == JOB_ID


def test_outcome_is_a_string_enum():
    assert Outcome.OK == "ok" and Outcome.FAILED == "failed" and Outcome.UNKNOWN == "unknown"
    assert Outcome("unknown") is Outcome.UNKNOWN


def test_create_job_reward_truncates_to_exact_amount_on_the_node(rsps, client):
    rsps.add("POST", BASE + "/agent/jobs", status=201, json=_job_answer("open"))
    client.create_job(poster_wallet="alice", amount_micro_rtc=2_010_000, ttl_seconds=3600,
                      title="OTC order 42", description="d" * 20, tags=["otc_bridge"],
                      category="data")
    sent = json.loads(rsps.calls[0].request.body)
    assert int(sent["reward_rtc"] * 1e6) == 2_010_000  # the node's own conversion (§1.2)
    assert sent["reward_rtc"] != 2.01  # naive 2.01 would lock 2,009,999
    assert sent["category"] == "data"
    assert rsps.calls[0].request.headers["Content-Type"] == "application/json"


def test_transfer_amount_quantises_to_exact_amount_on_the_node(rsps, client):
    call = next(c for c in CALLS if c.name == "transfer")
    rsps.add("POST", BASE + "/wallet/transfer", json=call.ok_body)
    client.transfer(from_wallet=WORKER, to_wallet="carol", amount_micro_rtc=123_456_789,
                    reason="otc_payout:42", idempotency_key=PAY_KEY)
    amount_rtc = json.loads(rsps.calls[0].request.body)["amount_rtc"]
    node_micro = (Decimal(str(amount_rtc)) * 10**6).quantize(Decimal(1), rounding=ROUND_DOWN)
    assert node_micro == 123_456_789


@pytest.mark.parametrize(("invoke", "error"), [
    (lambda c: c.create_job(poster_wallet="a", amount_micro_rtc=9_999, ttl_seconds=3600,
                            title="title", description="d" * 20, tags=[]), ValueError),
    (lambda c: c.create_job(poster_wallet="a", amount_micro_rtc=10_000, ttl_seconds=3599,
                            title="title", description="d" * 20, tags=[]), ValueError),
    (lambda c: c.create_job(poster_wallet="a", amount_micro_rtc=10_000, ttl_seconds=2_592_001,
                            title="title", description="d" * 20, tags=[]), ValueError),
    (lambda c: c.list_open_jobs(limit=0), ValueError),
    (lambda c: c.list_open_jobs(limit=101), ValueError),
    (lambda c: c.list_open_jobs(offset=-1), ValueError),
    (lambda c: c.tx_status("not-a-hash"), ValueError),
    (lambda c: c.tx_status(TX + "0"), ValueError),
    (lambda c: c.transfer(from_wallet="a", to_wallet="b", amount_micro_rtc=1, reason="r",
                          idempotency_key="has space"), ValueError),
    (lambda c: c.transfer(from_wallet="a", to_wallet="b", amount_micro_rtc=1, reason="r",
                          idempotency_key="k" * 129), ValueError),
    (lambda c: c.transfer(from_wallet="a", to_wallet="b", amount_micro_rtc=0, reason="r",
                          idempotency_key="k"), ValueError),
    (lambda c: c.confirm_pending(limit=0), ValueError),
    (lambda c: c.confirm_pending(limit=501), ValueError),
])
def test_refused_locally_without_calling_the_node(invoke, error, rsps, client):
    with pytest.raises(error):
        invoke(client)
    assert len(rsps.calls) == 0
