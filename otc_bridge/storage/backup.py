"""Online backups of the bridge's SQLite file, checking a copy, and restoring one (docs/backups.md).

* :func:`backup` copies a live database with SQLite's backup API while the bridge keeps
  writing. The copy runs inside one read transaction on the source, so every page comes from
  the same snapshot (a consistent copy that never restarts, however often the bridge commits);
  in WAL mode a reader blocks no writer, so the bridge's commits go on during the copy. Pages
  are copied :data:`PAGES_PER_STEP` at a time with no sleep between steps. The copy is written
  to a hidden 0600 temporary file beside the destination, switched to a self-contained
  rollback-journal file, checked by :func:`verify`, flushed to disk, and only then renamed to
  its final name: a half copy, or one that failed its check, never has that name.
* :func:`verify` opens a file read-only and checks ``PRAGMA integrity_check``,
  ``PRAGMA foreign_key_check`` and that its schema version equals this code's
  (:data:`otc_bridge.storage.schema.MIGRATIONS`).
* :func:`restore` refuses to touch a database some process is using (:func:`in_use`: a lease
  of a running bridge, or any process with the file open), and refuses to replace an existing
  one unless forced. It copies the source the same way as :func:`backup`, verifies it, moves
  the old file (with its ``-wal``) aside instead of deleting it, and removes the ``-shm`` and
  the replication shadow directory left beside the target, so no stale WAL is ever applied to
  the restored file.

Every failure is a :class:`BackupError` (or a subclass) whose message names the file and the
reason; a failed call leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import struct
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path

from otc_bridge.storage import files, leases, schema

log = logging.getLogger(__name__)

#: Pages copied per backup step (4 KiB pages: 1 MiB). Small steps keep the progress reports
#: frequent; the snapshot, not the step size, is what keeps the copy consistent.
PAGES_PER_STEP = 256
#: A backup step that finds the source busy (never expected while reading a WAL snapshot)
#: is retried this many times before the copy gives up.
MAX_RESTARTS = 3
#: Seconds a connection of this module waits for a lock before failing.
BUSY_TIMEOUT_SECONDS = 10.0
#: Byte of the ``-shm`` file that every open SQLite connection of a WAL database holds a
#: shared POSIX lock on (SQLite's "dead man switch", WALINDEX_LOCK_OFFSET + SQLITE_SHM_NLOCK).
_SHM_DMS_BYTE = 128
_SIDE_SUFFIXES = ("-wal", "-journal")


class BackupError(RuntimeError):
    """A copy could not be made, checked or installed; the message says which file and why."""


class DatabaseInUse(BackupError):
    """The target database is in use; ``users`` describes each user found."""

    def __init__(self, path: str, users: list[str]) -> None:
        super().__init__(f"{path} is in use: " + "; ".join(users)
                         + " (stop the bridge, its replication and every otc-bridge command first)")
        self.users = users


class TargetExists(BackupError):
    """The target exists and replacing it was not asked for."""


@dataclass(frozen=True)
class Verified:
    """What :func:`verify` found: ``schema_version``, ``pages`` x ``page_size`` = ``bytes``,
    and the number of ``orders`` rows."""

    path: str
    schema_version: int
    pages: int
    page_size: int
    bytes: int
    orders: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Copied:
    """A finished copy: where it is, what :func:`verify` found, how long it took (seconds),
    how many backup steps it made and how often SQLite restarted it (0 expected)."""

    verified: Verified
    seconds: float
    steps: int
    restarts: int

    def as_dict(self) -> dict:
        return {**self.verified.as_dict(), "seconds": round(self.seconds, 3), "steps": self.steps,
                "restarts": self.restarts}


@dataclass(frozen=True)
class Restored:
    """A finished restore: the copy now at ``copied.verified.path``; ``moved_aside`` the old
    database's new name (``None`` if there was none); ``removed`` the stale files deleted."""

    copied: Copied
    moved_aside: str | None
    removed: tuple[str, ...]

    def as_dict(self) -> dict:
        return {**self.copied.as_dict(), "moved_aside": self.moved_aside, "removed": list(self.removed)}


def code_schema_version() -> int:
    """The schema version this code migrates to (the last of ``schema.MIGRATIONS``)."""
    return schema.MIGRATIONS[-1][0]


# --- checking a file ----------------------------------------------------------------------------

def _read_only_uri(path: Path, *, immutable: bool = False) -> str:
    return path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing file. A WAL-mode file in a directory this process
    may not write (so no ``-shm`` can be made) and without a ``-wal`` is opened as immutable."""
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    conn = sqlite3.connect(_read_only_uri(path), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        conn.close()
        if Path(str(path) + "-wal").exists() or os.access(path.parent, os.W_OK):
            raise
        conn = sqlite3.connect(_read_only_uri(path, immutable=True), uri=True, isolation_level=None)
    return conn


def verify(path: str | Path, *, expected_version: int | None = None, label: str | None = None) -> Verified:
    """Check the SQLite file at ``path`` without writing to it (messages name it ``label``,
    default the path).

    Raises :class:`BackupError` if it is missing or not a SQLite database, if
    ``PRAGMA integrity_check`` or ``PRAGMA foreign_key_check`` reports anything, if it has no
    ``orders`` table, or if its schema version (``PRAGMA user_version``) differs from
    ``expected_version`` (default: this code's, :func:`code_schema_version`). A copy is only
    ever installed by the release that wrote it (docs/deploy.md, upgrades and rollback): a
    newer file needs newer code, an older one its own release, whose successor then migrates
    it at start; nothing here migrates.
    """
    path = Path(path)
    name = label or str(path)
    expected = code_schema_version() if expected_version is None else expected_version
    try:
        with closing(_open_read_only(path)) as conn:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise BackupError(f"{name}: integrity check failed: " + "; ".join(problems[:5]))
            dangling = conn.execute("PRAGMA foreign_key_check").fetchall()
            if dangling:
                raise BackupError(f"{name}: {len(dangling)} row(s) break a foreign key, e.g. {tuple(dangling[0])}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != expected:
                raise BackupError(f"{name}: schema version {version}, this code's is {expected} (restore it "
                                  f"with the {'newer' if version > expected else 'older'} release that wrote it)")
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            count = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    except sqlite3.DatabaseError as exc:  # "file is not a database", a malformed image, no orders table
        raise BackupError(f"{name}: not a readable bridge database ({exc})") from None
    return Verified(str(path), version, pages, page_size, pages * page_size, count)


# --- copying ------------------------------------------------------------------------------------

class _Progress:
    """The backup API's progress callback: counts steps, notices restarts (``remaining``
    going up means SQLite started the copy over) and stops the copy after too many."""

    def __init__(self, report: Callable[[int, int], None] | None) -> None:
        self.steps = 0
        self.restarts = 0
        self._remaining: int | None = None
        self._report = report

    def __call__(self, status: int, remaining: int, total: int) -> None:
        self.steps += 1
        if self._remaining is not None and remaining > self._remaining:
            self.restarts += 1
            if self.restarts > MAX_RESTARTS:
                raise BackupError(f"the source changed under the copy {self.restarts} times")
        self._remaining = remaining
        if self._report is not None:
            self._report(total - remaining, total)


def _temporary_beside(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:12]}")


def _unlink_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_into(source: Path, temporary: Path, *, pages_per_step: int,
               report: Callable[[int, int], None] | None) -> _Progress:
    """Copy ``source`` into the new file ``temporary`` (0600) from one snapshot, then switch
    the copy to the rollback journal (a single self-contained file)."""
    progress = _Progress(report)
    files.private_file(temporary)  # 0600 before SQLite writes a byte into it
    with closing(_open_read_only(source)) as src, closing(sqlite3.connect(temporary, isolation_level=None)) as dst:
        # BEGIN + a read pins this connection's snapshot: each backup step reads from it
        # instead of starting a read of its own, so commits made meanwhile by the bridge can
        # neither mix into the copy nor make SQLite restart it.
        src.execute("BEGIN")
        src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        try:
            src.backup(dst, pages=pages_per_step, progress=progress, sleep=0)
        finally:
            src.execute("ROLLBACK")  # ends the read: nothing was written
    # The copied header still says WAL; a copy is one file, meant to be moved and opened alone.
    with closing(sqlite3.connect(temporary, isolation_level=None)) as conn:
        mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    if mode != "delete":
        raise BackupError(f"{temporary}: could not leave WAL mode (journal_mode {mode})")
    return progress


def copy_verified(source: str | Path, destination: str | Path, *, pages_per_step: int = PAGES_PER_STEP,
                  report: Callable[[int, int], None] | None = None,
                  install: Callable[[Path, Path], None] | None = None,
                  clock: Callable[[], float] = time.monotonic) -> Copied:
    """Copy the database ``source`` to ``destination`` as described in the module docstring.

    ``report(copied_pages, total_pages)`` is called after every step. ``install(temporary,
    destination)`` puts the checked copy in place (default: a rename over ``destination``).
    Raises :class:`BackupError` for an unreadable source or a copy that fails
    :func:`verify`, leaving nothing at ``destination`` and no temporary file.
    """
    source, destination = Path(source), Path(destination)
    started = clock()
    files.private_dir(destination.parent)
    temporary = _temporary_beside(destination)
    try:
        try:
            progress = _copy_into(source, temporary, pages_per_step=pages_per_step, report=report)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source}: cannot be copied ({exc})") from None
        verified = verify(temporary, label=f"{source} (as copied)")
        _fsync_file(temporary)
        (install or os.replace)(temporary, destination)
        _fsync_dir(destination.parent)
    finally:
        _unlink_sqlite_file(temporary)  # gone already after a successful rename
    verified = Verified(str(destination), verified.schema_version, verified.pages, verified.page_size,
                        verified.bytes, verified.orders)
    return Copied(verified, clock() - started, progress.steps, progress.restarts)


def backup(db_path: str | Path, destination: str | Path, *, overwrite: bool = False,
           now: float | None = None, pages_per_step: int = PAGES_PER_STEP,
           report: Callable[[int, int], None] | None = None) -> Copied:
    """A verified copy of the live database ``db_path`` at ``destination``, made while the
    bridge keeps serving. A ``destination`` that is an existing directory gets a file named
    ``<db name>-<UTC time of now>.db`` inside it (``now``: unix seconds, default the wall
    clock). Raises :class:`TargetExists` if the destination file exists and ``overwrite`` is
    false, :class:`BackupError` on any other failure (see :func:`copy_verified`)."""
    source, destination = Path(db_path), Path(destination)
    if destination.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        destination = destination / f"{source.stem}-{stamp}.db"
    if destination.resolve() == source.resolve():
        raise BackupError(f"{destination}: is the database itself")
    if destination.exists() and not overwrite:
        raise TargetExists(f"{destination} exists (pass --force to replace it)")
    copied = copy_verified(source, destination, pages_per_step=pages_per_step, report=report)
    log.info("backup of %s written to %s: %d pages in %.3f s", source, destination,
             copied.verified.pages, copied.seconds)
    return copied


# --- who uses a database ------------------------------------------------------------------------

def _shm_users(db_path: Path) -> list[int]:
    """Pids of other processes with ``db_path`` open through SQLite (WAL mode): each holds a
    shared lock on the ``-shm`` file's dead-man-switch byte while its connection is open.
    ``F_GETLK`` asks without taking any lock. Linux/x86-64 and arm64 ``struct flock`` layout."""
    try:
        fd = os.open(str(db_path) + "-shm", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # no -shm: no connection has the file open in WAL mode
        return []
    try:
        layout = "hhqqi4x"
        query = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
        kind, _, _, _, pid = struct.unpack(layout, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    finally:
        os.close(fd)
    return [] if kind == fcntl.F_UNLCK else [pid]


def _lease_users(db_path: Path) -> list[str]:
    """Leases (``<db>.<name>.lock`` files) whose recorded holder is a live process."""
    prefix = os.path.abspath(db_path) + "."
    found = []
    for lock_file in sorted(Path(prefix).parent.glob(Path(prefix).name + "*.lock")):
        name = str(lock_file)[len(prefix):-len(".lock")]
        seen = leases.holder(str(db_path), name)
        if seen is not None and seen.held:
            found.append(f"lease {name!r} held by process {seen.pid}")
    return found


def in_use(db_path: str | Path) -> list[str]:
    """Who uses the database ``db_path`` now, one line each (empty: nobody): leases held by a
    live process (the reconciler, the outbox, the replication side-car, an operator action),
    and other processes with the file open (a running bridge keeps a connection open in every
    process, between passes too)."""
    db_path = Path(db_path)
    users = _lease_users(db_path)
    users += [f"process {pid} has it open" for pid in _shm_users(db_path)]
    return users


# --- restoring ----------------------------------------------------------------------------------

def _move_aside(target: Path, stamp: str) -> tuple[str | None, list[str]]:
    """Rename the existing database (and its ``-wal``/``-journal``, which belong to it) to
    ``<target>.pre-restore-<stamp>``; delete its ``-shm`` (an index SQLite rebuilds) and the
    replication side-car's shadow directory (``.<name>-litestream``, staging state of the old
    file). Returns the new name (``None`` without an old database) and the deleted paths."""
    removed: list[str] = []
    aside = None
    if target.exists():
        aside = target.with_name(f"{target.name}.pre-restore-{stamp}")
        os.replace(target, aside)
        for suffix in _SIDE_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.replace(str(target) + suffix, str(aside) + suffix)
    for suffix in ("-shm", *_SIDE_SUFFIXES):  # left without their database: stale
        side = Path(str(target) + suffix)
        with contextlib.suppress(FileNotFoundError):
            side.unlink()
            removed.append(str(side))
    shadow = target.with_name(f".{target.name}-litestream")
    if shadow.is_dir():
        shutil.rmtree(shadow)
        removed.append(str(shadow))
    return (str(aside) if aside else None), removed


def restore(source: str | Path, target: str | Path, *, force: bool = False, now: float | None = None,
            pages_per_step: int = PAGES_PER_STEP, report: Callable[[int, int], None] | None = None) -> Restored:
    """Make the verified database ``source`` the bridge's database ``target``.

    Refuses, raising :class:`DatabaseInUse`, while anything uses ``target`` (:func:`in_use`),
    with or without ``force``; raises :class:`TargetExists` if ``target`` exists and ``force``
    is false; :class:`BackupError` if ``source`` is unreadable or fails :func:`verify` (then
    ``target`` is untouched). With ``force`` the old database is kept as
    ``<target>.pre-restore-<UTC time of now>`` (``now``: unix seconds, default the clock).
    """
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise BackupError(f"{source}: is the target itself")
    users = in_use(target)
    if users:
        raise DatabaseInUse(str(target), users)
    if target.exists() and not force:
        raise TargetExists(f"{target} exists (pass --force to replace it; the old file is kept aside)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    moved: list[tuple[str | None, list[str]]] = []  # what install() did, for the result

    def install(temporary: Path, final: Path) -> None:
        # Checked again right before the swap: a bridge started during the copy wins.
        late = in_use(final)
        if late:
            raise DatabaseInUse(str(final), late)
        moved.append(_move_aside(final, stamp))
        os.replace(temporary, final)

    copied = copy_verified(source, target, pages_per_step=pages_per_step, report=report, install=install)
    files.private_file(target)
    aside, removed = moved[0]
    log.warning("restored %s from %s (%d orders); old database %s", target, source, copied.verified.orders,
                aside or "none")
    return Restored(copied, aside, tuple(removed))
