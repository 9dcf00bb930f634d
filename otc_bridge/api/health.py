"""Readiness and metrics: ``/readyz`` and ``/metrics`` (liveness, ``/healthz``, is in ``web``).

``/readyz`` answers 200 ``{"ok": true}`` or 503 ``{"ok": false}``. With the admin token
(``Authorization: Bearer <OTC_ADMIN_TOKEN>`` or ``X-Admin-Key``) it adds ``"checks"`` and,
when not ok, ``"failed"`` naming each failing check; a wrong token is a 401. It writes
nothing and takes no write lock:

* ``database``: the SQLite file answers a read (schema version, one ``orders`` row) on a
  separate read-only connection within 2 s, and this process may write it
  (:func:`otc_bridge.storage.db.probe_readable`);
* ``node``: the escrow node answers ``GET /wallet/balance`` for the worker wallet with a
  status below 500 within 1 s to connect and 2 s to answer. The result is kept 5 s, so
  polling ``/readyz`` cannot flood the node (whose rate limit would hit the bridge);
* ``reconciler`` and ``outbox``: the worker's last completed pass (any process, ``heartbeats``
  table) is at most ``STALE_AFTER_INTERVALS`` (3) intervals old (``OTC_RECONCILE_INTERVAL_SECONDS``;
  for the outbox the longer of ``OTC_OUTBOX_INTERVAL_SECONDS`` and ``OTC_OUTBOX_VISIBILITY_SECONDS``,
  as one pass may deliver a batch to slow receivers);
  a process younger than that is given the benefit of the doubt. The details name the
  lease's holder (pid, since when), read from its lock file (docs/leases.md). Skipped when
  the worker is disabled.

``/metrics`` is the Prometheus text format (:mod:`otc_bridge.notify.metrics`); public unless
``OTC_METRICS_TOKEN`` is set, then it wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import BridgeError
from otc_bridge.notify import metrics
from otc_bridge.storage import heartbeats, pauses
from otc_bridge.storage.db import probe_readable

bp = Blueprint("health", __name__)

EXTENSION = "otc_probes"
DB_PROBE_TIMEOUT_SECONDS = 2.0
NODE_PROBE_TIMEOUT = (1.0, 2.0)
NODE_PROBE_CACHE_SECONDS = 5.0
STALE_AFTER_INTERVALS = heartbeats.STALE_AFTER_INTERVALS


@dataclass
class Probes:
    """One app's probe state: its bridge, when it started, its metrics registry, the node
    probe's session and last result."""

    bridge: Bridge
    started_at: int
    registry: CollectorRegistry
    session: requests.Session = field(default_factory=requests.Session)
    node_result: tuple[float, dict[str, Any]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def init_app(app: Flask, bridge: Bridge) -> None:
    """Give ``app`` its probe state and metrics registry (nothing is queried yet)."""
    app.extensions[EXTENSION] = Probes(bridge=bridge, started_at=bridge.now(),
                                       registry=metrics.build_registry(bridge))


def probes() -> Probes:
    """This app's :class:`Probes`."""
    return current_app.extensions[EXTENSION]


def check_database(path: str) -> dict[str, Any]:
    """Can the database be used now? Read only (:func:`otc_bridge.storage.db.probe_readable`)."""
    error = probe_readable(path, timeout_seconds=DB_PROBE_TIMEOUT_SECONDS)
    return {"ok": True} if error is None else {"ok": False, "error": error}


def check_node(p: Probes) -> dict[str, Any]:
    """Does the node answer? Cached for :data:`NODE_PROBE_CACHE_SECONDS` per process."""
    with p.lock:
        if p.node_result is not None and time.monotonic() - p.node_result[0] < NODE_PROBE_CACHE_SECONDS:
            return p.node_result[1]
    cfg = p.bridge.config
    started = time.perf_counter()
    try:
        response = p.session.get(f"{cfg.node_url}/wallet/balance", params={"miner_id": cfg.worker_wallet},
                                 timeout=NODE_PROBE_TIMEOUT, verify=cfg.node_tls_verify, allow_redirects=False)
        latency_ms = round((time.perf_counter() - started) * 1000)
        result = {"ok": response.status_code < 500, "status_code": response.status_code, "latency_ms": latency_ms}
        if response.status_code >= 500:
            result["error"] = f"http {response.status_code}"
    except requests.Timeout:
        result = {"ok": False, "error": "timeout"}
    except requests.RequestException:
        result = {"ok": False, "error": "connection error"}
    with p.lock:
        p.node_result = (time.monotonic(), result)
    return result


def _check_worker(p: Probes, name: str, max_age: int) -> dict[str, Any]:
    try:
        return heartbeats.staleness(p.bridge.db, name, now=p.bridge.now(), max_age=max_age,
                                    waiting_since=p.started_at)
    except sqlite3.Error as exc:
        return {"ok": False, "error": str(exc)}


def check_reconciler(p: Probes) -> dict[str, Any]:
    """Is the reconciler's last pass recent, and who holds its lease (module docstring)?"""
    cfg = p.bridge.config
    if cfg.reconcile_disabled:
        return {"ok": True, "disabled": True}
    return _check_worker(p, "reconciler", STALE_AFTER_INTERVALS * cfg.reconcile_interval_seconds)


def check_outbox(p: Probes) -> dict[str, Any]:
    """Is the outbox worker's last pass recent, and who holds its lease (module docstring)?"""
    cfg = p.bridge.config
    if cfg.outbox_disabled:
        return {"ok": True, "disabled": True}
    max_age = STALE_AFTER_INTERVALS * max(cfg.outbox_interval_seconds, cfg.outbox_visibility_seconds)
    return _check_worker(p, "outbox", int(max_age))


def _wants_details() -> bool:
    """True with the right admin token; 401 with a wrong one; False without any (or with
    no admin token configured, when the details are never shown)."""
    token = probes().bridge.config.admin_token
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("X-Admin-Key", "")
    if not token or not given:
        return False
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise BridgeError("unauthorized", http_status=401)
    return True


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when every check passes, else 503; the details only for the admin."""
    details = _wants_details()
    p = probes()
    checks = {"database": check_database(p.bridge.db.path), "node": check_node(p), "reconciler": check_reconciler(p),
              "outbox": check_outbox(p), "worker_coverage": check_worker_coverage(p)}
    failed = [name for name, result in checks.items() if not result["ok"]]
    status = 503 if failed else 200
    if not details:
        return jsonify(ok=not failed), status
    if failed:
        return jsonify(ok=False, failed=failed, checks=checks), status
    return jsonify(ok=True, checks=checks), status


def check_worker_coverage(p: Probes) -> dict[str, Any]:
    """Are releases running? Not while the worker wallet does not cover what is queued from it
    (``settlement.coverage`` sets the ``releases`` pause; docs/protocol.md §11.1)."""
    try:
        paused = pauses.current(p.bridge.db.connection(), pauses.RELEASES)
    except sqlite3.Error as exc:
        return {"ok": False, "error": str(exc)}
    if paused is None:
        return {"ok": True}
    return {"ok": False, "error": paused["reason"], "paused_since": paused["since"]}


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text exposition; ``401 unauthorized`` without the token if one is configured."""
    p = probes()
    token = p.bridge.config.metrics_token
    if token:
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise BridgeError("unauthorized", http_status=401)
    return Response(metrics.render(p.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
