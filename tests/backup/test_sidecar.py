"""The replication side-car (``otc_bridge.serving.replication``): restarts, back-off, alerts,
stopping, and the configuration it runs Litestream with.

The supervised child is a sleeping Python process here (what is supervised does not matter to
the supervisor); the configuration checks run the real Litestream binary.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from click.testing import CliRunner

from otc_bridge.cli import main
from otc_bridge.config import Config, ConfigError
from otc_bridge.serving import replication
from otc_bridge.storage import backup, leases
from otc_bridge.storage.db import Database

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class RecordingEvent(threading.Event):
    """An Event that records every timeout it was waited with (the side-car's back-off)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout=None):
        if timeout is not None:
            self.waits.append(timeout)
        return super().wait(timeout)


def gone(pid: int) -> bool:
    """Process ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def alerts():
    return []


@pytest.fixture
def sidecar(alerts):
    car = replication.Sidecar(SLEEPER, on_down=lambda message, key: alerts.append((message, key)),
                              backoff_seconds=(0.05, 0.2), stable_seconds=30, stop_timeout_seconds=5)
    car._stopping = RecordingEvent()
    yield car
    car.stop()


def test_a_killed_child_is_restarted_with_a_doubling_back_off_and_one_alert_per_outage(sidecar, alerts):
    sidecar.start()
    pids = [sidecar.pid]
    assert pids[0] is not None and os.getpgid(pids[0]) == pids[0]  # its own process group
    for count in (2, 3, 4):
        os.kill(pids[-1], signal.SIGKILL)
        assert sidecar.wait_for_start(count, timeout=5)
        wait_until(lambda: sidecar.pid is not None, 5, "the restarted child")
        pids.append(sidecar.pid)
    assert len(set(pids)) == 4
    assert sidecar._stopping.waits == [0.05, 0.1, 0.2]
    assert len(alerts) == 1 and sidecar.outages == 1  # quick deaths are one outage
    message, key = alerts[0]
    assert "litestream exited (-9)" in message and "restarting it in 0.05 s" in message
    assert key.isdigit()
    child = sidecar.pid
    sidecar.stop()
    assert gone(child) and sidecar.pid is None
    assert not sidecar._thread.is_alive()


def test_a_child_that_ran_long_enough_starts_a_new_outage_with_the_short_back_off(alerts):
    ticks = iter(range(0, 10_000, 100))  # every clock reading is 100 s after the last
    car = replication.Sidecar(SLEEPER, on_down=lambda message, key: alerts.append(key), backoff_seconds=(0.05, 0.2),
                              stable_seconds=60, clock=lambda: next(ticks), wall=iter(range(1000, 2000)).__next__)
    car._stopping = RecordingEvent()
    try:
        car.start()
        for count in (2, 3):
            os.kill(car.pid, signal.SIGKILL)
            assert car.wait_for_start(count, timeout=5)
            wait_until(lambda: car.pid is not None, 5, "the restarted child")
        assert car._stopping.waits == [0.05, 0.05]
        assert alerts == ["1000", "1001"] and car.outages == 2
    finally:
        car.stop()


def test_a_command_that_cannot_start_is_retried_and_alerted(alerts):
    car = replication.Sidecar(["/nonexistent/litestream", "replicate"], backoff_seconds=(0.01, 0.02),
                              on_down=lambda message, key: alerts.append(message))
    car.start(wait_seconds=0.2)
    wait_until(lambda: len(alerts) == 1, 5, "the alert")
    car.stop()
    assert "could not start" in alerts[0] and car.starts == 0


def test_stop_in_a_forked_copy_leaves_the_child_alone(sidecar):
    sidecar.start()
    child = sidecar.pid
    owner, sidecar._owner = sidecar._owner, -1  # as in a gunicorn worker, a fork of the master
    sidecar.stop()
    assert not gone(child)
    sidecar._owner = owner
    sidecar.stop()
    assert gone(child)


def test_the_child_dies_with_the_process_that_supervises_it(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from otc_bridge.serving import replication
        car = replication.Sidecar({SLEEPER!r})
        car.start()
        print(car.pid, flush=True)
        sys.stdin.read()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert not gone(child)
    parent.kill()  # SIGKILL: no stop(), no finally
    parent.wait(timeout=10)
    wait_until(lambda: gone(child), 5, "the orphaned child's end")


def test_the_alert_is_an_outbox_row_once_per_outage(tmp_path):
    db_path = str(tmp_path / "bridge.db")
    Database(db_path).migrate()
    alert = replication.outbox_alerter(db_path, "FULL")
    alert("litestream exited (1)", "1700000000")
    alert("litestream exited (1) again", "1700000000")
    alert("litestream exited (2)", "1700000100")
    rows = Database(db_path).read("SELECT event_key, topic, payload FROM outbox ORDER BY outbox_id")
    assert [(r["event_key"], r["topic"]) for r in rows] == [
        ("alert:replication_down:1700000000", "alert"), ("alert:replication_down:1700000100", "alert")]
    assert '"code": "replication_down"' in rows[0]["payload"]


# --- configuration --------------------------------------------------------------------------------

def test_the_rendered_configuration_replicates_the_database_to_a_private_directory(litestream_bin, tmp_path):
    db_path = tmp_path / "data" / "bridge.db"
    env = {"OTC_LITESTREAM_BIN": str(litestream_bin), "OTC_REPLICA_DIR": str(tmp_path / "replica")}
    chosen = replication.plan(db_path, env)
    assert chosen.config == tmp_path / "data" / "bridge.db.litestream.yml"
    assert stat.S_IMODE(chosen.config.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "replica").stat().st_mode) == 0o700
    assert replication.configured_databases(litestream_bin, chosen.config, chosen.env) == {str(db_path)}
    assert chosen.env["OTC_DB_PATH"] == str(db_path)
    assert chosen.replicate_command() == [str(litestream_bin), "replicate", "-config", str(chosen.config)]


def test_a_given_configuration_must_list_the_database(litestream_bin, tmp_path):
    db_path = str(tmp_path / "bridge.db")
    config = tmp_path / "litestream.yml"
    env = {"OTC_LITESTREAM_BIN": str(litestream_bin), "OTC_LITESTREAM_CONFIG": str(config)}
    config.write_text("dbs:\n  - path: /elsewhere/other.db\n    replicas:\n      - type: file\n        path: /tmp/r\n")
    with pytest.raises(ConfigError, match="OTC_LITESTREAM_CONFIG: .* not the bridge's"):
        replication.plan(db_path, env)
    config.write_text("dbs:\n  - path: ${OTC_DB_PATH}\n    replicas:\n      - type: file\n        path: /tmp/r\n")
    assert replication.plan(db_path, env).config == config  # ${OTC_DB_PATH} is the bridge's file
    config.write_text("dbs: [: not yaml")
    with pytest.raises(ConfigError, match="litestream rejects"):
        replication.plan(db_path, env)
    with pytest.raises(ConfigError, match="OTC_LITESTREAM_BIN"):
        replication.plan(db_path, {"OTC_LITESTREAM_BIN": str(tmp_path / "nothing")})


def test_only_one_process_replicates_a_database(litestream_bin, tmp_path):
    db_path = str(tmp_path / "bridge.db")
    cfg = Config(db_path=db_path)
    lease = leases.try_hold(db_path, replication.LEASE_NAME)
    try:
        with pytest.raises(replication.ReplicationError, match="already replicated by process"):
            replication.start(cfg, {"OTC_LITESTREAM_BIN": str(litestream_bin)})
    finally:
        lease.release()


def test_a_restore_from_the_replica_refuses_before_fetching_anything(tmp_path):
    db_path = tmp_path / "bridge.db"
    db = Database(str(db_path))
    db.migrate()
    db.close()
    env = {"OTC_LITESTREAM_BIN": "/nonexistent/litestream"}  # never reached
    with pytest.raises(backup.TargetExists):
        replication.restore_from_replica(db_path, env)
    lease = leases.try_hold(str(db_path), "outbox")
    try:
        with pytest.raises(backup.DatabaseInUse, match="lease 'outbox'"):
            replication.restore_from_replica(db_path, env, force=True)
    finally:
        lease.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge.db"]


def test_the_config_command_prints_what_serve_renders(tmp_path):
    result = CliRunner().invoke(main, ["replication", "config", "--db", str(tmp_path / "bridge.db")])
    assert result.exit_code == 0, result.output
    assert result.output == replication.render_file_config(tmp_path / "bridge.db", f"{tmp_path / 'bridge.db'}-replica")
