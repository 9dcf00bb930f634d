"""A total deadline for one HTTP call to the node, whatever the node does.

``requests``' ``(connect, read)`` timeout bounds each socket operation, not the call: a node
that sends one byte every few seconds, in its headers or its body, keeps a call (and the
escrow-create lease around it, docs/escrow-node.md §4) alive for ever. Here every call runs
under :func:`deadline`: a timer that, when the call's time is up, shuts down the socket of the
connection the call uses, which ends whichever read or write is blocked on it (plain or TLS).
:class:`DeadlineAdapter`, mounted on the node's base URL, tells the timer which socket that
is, whether freshly opened or reused from the pool.

The caller still checks :attr:`Watch.fired` after a call: a body cut short by the shutdown can
look complete when the node sent no ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class Watch:
    """One call's deadline. ``fired`` becomes true once the time is up before the call ended."""

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
        """The call is over (its answer read or abandoned): the timer must not touch the
        socket any more, which may go back to the pool for another call."""
        with self._lock:
            self._done = True


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would drop its SSL
    # object under a read in progress in the call's thread. OSError: already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Run the block (one HTTP call through a :class:`DeadlineAdapter`) under a deadline of
    ``seconds`` from now; yields its :class:`Watch`."""
    watch = Watch()
    previous = getattr(_current, "watch", None)
    _current.watch = watch
    timer = threading.Timer(seconds, watch.fire)
    timer.daemon = True
    timer.start()
    try:
        yield watch
    finally:
        watch.finish()
        timer.cancel()
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


class DeadlineAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections report their socket to the running
    :func:`deadline` (outside one, it behaves as the stock adapter)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
