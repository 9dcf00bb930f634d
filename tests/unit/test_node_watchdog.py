"""The per-process deadline watchdog (otc_bridge.node.deadline): one thread fires every call's
deadline, each call's independently of the others, none after a call ended, and a forked
process never relies on its parent's thread. Sockets are socketpairs or 127.0.0.1 only; a
blocking read that the watchdog's shutdown ends replaces any sleep."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from scripted_node import Script, ScriptedNode, scripted_nodes

from otc_bridge.node import deadline as deadline_module
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.deadline import Watchdog, _attach, deadline, watchdog
from otc_bridge.node.results import Outcome

BALANCE = b'{"amount_i64": 5, "amount_rtc": 5e-06, "miner_id": "alice"}'
PROMPT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BALANCE), BALANCE)
TRICKLE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
SLACK = 2.5  # scheduling on a shared machine; far below the 5 s read timeout a trickle defeats


def _watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "node-deadline-watchdog"]


def _cut_at_deadline(seconds: float) -> tuple[bool, float]:
    """A socketpair read under ``deadline(seconds)``: (fired, seconds until the read ended)."""
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(seconds + SLACK)  # a safety net only: the shutdown ends the read first
        started = time.monotonic()
        with deadline(seconds) as watch:
            _attach(left)
            assert left.recv(1) == b""  # the watchdog shut the socket down
        return watch.fired, time.monotonic() - started


def test_a_deadline_shuts_the_call_socket_down_on_time():
    fired, elapsed = _cut_at_deadline(0.3)
    assert fired and 0.3 * 0.9 <= elapsed < 0.3 + SLACK


def test_concurrent_deadlines_are_independent():
    long_pair, short_pair, idle_pair = socket.socketpair(), socket.socketpair(), socket.socketpair()
    results: dict[str, tuple[bool, float]] = {}
    long_entered = threading.Event()

    def long_call() -> None:  # in flight first: the watchdog sleeps towards its deadline
        started = time.monotonic()
        long_pair[0].settimeout(1.6 + SLACK)
        with deadline(1.6) as watch:
            _attach(long_pair[0])
            long_entered.set()
            assert long_pair[0].recv(1) == b""
        results["long"] = watch.fired, time.monotonic() - started

    thread = threading.Thread(target=long_call)
    thread.start()
    assert long_entered.wait(5)
    try:
        with deadline(30) as untouched:  # a third call in flight meanwhile, never due
            _attach(idle_pair[0])
            started = time.monotonic()
            short_pair[0].settimeout(0.4 + SLACK)
            with deadline(0.4) as short:  # an earlier deadline must wake the watchdog
                _attach(short_pair[0])
                assert short_pair[0].recv(1) == b""
            results["short"] = short.fired, time.monotonic() - started
            thread.join(timeout=10)
            idle_pair[0].sendall(b"still open")
            assert idle_pair[1].recv(16) == b"still open"
        assert not untouched.fired
    finally:
        for pair in (long_pair, short_pair, idle_pair):
            for sock in pair:
                sock.close()
    (short_fired, short_took), (long_fired, long_took) = results["short"], results["long"]
    assert short_fired and long_fired
    assert 0.4 * 0.9 <= short_took < 0.4 + SLACK and 1.6 * 0.9 <= long_took < 1.6 + SLACK


def test_a_finished_call_is_dropped_and_never_fired():
    left, right = socket.socketpair()
    with left, right:
        with deadline(0.05) as watch:
            _attach(left)
        dog = watchdog()
        assert dog.pending() == 0  # dropped at finish, not kept until its due time
        # Another call's deadline, later than the first one's, passes: the first stays cut-free.
        assert _cut_at_deadline(0.2)[0]
        assert watch.fired is False
        left.sendall(b"x")
        assert right.recv(1) == b"x"




@pytest.fixture
def node() -> Iterator[Callable[[Script], ScriptedNode]]:
    with scripted_nodes() as start:
        yield start


def test_many_calls_share_one_watchdog_thread_and_start_no_other(node, monkeypatch):
    server = node(lambda conn, stop: conn.sendall(PROMPT))
    escrow = EscrowNodeClient(server.url, admin_key=None, deadline_seconds=5)
    assert escrow.balance_micro_rtc("alice")[1] == 5
    started: list[threading.Thread] = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (started.append(self), real_start(self))[1])
    for _ in range(20):
        assert escrow.balance_micro_rtc("alice")[1] == 5
    assert started == []  # no timer thread per call any more
    dog = watchdog()
    assert dog.thread in _watchdog_threads() and dog.thread.is_alive() and dog.pending() == 0


def test_concurrent_calls_to_a_dripping_node_end_each_at_its_own_deadline(node):
    def drip_slowly(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(TRICKLE_HEAD)
        while not stop.wait(0.05):  # one byte every 50 ms, until the client cuts the connection
            conn.sendall(b" ")

    server = node(drip_slowly)
    outcomes: dict[float, tuple[Outcome, str | None, float]] = {}

    def call(seconds: float) -> None:
        escrow = EscrowNodeClient(server.url, admin_key=None, read_timeout_seconds=5, deadline_seconds=seconds)
        started = time.monotonic()
        result, _ = escrow.balance_micro_rtc("alice")
        outcomes[seconds] = (result.outcome, result.error, time.monotonic() - started)

    threads = [threading.Thread(target=call, args=(s,)) for s in (0.4, 1.5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert sorted(outcomes) == [0.4, 1.5]
    for seconds, (outcome, error, elapsed) in outcomes.items():
        assert (outcome, error) == (Outcome.UNKNOWN, f"deadline exceeded: no complete answer within {seconds:g} s")
        assert seconds * 0.9 <= elapsed < seconds + SLACK
    assert outcomes[0.4][2] < outcomes[1.5][2]


def test_a_changed_pid_gets_a_watchdog_of_its_own(monkeypatch):
    parent = watchdog()
    monkeypatch.setattr(deadline_module.os, "getpid", lambda: parent.pid + 1)
    child = watchdog()
    assert child is not parent and child.pid == parent.pid + 1 and child.thread is None
    fired, _ = _cut_at_deadline(0.1)  # the new one starts its own thread and fires
    assert fired and child.thread is not None and child.thread is not parent.thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_fires_deadlines_with_its_own_watchdog():
    assert _cut_at_deadline(0.05)[0]  # the parent's watchdog runs
    parent = watchdog()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            inherited = deadline_module._watchdog
            fired, _ = _cut_at_deadline(0.1)
            mine = watchdog()
            ok = (inherited is None and fired and mine is not parent and mine.pid == os.getpid()
                  and mine.thread is not None and mine.thread.is_alive())
            os.write(write_end, b"ok" if ok else b"no")
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert (report, os.waitstatus_to_exitcode(status)) == (b"ok", 0)
    assert watchdog() is parent and parent.thread is not None and parent.thread.is_alive()


def test_the_heap_keeps_the_earliest_deadline_first():
    dog = Watchdog()
    watches = [deadline_module.Watch() for _ in range(3)]
    for due, watch in zip((30.0, 10.0, 20.0), watches, strict=True):
        dog.add(time.monotonic() + due, watch)
    assert dog.pending() == 3
    watches[1].finish()  # the earliest ends: dropped from the top at once
    dog.discard_finished()
    assert dog.pending() == 2
    watches[0].finish()  # not at the top: dropped once it gets there
    dog.discard_finished()
    assert dog.pending() == 2
    watches[2].finish()
    dog.discard_finished()
    assert dog.pending() == 0
