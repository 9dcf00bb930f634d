"""A tiny HTTP server on 127.0.0.1 for the node transport's tests: it reads each request's head
and lets a script write whatever answer the test needs (a trickle, too many bytes, nothing),
one thread per connection, keep-alive. Shared by the deadline and watchdog tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: ``script(conn, stop)``: answer one request on ``conn``; ``stop`` is set when the test ends.
Script = Callable[[socket.socket, threading.Event], None]


class ScriptedNode:
    """Accepts connections on 127.0.0.1 and answers each request with ``script``."""

    def __init__(self, script: Script) -> None:
        self.script, self.stop = script, threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while not self.stop.is_set():  # keep-alive: one answer per request
                    request = b""
                    while b"\r\n\r\n" not in request:
                        data = conn.recv(65536)
                        if not data:
                            return
                        request += data
                    self.script(conn, self.stop)
            except OSError:  # the client cut the connection: that is the point
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@contextmanager
def scripted_nodes() -> Iterator[Callable[[Script], ScriptedNode]]:
    """A factory of :class:`ScriptedNode`; every node it started is closed on exit."""
    started: list[ScriptedNode] = []

    def start(script: Script) -> ScriptedNode:
        started.append(ScriptedNode(script))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.close()
