"""gunicorn's gthread worker, with each request buffered in the event loop before a thread
takes it: slow and idle clients cost a socket and a few bytes, never a thread.

gunicorn 27's gthread gives a new connection to a thread at once; the thread waits up to
5 s for a first byte, then blocks reading the head and the body with no deadline, so ~140
clients sending a byte at a time held every thread of ``serve`` (docs/serving.md). Here the
worker's event loop (one thread, ``selectors``) reads each request until
:class:`otc_bridge.serving.framing.Framer` says it is complete, under three deadlines, and only
then gives it to the thread pool with every byte already buffered:

* ``header_seconds`` from accept (or from the first byte of a kept-alive connection's next
  request) to the end of the head; ``keepalive_seconds`` of silence between requests;
* ``body_seconds`` from the end of the head to the end of the body (at most
  ``Limits.body`` bytes: a larger declared body gets 413 at once);
* ``write_seconds`` for every write to the client (the socket's timeout; ``sendall``
  counts it for the whole call), and ``handler_seconds`` for a request's handler: one that
  runs longer is logged and its worker restarted (``/api/stream`` responses are exempt: a
  stream lives until its client goes, a heartbeat finds the gone ones).

A deadline that passes with part of a request received is answered ``408``; a connection
that sent nothing is closed. The server's own refusals (400, 408, 413, 414, 431, 501) are
JSON like the application's: ``{"error": "..."}``.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import os
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn.workers.gthread import _DEFER, STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from otc_bridge.serving.bounds import CONTINUE, Bounds, CapturedResponse, error_response, json_refusal
from otc_bridge.serving.framing import Framer

#: Responses that live as long as their client: not subject to ``handler_seconds``.
STREAM_PATHS = ("/api/stream",)

class _Waiting:
    """A connection whose next request is being buffered."""

    __slots__ = ("conn", "buf", "framer", "deadline", "head_done", "continue_sent", "idle", "closing")

    def __init__(self, conn: TConn, buf: bytes, framer: Framer, deadline: float, idle: bool) -> None:
        self.conn, self.buf, self.framer, self.deadline, self.idle = conn, bytearray(buf), framer, deadline, idle
        self.head_done = self.continue_sent = self.closing = False


class BufferingWorker(ThreadWorker):
    """See the module docstring. ``bounds`` is set on a subclass by :func:`worker_class`."""

    bounds = Bounds()
    #: Called in the event loop when the worker starts to stop (SIGTERM, a handler over its
    #: bound): serve_forever closes the open streams, so they do not hold the stop.
    on_stop = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[int, _Waiting] = {}
        self._deadlines: list[tuple[float, int, _Waiting]] = []
        self._sequence = itertools.count()
        self._running: dict[int, tuple[float, str]] = {}
        self._running_lock = threading.Lock()
        self._stuck = False
        self._lingering = False

    # --- buffering, in the event loop -------------------------------------------------------------------

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
        self._check_handlers()

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

    # --- in a thread ------------------------------------------------------------------------------------

    def handle_request(self, req, conn):
        conn.sock.settimeout(self.bounds.write_seconds)
        if getattr(conn, "otc_continue_sent", False):
            req._expected_100_continue = False  # already sent while the body was buffered
        key = threading.get_ident()
        if req.path not in STREAM_PATHS:
            with self._running_lock:
                self._running[key] = (time.monotonic(), f"{req.method} {req.path}")
        try:
            return super().handle_request(req, conn)
        finally:
            with self._running_lock:
                self._running.pop(key, None)

    def handle_error(self, req, client, addr, exc) -> None:
        """gunicorn's handling (log, access log, status), with a JSON body."""
        captured = CapturedResponse()
        super().handle_error(req, captured, addr, exc)
        try:
            client.setblocking(False)
            client.send(json_refusal(captured.data, self.bounds.limits))
        except OSError:
            self.log.debug("Failed to send error message.")

    # --- the handler bound ------------------------------------------------------------------------------

    def _check_handlers(self) -> None:
        if not self.alive:
            return
        now = time.monotonic()
        with self._running_lock:
            late = [what for started, what in self._running.values() if now - started > self.bounds.handler_seconds]
        if late:
            self.log.error("%s has run more than %g s (OTC_HANDLER_TIMEOUT_SECONDS): restarting this worker",
                           late[0], self.bounds.handler_seconds)
            self.alive = False  # stop accepting; the master starts a new worker
            self._stopping()
            self._stuck = True

    def handle_exit(self, sig, frame) -> None:
        """SIGTERM: stop gracefully (gthread's), and end the open streams now."""
        if self.alive:
            super().handle_exit(sig, frame)
            self.method_queue.defer(self._stopping)

    def _stopping(self) -> None:
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception:
                self.log.exception("stop hook failed")

    def run(self) -> None:
        super().run()
        with self._running_lock:
            stuck = list(self._running.values())
        if self._stuck and stuck:
            # A thread that never returns would hold the interpreter's exit (it joins the
            # pool's threads) until the master's timeout kills the process: end it now.
            self.log.error("exiting with %d request(s) still running, among them %s", len(stuck), stuck[0][1])
            os._exit(1)


def worker_class(bounds: Bounds, on_stop=None) -> type[BufferingWorker]:
    """The worker class for gunicorn's ``worker_class`` setting, with ``bounds`` and a hook
    run when a worker starts to stop."""
    hook = staticmethod(on_stop) if on_stop else None
    return type("BufferingWorker", (BufferingWorker,), {"bounds": bounds, "on_stop": hook})
