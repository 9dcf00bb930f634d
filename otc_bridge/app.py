"""The application factory: ``create_app(config)`` builds everything, importing does nothing.

Cross-cutting HTTP concerns live here: the request id, the per-IP rate limit on POST
routes (IPv6 clients counted per /64) and its pruning, the JSON Content-Type check of API
POSTs (415), security headers, CORS, the body size limit, and the one error handler that
maps domain errors to HTTP (internal errors become a generic 500, detail only in the log).
Every 4xx that Flask or werkzeug raises goes through that handler too, so each has a JSON
body; the malformed requests a WSGI server refuses before Flask sees them (a bad request
line, an over-long one, over-large headers) are answered by the serving layer
(:mod:`otc_bridge.serving`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
from flask import Flask, g, jsonify, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from otc_bridge import crashpoints
from otc_bridge.api import body
from otc_bridge.config import Config, ConfigError
from otc_bridge.context import Bridge, wall_clock
from otc_bridge.domain.errors import BridgeError
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.transport import NodeSession
from otc_bridge.notify import logs, metrics
from otc_bridge.storage import ratelimit
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)

_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'; form-action 'self'")
#: The security headers of every response; API and admin answers are never cached either.
_PAGE_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                 ("Referrer-Policy", "no-referrer"), ("Content-Security-Policy", _PAGE_CSP))
_API_HEADERS = (*_PAGE_HEADERS, ("Cache-Control", "no-store"))
_HEADER_NAMES = frozenset(name.lower() for name, _ in _API_HEADERS)


class TransactionGuardSession(NodeSession):
    """The node's ``requests`` session (:class:`~otc_bridge.node.transport.NodeSession`:
    pooled, no environment proxies), refusing to send while this thread holds a write
    transaction (docs/protocol.md §6: no HTTP call is ever made with the SQLite write lock held).

    Being the one edge every node call crosses, it also hosts the test-only crash points
    around node calls (:mod:`otc_bridge.crashpoints`) and the node-call metrics.
    """

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._db = db

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if self._db.in_write_transaction():
            raise RuntimeError("node call attempted inside a write transaction")
        path = urlsplit(url).path
        name = crashpoints.call_name(method.upper(), path)
        crashpoints.crash_point(f"before:{name}")
        started = time.perf_counter()
        try:
            response = super().request(method, url, *args, **kwargs)
        except BaseException:
            metrics.observe_node_call(method, path, None, time.perf_counter() - started)
            raise
        metrics.observe_node_call(method, path, response.status_code, time.perf_counter() - started)
        crashpoints.crash_point(f"after:{name}")
        return response


class _Pruner:
    """Deletes ended rate-limit windows (:func:`otc_bridge.storage.ratelimit.prune`) at most
    once per window per process, from the POST hook that fills the table: one short DELETE per
    window, so the table holds about one window of clients, and it runs wherever the limit
    does (the background loops can be turned off). Concurrent requests may both prune once;
    that is harmless."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._next_at = 0  # bridge clock, unix seconds

    def __call__(self, now: int) -> None:
        if now < self._next_at:
            return
        window = self._bridge.config.rate_limit.window_seconds
        self._next_at = now + window
        try:
            ratelimit.prune(self._bridge.db, now, window)
        except sqlite3.OperationalError:  # busy: the next window's prune takes these rows too
            log.warning("rate-limit prune skipped (database busy)", exc_info=True)


def build_bridge(config: Config, *, clock: Callable[[], int] = wall_clock,
                 session: requests.Session | None = None) -> Bridge:
    """Open (and migrate) the database and build the node client for ``config``.

    Raises :class:`ConfigError` if ``RUSTCHAIN_NODE`` is unset: the bridge cannot run
    without its escrow node (``otc-bridge dev`` starts a local one).
    """
    if not config.node_url:
        raise ConfigError("RUSTCHAIN_NODE", "the escrow node URL is required (use `otc-bridge dev` for a local one)")
    db = Database(config.db_path, synchronous=config.sqlite_synchronous)
    db.migrate()
    node = EscrowNodeClient(
        config.node_url, admin_key=config.node_admin_key, session=session or TransactionGuardSession(db),
        connect_timeout_seconds=config.node_connect_timeout_seconds,
        read_timeout_seconds=config.node_read_timeout_seconds,
        deadline_seconds=config.node_deadline_seconds, max_response_bytes=config.node_max_response_bytes,
        allow_insecure_admin=config.allow_insecure_admin, tls_verify=config.node_tls_verify)
    chain = None
    if config.quote_chain is not None:
        from otc_bridge.chain.reader import QuoteChainReader  # web3 is slow to import: only when used

        q = config.quote_chain
        chain = QuoteChainReader(q.rpc_url, chain_id=q.chain_id, htlc_address=q.htlc_address,
                                 confirmations=q.confirmations)
    return Bridge(config=config, db=db, node=node, clock=clock, chain=chain)


def create_app(config: Config | None = None, *, bridge: Bridge | None = None) -> Flask:
    """Build the Flask app. ``config`` defaults to the environment; ``bridge`` lets tests
    inject their own database, node client or clock."""
    config = config or (bridge.config if bridge else Config.from_env(os.environ))
    bridge = bridge or build_bridge(config)
    app = Flask(__name__, static_folder="web/static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["otc_bridge"] = bridge
    if config.cors_origins:
        CORS(app, resources={r"/api/*": {"origins": list(config.cors_origins)}})

    from otc_bridge.api import admin, docs, health, market, orders, stream, web

    for module in (orders, market, admin, web, stream, health, docs):
        app.register_blueprint(module.bp)
    stream.init_app(app, bridge)
    health.init_app(app, bridge)
    _install_hooks(app, bridge)
    return app


def _install_hooks(app: Flask, bridge: Bridge) -> None:
    prune = _Pruner(bridge)

    @app.before_request
    def start_request():
        logs.start_request()
        if request.method == "POST" and request.path.startswith("/api/"):
            ip = ratelimit.client_ip(request.remote_addr, request.headers, bridge.config.trusted_proxies)
            now = bridge.now()
            verdict = ratelimit.hit(bridge.db, ratelimit.bucket(ip), bridge.config.rate_limit, now)
            prune(now)
            if not verdict.allowed:
                response = jsonify(error="Rate limit exceeded", retry_after_seconds=verdict.retry_after_seconds)
                response.status_code = 429
                response.headers["Retry-After"] = str(verdict.retry_after_seconds)
                return response
            body.require_json_content_type()  # 415; /admin/* checks it after its token
        return None

    @app.after_request
    def security_headers(response):
        headers = response.headers
        ours = _API_HEADERS if request.path.startswith(("/api/", "/admin/")) else _PAGE_HEADERS
        if _HEADER_NAMES.isdisjoint(name.lower() for name, _ in headers):
            headers.extend(ours)  # the usual case: appended in this order, as the sets below would
        else:  # a view set one of them (the page sets Cache-Control): ours replace it
            for name, value in ours:
                headers[name] = value
        return logs.finish_request(response)

    @app.errorhandler(BridgeError)
    def domain_error(exc: BridgeError):
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {404: "Not found", 405: "Method not allowed",
                    413: f"Request body too large (limit {bridge.config.max_body_bytes} bytes)"}
        return jsonify(error=messages.get(exc.code or 500, exc.name)), exc.code

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        log.exception("internal error on %s %s (request %s)", request.method, request.path, g.get("request_id"))
        return jsonify(error="Internal server error"), 500
