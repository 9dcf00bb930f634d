"""Serving the dev node with werkzeug's threaded server: in a thread (tests) or blocking (CLI)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import store

# A fixed, obviously-not-secret key for local runs (the node demands >= 32 characters).
DEFAULT_DEV_ADMIN_KEY = "dev-node-admin-key-not-for-production-use"
logger = logging.getLogger(__name__)


class _QuietHandler(WSGIRequestHandler):
    """Request handler without the per-request access log line (tests and load runs)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@dataclass
class DevServer:
    """A dev node served on ``url`` by a daemon thread; call ``shutdown()`` when done."""

    url: str
    port: int
    _server: BaseWSGIServer
    _thread: threading.Thread
    _app: Flask

    def shutdown(self) -> None:
        """Stop serving and wait for the thread; ends fault-injected sleeps early."""
        self._app.extensions[store.EXTENSION_KEY].stop_event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_in_thread(app: Flask, host: str = "127.0.0.1", port: int = 0,
                    quiet: bool = True) -> DevServer:
    """Serve ``app`` on ``host:port`` (0 = a free port) in a daemon thread; return at once.

    ``quiet`` drops werkzeug's access log lines; errors are still logged.
    """
    app.extensions[store.EXTENSION_KEY].stop_event.clear()
    server = make_server(host, port, app, threaded=True,
                         request_handler=_QuietHandler if quiet else None)
    # Requests still sleeping in a fault must not hold shutdown (stop_event ends them).
    server.daemon_threads = True
    # A short poll interval makes shutdown() return quickly (tests start many servers).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"devnode:{server.port}", daemon=True)
    thread.start()
    return DevServer(url=f"http://{host}:{server.port}", port=server.port, _server=server,
                     _thread=thread, _app=app)


def serve_forever(app: Flask, host: str = "127.0.0.1", port: int = 8099) -> None:
    """Serve ``app`` in the foreground (threaded) until interrupted."""
    server = make_server(host, port, app, threaded=True)
    logger.info("dev escrow node on http://%s:%s", host, server.port)
    try:
        server.serve_forever()
    finally:
        app.extensions[store.EXTENSION_KEY].stop_event.set()
        server.server_close()
