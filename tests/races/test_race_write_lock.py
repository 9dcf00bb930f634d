"""The per-process write lock in front of SQLite's (storage/db.py, docs/performance.md): writers
of one process queue on it instead of polling SQLite's busy handler; it is released whatever
ends the transaction, never taken by reads, refused to a thread that holds it already, never
held during after-commit callbacks, and not inherited locked by a forked child."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing

import pytest
from race_helpers import JOIN_TIMEOUT_SECONDS, race

from otc_bridge.config import RateLimit
from otc_bridge.storage import db as db_module
from otc_bridge.storage import ratelimit
from otc_bridge.storage.db import Database


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "bridge.db"), synchronous="NORMAL")
    database.migrate()
    yield database
    database.close()


def _insert(conn, name: str) -> None:
    conn.execute("INSERT INTO leases (name, holder, expires_at) VALUES (?, 'h', 1)", (name,))


def _names(db: Database) -> list[str]:
    return [r["name"] for r in db.read("SELECT name FROM leases ORDER BY name")]


def _in_thread(action) -> BaseException | None:
    """Run ``action`` in a thread of its own (its own connections); what it raised, if anything."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # reported to the caller
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(JOIN_TIMEOUT_SECONDS)
    assert not thread.is_alive()
    return raised[0] if raised else None


def _write_at_once(path: str, name: str) -> None:
    """A write through a new handle that waits for no lock at all (busy timeout 0): it fails
    if this process's write lock or SQLite's is still taken."""
    other = Database(path, busy_timeout_ms=0)
    try:
        with other.transaction() as tx:
            _insert(tx.conn, name)
    finally:
        other.close()


class _ObservedLock:
    """A real lock that reports each thread arriving to acquire it (before it blocks)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Event()

    def acquire(self, timeout: float = -1) -> bool:
        self.arrived.set()
        return self.lock.acquire(timeout=timeout)

    def release(self) -> None:
        self.lock.release()


def test_a_second_writer_waits_on_the_process_lock_not_in_sqlite(db, monkeypatch):
    observed = _ObservedLock()
    monkeypatch.setattr(db_module, "_write_lock", lambda key: observed)
    seen: list[tuple[str, str]] = []

    def second_writer() -> None:
        db.connection().set_trace_callback(lambda sql: seen.append(("second", sql)))
        with db.transaction() as tx:
            _insert(tx.conn, "second")

    with db.transaction() as tx:
        tx.conn.set_trace_callback(lambda sql: seen.append(("first", sql)))
        _insert(tx.conn, "first")
        observed.arrived.clear()
        thread = threading.Thread(target=second_writer, daemon=True)
        thread.start()
        assert observed.arrived.wait(JOIN_TIMEOUT_SECONDS)
        # The second writer is at the process lock; it has sent SQLite nothing.
        assert [who for who, _ in seen] == ["first"]
    thread.join(JOIN_TIMEOUT_SECONDS)
    db.connection().set_trace_callback(None)
    statements = [f"{who}: {sql.split()[0]}" for who, sql in seen]
    assert statements == ["first: INSERT", "first: COMMIT", "second: BEGIN", "second: INSERT", "second: COMMIT"]
    assert _names(db) == ["first", "second"]


# Another worker process: 8 threads, each writing ROUNDS times in each of the three ways.
_CHILD = textwrap.dedent("""
    import sys, threading
    from otc_bridge.config import RateLimit
    from otc_bridge.storage import ratelimit
    from otc_bridge.storage.db import Database
    path, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db, limit, errors = Database(path, synchronous="NORMAL"), RateLimit(10**9, 3600), []
    def work(worker):
        try:
            for i in range(rounds):
                with db.transaction() as tx:
                    tx.execute("INSERT INTO leases VALUES (?, 'h', 1)", (f"child-{worker}-{i}",))
                db.write_one("INSERT INTO leases VALUES (?, 'h', 1)", (f"child-one-{worker}-{i}",))
                ratelimit.hit(db, "ip:shared", limit, 1)
        except BaseException as exc:
            errors.append(repr(exc))
    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool: t.start()
    for t in pool: t.join()
    print(errors)
""")


def test_many_threads_of_two_processes_write_without_database_is_locked(db):
    threads, rounds = 8, 25
    limit = RateLimit(10**9, 3600)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, db.path, str(threads), str(rounds)],
                             stdout=subprocess.PIPE, text=True)

    def work(worker: int) -> None:
        for i in range(rounds):
            with db.transaction() as tx:
                _insert(tx.conn, f"parent-{worker}-{i}")
            db.write_one("INSERT INTO leases VALUES (?, 'h', 1)", (f"parent-one-{worker}-{i}",))
            ratelimit.hit(db, "ip:shared", limit, 1)

    race([lambda n=n: work(n) for n in range(threads)])
    out, _ = child.communicate(timeout=JOIN_TIMEOUT_SECONDS)
    assert (child.returncode, out.strip()) == (0, "[]")
    assert len(_names(db)) == 2 * 2 * threads * rounds
    assert ratelimit.counters(db).read_one("SELECT hits FROM rate_limits")[0] == 2 * threads * rounds


def _deferred_fk_violation(tx) -> None:
    # Checked at COMMIT, which then fails and leaves the transaction open.
    tx.execute("PRAGMA defer_foreign_keys = ON")
    tx.execute("INSERT INTO order_events (order_id, order_version, kind, actor, reason, created_at)"
               " VALUES ('missing', 1, 'note', 'a', 'r', 1)")


def _raise(error: BaseException):
    def body(tx) -> None:
        _insert(tx.conn, "lost")
        raise error
    return body


@pytest.mark.parametrize("body", [
    _raise(ValueError("boom")),
    _raise(KeyboardInterrupt()),
    lambda tx: (_insert(tx.conn, "lost"), _insert(tx.conn, "lost")),  # IntegrityError from SQLite
    _deferred_fk_violation,  # the COMMIT fails
], ids=["exception", "keyboard-interrupt", "statement-error", "commit-error"])
def test_the_lock_is_released_after_any_failure(db, body):
    with pytest.raises(BaseException) as raised, db.transaction() as tx:
        body(tx)
    assert isinstance(raised.value, (ValueError, KeyboardInterrupt, sqlite3.IntegrityError))
    assert not db.connection().in_transaction and not db.in_write_transaction()
    assert _in_thread(lambda: _write_at_once(db.path, "next")) is None
    with db.transaction() as tx:  # this thread's connection is usable again
        _insert(tx.conn, "again")
    assert _names(db) == ["again", "next"]


def test_a_failed_write_one_releases_the_lock(db):
    db.write_one("INSERT INTO leases VALUES ('a', 'h', 1)")
    with pytest.raises(sqlite3.IntegrityError):
        db.write_one("INSERT INTO leases VALUES ('a', 'h', 1)")
    assert _in_thread(lambda: _write_at_once(db.path, "next")) is None


def test_a_begin_that_finds_sqlite_locked_releases_the_lock(db):
    impatient = Database(db.path, busy_timeout_ms=0)
    with closing(sqlite3.connect(db.path, isolation_level=None)) as other_process:
        other_process.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"), impatient.transaction():
            pass
        other_process.execute("ROLLBACK")
    with impatient.transaction() as tx:
        _insert(tx.conn, "after")
    impatient.close()
    assert _names(db) == ["after"]


def test_a_thread_writing_already_is_refused_at_once_by_another_handle(db):
    patient = Database(db.path, busy_timeout_ms=600_000)  # waiting would fail the run's timeout
    with db.transaction() as tx:
        _insert(tx.conn, "outer")
        with pytest.raises(sqlite3.OperationalError, match="already"):
            patient.write_one("INSERT INTO leases VALUES ('inner', 'h', 1)")
        with pytest.raises(sqlite3.OperationalError, match="already"), patient.transaction():
            pass
    patient.close()
    assert _names(db) == ["outer"]


def test_reads_and_other_files_do_not_wait_for_the_write_lock(db, tmp_path):
    other_file = Database(str(tmp_path / "other.db"), busy_timeout_ms=0)
    other_file.migrate()
    with db.transaction() as tx:
        _insert(tx.conn, "held")
        reader = Database(db.path, busy_timeout_ms=0)
        assert _in_thread(lambda: reader.read("SELECT name FROM leases")) is None
        assert _in_thread(lambda: other_file.write_one("INSERT INTO leases VALUES ('x', 'h', 1)")) is None
        assert _in_thread(lambda: _write_at_once(db.path, "refused")) is not None
        reader.close()
    other_file.close()
    assert _names(db) == ["held"]


def test_after_commit_callbacks_run_without_the_lock(db):
    def follow_up() -> None:
        with db.transaction() as tx:
            _insert(tx.conn, "follow-up")

    with db.transaction() as tx:
        _insert(tx.conn, "first")
        tx.after_commit(follow_up)
    assert _names(db) == ["first", "follow-up"]


def test_a_forked_child_does_not_inherit_the_lock_taken(tmp_path):
    # Only the process lock is held at the fork: SQLite's own state must not cross a fork
    # either (the parent never opens this file), which is why serve opens none before it.
    path = str(tmp_path / "forked.db")
    held, done = threading.Event(), threading.Event()

    def holder() -> None:
        lock = db_module._write_lock(os.path.realpath(path))
        with lock:
            held.set()
            done.wait(JOIN_TIMEOUT_SECONDS)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(JOIN_TIMEOUT_SECONDS)
    pid = os.fork()  # gunicorn's case: a thread of the parent is writing at that moment
    if pid == 0:  # the child, where the holder thread does not exist
        code = 1
        try:
            child = Database(path, busy_timeout_ms=2_000)  # an inherited, held lock: 2 s, then an error
            child.write_one("CREATE TABLE t (x)")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    done.set()
    thread.join(JOIN_TIMEOUT_SECONDS)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threads_opening_a_new_file_together_never_see_database_is_locked(tmp_path):
    # Each racer's first POST opens the counters' file; were each to switch a new file to WAL,
    # SQLite would refuse all but one of them at once, whatever the busy timeout.
    limit = RateLimit(1000, 60)
    for attempt in range(10):
        bridge_db = Database(str(tmp_path / f"bridge-{attempt}.db"))
        assert all(race([lambda db=bridge_db: ratelimit.hit(db, "ip:a", limit, 1).allowed] * 8))
        assert ratelimit.counters(bridge_db).read_one("SELECT hits FROM rate_limits")[0] == 8
        assert not list(tmp_path.glob(".*.new-*"))  # no temporary file left
        bridge_db.close()
