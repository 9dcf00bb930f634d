"""The node's HTTP session (otc_bridge.node.transport.NodeSession and Transport's pool): no
proxy, ``.netrc`` or CA bundle from the environment, the same bytes on the wire as a stock
``requests`` call, one pooled connection reused, and a forked process that never touches its
parent's pooled connections. Against a recording server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from otc_bridge import crashpoints
from otc_bridge.app import TransactionGuardSession
from otc_bridge.node import transport as transport_module
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.results import Outcome
from otc_bridge.node.transport import NodeSession
from otc_bridge.storage.db import Database

ADMIN_KEY = "k" * 40
BALANCE = b'{"amount_i64": 5, "amount_rtc": 5e-06, "miner_id": "alice"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BALANCE), BALANCE)


@dataclass
class Seen:
    port: int  # the client's port: one per connection
    head: bytes
    body: bytes


@dataclass
class RecordingNode:
    """Answers every request on 127.0.0.1 with a balance, keeping connections alive."""

    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    requests: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(conn, peer[1]), daemon=True).start()

    def _connection(self, conn: socket.socket, port: int) -> None:
        with conn, conn.makefile("rb") as reader:
            conn.settimeout(5)
            try:
                while not self.stop.is_set():
                    head = b""
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        head += line
                    if not head:
                        return
                    length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                                   if h.lower().startswith(b"content-length:")), 0)
                    self.requests.append(Seen(port, head, reader.read(length)))
                    conn.sendall(ANSWER)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def node() -> Iterator[RecordingNode]:
    server = RecordingNode()
    yield server
    server.close()


def _dead_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hostile_env(monkeypatch, tmp_path) -> None:
    """Proxies to a dead port, a .netrc with credentials for 127.0.0.1 and a CA bundle that
    does not exist: a session that read the environment would fail or leak."""
    proxy = f"http://127.0.0.1:{_dead_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))


def _sessions(tmp_path) -> dict[str, requests.Session | None]:
    db = Database(str(tmp_path / "bridge.db"))
    db.migrate()
    return {"default": None, "plain requests.Session": requests.Session(),
            "TransactionGuardSession": TransactionGuardSession(db)}


def test_the_environment_proxy_would_be_used_by_a_stock_session(node, hostile_env):
    with pytest.raises(requests.exceptions.ProxyError):  # the check below means something
        requests.get(node.url + "/wallet/balance", timeout=5)


@pytest.mark.parametrize("kind", ["default", "plain requests.Session", "TransactionGuardSession"])
def test_no_environment_proxy_netrc_or_ca_bundle_is_used(node, hostile_env, tmp_path, kind):
    escrow = EscrowNodeClient(node.url, admin_key=ADMIN_KEY, session=_sessions(tmp_path)[kind])
    result, balance = escrow.balance_micro_rtc("alice")
    assert (result.outcome, balance) == (Outcome.OK, 5)
    assert escrow.transfer(from_wallet="a", to_wallet="b", amount_micro_rtc=1, reason="r",
                           idempotency_key="k").status_code == 200  # a POST too (unknown: not a transfer body)
    heads = [seen.head.lower() for seen in node.requests]
    assert len(heads) == 2 and not any(b"authorization" in head or b"proxy" in head for head in heads)


def _wire(node: RecordingNode, session: requests.Session) -> list[tuple[bytes, list[bytes], bytes]]:
    escrow = EscrowNodeClient(node.url, admin_key=ADMIN_KEY, session=session)
    escrow.balance_micro_rtc("alice b")
    escrow.confirm_pending(limit=7)
    escrow.get_job("job/1 ?")
    seen, node.requests[:] = list(node.requests), []
    lines = [s.head.split(b"\r\n") for s in seen]
    return [(head[0], sorted(line.lower() for line in head[1:] if line), s.body)
            for head, s in zip(lines, seen, strict=True)]


def test_the_direct_path_sends_what_a_stock_session_sends(node):
    stock = requests.Session()
    stock.trust_env = False
    direct, reference = _wire(node, NodeSession()), _wire(node, stock)
    assert direct == reference
    assert direct[0][0] == b"GET /wallet/balance?miner_id=alice+b HTTP/1.1"
    assert direct[2][0] == b"GET /agent/jobs/job%2F1%20%3F HTTP/1.1"
    assert b"x-admin-key: " + ADMIN_KEY.encode() in direct[1][1] and direct[1][2] == b'{"limit": 7}'
    assert b"accept-encoding: identity" in direct[0][1]


def test_calls_reuse_one_pooled_connection(node):
    escrow = EscrowNodeClient(node.url, admin_key=None)
    for _ in range(5):
        assert escrow.balance_micro_rtc("alice")[0].ok
    assert len({seen.port for seen in node.requests}) == 1


def test_a_changed_pid_mounts_a_fresh_pool_before_its_first_call(node, monkeypatch):
    escrow = EscrowNodeClient(node.url, admin_key=None)
    session = escrow._transport._session
    assert escrow.balance_micro_rtc("alice")[0].ok
    inherited = session.get_adapter(node.url + "/")
    real_pid = os.getpid()
    monkeypatch.setattr(transport_module.os, "getpid", lambda: real_pid + 1)
    assert escrow.balance_micro_rtc("alice")[0].ok
    fresh = session.get_adapter(node.url + "/")
    assert fresh is not inherited
    assert escrow.balance_micro_rtc("alice")[0].ok
    assert session.get_adapter(node.url + "/") is fresh  # once per process, not per call
    first, second, third = (seen.port for seen in node.requests)
    assert first != second == third  # the inherited pooled connection was left alone


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_opens_its_own_connection_and_leaves_the_parents(node):
    escrow = EscrowNodeClient(node.url, admin_key=None)
    assert escrow.balance_micro_rtc("alice")[0].ok  # the parent's pooled connection
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            ok = all(escrow.balance_micro_rtc("alice")[0].ok for _ in range(2))
            os.write(write_end, b"ok" if ok else b"no")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert (report, os.waitstatus_to_exitcode(status)) == (b"ok", 0)
    assert escrow.balance_micro_rtc("alice")[0].ok  # the parent's connection still works
    parent, child_1, child_2, parent_again = (seen.port for seen in node.requests)
    assert parent == parent_again and child_1 == child_2 != parent


def test_the_bridge_session_keeps_its_guard_and_crash_points_on_the_direct_path(node, tmp_path):
    db = Database(str(tmp_path / "bridge.db"))
    db.migrate()
    session = TransactionGuardSession(db)
    assert isinstance(session, NodeSession) and session.trust_env is False
    escrow = EscrowNodeClient(node.url, admin_key=None, session=session)
    passed: list[str] = []
    crashpoints.set_hook(passed.append)
    try:
        assert escrow.balance_micro_rtc("alice")[0].ok
        with db.transaction(), pytest.raises(RuntimeError, match="inside a write transaction"):
            escrow.balance_micro_rtc("alice")
    finally:
        crashpoints.set_hook(None)
    assert passed == ["before:balance", "after:balance"] and len(node.requests) == 1
