"""Continuous replication of the bridge's SQLite file with Litestream, run beside ``serve``.

``otc-bridge serve --replicate`` migrates the database, then starts ``litestream replicate``
as a side-car child of the gunicorn master (:class:`Sidecar`): Litestream copies every WAL
page the bridge commits to its replicas (a directory for development, S3-compatible storage
in production) about once a second. When Litestream dies the side-car logs it, raises the
``replication_down`` operator alert (once per outage, through the outbox) and starts it
again after a back-off doubling from 1 s to 60 s; ``serve`` stopping stops it. The binary,
its settings (``OTC_LITESTREAM_CONFIG``, ``OTC_REPLICA_DIR``, ``OTC_LITESTREAM_BIN``,
``OTC_TOOLS_DIR``) and restoring from a replica are :mod:`otc_bridge.serving.litestream`'s;
its public names are importable from here too.
docs/backups.md has the measured replication lag, loss window and restore time.

SQLite settings: Litestream needs WAL mode, which the bridge always uses
(:mod:`otc_bridge.storage.db`), and keeps a read transaction open so that no checkpoint
restarts the WAL before it has copied it. The bridge's own checkpoints are SQLite's automatic
PASSIVE ones (every 1000 pages), which never wait for or overtake that read, so they are
left unchanged: turning them off (``wal_autocheckpoint = 0``) would let the WAL grow without
bound whenever Litestream is not running.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from otc_bridge.config import Config
from otc_bridge.serving.litestream import (
    LITESTREAM_VERSION,
    NPM_INTEGRITY,
    NPM_PACKAGE,
    NPM_VERSION,
    RETENTION,
    SNAPSHOT_INTERVAL,
    SYNC_INTERVAL,
    Plan,
    ReplicationError,
    binary_version,
    cached_binary,
    configured_databases,
    default_replica_dir,
    fetch_replica,
    find_binary,
    install,
    plan,
    render_file_config,
    restore_from_replica,
    tools_dir,
)
from otc_bridge.storage import leases, outbox
from otc_bridge.storage.db import Database

__all__ = [
    # the side-car, here
    "ALERT_CODE", "BACKOFF_SECONDS", "LEASE_NAME", "STABLE_SECONDS", "STOP_TIMEOUT_SECONDS", "Replication",
    "Sidecar", "outbox_alerter", "start",
    # Litestream itself (otc_bridge.serving.litestream)
    "LITESTREAM_VERSION", "NPM_INTEGRITY", "NPM_PACKAGE", "NPM_VERSION", "RETENTION", "SNAPSHOT_INTERVAL",
    "SYNC_INTERVAL", "Plan", "ReplicationError", "binary_version", "cached_binary", "configured_databases",
    "default_replica_dir", "fetch_replica", "find_binary", "install", "plan", "render_file_config",
    "restore_from_replica", "tools_dir",
]

log = logging.getLogger(__name__)

#: Lease held by the process that runs the side-car: one Litestream per database.
LEASE_NAME = "replication"
#: The operator alert raised when Litestream exits while ``serve`` runs.
ALERT_CODE = "replication_down"
#: Back-off between restarts: first and longest wait, seconds.
BACKOFF_SECONDS = (1.0, 60.0)
#: A Litestream that ran this long before dying starts a new outage (new alert, short back-off).
STABLE_SECONDS = 60.0
#: How long ``stop`` waits for Litestream's final sync after SIGTERM before SIGKILL.
STOP_TIMEOUT_SECONDS = 15.0
_PR_SET_PDEATHSIG = 1


# --- the side-car -------------------------------------------------------------------------------

# Looked up once here: the child between fork and exec must not load libraries (the loader's
# lock may have been held by another thread of the parent at the fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if platform.system() == "Linux" else None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it ends, which is the
    side-car's thread (alive as long as ``serve``), so a SIGKILLed ``serve`` leaves no
    orphan Litestream replicating behind a later one."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The shadow WAL directory and the file replica hold the whole database (payout keys,
    # preimages): Litestream gives its files the database's 0600, its directories the umask's.
    os.umask(0o077)


def outbox_alerter(db_path: str, synchronous: str) -> Callable[[str, str], None]:
    """``alert(message, key)``: the ``replication_down`` operator alert as an outbox row, once
    per ``key``, on a connection opened for that write and closed after it (this runs in the
    gunicorn master, which forks workers: no connection is kept open across a fork)."""
    def alert(message: str, key: str) -> None:
        db = Database(db_path, synchronous=synchronous)
        try:
            with db.transaction() as tx:
                outbox.alert_once(tx, code=ALERT_CODE, message=message, key=key, now=int(time.time()))
        finally:
            db.close()
    return alert


class Sidecar:
    """Runs ``command`` as a child process, again after each exit, until :meth:`stop`.

    ``on_down(message, key)`` is called once per outage (``key`` is the outage's start, unix
    seconds); back-off between starts doubles from ``backoff_seconds[0]`` to
    ``backoff_seconds[1]`` and resets once a child ran ``stable_seconds``. The child's output
    goes to this process's (journald, the terminal); it runs in its own process group, so a
    Ctrl-C meant for ``serve`` reaches it only through :meth:`stop`. ``clock`` (monotonic
    seconds) and ``wall`` (unix seconds) are injectable for tests.
    """

    def __init__(self, command: list[str], *, env: Mapping[str, str] | None = None,
                 on_down: Callable[[str, str], None] | None = None,
                 backoff_seconds: tuple[float, float] = BACKOFF_SECONDS, stable_seconds: float = STABLE_SECONDS,
                 stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS, name: str = "litestream",
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.command = command
        self.name = name
        self._env = dict(env) if env is not None else None
        self._on_down = on_down
        self._backoff = backoff_seconds
        self._stable = stable_seconds
        self._stop_timeout = stop_timeout_seconds
        self._clock, self._wall = clock, wall
        self._owner = os.getpid()
        self._stopping = threading.Event()
        self._spawned = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.starts = 0
        self.outages = 0

    @property
    def pid(self) -> int | None:
        """The running child's pid, or ``None`` between runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self, *, wait_seconds: float = 10.0) -> None:
        """Start the supervising thread and wait (up to ``wait_seconds``) for the first child."""
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"otc-{self.name}")
        self._thread.start()
        with self._spawned:
            self._spawned.wait_for(lambda: self.starts > 0 or self._stopping.is_set(), timeout=wait_seconds)

    def wait_for_start(self, count: int, timeout: float) -> bool:
        """Block until the child was started ``count`` times in all; False after ``timeout``."""
        with self._spawned:
            return self._spawned.wait_for(lambda: self.starts >= count, timeout=timeout)

    def stop(self) -> None:
        """Stop the child (SIGTERM: Litestream ships what it has; SIGKILL after the stop
        timeout) and the thread. A no-op in any other process than the one that started it:
        gunicorn's workers are forks of that process and unwind through the same code."""
        if os.getpid() != self._owner or self._stopping.is_set():
            return
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop within %.0f s; killing it", self.name, self._stop_timeout)
                proc.kill()
                proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=self._stop_timeout + 10)
        log.info("%s stopped", self.name)

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, env=self._env, stdin=subprocess.DEVNULL, process_group=0,
                                preexec_fn=_die_with_parent)

    def _run(self) -> None:
        delay = self._backoff[0]
        outage_key: str | None = None
        while not self._stopping.is_set():
            started = self._clock()
            code: int | str
            try:
                proc = self._spawn()
            except OSError as exc:
                code = f"could not start: {exc}"
            else:
                with self._spawned:
                    self._proc = proc
                    self.starts += 1
                    self._spawned.notify_all()
                log.info("%s started (pid %d): %s", self.name, proc.pid, " ".join(self.command))
                # The gunicorn master reaps children it does not know; Popen then reports 0.
                code = proc.wait()
            if self._stopping.is_set():
                return
            ran = self._clock() - started
            if ran >= self._stable:
                delay, outage_key = self._backoff[0], None
            message = (f"{self.name} exited ({code}) after {ran:.1f} s; replication is stopped, "
                       f"restarting it in {delay:g} s")
            log.error(message)
            if outage_key is None:
                outage_key = str(int(self._wall()))
                self.outages += 1
                self._alert(message, outage_key)
            self._stopping.wait(delay)
            delay = min(delay * 2, self._backoff[1])

    def _alert(self, message: str, key: str) -> None:
        if self._on_down is None:
            return
        try:
            self._on_down(message, key)
        except Exception:  # the alert is best effort: the log line above already says it
            log.exception("could not raise the %s alert", ALERT_CODE)


@dataclass
class Replication:
    """A running side-car for one database and the lease that makes it the only one."""

    sidecar: Sidecar
    lease: leases.Lease
    plan: Plan

    def stop(self) -> None:
        """Stop Litestream, then give the lease back (only in the process that started it)."""
        if os.getpid() != self.sidecar._owner:
            return
        self.sidecar.stop()
        self.lease.release()


def start(cfg: Config, env: Mapping[str, str]) -> Replication:
    """Check the binary and the configuration, migrate ``cfg``'s database, then start
    Litestream on it (``serve --replicate``).

    Raises ConfigError / ReplicationError (no binary, a configuration not listing the
    database) and ReplicationError when another process already replicates this database
    (the :data:`LEASE_NAME` lease beside it is held).
    """
    chosen = plan(cfg.db_path, env)
    binary_version(chosen.binary)  # fails here, before anything else, not in a restart loop
    lease = leases.try_hold(chosen.db_path, LEASE_NAME)
    if lease is None:
        seen = leases.holder(chosen.db_path, LEASE_NAME)
        raise ReplicationError(f"{chosen.db_path} is already replicated by process {seen.pid if seen else '?'}")
    sidecar = Sidecar(chosen.replicate_command(), env=chosen.env,
                      on_down=outbox_alerter(chosen.db_path, cfg.sqlite_synchronous))
    try:
        db = Database(cfg.db_path, synchronous=cfg.sqlite_synchronous)
        try:
            db.migrate()  # Litestream starts on a file in WAL mode with the newest schema
        finally:
            db.close()
        sidecar.start()
    except BaseException:
        lease.release()
        raise
    log.info("replicating %s with %s (config %s)", chosen.db_path, chosen.binary, chosen.config)
    return Replication(sidecar, lease, chosen)
