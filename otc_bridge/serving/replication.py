"""Continuous replication of the bridge's SQLite file with Litestream, run beside ``serve``.

``otc-bridge serve --replicate`` migrates the database, then starts ``litestream replicate``
as a side-car child of the gunicorn master (:class:`Sidecar`): Litestream copies every WAL
page the bridge commits to its replicas (a directory for development, S3-compatible storage
in production) about once a second. When Litestream dies the side-car logs it, raises the
``replication_down`` operator alert (once per outage, through the outbox) and starts it
again after a back-off doubling from 1 s to 60 s; ``serve`` stopping stops it. A restore
from a replica is ``litestream restore`` into a temporary file (:func:`fetch_replica`), then
the verified swap of :func:`otc_bridge.storage.backup.restore`. docs/backups.md has the
measured replication lag, loss window and restore time.

The binary is Litestream v0.3.13 as shipped by the npm package
``@flydotio/litestream-linux-x64@1.0.1`` (pinned with its integrity hash), installed into a
tool cache by :func:`install` (``otc-bridge replication install``), or given by
``OTC_LITESTREAM_BIN``, or ``litestream`` on ``PATH``. Settings, read from the environment
here until they join :class:`~otc_bridge.config.Config`:

===========================  ===================================================================
``OTC_LITESTREAM_CONFIG``    a Litestream YAML file used as is (it must list the database;
                             ``${VAR}`` references are expanded by Litestream). Default: none,
                             and a file-replica configuration is rendered beside the database
``OTC_REPLICA_DIR``          the replica directory of that rendered configuration
                             (default ``<database>-replica`` beside the database: for
                             development; in production use another disk or S3)
``OTC_LITESTREAM_BIN``       the ``litestream`` binary (default: the tool cache, then ``PATH``)
``OTC_TOOLS_DIR``            the tool cache (default ``$XDG_CACHE_HOME/otc-bridge/tools``, or
                             ``~/.cache/otc-bridge/tools``)
===========================  ===================================================================

SQLite settings: Litestream needs WAL mode, which the bridge always uses
(:mod:`otc_bridge.storage.db`), and keeps a read transaction open so that no checkpoint
restarts the WAL before it has copied it. The bridge's own checkpoints are SQLite's automatic
PASSIVE ones (every 1000 pages), which never wait for or overtake that read, so they are
left unchanged: turning them off (``wal_autocheckpoint = 0``) would let the WAL grow without
bound whenever Litestream is not running.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from otc_bridge.config import Config, ConfigError
from otc_bridge.config.reader import Reader
from otc_bridge.storage import backup, files, leases, outbox
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)

NPM_PACKAGE = "@flydotio/litestream-linux-x64"
NPM_VERSION = "1.0.1"
#: npm's integrity of that tarball: an install whose lock file records another is refused.
NPM_INTEGRITY = "sha512-zmcAR8q2TNiAsWRSWscrN+r4NNQ+FwfatKhcE3G/YticNSkNyIhtCTlvXxIyOG+E+UWa+j441cjbmb7p83JPEw=="
#: What ``litestream version`` prints for that package.
LITESTREAM_VERSION = "v0.3.13"
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
#: How often the rendered configuration ships WAL to the replica, and snapshots it.
SYNC_INTERVAL = "1s"
SNAPSHOT_INTERVAL = "1h"
RETENTION = "72h"
_PR_SET_PDEATHSIG = 1


class ReplicationError(RuntimeError):
    """Litestream could not be installed, found, checked or run; the message says why."""


# --- the binary ---------------------------------------------------------------------------------

def tools_dir(env: Mapping[str, str]) -> Path:
    """The tool cache (``OTC_TOOLS_DIR``, else ``$XDG_CACHE_HOME/otc-bridge/tools``, else
    ``~/.cache/otc-bridge/tools``)."""
    r = Reader(env)
    explicit = r.optional("OTC_TOOLS_DIR")
    if explicit:
        return Path(explicit)
    cache = r.optional("XDG_CACHE_HOME")
    return (Path(cache) if cache else Path.home() / ".cache") / "otc-bridge" / "tools"


def cached_binary(env: Mapping[str, str]) -> Path:
    """Where :func:`install` puts the pinned binary."""
    return tools_dir(env) / f"litestream-{NPM_VERSION}" / "node_modules" / NPM_PACKAGE / "litestream"


def find_binary(env: Mapping[str, str]) -> Path | None:
    """The Litestream binary to run: ``OTC_LITESTREAM_BIN`` (ConfigError if it is not an
    executable file), else the tool cache's, else ``litestream`` on ``PATH``; ``None`` if none."""
    explicit = Reader(env).optional("OTC_LITESTREAM_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise ConfigError("OTC_LITESTREAM_BIN", f"{explicit!r} is not an executable file")
        return Path(explicit)
    cached = cached_binary(env)
    if os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which("litestream", path=env.get("PATH"))
    return Path(on_path) if on_path else None


def binary_version(binary: Path) -> str:
    """``litestream version`` (e.g. ``v0.3.13``); ReplicationError if it does not run."""
    try:
        done = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise ReplicationError(f"{binary} does not run: {exc}") from None
    if done.returncode != 0:
        raise ReplicationError(f"{binary} version failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def install(env: Mapping[str, str], *, npm: str = "npm", timeout_seconds: float = 600) -> Path:
    """Install the pinned Litestream into the tool cache with ``npm install --prefix`` and
    return the binary's path (at once if it is already there).

    Raises :class:`ReplicationError` on a machine other than Linux x86-64 (there is no pinned
    package: set ``OTC_LITESTREAM_BIN``), when npm fails, when the installed tarball's
    integrity is not :data:`NPM_INTEGRITY`, or when the binary is not :data:`LITESTREAM_VERSION`.
    """
    binary = cached_binary(env)
    if os.access(binary, os.X_OK) and binary_version(binary) == LITESTREAM_VERSION:
        return binary
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ReplicationError(f"no pinned Litestream for {platform.system()}/{platform.machine()}: install "
                               f"Litestream {LITESTREAM_VERSION} and set OTC_LITESTREAM_BIN")
    prefix = binary.parents[2]
    files.private_dir(prefix.parent)
    prefix.mkdir(exist_ok=True)
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--ignore-scripts",
               f"{NPM_PACKAGE}@{NPM_VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReplicationError(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        raise ReplicationError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    lock = json.loads((prefix / "node_modules" / ".package-lock.json").read_text(encoding="utf-8"))
    integrity = lock.get("packages", {}).get(f"node_modules/{NPM_PACKAGE}", {}).get("integrity")
    if integrity != NPM_INTEGRITY:
        raise ReplicationError(f"{NPM_PACKAGE}@{NPM_VERSION} installed with integrity {integrity!r}, "
                               f"expected {NPM_INTEGRITY!r}: refusing to run it")
    version = binary_version(binary)
    if version != LITESTREAM_VERSION:
        raise ReplicationError(f"{binary} is Litestream {version}, expected {LITESTREAM_VERSION}")
    return binary


# --- configuration ------------------------------------------------------------------------------

def render_file_config(db_path: str | Path, replica_dir: str | Path, *, sync_interval: str = SYNC_INTERVAL) -> str:
    """A Litestream configuration (YAML) replicating the database ``db_path`` to the
    directory ``replica_dir`` (both made absolute; JSON strings are valid YAML scalars)."""
    db, replica = json.dumps(os.path.abspath(db_path)), json.dumps(os.path.abspath(replica_dir))
    return (
        "# Rendered by otc-bridge (docs/backups.md): one file replica of the bridge's database.\n"
        "dbs:\n"
        f"  - path: {db}\n"
        "    replicas:\n"
        "      - type: file\n"
        f"        path: {replica}\n"
        f"        sync-interval: {sync_interval}\n"
        f"        snapshot-interval: {SNAPSHOT_INTERVAL}\n"
        f"        retention: {RETENTION}\n"
    )


@dataclass(frozen=True)
class Plan:
    """What the side-car runs: ``binary``, ``config`` (a file), for the database ``db_path``
    (absolute), and the environment it runs in (``OTC_DB_PATH`` set to ``db_path``, so a
    configuration written with ``${OTC_DB_PATH}`` names the same file)."""

    binary: Path
    config: Path
    db_path: str
    env: dict[str, str]

    def replicate_command(self) -> list[str]:
        return [str(self.binary), "replicate", "-config", str(self.config)]


def default_replica_dir(db_path: str | Path) -> Path:
    """``<database>-replica`` beside the database (development only: the same disk)."""
    return Path(os.path.abspath(db_path) + "-replica")


def plan(db_path: str | Path, env: Mapping[str, str], *, write_config: bool = True) -> Plan:
    """The binary and configuration for replicating ``db_path`` under ``env``
    (``OTC_LITESTREAM_CONFIG``, ``OTC_REPLICA_DIR``, ``OTC_LITESTREAM_BIN``, ``OTC_TOOLS_DIR``).

    Without ``OTC_LITESTREAM_CONFIG`` a file-replica configuration is written (0600) to
    ``<database>.litestream.yml`` (unless ``write_config`` is false). Raises ConfigError
    naming the variable at fault, including a configuration that does not list the database
    (checked with ``litestream databases``), and ReplicationError when no binary is found.
    """
    db = os.path.abspath(db_path)
    binary = find_binary(env)
    if binary is None:
        raise ReplicationError("no litestream binary: run `otc-bridge replication install`, put litestream on "
                               "PATH or set OTC_LITESTREAM_BIN")
    child_env = {**env, "OTC_DB_PATH": db}
    r = Reader(env)
    given = r.optional("OTC_LITESTREAM_CONFIG")
    if given:
        config = Path(given)
        if not config.is_file():
            raise ConfigError("OTC_LITESTREAM_CONFIG", f"{given!r} is not a file")
        listed = configured_databases(binary, config, child_env)
        if db not in listed:
            raise ConfigError("OTC_LITESTREAM_CONFIG", f"{given} lists {sorted(listed) or 'no database'}, "
                                                       f"not the bridge's {db}")
        return Plan(binary, config, db, child_env)
    replica = Path(r.optional("OTC_REPLICA_DIR") or default_replica_dir(db))
    config = Path(db + ".litestream.yml")
    if write_config:
        files.private_dir(Path(db).parent)
        files.private_dir(replica)
        files.write_private(config, render_file_config(db, replica))
    return Plan(binary, config, db, child_env)


def configured_databases(binary: Path, config: Path, env: Mapping[str, str]) -> set[str]:
    """The database paths ``litestream databases`` reads from ``config`` (expanded under
    ``env``); ConfigError naming ``OTC_LITESTREAM_CONFIG`` if Litestream rejects the file."""
    try:
        done = subprocess.run([str(binary), "databases", "-config", str(config)], capture_output=True, text=True,
                              env=dict(env), timeout=30, check=False)
    except OSError as exc:
        raise ReplicationError(f"{binary} does not run: {exc}") from None
    if done.returncode != 0:
        raise ConfigError("OTC_LITESTREAM_CONFIG", f"litestream rejects {config}: "
                                                   f"{(done.stderr or done.stdout).strip()[-500:]}")
    # Output: a header line "path  replicas", then "<path>  <replica names>" per database.
    rows = done.stdout.splitlines()[1:]
    return {row.rsplit(None, 1)[0].strip() if len(row.split()) > 1 else row.strip() for row in rows if row.strip()}


# --- restoring from a replica -------------------------------------------------------------------

def fetch_replica(plan_: Plan, output: Path, *, replica_url: str | None = None, timestamp: str | None = None,
                  timeout_seconds: float = 3600) -> None:
    """``litestream restore`` of the newest state (or the state at ``timestamp``, RFC 3339)
    into the new file ``output``: from the replicas of ``plan_``'s configuration, or from
    ``replica_url`` (``file:///dir``, ``s3://bucket/path``). Raises ReplicationError if
    Litestream fails or finds no backup."""
    command = [str(plan_.binary), "restore", "-o", str(output)]
    if timestamp:
        command += ["-timestamp", timestamp]
    command += [replica_url] if replica_url else ["-config", str(plan_.config), plan_.db_path]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=plan_.env, timeout=timeout_seconds,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReplicationError(f"litestream restore: {exc}") from None
    if done.returncode != 0 or not output.is_file():
        detail = (done.stderr or done.stdout).strip()[-1000:] or "no backup found"
        raise ReplicationError(f"litestream restore failed (exit {done.returncode}): {detail}")


def restore_from_replica(db_path: str | Path, env: Mapping[str, str], *, force: bool = False,
                         replica_url: str | None = None, timestamp: str | None = None, now: float | None = None,
                         clock: Callable[[], float] = time.monotonic) -> dict:
    """Restore the database ``db_path`` from its replica: ``litestream restore`` into a
    private temporary directory beside it, then :func:`otc_bridge.storage.backup.restore`
    (verify, refuse a database in use, keep the old file aside with ``force``).

    The replica is ``replica_url`` if given, else the replicas of ``OTC_LITESTREAM_CONFIG``,
    else the file replica ``OTC_REPLICA_DIR`` (default ``<database>-replica``). Returns the
    restore's summary (:meth:`~otc_bridge.storage.backup.Restored.as_dict`) plus
    ``fetch_seconds`` and ``total_seconds``. Raises ReplicationError, ConfigError,
    :class:`~otc_bridge.storage.backup.BackupError` (and its ``DatabaseInUse``/``TargetExists``).
    """
    started = clock()
    db = os.path.abspath(db_path)
    users = backup.in_use(db)  # refuse before downloading anything
    if users:
        raise backup.DatabaseInUse(db, users)
    if os.path.exists(db) and not force:
        raise backup.TargetExists(f"{db} exists (pass --force to replace it; the old file is kept aside)")
    chosen = plan(db, env, write_config=False)
    if replica_url is None and not Reader(env).optional("OTC_LITESTREAM_CONFIG"):
        replica_url = Path(Reader(env).optional("OTC_REPLICA_DIR") or default_replica_dir(db)).resolve().as_uri()
    files.private_dir(Path(db).parent)
    scratch = Path(tempfile.mkdtemp(prefix=f".{Path(db).name}.fetch-", dir=Path(db).parent))
    try:
        fetched = scratch / "replica.db"
        fetch_replica(chosen, fetched, replica_url=replica_url, timestamp=timestamp)
        fetch_seconds = clock() - started
        restored = backup.restore(fetched, db, force=force, now=now)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**restored.as_dict(), "source": replica_url or str(chosen.config),
            "fetch_seconds": round(fetch_seconds, 3), "total_seconds": round(clock() - started, 3)}


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
