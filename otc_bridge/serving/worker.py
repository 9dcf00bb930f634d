"""``serve``'s gunicorn worker: the buffering gthread worker
(:class:`otc_bridge.serving.buffering.BufferingThreadWorker`, which reads every request whole
in the event loop under the head and body deadlines) with what bounds the threads:

* ``write_seconds`` for every write to the client (the socket's timeout; ``sendall``
  counts it for the whole call), and ``handler_seconds`` for a request's handler: one that
  runs longer is logged and its worker restarted (``/api/stream`` responses are exempt: a
  stream lives until its client goes, a heartbeat finds the gone ones).

What gunicorn answers itself (:meth:`BufferingWorker.handle_error`: what its parser refuses)
is JSON like the application's: ``{"error": "..."}``. A stop (SIGTERM, a handler over its
bound) runs the ``on_stop`` hook that ``serve_forever`` gives :func:`worker_class`, so open
streams do not hold it up. docs/serving.md has the measurements behind these choices.
"""

from __future__ import annotations

import os
import threading
import time

from otc_bridge.serving.bounds import Bounds, CapturedResponse, json_refusal
from otc_bridge.serving.buffering import BufferingThreadWorker

#: Responses that live as long as their client: not subject to ``handler_seconds``.
STREAM_PATHS = ("/api/stream",)


class BufferingWorker(BufferingThreadWorker):
    """See the module docstring. ``bounds`` is set on a subclass by :func:`worker_class`."""

    #: Called in the event loop when the worker starts to stop (SIGTERM, a handler over its
    #: bound): serve_forever closes the open streams, so they do not hold the stop.
    on_stop = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._running: dict[int, tuple[float, str]] = {}
        self._running_lock = threading.Lock()
        self._stuck = False

    def murder_pending(self) -> None:
        """Called by gthread's loop after every wake-up, also while stopping: the buffering
        worker's deadlines, then the handler bound."""
        super().murder_pending()
        self._check_handlers()

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
