"""SQLite storage: connections, the one ``transaction()`` helper, and migrations.

Durability choices (docs/protocol.md §6): WAL journal, ``synchronous=FULL`` by default because the rows
are money, a busy timeout so concurrent writers queue instead of failing, foreign keys on.
Every write goes through :meth:`Database.transaction`, which starts with ``BEGIN IMMEDIATE``
so the write lock is taken up front (no deadlock-prone read-then-upgrade), commits on
success and rolls back on any exception. No HTTP call may happen while it is open: the
escrow client's session checks :meth:`Database.in_write_transaction` (see ``app.py``).

Writers of one process queue on a Python lock per file before ``BEGIN IMMEDIATE`` (and
before a :meth:`Database.write_one`): SQLite's busy handler does not wake a waiting writer
when the lock comes free, it polls with sleeps growing to 100 ms, so threads that all poll
it build queues under load (docs/performance.md, "Where the time goes" §1). A released
Python lock wakes its next waiter at once, and only one thread per process is left polling
SQLite, for the writers of other processes. That wait is bounded by the busy timeout too,
then fails as SQLite would (``sqlite3.OperationalError: database is locked``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from otc_bridge.storage import files, schema

log = logging.getLogger(__name__)

# --- one write lock per database file and process ------------------------------------------------
# Keyed by the file's resolved path, so every Database object of this process on the file
# shares it. Plain locks, not re-entrant: a thread that already writes to the file is refused
# at once (below), as SQLite would refuse it after the whole busy timeout.
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()
_writing = threading.local()  # .files: the keys of the write locks this thread holds


def _write_lock(key: str) -> threading.Lock:
    lock = _write_locks.get(key)
    if lock is None:
        with _write_locks_guard:
            lock = _write_locks.setdefault(key, threading.Lock())
    return lock


def _fresh_locks_after_fork() -> None:
    # gunicorn forks its workers: a lock some thread of the parent held at the fork would stay
    # held for ever in the child, where that thread does not exist. The child starts afresh.
    global _write_locks_guard, _writing
    _write_locks.clear()
    _write_locks_guard = threading.Lock()
    _writing = threading.local()


os.register_at_fork(after_in_child=_fresh_locks_after_fork)


class Tx:
    """An open write transaction: ``conn`` to run SQL, ``after_commit`` for follow-ups,
    ``database`` the :class:`Database` it belongs to (for a follow-up's own transaction).

    Callbacks run only if the transaction commits, in registration order; a failing
    callback is logged and re-raised (after every callback had its turn).
    """

    def __init__(self, conn: sqlite3.Connection, database: Database) -> None:
        self.conn = conn
        self.database = database
        self._after: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after.append(callback)

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


class Database:
    """One SQLite file. Connections are per thread and reused by that thread.

    ``path`` is a filesystem path (``:memory:`` is refused: every thread would see its own
    empty database). ``synchronous`` is ``FULL`` (default), ``EXTRA``, ``NORMAL`` or ``OFF``.
    ``busy_timeout_ms`` bounds each wait for the write lock (this process's, then SQLite's).
    ``setup`` statements run on every new connection after the pragmas (idempotent DDL such as
    ``CREATE TABLE IF NOT EXISTS`` for a file without migrations, see :meth:`sibling`).
    """

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000,
                 setup: tuple[str, ...] = ()) -> None:
        if path == ":memory:":
            raise ValueError("an in-memory database cannot be shared between threads; use a file")
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._setup = setup
        self._lock_key = os.path.realpath(path)
        self._local = threading.local()
        self._siblings: dict[str, Database] = {}
        self._siblings_guard = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened and configured on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not os.path.exists(self.path):
                files.create_wal_database(self.path, self._setup)
            files.private_database(self.path)  # 0600 file (and -wal/-shm), 0700 new directories
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, never implicitly.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            for sql in self._setup:
                conn.execute(sql)
            self._local.conn = conn
            self._local.in_tx = False
        return conn

    def sibling(self, suffix: str, *, synchronous: str, setup: tuple[str, ...] = ()) -> Database:
        """The :class:`Database` of the file ``<path><suffix>`` beside this one, made on first
        call (later calls return it, whatever their arguments) and closed with this one.

        For data that must not wait on this file's write lock (it has its own) and is not
        part of this file's backups, replication or migrations: ``setup`` creates its tables.
        It shares the busy timeout and, through :func:`files.private_database`, the 0600 mode.
        """
        found = self._siblings.get(suffix)
        if found is None:
            with self._siblings_guard:
                found = self._siblings.get(suffix)
                if found is None:
                    found = Database(self.path + suffix, synchronous=synchronous,
                                     busy_timeout_ms=self.busy_timeout_ms, setup=setup)
                    self._siblings[suffix] = found
        return found

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs), and its siblings'."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        for sibling in list(self._siblings.values()):
            sibling.close()

    def in_write_transaction(self) -> bool:
        """True while this thread is inside :meth:`transaction`."""
        return bool(getattr(self._local, "in_tx", False))

    def _take_write_lock(self) -> threading.Lock:
        """This process's write lock of the file, acquired (see the module docstring). Raises
        ``sqlite3.OperationalError`` ("database is locked") if this thread holds it already
        (through another :class:`Database` of the file: waiting would wait for itself) or if
        it stays taken for the busy timeout."""
        held = _writing.__dict__.setdefault("files", set())
        if self._lock_key in held:
            raise sqlite3.OperationalError(f"database is locked: this thread is writing to {self.path} already")
        lock = _write_lock(self._lock_key)
        if not lock.acquire(timeout=self.busy_timeout_ms / 1000):
            raise sqlite3.OperationalError(f"database is locked: other writers of this process held {self.path} "
                                           f"for {self.busy_timeout_ms} ms")
        held.add(self._lock_key)
        return lock

    def _give_write_lock(self, lock: threading.Lock) -> None:
        _writing.__dict__.setdefault("files", set()).discard(self._lock_key)
        lock.release()

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """End the open transaction without its writes. Some errors (a full disk, an I/O error)
        have ended it already; a ``ROLLBACK`` that fails closes the connection, which rolls
        back and leaves no half-open transaction to the thread's next use. Never raises: the
        caller re-raises the error that brought it here."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("ROLLBACK failed on %s; closing the connection", self.path)
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rollback and re-raise on any exception.

        Nesting is refused (``RuntimeError``): a nested call would silently join the outer
        transaction and commit with it, hiding which code owns the unit of work. The write
        lock (this process's, then SQLite's) is held from before ``BEGIN`` to the end of
        ``COMMIT`` or ``ROLLBACK`` and never during the after-commit callbacks, which may
        open transactions of their own.
        """
        conn = self.connection()
        if self._local.in_tx:
            raise RuntimeError("nested transaction() is not allowed")
        lock = self._take_write_lock()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._local.in_tx = True
            tx = Tx(conn, self)
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException:
                self._roll_back(conn)  # also after a failed COMMIT, which may leave it open
                raise
        finally:
            self._local.in_tx = False
            self._give_write_lock(lock)
        errors = []
        for callback in tx._after:
            try:
                callback()
            except Exception as exc:
                log.exception("after-commit callback failed")
                errors.append(exc)
        if errors:
            raise errors[0]

    def write_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        """Run one writing statement as its own transaction (SQLite's autocommit: atomic
        without a ``BEGIN``), holding this process's write lock like :meth:`transaction`; its
        first returned row, or ``None``. Refused inside :meth:`transaction`, where it would
        silently join the open transaction."""
        if self.in_write_transaction():
            raise RuntimeError("write_one() inside transaction(): use the transaction's connection")
        conn = self.connection()
        lock = self._take_write_lock()
        try:
            rows = conn.execute(sql, params).fetchall()  # stepped to the end: committed
        finally:
            self._give_write_lock(lock)
        return rows[0] if rows else None

    def read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Run one read-only query outside any write transaction (no write lock taken)."""
        return self.connection().execute(sql, params).fetchall()

    def read_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        """First row of a read-only query, or ``None``."""
        return self.connection().execute(sql, params).fetchone()

    def migrate(self) -> int:
        """Bring the file to the newest schema version; returns that version.

        Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the
        ``PRAGMA user_version`` bump, so a crash leaves the file at a whole version.
        """
        conn = self.connection()
        for version, step in schema.MIGRATIONS:
            with self.transaction() as tx:
                current = tx.execute("PRAGMA user_version").fetchone()[0]
                if current >= version:
                    continue
                log.info("migrating %s to schema version %d", self.path, version)
                step(tx.conn)
                tx.execute(f"PRAGMA user_version = {int(version)}")
        return conn.execute("PRAGMA user_version").fetchone()[0]


def probe_readable(path: str, *, timeout_seconds: float) -> str | None:
    """``None`` if the database at ``path`` is usable now, else the error text. Writes nothing.

    Its own connection, opened ``mode=ro`` (a missing file is not created; nothing can be
    written through it), reads the schema version (an unmigrated file fails) and at most one
    row of ``orders``. It takes no write lock: in WAL mode a reader never waits for a writer,
    so a long write transaction elsewhere does not fail it. Whether this process may write the
    file and its directory is checked with ``os.access`` (a permission check, not a write).
    """
    try:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=timeout_seconds, isolation_level=None)) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            newest = schema.MIGRATIONS[-1][0]
            if version < newest:
                return f"schema version {version}, expected {newest} (run otc-bridge init-db)"
            conn.execute("SELECT 1 FROM orders LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        return str(exc)
    for target in (path, str(Path(path).resolve().parent)):
        if not os.access(target, os.W_OK):
            return f"{target} is not writable by this process"
    return None
