"""SQLite storage: connections, the one ``transaction()`` helper, and migrations.

Durability choices (docs/protocol.md §6): WAL journal, ``synchronous=FULL`` by default because the rows
are money, a busy timeout so concurrent writers queue instead of failing, foreign keys on.
Every write goes through :meth:`Database.transaction`, which starts with ``BEGIN IMMEDIATE``
so the write lock is taken up front (no deadlock-prone read-then-upgrade), commits on
success and rolls back on any exception. No HTTP call may happen while it is open: the
escrow client's session checks :meth:`Database.in_write_transaction` (see ``app.py``).
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
    empty database). ``synchronous`` is ``FULL`` (default), ``EXTRA`` or ``NORMAL``.
    """

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000) -> None:
        if path == ":memory:":
            raise ValueError("an in-memory database cannot be shared between threads; use a file")
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened and configured on first use."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            files.private_database(self.path)  # 0600 file (and -wal/-shm), 0700 new directories
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, never implicitly.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.in_tx = False
        return conn

    def close(self) -> None:
        """Close this thread's connection (other threads keep theirs)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def in_write_transaction(self) -> bool:
        """True while this thread is inside :meth:`transaction`."""
        return bool(getattr(self._local, "in_tx", False))

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rollback and re-raise on any exception.

        Nesting is refused (``RuntimeError``): a nested call would silently join the outer
        transaction and commit with it, hiding which code owns the unit of work.
        """
        conn = self.connection()
        if self._local.in_tx:
            raise RuntimeError("nested transaction() is not allowed")
        conn.execute("BEGIN IMMEDIATE")
        self._local.in_tx = True
        tx = Tx(conn, self)
        try:
            yield tx
        except BaseException:
            self._local.in_tx = False
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        finally:
            self._local.in_tx = False
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
        without a ``BEGIN``); its first returned row, or ``None``. Refused inside
        :meth:`transaction`, where it would silently join the open transaction."""
        if self.in_write_transaction():
            raise RuntimeError("write_one() inside transaction(): use the transaction's connection")
        rows = self.connection().execute(sql, params).fetchall()  # stepped to the end: committed
        return rows[0] if rows else None

    def read(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Run one read-only query outside any write transaction."""
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
