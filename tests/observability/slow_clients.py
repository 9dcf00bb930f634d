"""Slow and idle TCP clients against a server on 127.0.0.1 (a slowloris, an idle crowd, a
slow POST body), for ``test_slowloris.py`` and ``scripts/bench_serving.py``.

One thread drives every socket with non-blocking sends; nothing sleeps to wait for the
server. Each socket the server closes is recorded with how long it lived, and replaced when
``replace`` is set (an attacker keeps up the pressure).
"""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

#: A request line and a header that never ends: one byte of it is sent at a time.
SLOW_HEADER = (b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Padding: "
               + b"a" * 65536)
#: A complete head announcing a 4 KiB body, sent at once; then the body one byte at a time.
SLOW_BODY_HEAD = (b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 4096\r\n\r\n")
SLOW_BODY = b'{"pad": "' + b"a" * 4096

MODES = ("header", "idle", "body")


@dataclass
class _Conn:
    sock: socket.socket
    opened: float
    sent: int = 0
    next_at: float = 0.0
    answer: bytes = b""


@dataclass
class Outcome:
    """What the server did to the slow sockets: ``lifetimes`` of those it closed (s), the
    first bytes of any answer it sent them, how many were opened in all."""

    opened: int = 0
    failed_connects: int = 0
    lifetimes: list[float] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)


class SlowClients:
    """``count`` connections to ``127.0.0.1:port`` in ``mode``: ``header`` sends a request
    head one byte every ``interval`` s, ``idle`` sends nothing, ``body`` sends a full POST
    head and then its body one byte every ``interval`` s. Use as a context manager; the
    thread stops at exit (and in any case after ``max_seconds``)."""

    def __init__(self, port: int, count: int, mode: str = "header", *, interval: float = 1.0,
                 replace: bool = True, max_seconds: float = 300.0) -> None:
        assert mode in MODES, mode
        self.port, self.count, self.mode = port, count, mode
        self.interval, self.replace, self.max_seconds = interval, replace, max_seconds
        self.outcome = Outcome()
        self._conns: dict[int, _Conn] = {}
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"slow-{mode}")

    # --- the caller's side --------------------------------------------------------------------------

    def __enter__(self) -> SlowClients:
        for n in range(self.count):
            self._open(stagger=n / self.count)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for conn in list(self._conns.values()):
            self._drop(conn, record=False)
        self._sel.close()

    @property
    def open_now(self) -> int:
        """Slow sockets open at this moment."""
        with self._lock:
            return len(self._conns)

    @property
    def started(self) -> bool:
        """Every socket is open and (unless idle) has sent its first bytes."""
        with self._lock:
            conns = list(self._conns.values())
        return len(conns) == self.count and (self.mode == "idle" or all(c.sent for c in conns))

    def snapshot(self) -> Outcome:
        """A copy of the outcome so far."""
        with self._lock:
            return Outcome(self.outcome.opened, self.outcome.failed_connects, list(self.outcome.lifetimes),
                           list(self.outcome.answers))

    # --- the driving thread -------------------------------------------------------------------------

    def _open(self, stagger: float = 0.0) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            self.outcome.failed_connects += 1
            return
        sock.setblocking(False)
        now = time.monotonic()
        conn = _Conn(sock, now, next_at=now + stagger * self.interval)
        if self.mode == "body":
            sock.send(SLOW_BODY_HEAD)
        with self._lock:
            self._conns[sock.fileno()] = conn
            self.outcome.opened += 1
        self._sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: _Conn, *, record: bool) -> None:
        with self._lock:
            if self._conns.pop(conn.sock.fileno(), None) is None:
                return
            if record:
                self.outcome.lifetimes.append(time.monotonic() - conn.opened)
                if conn.answer:
                    self.outcome.answers.append(conn.answer[:200])
        self._sel.unregister(conn.sock)
        conn.sock.close()

    def _closed_by_server(self, conn: _Conn) -> None:
        self._drop(conn, record=True)
        if self.replace and not self._stop.is_set():
            self._open()

    def _run(self) -> None:
        payload = SLOW_BODY if self.mode == "body" else SLOW_HEADER
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            for key, _ in self._sel.select(timeout=0.05):
                conn = key.data
                try:
                    data = conn.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    conn.answer += data
                else:
                    self._closed_by_server(conn)
            if self.mode == "idle":
                continue
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if conn.next_at > now or conn.sent >= len(payload):
                    continue
                try:
                    conn.sock.send(payload[conn.sent:conn.sent + 1])
                except BlockingIOError:
                    continue
                except OSError:
                    self._closed_by_server(conn)
                    continue
                conn.sent += 1
                conn.next_at = now + self.interval


def fresh_get(port: int, path: str = "/api/stats", timeout: float = 5.0) -> tuple[int | None, float]:
    """One request on a new connection: its status (``None`` if no answer within
    ``timeout``) and the seconds from connect to the end of the body."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except (OSError, http.client.HTTPException):
        return None, time.perf_counter() - started
    finally:
        conn.close()
