"""Every node call ends by its total deadline and reads at most the size cap, whatever the node
sends: proven against a tiny scripted HTTP server on 127.0.0.1 that trickles its answer (in
the headers or the body) or sends too much, plus ``responses`` fakes for the cap. Either limit
exceeded is ``unknown``: the node may have applied the call (docs/protocol.md §4 rule 3)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from scripted_node import Script, ScriptedNode, scripted_nodes

from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.deadline import Watch
from otc_bridge.node.results import Outcome

DEADLINE = 0.5
SLACK = 2.5  # scheduling and teardown; far below the 5 s read timeout the trickle would defeat
BALANCE = b'{"amount_i64": 5, "amount_rtc": 5e-06, "miner_id": "alice"}'
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"



@pytest.fixture
def node() -> Iterator[Callable[[Script], ScriptedNode]]:
    with scripted_nodes() as start:
        yield start


def client(url: str, **kwargs) -> EscrowNodeClient:
    kwargs.setdefault("deadline_seconds", DEADLINE)
    return EscrowNodeClient(url, admin_key=None, connect_timeout_seconds=2, read_timeout_seconds=5, **kwargs)


def trickle(head: bytes, byte: bytes = b" ", every: float = 0.05) -> Script:
    """Send ``head`` at once, then one ``byte`` every ``every`` seconds, without end."""
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        while not stop.wait(every):
            conn.sendall(byte)
    return script


def answer(raw: bytes) -> Script:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(raw)
    return script


def timed_balance(url: str, **kwargs):
    started = time.monotonic()
    result, balance = client(url, **kwargs).balance_micro_rtc("alice")
    return result, balance, time.monotonic() - started


@pytest.mark.parametrize("head", [
    JSON_HEAD + b"Content-Length: 100000\r\n\r\n{",  # body trickled, length declared
    JSON_HEAD + b"Connection: close\r\n\r\n{",  # body trickled, ends when the connection does
    JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n10000\r\n{",  # inside one huge chunk
    b"HTTP/1.1 200 OK\r\nX-Slow: ",  # the headers themselves trickled
    b"HTTP/1.1 2",  # the status line trickled
], ids=["body", "body_until_close", "chunked_body", "headers", "status_line"])
def test_a_trickling_answer_ends_at_the_deadline_as_unknown(node, head):
    server = node(trickle(head, b"0" if head.endswith(b"2") else b" "))
    result, balance, elapsed = timed_balance(server.url)
    assert (result.outcome, balance, result.status_code) == (Outcome.UNKNOWN, None, None)
    assert result.error == "deadline exceeded: no complete answer within 0.5 s"
    assert DEADLINE * 0.9 <= elapsed < DEADLINE + SLACK


def test_an_answer_over_the_cap_by_its_content_length_is_not_read(node):
    server = node(answer(JSON_HEAD + b"Content-Length: 2097152\r\n\r\n"))  # and then nothing: never read
    result, _, elapsed = timed_balance(server.url, max_response_bytes=1024 * 1024)
    assert (result.outcome, result.status_code) == (Outcome.UNKNOWN, None)
    assert result.error == "response too large: Content-Length 2097152 over the 1048576-byte cap"
    assert elapsed < DEADLINE


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_an_answer_over_the_cap_without_content_length_is_cut_at_the_cap(node, framing):
    def script(conn: socket.socket, stop: threading.Event) -> None:
        piece = b"[" * 65536
        if framing == "chunked":
            conn.sendall(JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
            piece = b"10000\r\n" + piece + b"\r\n"
        else:
            conn.sendall(JSON_HEAD + b"Connection: close\r\n\r\n")
        for _ in range(64):  # 4 MiB if nobody stopped reading
            conn.sendall(piece)

    server = node(script)
    result, _, elapsed = timed_balance(server.url, max_response_bytes=256 * 1024, deadline_seconds=5)
    assert (result.outcome, result.error) == (Outcome.UNKNOWN, "response too large: over the 262144-byte cap")
    assert elapsed < 5


def test_a_prompt_answer_is_read_whole_and_the_connection_reused(node):
    accepted = []

    def script(conn: socket.socket, stop: threading.Event) -> None:
        accepted.append(conn.getpeername())
        conn.sendall(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(BALANCE) + BALANCE)

    server = node(script)
    escrow = client(server.url, max_response_bytes=len(BALANCE))  # exactly at the cap is fine
    for _ in range(3):
        result, balance = escrow.balance_micro_rtc("alice")
        assert (result.outcome, balance) == (Outcome.OK, 5)
    assert len(set(accepted)) == 1  # one keep-alive connection: the deadline never cut a finished call


def test_a_reused_keep_alive_connection_is_cut_at_the_deadline_too(node):
    answers = iter([answer(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(BALANCE) + BALANCE),
                    trickle(JSON_HEAD + b"Content-Length: 100000\r\n\r\n{")])
    peers = []

    def script(conn: socket.socket, stop: threading.Event) -> None:
        peers.append(conn.getpeername())
        next(answers)(conn, stop)

    escrow = client(node(script).url)
    assert escrow.balance_micro_rtc("alice")[0].ok
    started = time.monotonic()
    result, _ = escrow.balance_micro_rtc("alice")
    assert (result.outcome, result.error) == (Outcome.UNKNOWN, "deadline exceeded: no complete answer within 0.5 s")
    assert time.monotonic() - started < DEADLINE + SLACK
    assert len(peers) == 2 and peers[0] == peers[1]  # the second call went over the pooled connection


def test_a_finished_call_is_never_cut_afterwards():
    left, right = socket.socketpair()
    with left, right:
        watch = Watch()
        watch.attach(left)
        watch.finish()
        watch.fire()  # the timer firing late, after the call ended
        assert watch.fired is False
        left.sendall(b"still open")
        assert right.recv(16) == b"still open"


# --- responses fakes ----------------------------------------------------------------------

BASE = "http://127.0.0.1:8099"


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.mark.parametrize("headers", [{}, {"Content-Length": str(4096 + 22)}])
def test_responses_body_over_the_cap_is_unknown(rsps, headers):
    rsps.add("GET", BASE + "/wallet/balance", status=200, headers=headers,
             body=b'{"miner_id": "alice", "pad": "' + b"x" * 4096 + b'"}')
    result, balance = client(BASE, max_response_bytes=4096).balance_micro_rtc("alice")
    assert (result.outcome, balance) == (Outcome.UNKNOWN, None)
    assert result.error.startswith("response too large")


def test_responses_calls_stream_uncompressed_under_the_timeout(rsps):
    seen: list[dict] = []

    class RecordingSession(requests.Session):
        def request(self, *args, **kwargs):
            seen.append(kwargs)
            return super().request(*args, **kwargs)

    rsps.add("GET", BASE + "/wallet/balance", status=200, body=BALANCE, content_type="application/json")
    escrow = EscrowNodeClient(BASE, admin_key=None, session=RecordingSession(), connect_timeout_seconds=1.5,
                              read_timeout_seconds=7.0, deadline_seconds=9.0)
    assert escrow.balance_micro_rtc("alice")[1] == 5
    assert (seen[0]["stream"], seen[0]["timeout"]) == (True, (1.5, 7.0))
    assert rsps.calls[0].request.headers["Accept-Encoding"] == "identity"
