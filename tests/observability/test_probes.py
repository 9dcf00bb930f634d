"""``/healthz`` and ``/readyz``: each failing check is named in a 503."""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
from contextlib import closing

from otc_bridge.api import health
from otc_bridge.app import build_bridge, create_app
from otc_bridge.storage import heartbeats


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_is_always_ok(http_client):
    assert http_client.get("/healthz").get_json() == {"ok": True}


def test_ready_when_everything_answers(http_client, bridge):
    body = http_client.get("/readyz").get_json()
    assert body["ok"] is True and body["checks"]["reconciler"]["starting"] is True
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["node"]["ok"] is True and body["checks"]["node"]["status_code"] == 200
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 0}, now=bridge.now())
    response = http_client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["reconciler"]["last_run_at"] == bridge.now()


def test_not_ready_when_the_node_is_down(bridge):
    down = build_bridge(bridge.config.replace(node_url=f"http://127.0.0.1:{_closed_port()}"))
    response = create_app(bridge=down).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["node"] and body["checks"]["node"]["error"] == "connection error"


def test_not_ready_when_the_reconciler_heartbeat_is_stale(http_client, bridge):
    interval = bridge.config.reconcile_interval_seconds
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 1}, now=bridge.now() - 3 * interval - 1)
    response = http_client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["reconciler"]
    assert body["checks"]["reconciler"]["age_seconds"] == 3 * interval + 1


def test_not_ready_when_no_pass_was_ever_recorded_after_startup_grace(http_client, bridge):
    real_clock = bridge.clock
    bridge.clock = lambda: real_clock() + 3 * bridge.config.reconcile_interval_seconds + 5
    body = http_client.get("/readyz").get_json()
    assert body["failed"] == ["reconciler"] and "no reconcile pass recorded" in body["checks"]["reconciler"]["error"]


def test_reconciler_check_skipped_when_disabled(bridge):
    off = dataclasses.replace(bridge, config=bridge.config.replace(reconcile_disabled=True),
                              clock=lambda: 4_000_000_000)
    body = create_app(bridge=off).test_client().get("/readyz").get_json()
    assert body["ok"] is True and body["checks"]["reconciler"] == {"ok": True, "disabled": True}


def test_not_ready_when_the_database_is_locked(http_client, bridge, monkeypatch):
    monkeypatch.setattr(health, "DB_PROBE_TIMEOUT_SECONDS", 0.2)
    with closing(sqlite3.connect(bridge.db.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        response = http_client.get("/readyz")
        other.execute("ROLLBACK")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["database"] and "locked" in body["checks"]["database"]["error"]
    assert http_client.get("/readyz").status_code == 200
    assert bridge.db.read_one("SELECT COUNT(*) FROM leases")[0] == 0  # the probe's write was rolled back


def test_database_probe_never_creates_a_missing_file(tmp_path):
    result = health.check_database(str(tmp_path / "nowhere.db"))
    assert result["ok"] is False and not (tmp_path / "nowhere.db").exists()
