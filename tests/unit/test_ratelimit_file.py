"""The rate-limit counters' own file, ``<db>-ratelimit`` (storage/ratelimit.py, docs/protocol.md §8):
off the database's write lock, 0600 like it, shared by processes, left out of backups, and the
schema upgrade (version 7) that drops the old table from a database that has it."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from otc_bridge.config import RateLimit
from otc_bridge.storage import backup, ratelimit, schema
from otc_bridge.storage.db import Database

T0 = 1_800_000_000
LIMIT = RateLimit(3, 60)
V7 = 7
LATEST = schema.MIGRATIONS[-1][0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "state" / "bridge.db"))
    database.migrate()
    yield database
    database.close()


def test_counters_live_in_a_0600_file_beside_the_database(db, tmp_path):
    previous = os.umask(0o022)
    try:
        assert ratelimit.hit(db, "ip:a", LIMIT, T0).allowed
    finally:
        os.umask(previous)
    side = Path(db.path + "-ratelimit")
    assert ratelimit.counters(db).path == str(side)
    for name in ("bridge.db-ratelimit", "bridge.db-ratelimit-wal", "bridge.db-ratelimit-shm"):
        assert mode(side.parent / name) == 0o600, name
    assert "rate_limits" not in tables(Path(db.path))
    assert tables(side) == {"rate_limits"}
    counters = ratelimit.counters(db)
    assert counters.read_one("PRAGMA journal_mode")[0] == "wal"
    assert counters.read_one("PRAGMA synchronous")[0] == 1  # NORMAL: no fsync per hit, no corruption
    assert counters is ratelimit.counters(db)  # one per database object


def test_a_hit_does_not_need_the_database_write_lock(db):
    # Were the counters in the database, this thread, which holds its write lock, would be
    # refused at once (a second writer of the same file from one thread waits for itself).
    with db.transaction():
        assert ratelimit.hit(db, "ip:a", LIMIT, T0).allowed
        assert ratelimit.prune(db, T0 + 60, 60) == 1


def test_limit_holds_across_processes(db):
    # Another worker process: its own interpreter, its own Database, the same file.
    code = textwrap.dedent(f"""
        from otc_bridge.config import RateLimit
        from otc_bridge.storage import ratelimit
        from otc_bridge.storage.db import Database
        db = Database({db.path!r})
        print([ratelimit.hit(db, "ip:a", RateLimit(3, 60), {T0}).allowed for _ in range(3)])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[True, True, True]"
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 1) == ratelimit.Verdict(False, 59)
    assert ratelimit.hit(db, "ip:b", LIMIT, T0 + 1).allowed


def test_a_deleted_counters_file_only_resets_the_windows(db):
    for _ in range(4):
        ratelimit.hit(db, "ip:a", LIMIT, T0)
    db.close()  # closes this thread's connection to the counters' file too
    side = Path(db.path + "-ratelimit")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{side}{suffix}").unlink(missing_ok=True)
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 1).allowed  # the table is made again on connect
    assert side.exists()  # a new file, not the deleted one still open


def test_backup_and_restore_leave_the_counters_out(db, tmp_path):
    ratelimit.hit(db, "ip:a", LIMIT, T0)
    copy = tmp_path / "copy.db"
    backup.backup(db.path, copy)
    assert "rate_limits" not in tables(copy)
    assert backup.verify(copy).schema_version == backup.code_schema_version()
    db.close()
    target = tmp_path / "restored" / "bridge.db"
    backup.restore(copy, target)
    restored = Database(str(target))
    assert ratelimit.hit(restored, "ip:a", LIMIT, T0).allowed  # a fresh counters file beside it
    restored.close()


# --- the upgrade from a database that has the old table ---------------------------------------------

def _at_version_6(path: Path) -> None:
    """A database as the previous release left it: version 6, counters in ``rate_limits``."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        for version, step in schema.MIGRATIONS:
            if version < V7:
                step(conn)
        conn.execute("PRAGMA user_version = 6")
        conn.execute("INSERT INTO rate_limits VALUES ('ip:a', 1, 4)")
        conn.execute("INSERT INTO leases VALUES ('kept', 'h', 1)")
        conn.execute("COMMIT")
    os.chmod(path, 0o600)


def test_upgrade_drops_the_old_table_and_keeps_the_rest(tmp_path):
    path = tmp_path / "old.db"
    _at_version_6(path)
    db = Database(str(path))
    assert db.migrate() == LATEST
    assert "rate_limits" not in tables(path)
    assert [r["name"] for r in db.read("SELECT name FROM leases")] == ["kept"]
    assert ratelimit.hit(db, "ip:a", LIMIT, T0).allowed  # old counts are gone with the table
    assert db.migrate() == LATEST
    db.close()


def test_a_crash_inside_the_upgrade_leaves_version_6_whole(tmp_path):
    path = tmp_path / "old.db"
    _at_version_6(path)
    # The process dies (no cleanup, no rollback) after the DROP, before the version bump commits.
    code = textwrap.dedent(f"""
        import os
        from otc_bridge.storage import schema
        from otc_bridge.storage.db import Database
        def dying(conn):
            schema._v7(conn)
            os._exit(3)
        at = [version for version, _ in schema.MIGRATIONS].index(7)
        schema.MIGRATIONS[at] = (7, dying)
        Database({str(path)!r}).migrate()
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 3
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        assert conn.execute("SELECT bucket, hits FROM rate_limits").fetchall() == [("ip:a", 4)]
    db = Database(str(path))
    assert db.migrate() == LATEST
    assert "rate_limits" not in tables(path)
    db.close()
