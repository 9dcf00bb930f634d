"""The buffering half of ``serve``'s gunicorn worker: gthread, with each request read whole in
the event loop before a thread takes it, so slow and idle clients cost a socket and a few
bytes, never a thread.

gunicorn 27's gthread gives a new connection to a thread at once; the thread waits up to
5 s for a first byte, then blocks reading the head and the body with no deadline, so ~140
clients sending a byte at a time held every thread of ``serve`` (docs/serving.md). Here the
worker's event loop (one thread, ``selectors``) reads each request until
:class:`otc_bridge.serving.framing.Framer` says it is complete, under two deadlines, and only
then gives it to the thread pool with every byte already buffered:

* ``header_seconds`` from accept (or from the first byte of a kept-alive connection's next
  request) to the end of the head; ``keepalive_seconds`` of silence between requests;
* ``body_seconds`` from the end of the head to the end of the body (at most
  ``Limits.body`` bytes: a larger declared body gets 413 at once).

A deadline that passes with part of a request received is answered ``408``; a connection
that sent nothing is closed. Those 408s and the framer's refusals (413, 414, 431) are JSON like
the application's: ``{"error": "..."}``. What runs in the threads (the write and handler
bounds, gunicorn's own refusals, the stop hook) is :mod:`otc_bridge.serving.worker`'s.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import _DEFER, STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from otc_bridge.serving.bounds import CONTINUE, Bounds, error_response
from otc_bridge.serving.framing import Framer


class _Waiting:
    """A connection whose next request is being buffered."""

    __slots__ = ("conn", "buf", "framer", "deadline", "head_done", "continue_sent", "idle", "closing")

    def __init__(self, conn: TConn, buf: bytes, framer: Framer, deadline: float, idle: bool) -> None:
        self.conn, self.buf, self.framer, self.deadline, self.idle = conn, bytearray(buf), framer, deadline, idle
        self.head_done = self.continue_sent = self.closing = False


class BufferingThreadWorker(ThreadWorker):
    """gthread whose event loop buffers every request (the module docstring) under ``bounds``.

    A dispatched connection carries ``otc_continue_sent``: whether the event loop already
    answered the request's ``Expect: 100-continue``."""

    bounds = Bounds()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[int, _Waiting] = {}
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        self._sequence = itertools.count()
        self._lingering = False

    def accept(self, listener) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.log.warning("accept failed (%s): out of file descriptors or memory", exc)
                return
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, sock, client, listener.getsockname())  # non-blocking
        self._await(conn, b"", time.monotonic() + self.bounds.header_seconds, idle=False)

    def _await(self, conn: TConn, buffered: bytes, deadline: float, *, idle: bool) -> None:
        """Buffer ``conn``'s next request (``buffered``: bytes already received for it)."""
        waiting = _Waiting(conn, buffered, Framer(self.bounds.limits), deadline, idle)
        self._waiting[id(waiting)] = waiting
        self._push_deadline(waiting)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, waiting))
        if buffered:
            self._advance(waiting)

    def _push_deadline(self, waiting: _Waiting) -> None:
        heapq.heappush(self._deadlines, (waiting.deadline, next(self._sequence), waiting))

    def _readable(self, waiting: _Waiting, sock) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(waiting)
            return
        if waiting.closing:  # draining what the client still sends until it closes
            return
        if waiting.idle:  # the next request on a kept-alive connection starts: its head's clock runs
            waiting.idle = False
            waiting.deadline = time.monotonic() + self.bounds.header_seconds
            self._push_deadline(waiting)
        waiting.buf += data
        self._advance(waiting)

    def _advance(self, waiting: _Waiting) -> None:
        verdict = waiting.framer.update(waiting.buf)
        if verdict.error:
            self._refuse(waiting, *verdict.error)
        elif verdict.complete:
            self._dispatch(waiting)
        else:
            if verdict.head_done and not waiting.head_done:
                waiting.head_done = True
                waiting.deadline = time.monotonic() + self.bounds.body_seconds
                self._push_deadline(waiting)
            if verdict.expects_continue and not waiting.continue_sent:
                waiting.continue_sent = True
                try:
                    waiting.conn.sock.send(CONTINUE)
                except OSError:
                    self._close(waiting)

    def _release(self, waiting: _Waiting) -> bool:
        """Stop watching ``waiting``; False if it was already released."""
        if self._waiting.pop(id(waiting), None) is None:
            return False
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(waiting.conn.sock)
        return True

    def _dispatch(self, waiting: _Waiting) -> None:
        """Hand a complete request (every byte buffered) to the thread pool."""
        if not self._release(waiting):
            return
        conn = waiting.conn
        try:
            conn.init()  # the parser (plain HTTP/1.x: no TLS, no h2c); blocking socket from here on
        except Exception:
            self.log.exception("could not set up a connection")
            self.nr_conns -= 1
            conn.close()
            return
        conn.parser.unreader.unread(bytes(waiting.buf))
        conn.data_ready = True
        conn.otc_continue_sent = waiting.continue_sent
        self.enqueue_req(conn)

    def _close(self, waiting: _Waiting) -> None:
        if self._release(waiting):
            self.nr_conns -= 1
            waiting.conn.close()

    def _refuse(self, waiting: _Waiting, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error (best effort, never blocking) and close."""
        if not self._release(waiting):
            return
        self.log.warning("Refused request from ip=%s: %s %s", waiting.conn.client[0], status, message)
        with contextlib.suppress(OSError):
            waiting.conn.sock.send(error_response(status, message))
        self._linger(waiting.conn)

    def _linger(self, conn: TConn) -> None:
        """Close after the last response without a reset: send FIN, then read (and drop) what
        the client still sends until it closes, for ``STOP_KEEPALIVE_LINGER`` s at most, in the
        event loop (gunicorn's ``close_graceful`` blocks its caller for that long)."""
        try:
            conn.sock.setblocking(False)
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.nr_conns -= 1
            conn.close()
            return
        waiting = _Waiting(conn, b"", Framer(self.bounds.limits), time.monotonic() + STOP_KEEPALIVE_LINGER,
                           idle=False)
        waiting.closing = True
        self._waiting[id(waiting)] = waiting
        self._push_deadline(waiting)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, waiting))

    def _expire(self) -> None:
        """Apply the passed deadlines: 408 to a partly received request, close a silent one."""
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            entry = heapq.heappop(self._deadlines)
            if not self._live(entry):
                continue  # released, or its deadline moved on
            waiting = entry[2]
            if not waiting.buf.strip():
                self._close(waiting)
            elif waiting.head_done:
                self._refuse(waiting, 408, f"Request body not received within {self.bounds.body_seconds:g} s")
            else:
                self._refuse(waiting, 408, f"Request head not received within {self.bounds.header_seconds:g} s")

    def _live(self, entry: tuple[float, int, _Waiting]) -> bool:
        deadline, _, waiting = entry
        return id(waiting) in self._waiting and deadline == waiting.deadline

    def wait_for_and_dispatch_events(self, timeout):
        # Wake up for the next deadline, not up to a second later; entries left by requests
        # already dispatched (most of them) are dropped here rather than waking the loop.
        while self._deadlines and not self._live(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        if self._deadlines:
            timeout = max(0.0, min(timeout, self._deadlines[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)

    def murder_pending(self) -> None:
        """Called by gthread's loop after every wake-up, also while stopping."""
        super().murder_pending()
        if not self.alive and not self._lingering:
            # Stopping: a connection with nothing of a request yet stays open for
            # STOP_KEEPALIVE_LINGER at most (as gthread's kept-alive ones), for a request a
            # client may be sending already; it is answered with "Connection: close".
            self._lingering = True
            until = time.monotonic() + STOP_KEEPALIVE_LINGER
            for waiting in list(self._waiting.values()):
                if not waiting.buf.strip() and waiting.deadline > until:
                    waiting.deadline = until
                    self._push_deadline(waiting)
        self._expire()

    def finish_request(self, conn, fs) -> None:
        """A thread finished with ``conn``: buffer its next request, or close it."""
        try:
            result = fs.result() if not fs.cancelled() else False
            if result is _DEFER:  # not reached: requests come complete
                result = self.alive
            if result:
                conn.sock.setblocking(False)
                buffered = conn.parser.unreader.take_buffered()  # a pipelined next request
                now = time.monotonic()
                if buffered:
                    self._await(conn, buffered, now + self.bounds.header_seconds, idle=False)
                else:
                    linger = self.bounds.keepalive_seconds if self.alive else STOP_KEEPALIVE_LINGER
                    self._await(conn, b"", now + min(linger, self.bounds.keepalive_seconds), idle=True)
            else:
                self._linger(conn)
        except Exception:
            self.log.debug("closing a connection after a failed request", exc_info=True)
            self.nr_conns -= 1
            conn.close()
