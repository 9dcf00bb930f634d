"""Harness of the crash matrix: real processes on 127.0.0.1 and what a scenario checks at the end.

A module with a unique name (not conftest) so the crash test files can import it directly.
Processes are CLI commands (``otc-bridge devnode``, ``otc-bridge serve``, ``otc-bridge
reconcile``) started in their own session, so one signal ends a gunicorn master and its
workers together; readiness and crashes are awaited on their output lines, never on timers.
The only waits on the wall clock are for the reconciler's grace period, which is real time
by design (``OTC_SETTLEMENT_STUCK_SECONDS`` = :data:`GRACE_SECONDS`, ``updated_at`` in whole
seconds).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

from bridge_support import ADMIN_TOKEN, NODE_ADMIN_KEY, NodeHandle

from otc_bridge import crashpoints
from otc_bridge.client import BridgeClient

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "otc_bridge.cli"]
GRACE_SECONDS = 1
MAX_PASSES = 10
READY_TIMEOUT_SECONDS = 60.0
CRASH_LINE = f"exited with code {crashpoints.EXIT_CODE}"
#: Reconcile counts that mean "this pass changed something" (``waiting`` and
#: ``still_pending`` mean it looked and found nothing to do yet).
CHANGE_KEYS = ("adopted", "abandoned", "released", "promoted", "recovered", "refunded", "expired",
               "unwound", "resolved", "tampered", "quote_leg_changes", "settled_from_chain", "quote_claims_sent")
#: Statuses the reconciler leaves alone until the grace period has passed.
GRACE_STATUSES = ("locking", "settling")


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any bridge or node setting, plus ``extra``; the
    repository first on ``PYTHONPATH`` so the children run this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def bridge_env(node_url: str, db_path: Path) -> dict[str, str]:
    """A bridge's environment for one scenario: no background reconciler (the test runs each
    pass explicitly), a one-second grace, a generous rate limit, short node timeouts."""
    return clean_env(RUSTCHAIN_NODE=node_url, RC_ADMIN_KEY=NODE_ADMIN_KEY, OTC_DB_PATH=str(db_path),
                     OTC_ADMIN_TOKEN=ADMIN_TOKEN, OTC_RATE_LIMIT="100000/minute", OTC_RECONCILE_DISABLED="1",
                     OTC_SETTLEMENT_STUCK_SECONDS=str(GRACE_SECONDS), OTC_NODE_TIMEOUT_SECONDS="5")


def crash_env(env: dict[str, str], point: str) -> dict[str, str]:
    """``env`` with the crash point ``point`` armed."""
    return {**env, crashpoints.ENABLE_VARIABLE: "1", crashpoints.POINT_VARIABLE: point}


class Proc:
    """A CLI command in its own session; its merged output is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.popen = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=env, cwd=cwd, start_new_session=True)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True, name=f"pump:{args[0]}")
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, *texts: str, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        """Return the first of ``texts`` an output line contains, once one does;
        AssertionError if the process ends first or ``timeout`` passes (output in the message)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for text in texts:
                    if any(text in line for line in self.lines):
                        return text
                left = deadline - time.monotonic()
                assert not self._ended and left > 0, f"{self.args[0]}: none of {texts} in:\n{''.join(self.lines)}"
                self._changed.wait(left)

    def stop(self) -> None:
        """SIGINT to the leader, then :meth:`kill` if it lingers (or left children); idempotent."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        self.kill()

    def kill(self) -> None:
        """SIGKILL to the whole session (a gunicorn master and its workers alike); idempotent."""
        self._signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._pump_thread.join(timeout=10)  # every line it wrote is in ``output`` from here on

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return


#: What a server says when the free port it was given was taken meanwhile (werkzeug, gunicorn).
PORT_TAKEN = ("Address already in use", "Connection in use")


def start_on_free_port(args: Callable[[int], list[str]], env: dict[str, str], workdir: Path,
                       ready: str) -> tuple[Proc, int]:
    """Start ``args(port)`` on a free port and wait for ``ready``; another port if that one
    was taken between the check and the bind (other suites run servers too). At most 3 tries."""
    for _ in range(3):
        port = free_port()
        proc = Proc(args(port), env, workdir)
        try:
            if proc.wait_for(ready, *PORT_TAKEN) == ready:
                return proc, port
        except AssertionError:
            if not any(marker in proc.output for marker in PORT_TAKEN):
                proc.stop()
                raise
        proc.stop()
    raise AssertionError(f"no free port for {args(0)[0]} after 3 tries")


@contextmanager
def devnode_process(workdir: Path) -> Iterator[NodeHandle]:
    """``otc-bridge devnode`` on a free port with its own SQLite file; stopped on exit."""
    # Ready on the server's own log line (text or JSON), written once the socket is bound; the
    # CLI's echo of the same words comes before the bind.
    proc, port = start_on_free_port(lambda port: ["devnode", "--port", str(port), "--db", str(workdir / "devnode.db")],
                                    clean_env(), workdir, "otc_bridge.dev.node.server")
    try:
        yield NodeHandle(f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


@contextmanager
def bridge_process(env: dict[str, str], workdir: Path) -> Iterator[tuple[Proc, BridgeClient]]:
    """``otc-bridge serve`` (gunicorn, one worker, four threads) on a free port, ready once
    the master booted its worker (requests queue on the bound socket until it accepts)."""
    proc, port = start_on_free_port(
        lambda port: ["serve", "--port", str(port), "--workers", "1", "--threads", "4"], env, workdir,
        "Booting worker")
    try:
        yield proc, BridgeClient(f"http://127.0.0.1:{port}", timeout_seconds=60)
    finally:
        # Killed outright: every request has been answered by then, committed rows survive a
        # kill (what these tests are about), and gunicorn's own shutdown (SIGINT, SIGTERM) now
        # and then hangs for its 30 s graceful timeout, which would only slow the suite down.
        proc.kill()
        print(f"--- {proc.args[0]} output ---\n{proc.output}")  # pytest shows it when the test fails


def run_cli_reconcile(env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess:
    """One ``otc-bridge reconcile`` pass as its own process."""
    return subprocess.run(CLI + ["reconcile"], env=env, cwd=workdir, capture_output=True, text=True, timeout=120)


# --- the bridge's database, read from the test ----------------------------------------------

def db_rows(db_path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    """Rows of one query on the bridge's SQLite file (WAL: safe while a server writes)."""
    with closing(sqlite3.connect(db_path, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def wait_out_grace(db_path: Path) -> None:
    """Return once every ``locking``/``settling`` order is past the reconciler's grace.

    The grace is wall-clock time (``updated_at <= now - grace``, whole seconds), so this
    polls the clock, at most ``GRACE_SECONDS + 2`` seconds.
    """
    marks = ",".join("?" * len(GRACE_STATUSES))
    row = db_rows(db_path, f"SELECT MAX(updated_at) FROM orders WHERE status IN ({marks})",  # noqa: S608
                  GRACE_STATUSES)[0]
    if row[0] is None:
        return
    due = row[0] + GRACE_SECONDS
    deadline = time.monotonic() + GRACE_SECONDS + 2
    while int(time.time()) < due:
        assert time.monotonic() < deadline, "the wall clock did not advance"
        time.sleep(0.1)


def reconcile_until_quiet(api: BridgeClient, node: NodeHandle, db_path: Path) -> list[dict]:
    """Confirm the node's pending pool, run a pass (``POST /admin/reconcile``), and repeat
    until neither changed anything and nothing is left pending; returns every pass's counts. Fails on a pass with
    errors or skipped for the lease, and after :data:`MAX_PASSES` passes."""
    summaries: list[dict] = []
    for _ in range(MAX_PASSES):
        wait_out_grace(db_path)
        confirmed = node.post("/dev/confirm").json()["confirmed_count"]
        status, body = api.reconcile(ADMIN_TOKEN)
        assert status == 200, body
        summary = body["summary"]
        summaries.append({"dev_confirmed": confirmed, **summary})
        assert summary["errors"] == 0 and summary["skipped_locked"] == 0, summaries
        # A pass may queue a transfer and wait for it (a custody refund: refund_waiting): not
        # quiet while the node holds anything for the next iteration's confirm.
        queued = node.state()["pending"].get("pending", {"count": 0})["count"]
        if not confirmed and not queued and not any(summary[key] for key in CHANGE_KEYS):
            return summaries
    raise AssertionError(f"the reconciler was not quiet after {MAX_PASSES} passes: {summaries}")


# --- the node, read from the test -------------------------------------------------------------

def node_jobs(node: NodeHandle, posters: set[str]) -> list[dict]:
    """Every job on the node (any status) posted by one of ``posters``, as listed."""
    found, offset = [], 0
    while True:
        body = node.get("/agent/jobs", status="", limit=100, offset=offset).json()
        found += [job for job in body["jobs"] if job["poster_wallet"] in posters]
        offset += len(body["jobs"])
        if not body["jobs"] or offset >= body["total"]:
            return found
