"""Litestream, the tool behind ``serve --replicate`` (:mod:`otc_bridge.serving.replication`):
the pinned binary, the configuration it runs with, and restoring from a replica.

The binary is Litestream v0.3.13 as shipped by the npm package
``@flydotio/litestream-linux-x64@1.0.1`` (pinned with its integrity hash), installed into a
tool cache by :func:`install` (``otc-bridge replication install``), or given by
``OTC_LITESTREAM_BIN``, or ``litestream`` on ``PATH``. A restore from a replica is
``litestream restore`` into a temporary file (:func:`fetch_replica`), then the verified swap of
:func:`otc_bridge.storage.backup.restore` (:func:`restore_from_replica`). docs/backups.md has
the measured replication lag, loss window and restore time. Settings, read from the
environment here until they join :class:`~otc_bridge.config.Config`:

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
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from otc_bridge.config import ConfigError
from otc_bridge.config.reader import Reader
from otc_bridge.storage import backup, files

NPM_PACKAGE = "@flydotio/litestream-linux-x64"
NPM_VERSION = "1.0.1"
#: npm's integrity of that tarball: an install whose lock file records another is refused.
NPM_INTEGRITY = "sha512-zmcAR8q2TNiAsWRSWscrN+r4NNQ+FwfatKhcE3G/YticNSkNyIhtCTlvXxIyOG+E+UWa+j441cjbmb7p83JPEw=="
#: What ``litestream version`` prints for that package.
LITESTREAM_VERSION = "v0.3.13"
#: How often the rendered configuration ships WAL to the replica, and snapshots it.
SYNC_INTERVAL = "1s"
SNAPSHOT_INTERVAL = "1h"
RETENTION = "72h"


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
