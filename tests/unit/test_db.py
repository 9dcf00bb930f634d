"""The one transaction helper and the migrations (docs/protocol.md §6)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from otc_bridge.storage import schema
from otc_bridge.storage.db import Database

LATEST = max(version for version, _ in schema.MIGRATIONS)


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    yield database
    database.close()


def _leases(db: Database) -> list[str]:
    return [r["name"] for r in db.read("SELECT name FROM leases ORDER BY name")]


def _insert(tx, name: str) -> None:
    tx.execute("INSERT INTO leases (name, holder, expires_at) VALUES (?, 'h', 1)", (name,))


def test_commit_on_success(db):
    with db.transaction() as tx:
        _insert(tx, "a")
    assert _leases(db) == ["a"]
    # visible to another connection (another thread) as well: it was committed
    seen = []
    thread = threading.Thread(target=lambda: seen.extend(_leases(db)))
    thread.start()
    thread.join()
    assert seen == ["a"]


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt(), sqlite3.IntegrityError("x")])
def test_rollback_on_any_exception(db, error):
    with pytest.raises(type(error)), db.transaction() as tx:
        _insert(tx, "a")
        raise error
    assert _leases(db) == []
    assert not db.in_write_transaction()
    with db.transaction() as tx:  # the connection is usable again
        _insert(tx, "b")
    assert _leases(db) == ["b"]


def test_failing_statement_rolls_back_earlier_writes(db):
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as tx:
        _insert(tx, "a")
        _insert(tx, "a")  # primary key clash
    assert _leases(db) == []


def test_nesting_is_refused(db):
    with pytest.raises(RuntimeError, match="nested transaction"), db.transaction() as tx:
        _insert(tx, "outer")
        with db.transaction():
            pass
    assert _leases(db) == []  # the outer one rolled back with the error


def test_in_write_transaction_only_inside(db):
    assert db.in_write_transaction() is False
    with db.transaction():
        assert db.in_write_transaction() is True
        flags = []
        other = threading.Thread(target=lambda: flags.append(db.in_write_transaction()))
        other.start()
        other.join()
        assert flags == [False]  # per thread
    assert db.in_write_transaction() is False
    with pytest.raises(ValueError), db.transaction():
        raise ValueError
    assert db.in_write_transaction() is False


def test_after_commit_runs_after_commit_in_order(db):
    events: list[str] = []

    def observe(label: str):
        def callback():
            events.append(label)
            # the row is committed and no transaction is open any more
            assert _leases(db) == ["a"]
            assert not db.in_write_transaction()
        return callback

    with db.transaction() as tx:
        _insert(tx, "a")
        tx.after_commit(observe("first"))
        tx.after_commit(observe("second"))
        assert events == []
    assert events == ["first", "second"]


def test_after_commit_not_run_after_rollback(db):
    events: list[str] = []
    with pytest.raises(ValueError), db.transaction() as tx:
        tx.after_commit(lambda: events.append("ran"))
        raise ValueError
    assert events == []


def test_failing_after_commit_callback_keeps_the_commit_and_runs_the_rest(db):
    events: list[str] = []

    def bad():
        raise LookupError("callback failed")

    with pytest.raises(LookupError, match="callback failed"), db.transaction() as tx:
        _insert(tx, "a")
        tx.after_commit(bad)
        tx.after_commit(lambda: events.append("second"))
    assert events == ["second"]
    assert _leases(db) == ["a"]


def test_migrate_is_idempotent_and_sets_user_version(tmp_path):
    db = Database(str(tmp_path / "m.db"))
    assert db.connection().execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.migrate() == LATEST
    tables = {r["name"] for r in db.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"orders", "trades", "order_events", "outbox", "used_signatures", "leases"} <= tables
    assert "rate_limits" not in tables  # in its own file since version 7 (storage/ratelimit.py)
    assert db.migrate() == LATEST
    assert db.read_one("PRAGMA user_version")[0] == LATEST
    db.close()
    again = Database(str(tmp_path / "m.db"))
    assert again.migrate() == LATEST
    again.close()


def test_migrations_are_numbered_in_order():
    versions = [v for v, _ in schema.MIGRATIONS]
    assert versions == sorted(versions) == list(range(1, len(versions) + 1))


def test_pragmas_default(db):
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


@pytest.mark.parametrize(("mode", "value"), [("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)])
def test_pragma_synchronous_configurable(tmp_path, mode, value):
    db = Database(str(tmp_path / "s.db"), synchronous=mode, busy_timeout_ms=1234)
    assert db.read_one("PRAGMA synchronous")[0] == value
    assert db.read_one("PRAGMA busy_timeout")[0] == 1234
    db.close()


def test_foreign_keys_enforced(db):
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), db.transaction() as tx:
        tx.execute("INSERT INTO order_events (order_id, order_version, kind, actor, reason, created_at)"
                   " VALUES ('missing', 1, 'note', 'a', 'r', 1)")


def test_memory_database_refused():
    with pytest.raises(ValueError, match="in-memory"):
        Database(":memory:")


def test_connection_is_per_thread_and_reused(db):
    assert db.connection() is db.connection()
    other: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: other.append(db.connection()))
    thread.start()
    thread.join()
    assert other[0] is not db.connection()


def test_close_then_reopen(db):
    first = db.connection()
    db.close()
    assert db.connection() is not first
    assert db.read_one("PRAGMA user_version")[0] == LATEST


def test_creates_parent_directory(tmp_path):
    db = Database(str(tmp_path / "deep" / "er" / "x.db"))
    assert db.migrate() == LATEST
    assert (tmp_path / "deep" / "er" / "x.db").exists()
    db.close()


def test_begin_immediate_takes_the_write_lock_up_front(tmp_path):
    path = str(tmp_path / "lock.db")
    db = Database(path)
    db.migrate()
    blocked = Database(path, busy_timeout_ms=0)
    errors: list[Exception] = []

    def try_write():
        try:
            with blocked.transaction():
                pass
        except sqlite3.OperationalError as exc:
            errors.append(exc)
        finally:
            blocked.close()

    with db.transaction():  # nothing written yet, yet the lock is held
        thread = threading.Thread(target=try_write)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "locked" in str(errors[0])
    db.close()
