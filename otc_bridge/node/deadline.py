"""A total deadline for one HTTP call to the node, whatever the node does.

``requests``' ``(connect, read)`` timeout bounds each socket operation, not the call: a node
that sends one byte every few seconds, in its headers or its body, keeps a call (and the
escrow-create lease around it, docs/escrow-node.md §4) alive for ever. Here every call runs
under :func:`deadline`: when the call's time is up, the socket of the connection the call
uses is shut down, which ends whichever read or write is blocked on it (plain or TLS).
:class:`DeadlineAdapter`, mounted on the node's base URL, tells the deadline which socket that
is, whether freshly opened or reused from the pool.

One watchdog thread per process keeps the deadlines of all calls in flight (a heap, earliest
first) and shuts down the sockets of those that pass; a call only adds and removes its entry.
A timer thread started and cancelled around every call cost about a tenth of the bridge's CPU
spent on node calls (docs/performance.md, "Profile"). The watchdog starts on the first call of
a process and is never inherited across ``fork`` (gunicorn forks its workers, and a thread does
not survive a fork): a child starts its own.

The caller still checks :attr:`Watch.fired` after a call: a body cut short by the shutdown can
look complete when the node sent no ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Watch:
    """One call's deadline. ``fired`` becomes true once the time is up before the call ended."""

    __slots__ = ("_lock", "_sock", "_done", "fired")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False
        self.fired = False

    def attach(self, sock: socket.socket) -> None:
        """Record the socket the call uses (called in the call's thread when a connection is
        opened or taken from the pool); one attached after the deadline is shut down at once."""
        with self._lock:
            self._sock = sock
            if self.fired and not self._done:
                _shutdown(sock)

    def fire(self) -> None:
        """Time is up: shut the call's socket down (never after :meth:`finish`)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def finish(self) -> None:
        """The call is over (its answer read or abandoned): the watchdog must not touch the
        socket any more, which may go back to the pool for another call."""
        with self._lock:
            self._done = True


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its SSL
    # object under a read in progress in the call's thread. OSError: already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """The deadlines of one process's calls in flight, and the one daemon thread that fires
    them. ``pid`` is the process it belongs to; :func:`watchdog` never returns one of another.

    Entries are ``(due, seq, watch)`` with ``due`` in ``time.monotonic()`` seconds. A finished
    call's entry is dropped when it reaches the top of the heap (calls mostly end in the
    order they started), so the heap holds about the calls in flight. The thread is woken only
    when a new deadline is earlier than the one it sleeps towards: with one deadline for every
    call that is when it has nothing to wait for, not once per call.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._wake_at = float("inf")  # when the thread will look again, monotonic seconds
        self.thread: threading.Thread | None = None

    def add(self, due: float, watch: Watch) -> None:
        """Fire ``watch`` at ``due`` (monotonic seconds) unless it finished by then."""
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), watch))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="node-deadline-watchdog", daemon=True)
                self.thread.start()
            elif due < self._wake_at:
                self._cond.notify()

    def discard_finished(self) -> None:
        """Drop the finished calls at the top of the heap (after a :meth:`Watch.finish`)."""
        with self._cond:
            heap = self._heap
            while heap and heap[0][2]._done:
                heapq.heappop(heap)

    def pending(self) -> int:
        """How many entries the heap holds (finished calls not yet dropped included)."""
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        heap = self._heap
        while True:
            due_now: list[Watch] = []
            with self._cond:
                now = time.monotonic()
                while heap and (heap[0][0] <= now or heap[0][2]._done):
                    due_now.append(heapq.heappop(heap)[2])
                if not due_now:
                    self._wake_at = heap[0][0] if heap else float("inf")
                    self._cond.wait(None if not heap else max(0.0, self._wake_at - now))
                    continue
            for watch in due_now:  # outside the lock: a shutdown is a system call
                watch.fire()


_watchdog_lock = threading.Lock()
_watchdog: Watchdog | None = None


def watchdog() -> Watchdog:
    """This process's watchdog, created (and its thread started) on first use."""
    global _watchdog
    dog = _watchdog
    if dog is not None and dog.pid == os.getpid():
        return dog
    with _watchdog_lock:
        if _watchdog is None or _watchdog.pid != os.getpid():
            _watchdog = Watchdog()
        return _watchdog


def _forget_after_fork() -> None:
    # The parent's watchdog thread does not exist in the child, and its locks may have been
    # held at the fork: the child starts afresh on its first call.
    global _watchdog, _watchdog_lock
    _watchdog_lock = threading.Lock()
    _watchdog = None


os.register_at_fork(after_in_child=_forget_after_fork)


@contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Run the block (one HTTP call through a :class:`DeadlineAdapter`) under a deadline of
    ``seconds`` from now; yields its :class:`Watch`."""
    watch = Watch()
    dog = watchdog()
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    dog.add(time.monotonic() + seconds, watch)
    try:
        yield watch
    finally:
        watch.finish()
        dog.discard_finished()
        _current.watch = previous


def _attach(sock: socket.socket | None) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and sock is not None:
        watch.attach(sock)


# The socket is recorded when it is opened (connect) and when a pooled connection is taken
# (_get_conn): the connection object is no help later, as http.client drops its ``sock`` as
# soon as an answer says ``Connection: close``, while the body is still being read from it.

class _HTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)


class _HTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach(self.sock)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _attach(conn.sock)
        return conn


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _attach(conn.sock)
        return conn


#: Pooled keep-alive connections per node and process: more than the API and background
#: threads that call the node at once (docs/serving.md), so none is opened for a single call.
POOL_MAXSIZE = 32


class DeadlineAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections report their socket to the running
    :func:`deadline` (outside one, it behaves as the stock adapter); it keeps up to
    :data:`POOL_MAXSIZE` idle keep-alive connections per host.

    For bridge CPU (docs/performance.md) a call without proxies skips the proxy lookups, and
    an answer's ``Set-Cookie`` headers are not parsed into ``Response.cookies`` (the node
    sets no cookies and no node call reads them); ``send`` itself is the stock one.
    """

    def __init__(self) -> None:
        super().__init__(pool_maxsize=POOL_MAXSIZE)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def get_connection_with_tls_context(self, request: PreparedRequest, verify: Any,
                                        proxies: dict[str, str] | None = None, cert: Any = None) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        except ValueError as exc:
            raise InvalidURL(exc, request=request) from exc
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def request_url(self, request: PreparedRequest, proxies: dict[str, str] | None) -> str:
        return super().request_url(request, proxies) if proxies else request.path_url

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        response = Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response
