"""``/healthz`` and ``/readyz``: public readiness is ok / not ok and a status code; the admin
token adds each check's details (the failing ones named); the probe writes nothing."""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import threading
import time
from contextlib import closing

from bridge_support import ADMIN_TOKEN

from otc_bridge.api import health
from otc_bridge.app import build_bridge, create_app
from otc_bridge.storage import heartbeats, leases

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _details(client) -> tuple[int, dict]:
    response = client.get("/readyz", headers=ADMIN)
    return response.status_code, response.get_json()


def test_healthz_is_always_ok(http_client):
    assert http_client.get("/healthz").get_json() == {"ok": True}


def test_public_readiness_is_only_ok_and_a_status_code(http_client, bridge):
    response = http_client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"ok": True})
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 0}, now=bridge.now() - 3600)
    response = http_client.get("/readyz")
    assert (response.status_code, response.get_json()) == (503, {"ok": False})
    assert http_client.get("/readyz", headers={"X-Admin-Key": ADMIN_TOKEN}).get_json()["failed"] == ["reconciler"]


def test_a_wrong_token_is_refused(http_client):
    response = http_client.get("/readyz", headers={"Authorization": "Bearer not-the-admin-token-at-all"})
    assert response.status_code == 401


def test_no_details_without_an_admin_token_configured(bridge):
    off = dataclasses.replace(bridge, config=bridge.config.replace(admin_token=None))
    response = create_app(bridge=off).test_client().get("/readyz", headers=ADMIN)
    assert (response.status_code, response.get_json()) == (200, {"ok": True})


def test_ready_when_everything_answers(http_client, bridge):
    status, body = _details(http_client)
    assert status == 200 and body["ok"] is True and body["checks"]["reconciler"]["starting"] is True
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["node"]["ok"] is True and body["checks"]["node"]["status_code"] == 200
    assert body["checks"]["reconciler"]["lease"] == {"held": False}
    assert body["checks"]["outbox"]["ok"] is True
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 0}, now=bridge.now())
    status, body = _details(http_client)
    assert status == 200
    assert body["checks"]["reconciler"]["last_run_at"] == bridge.now()


def test_not_ready_when_the_node_is_down(bridge):
    down = build_bridge(bridge.config.replace(node_url=f"http://127.0.0.1:{_closed_port()}"))
    client = create_app(bridge=down).test_client()
    assert client.get("/readyz").status_code == 503
    status, body = _details(client)
    assert status == 503
    assert body["failed"] == ["node"] and body["checks"]["node"]["error"] == "connection error"


def test_not_ready_when_the_reconciler_heartbeat_is_stale(http_client, bridge):
    interval = bridge.config.reconcile_interval_seconds
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 1}, now=bridge.now() - 3 * interval - 1)
    status, body = _details(http_client)
    assert status == 503
    assert body["failed"] == ["reconciler"]
    assert body["checks"]["reconciler"]["age_seconds"] == 3 * interval + 1
    assert body["checks"]["reconciler"]["lease"] == {"held": False}


def test_a_held_lease_without_a_completed_pass_names_its_holder(http_client, bridge):
    """A pass hung while holding the lease: the holder (this process) and for how long."""
    interval = bridge.config.reconcile_interval_seconds
    heartbeats.record_pass(bridge.db, "reconciler", {"promoted": 1}, now=bridge.now() - 10 * interval)
    lease = leases.try_hold(bridge.db, "reconciler", now=bridge.now() - 9 * interval)
    try:
        status, body = _details(http_client)
    finally:
        lease.release()
    check = body["checks"]["reconciler"]
    assert status == 503 and check["ok"] is False
    assert check["lease"] == {"held": True, "pid": os.getpid(), "since": bridge.now() - 9 * interval,
                              "held_seconds": float(9 * interval)}
    assert f"held by process {os.getpid()} for {9 * interval} s" in check["error"]


def test_not_ready_when_no_pass_was_ever_recorded_after_startup_grace(http_client, bridge):
    real_clock = bridge.clock
    bridge.clock = lambda: real_clock() + 3 * bridge.config.reconcile_interval_seconds + 5
    heartbeats.record_pass(bridge.db, "outbox", {}, now=bridge.now())  # the outbox worker is fine
    status, body = _details(http_client)
    assert status == 503 and body["failed"] == ["reconciler"]
    assert "no reconciler pass recorded" in body["checks"]["reconciler"]["error"]


def test_not_ready_when_the_outbox_worker_is_stale(http_client, bridge):
    cfg = bridge.config
    max_age = 3 * max(cfg.outbox_interval_seconds, cfg.outbox_visibility_seconds)
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=bridge.now())
    heartbeats.record_pass(bridge.db, "outbox", {"delivered": 1}, now=bridge.now() - max_age - 1)
    status, body = _details(http_client)
    assert status == 503 and body["failed"] == ["outbox"]
    assert body["checks"]["outbox"]["max_age_seconds"] == max_age


def test_worker_checks_skipped_when_disabled(bridge):
    off = dataclasses.replace(bridge, config=bridge.config.replace(reconcile_disabled=True, outbox_disabled=True),
                              clock=lambda: 4_000_000_000)
    status, body = _details(create_app(bridge=off).test_client())
    assert status == 200 and body["ok"] is True
    assert body["checks"]["reconciler"] == {"ok": True, "disabled": True}
    assert body["checks"]["outbox"] == {"ok": True, "disabled": True}


def test_ready_at_once_while_another_connection_holds_the_write_lock(http_client, bridge, monkeypatch):
    """The probe takes no write lock (WAL readers never wait for a writer): a long write
    transaction elsewhere neither delays nor fails it."""
    monkeypatch.setattr(health, "DB_PROBE_TIMEOUT_SECONDS", 1.0)
    with closing(sqlite3.connect(bridge.db.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'y', 0)")
        started = time.monotonic()
        status, body = _details(http_client)
        took = time.monotonic() - started
        other.execute("ROLLBACK")
    assert status == 200 and body["checks"]["database"] == {"ok": True}
    assert took < 1.0


def test_the_probe_writes_nothing(http_client, bridge, monkeypatch):
    """Every statement the database probe runs, on every connection it opens, is a read."""
    statements: list[str] = []
    real_connect = sqlite3.connect

    def traced(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        if threading.current_thread() is threading.main_thread():
            conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    assert health.check_database(bridge.db.path) == {"ok": True}
    assert statements and all(s.split()[0].upper() in ("SELECT", "PRAGMA") for s in statements), statements
    assert not any("user_version =" in s for s in statements)


def test_not_ready_when_the_database_is_not_migrated(tmp_path):
    with closing(sqlite3.connect(tmp_path / "empty.db")) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = health.check_database(str(tmp_path / "empty.db"))
    assert result["ok"] is False and "schema version 0" in result["error"]


def test_database_probe_never_creates_a_missing_file(tmp_path):
    result = health.check_database(str(tmp_path / "nowhere.db"))
    assert result["ok"] is False and not (tmp_path / "nowhere.db").exists()
