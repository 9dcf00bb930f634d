"""The dev node keeps HTTP/1.1 connections alive (otc_bridge/dev/node/server.py): the bridge's
pooled connection is reused call after call, each answer is framed by Content-Length, a body
the app never read does not poison the next request, and whatever must close a connection
still does (``Connection: close``, HTTP/1.0, an over-limit body, ``drop_before``, shutdown).
Everything on 127.0.0.1; blocking reads with a timeout, no sleeps."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from devnode_support import ADMIN, ADMIN_KEY, POSTER, WORKER, Node
from flask import request

from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.results import Outcome

TRANSFER = {"from_miner": WORKER, "to_miner": "carol", "amount_rtc": 1, "idempotency_key": "payout-1"}


def add_fault(node: Node, **rule: Any) -> None:
    status, body = node.post("/dev/faults", rule)
    assert status == 200, body


@pytest.fixture
def peers(app) -> list[int]:
    """The client port of every request the app answers (one port = one connection). After
    the request, as a faulted one skips the later ``before_request`` hooks."""
    seen: list[int] = []

    @app.after_request
    def record(response):
        if "werkzeug.socket" in request.environ:  # served over HTTP, not by the test client
            seen.append(request.environ["REMOTE_PORT"])
        return response

    return seen


def connect(live) -> socket.socket:
    return socket.create_connection(("127.0.0.1", live.port), timeout=5)


def send(sock: socket.socket, method: str, path: str, body: Any = None, *, version: str = "HTTP/1.1",
         headers: dict[str, str] | None = None) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    head = {"Host": "127.0.0.1", **({"Content-Type": "application/json"} if body is not None else {}),
            "Content-Length": str(len(payload)), **(headers or {})}
    lines = [f"{method} {path} {version}"] + [f"{name}: {value}" for name, value in head.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)


def read_answer(reader) -> tuple[int, dict[str, str], bytes]:
    """One answer from ``reader`` (``sock.makefile("rb")``), framed by its Content-Length."""
    status = int(reader.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, reader.read(int(headers["content-length"]))


def test_requests_follow_each_other_on_one_connection(live, node):
    node.fund(POSTER, 100)
    with connect(live) as sock, sock.makefile("rb") as reader:
        send(sock, "GET", f"/wallet/balance?miner_id={POSTER}")
        first = read_answer(reader)
        send(sock, "POST", "/agent/jobs", Node.job_body(10))
        second = read_answer(reader)
        # Two requests sent at once (pipelined) are answered in order.
        send(sock, "GET", f"/wallet/balance?miner_id={POSTER}")
        send(sock, "GET", "/wallet/balance?miner_id=nobody")
        third, fourth = read_answer(reader), read_answer(reader)
    assert (first[0], json.loads(first[2])["amount_i64"]) == (200, 100_000_000)
    assert second[0] == 201 and json.loads(second[2])["job_id"]
    assert json.loads(third[2])["amount_i64"] == 100_000_000 - 10_500_000
    assert json.loads(fourth[2])["amount_i64"] == 0
    assert all("connection" not in answer[1] for answer in (first, second, third, fourth))


def test_a_body_the_app_never_read_does_not_reach_the_next_request(live, node):
    add_fault(node, endpoint="POST /wallet/transfer", kind="error_5xx", html=True, count=1)
    with connect(live) as sock, sock.makefile("rb") as reader:
        send(sock, "POST", "/wallet/transfer", TRANSFER, headers=ADMIN)  # refused before its body is read
        status, headers, _ = read_answer(reader)
        assert (status, headers["content-type"].split(";")[0]) == (500, "text/html")
        send(sock, "GET", "/wallet/balance?miner_id=x")
        assert read_answer(reader)[0] == 200


@pytest.mark.parametrize("version, headers", [("HTTP/1.1", {"Connection": "close"}), ("HTTP/1.0", {})],
                         ids=["connection_close", "http_1_0"])
def test_a_client_that_asks_to_close_gets_its_connection_closed(live, version, headers):
    with connect(live) as sock, sock.makefile("rb") as reader:
        send(sock, "GET", "/wallet/balance?miner_id=x", version=version, headers=headers)
        status, answer_headers, _ = read_answer(reader)
        assert (status, answer_headers["connection"]) == (200, "close")
        assert reader.read() == b""  # the node closed it


def test_an_over_limit_body_is_refused_and_the_connection_closed(live):
    with connect(live) as sock, sock.makefile("rb") as reader:
        send(sock, "POST", "/agent/jobs", {"pad": "x" * (1024 * 1024)})
        status, headers, _ = read_answer(reader)
        assert (status, headers["connection"]) == (413, "close")
        sock.shutdown(socket.SHUT_WR)  # werkzeug drains the socket until the client is done
        assert reader.read() == b""


def test_shutdown_ends_idle_keep_alive_connections(app, serve):
    server = serve(app)
    with connect(server) as sock, sock.makefile("rb") as reader:
        send(sock, "GET", "/wallet/balance?miner_id=x")
        assert read_answer(reader)[0] == 200
        server.shutdown()  # the connection is idle: a stopped node must not answer on it
        assert reader.read() == b""


def bridge_client(live, **kwargs: Any) -> EscrowNodeClient:
    kwargs.setdefault("deadline_seconds", 5)
    return EscrowNodeClient(live.url, admin_key=ADMIN_KEY, connect_timeout_seconds=2, read_timeout_seconds=5, **kwargs)


def test_the_bridge_client_reuses_one_connection_call_after_call(live, node, peers):
    node.fund(POSTER, 100)
    escrow = bridge_client(live)
    created = escrow.create_job(poster_wallet=POSTER, amount_micro_rtc=1_000_000, ttl_seconds=3600,
                                title="Escrow for order 1", description="A job description long enough.",
                                tags=[])
    assert created.ok, created
    job_id = created.body["job_id"]
    assert escrow.get_job(job_id).result.ok
    assert escrow.claim_job(job_id, worker_wallet=WORKER).ok
    assert escrow.balance_micro_rtc(POSTER)[0].ok
    assert escrow.transfer(from_wallet=POSTER, to_wallet=WORKER, amount_micro_rtc=1_000, reason="t",
                           idempotency_key="k-1").ok
    assert len(peers) == 5 and len(set(peers)) == 1


def test_a_dropped_connection_is_unknown_and_the_next_call_opens_a_new_one(live, node, peers):
    escrow = bridge_client(live)
    assert escrow.balance_micro_rtc("x")[0].ok
    add_fault(node, endpoint="POST /wallet/transfer", kind="drop_before", count=1)
    result = escrow.transfer(from_wallet=WORKER, to_wallet="carol", amount_micro_rtc=1_000_000, reason="t",
                             idempotency_key="payout-1")
    assert (result.outcome, result.error) == (Outcome.UNKNOWN, "connection error")
    assert node.get("/pending/list?status=all", headers=ADMIN)[1]["pending"] == []  # no effect
    assert escrow.balance_micro_rtc("x")[0].ok
    assert len(peers) == 3 and peers[0] == peers[1] != peers[2]


def test_an_answer_held_past_the_deadline_is_unknown_and_the_next_call_is_answered(live, node, peers):
    node.fund(WORKER, 5)
    escrow = bridge_client(live, deadline_seconds=0.5)
    assert escrow.balance_micro_rtc(WORKER)[0].ok
    add_fault(node, endpoint="POST /wallet/transfer", kind="timeout_after", latency_ms=3000, count=1)
    result = escrow.transfer(from_wallet=WORKER, to_wallet="carol", amount_micro_rtc=1_000_000, reason="t",
                             idempotency_key="payout-1")
    assert (result.outcome, result.error) == (Outcome.UNKNOWN, "deadline exceeded: no complete answer within 0.5 s")
    assert len(node.get("/pending/list?status=all", headers=ADMIN)[1]["pending"]) == 1  # it happened
    assert escrow.balance_micro_rtc(WORKER)[0].ok
    assert len(peers) == 3 and peers[0] == peers[1] != peers[2]  # the cut connection is not reused
