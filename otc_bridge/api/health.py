"""Readiness and metrics: ``/readyz`` and ``/metrics`` (liveness, ``/healthz``, is in ``web``).

``/readyz`` answers 200 ``{"ok": true, "checks": {...}}`` or 503 with ``"failed"`` naming
each failing check:

* ``database``: the SQLite file takes a write (``BEGIN IMMEDIATE``, one insert, rollback) on a
  separate connection within 2 s, so a locked or read-only database fails fast;
* ``node``: the escrow node answers ``GET /wallet/balance`` for the worker wallet with a
  status below 500 within 1 s to connect and 2 s to answer. The result is kept 5 s, so
  polling ``/readyz`` cannot flood the node (whose rate limit would hit the bridge);
* ``reconciler``: the last recorded reconcile pass (any process, ``heartbeats`` table) is at
  most 3 x ``OTC_RECONCILE_INTERVAL_SECONDS`` old; a process younger than that is given the
  benefit of the doubt. Skipped when ``OTC_RECONCILE_DISABLED``.

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
from otc_bridge.storage import heartbeats
from otc_bridge.storage.db import probe_writable

bp = Blueprint("health", __name__)

EXTENSION = "otc_probes"
DB_PROBE_TIMEOUT_SECONDS = 2.0
NODE_PROBE_TIMEOUT = (1.0, 2.0)
NODE_PROBE_CACHE_SECONDS = 5.0
STALE_AFTER_INTERVALS = 3


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
    """Can the database take a write now? (:func:`otc_bridge.storage.db.probe_writable`)."""
    error = probe_writable(path, timeout_seconds=DB_PROBE_TIMEOUT_SECONDS)
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


def check_reconciler(p: Probes) -> dict[str, Any]:
    """Is the reconciler's last pass recent (see the module docstring)?"""
    cfg = p.bridge.config
    if cfg.reconcile_disabled:
        return {"ok": True, "disabled": True}
    now, max_age = p.bridge.now(), STALE_AFTER_INTERVALS * cfg.reconcile_interval_seconds
    try:
        beat = heartbeats.read_heartbeats(p.bridge.db).get("reconciler")
    except sqlite3.Error as exc:
        return {"ok": False, "error": str(exc)}
    if beat is None:
        waited = now - p.started_at
        if waited <= max_age:
            return {"ok": True, "last_run_at": None, "starting": True}
        return {"ok": False, "last_run_at": None, "error": f"no reconcile pass recorded in {waited} s"}
    age = now - beat.last_run_at
    result = {"ok": age <= max_age, "last_run_at": beat.last_run_at, "age_seconds": age, "max_age_seconds": max_age}
    if age > max_age:
        result["error"] = f"last reconcile pass {age} s ago"
    return result


@bp.get("/readyz")
def readyz():
    """Readiness: 200 when every check passes, else 503 naming the failing ones."""
    p = probes()
    checks = {"database": check_database(p.bridge.db.path), "node": check_node(p), "reconciler": check_reconciler(p)}
    failed = [name for name, result in checks.items() if not result["ok"]]
    if failed:
        return jsonify(ok=False, failed=failed, checks=checks), 503
    return jsonify(ok=True, checks=checks)


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
