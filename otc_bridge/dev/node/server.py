"""Serving the dev node with werkzeug's threaded server: in a thread (tests) or blocking (CLI).

Connections are kept alive (HTTP/1.1), as a production node behind a web server keeps them:
werkzeug's own handler closes every connection after one answer, which made each of the
bridge's node calls open a new TCP connection (docs/performance.md, "Where the time goes").
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import store
from .common import MAX_BODY_BYTES

# A fixed, obviously-not-secret key for local runs (the node demands >= 32 characters).
DEFAULT_DEV_ADMIN_KEY = "dev-node-admin-key-not-for-production-use"
logger = logging.getLogger(__name__)

#: Framing headers the handler sets itself (the app's are dropped).
_FRAMING = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class _Connections:
    """The server's open client sockets, so that stopping the server also ends its idle
    keep-alive connections (a stopped node must not go on answering on them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)
            closed = self._closed
        if closed:  # accepted while the server stopped
            _shutdown(sock)

    def discard(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def shutdown_all(self) -> None:
        """Shut every open connection down (its thread then reads EOF and ends)."""
        with self._lock:
            self._closed = True
            sockets = list(self._open)
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by either side
        sock.shutdown(socket.SHUT_RDWR)


class _KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler, keeping HTTP/1.1 connections open between requests.

    werkzeug answers every request with ``Connection: close``: it cannot tell where a body
    the app did not read ends, so it drains the socket and closes it. Here a request body
    framed by ``Content-Length`` (up to the node's 1 MB limit) is read before the app runs,
    and the app's answer is buffered and sent with its ``Content-Length``; the next request
    then follows on the same connection. Any other request (a chunked or over-limit body,
    ``Expect: 100-continue``, ``Connection: close`` or an HTTP/1.0 client) goes through
    werkzeug's own path and closes the connection, as before. A fault that drops the
    connection (``drop_before`` shuts the socket down) still ends it: the answer cannot be
    written and the next read finds the end of the stream.
    """

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # The head and the body go out in two writes: without NODELAY the body would wait for
        # the client's delayed ACK of the head (tens of ms) on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connections = getattr(self.server, "devnode_connections", None)
        if connections is not None:
            connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            connections = getattr(self.server, "devnode_connections", None)
            if connections is not None:
                connections.discard(self.connection)

    def _body_length(self) -> int | None:
        """The request body's length if this request can keep the connection, else None."""
        headers = self.headers
        if self.close_connection or "Transfer-Encoding" in headers or "Expect" in headers:
            return None
        declared = headers.get("Content-Length", "0").strip()
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            return None
        return int(declared)

    def run_wsgi(self) -> None:
        length = self._body_length()
        if length is None:
            self.close_connection = True
            super().run_wsgi()
            return
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return
        rfile, self.rfile = self.rfile, io.BytesIO(body)  # make_environ takes wsgi.input from it
        try:
            self.environ = environ = self.make_environ()
        finally:
            self.rfile = rfile
        try:
            status, headers, payload = _call(self.server.app, environ)
        except Exception:
            if self.server.passthrough_errors:
                raise
            self.server.log("error", "Error on request:\n%s", traceback.format_exc())
            status, headers, payload = _call(InternalServerError(), environ)
        try:
            self._send(status, headers, payload)
        except (ConnectionError, TimeoutError) as exc:  # the client left, or a fault shut the socket
            self.close_connection = True
            self.connection_dropped(exc, environ)

    def _send(self, status: str, headers: list[tuple[str, str]], payload: bytes) -> None:
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        for name, value in headers:
            if name.lower() not in _FRAMING:
                self.send_header(name, value)
        if self.command == "HEAD":  # the length of the body a GET would get, and no body
            declared = next((v for n, v in headers if n.lower() == "content-length"), None)
            if declared is not None:
                self.send_header("Content-Length", declared)
            payload = b""
        elif code >= 200 and code not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def _call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run a WSGI app to the end: its status line, headers and whole body."""
    answer: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer[:] = [status, headers]  # nothing is sent yet: a later call may replace it
        return chunks.append

    body: Iterable[bytes] = app(environ, start_response)
    try:
        chunks.extend(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return answer[0], answer[1], b"".join(chunks)


class _QuietHandler(_KeepAliveHandler):
    """Request handler without the per-request access log line (tests and load runs)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


def _make_server(app: Flask, host: str, port: int, quiet: bool) -> BaseWSGIServer:
    server = make_server(host, port, app, threaded=True,
                         request_handler=_QuietHandler if quiet else _KeepAliveHandler)
    server.devnode_connections = _Connections()  # type: ignore[attr-defined]
    # Requests still sleeping in a fault, and idle keep-alive connections, must not hold
    # shutdown (stop_event ends the former, shutdown() the latter).
    server.daemon_threads = True
    return server


@dataclass
class DevServer:
    """A dev node served on ``url`` by a daemon thread; call ``shutdown()`` when done."""

    url: str
    port: int
    _server: BaseWSGIServer
    _thread: threading.Thread
    _app: Flask

    def shutdown(self) -> None:
        """Stop serving and wait for the thread; ends fault-injected sleeps early and shuts
        every open connection down (idle keep-alive ones included)."""
        self._app.extensions[store.EXTENSION_KEY].stop_event.set()
        self._server.shutdown()
        self._server.devnode_connections.shutdown_all()  # type: ignore[attr-defined]
        self._server.server_close()
        self._thread.join(timeout=10)


def start_in_thread(app: Flask, host: str = "127.0.0.1", port: int = 0,
                    quiet: bool = True) -> DevServer:
    """Serve ``app`` on ``host:port`` (0 = a free port) in a daemon thread; return at once.

    ``quiet`` drops werkzeug's access log lines; errors are still logged.
    """
    app.extensions[store.EXTENSION_KEY].stop_event.clear()
    server = _make_server(app, host, port, quiet)
    # A short poll interval makes shutdown() return quickly (tests start many servers).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"devnode:{server.port}", daemon=True)
    thread.start()
    return DevServer(url=f"http://{host}:{server.port}", port=server.port, _server=server,
                     _thread=thread, _app=app)


def serve_forever(app: Flask, host: str = "127.0.0.1", port: int = 8099) -> None:
    """Serve ``app`` in the foreground (threaded) until interrupted."""
    server = _make_server(app, host, port, quiet=False)
    logger.info("dev escrow node on http://%s:%s", host, server.port)
    try:
        server.serve_forever()
    finally:
        app.extensions[store.EXTENSION_KEY].stop_event.set()
        server.devnode_connections.shutdown_all()  # type: ignore[attr-defined]
        server.server_close()
