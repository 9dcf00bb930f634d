"""``otc_bridge.storage.backup``: consistent online copies, verification, guarded restores.

The concurrent writer is a separate process committing two rows per transaction as fast as it
can, as the bridge's workers would; a copy is consistent when every transaction is in it
whole or not at all.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from otc_bridge.cli import main
from otc_bridge.storage import backup, leases
from otc_bridge.storage.db import Database

#: Commits two rows (``txn`` = the transaction's number) per transaction until killed; prints
#: "ready" once the first one has committed.
WRITER = textwrap.dedent("""
    import sys
    from otc_bridge.storage.db import Database
    db = Database(sys.argv[1], synchronous="NORMAL")
    txn = db.read_one("SELECT COALESCE(MAX(txn), 0) FROM pairs")[0]
    while True:
        txn += 1
        with db.transaction() as tx:
            tx.execute("INSERT INTO pairs (txn, side, pad) VALUES (?, 'a', ?)", (txn, "a" * 300))
            tx.execute("INSERT INTO pairs (txn, side, pad) VALUES (?, 'b', ?)", (txn, "b" * 300))
        if txn % 50 == 1:
            print("ready", txn, flush=True)
""")


def make_db(path: Path, rows: int = 0) -> Path:
    """A migrated bridge database with a ``pairs`` table holding ``rows`` transactions."""
    db = Database(str(path))
    db.migrate()
    conn = db.connection()
    conn.execute("CREATE TABLE pairs (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, side TEXT, pad TEXT)")
    with db.transaction() as tx:
        for txn in range(1, rows + 1):
            tx.execute("INSERT INTO pairs (txn, side, pad) VALUES (?, 'a', ?), (?, 'b', ?)",
                       (txn, "a" * 300, txn, "b" * 300))
    db.close()
    return path


def query(path: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def half_transactions(path: Path) -> list[tuple]:
    return query(path, "SELECT txn, COUNT(*) FROM pairs GROUP BY txn HAVING COUNT(*) != 2")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial-" in p.name or ".fetch-" in p.name)


@pytest.fixture
def writer(tmp_path):
    """A process committing to ``live.db`` (20 000 transactions in it already) until the test ends."""
    live = make_db(tmp_path / "live.db", rows=20_000)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("ready")
        yield live, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_copies_made_while_a_process_writes_are_whole_transactions_and_never_restart(writer, tmp_path):
    live, proc = writer
    copies = []
    for n in range(3):
        copied = backup.backup(live, tmp_path / f"copy{n}.db", pages_per_step=16)
        copies.append(copied)
        assert copied.restarts == 0 and copied.steps > 10  # many small steps, one snapshot
        assert half_transactions(tmp_path / f"copy{n}.db") == []
    assert proc.poll() is None, "the writer kept running through every copy"
    highest = [query(tmp_path / f"copy{n}.db", "SELECT MAX(txn) FROM pairs")[0][0] for n in range(3)]
    assert highest[0] < highest[1] < highest[2], f"the writer committed between the copies: {highest}"
    for n, copied in enumerate(copies):
        path = tmp_path / f"copy{n}.db"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert copied.verified.schema_version == backup.code_schema_version()
        assert query(path, "PRAGMA journal_mode") == [("delete",)]  # one self-contained file
        assert not Path(f"{path}-wal").exists()
    assert leftovers(tmp_path) == []


def test_backup_into_a_directory_names_the_file_by_the_time_given(tmp_path):
    live = make_db(tmp_path / "bridge.db", rows=3)
    (tmp_path / "backups").mkdir()
    copied = backup.backup(live, tmp_path / "backups", now=1_800_000_000)
    assert copied.verified.path == str(tmp_path / "backups" / "bridge-20270115T080000Z.db")
    assert query(Path(copied.verified.path), "SELECT COUNT(*) FROM pairs") == [(6,)]


def test_an_existing_destination_is_replaced_only_when_asked(tmp_path):
    live = make_db(tmp_path / "bridge.db", rows=2)
    dest = tmp_path / "copy.db"
    dest.write_bytes(b"older copy")
    with pytest.raises(backup.TargetExists):
        backup.backup(live, dest)
    assert dest.read_bytes() == b"older copy"
    backup.backup(live, dest, overwrite=True)
    assert query(dest, "SELECT COUNT(*) FROM pairs") == [(4,)]
    with pytest.raises(backup.BackupError, match="is the database itself"):
        backup.backup(live, live, overwrite=True)


def test_a_copy_failing_its_check_never_gets_the_final_name(tmp_path):
    live = make_db(tmp_path / "bridge.db", rows=2)
    with closing(sqlite3.connect(live)) as conn:
        conn.execute("PRAGMA user_version = 99")  # written by a newer release
    with pytest.raises(backup.BackupError, match="schema version 99, this code's is"):
        backup.backup(live, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    assert leftovers(tmp_path) == []


def corrupt(path: Path) -> None:
    """Overwrite the middle of the file (table pages, not the header) with garbage."""
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size // 2 - (size // 2) % 4096)
        file.write(b"\xa5" * 8192)


def test_verify_names_what_is_wrong_with_a_file(tmp_path):
    good = backup.backup(make_db(tmp_path / "bridge.db", rows=2000), tmp_path / "copy.db")
    assert backup.verify(tmp_path / "copy.db").orders == good.verified.orders == 0
    corrupt(tmp_path / "copy.db")
    with pytest.raises(backup.BackupError, match=r"copy\.db: (integrity check failed|not a readable bridge database)"):
        backup.verify(tmp_path / "copy.db")
    (tmp_path / "noise.db").write_bytes(os.urandom(8192))
    with pytest.raises(backup.BackupError, match="not a readable bridge database"):
        backup.verify(tmp_path / "noise.db")
    with pytest.raises(backup.BackupError, match="no such file"):
        backup.verify(tmp_path / "missing.db")


# --- restore --------------------------------------------------------------------------------------

def test_restore_refuses_an_existing_database_unless_forced_and_keeps_it_aside(tmp_path):
    source = backup.backup(make_db(tmp_path / "old.db", rows=5), tmp_path / "copy.db").verified.path
    target = make_db(tmp_path / "bridge.db", rows=1)
    Database(str(target)).connection().execute("SELECT 1")  # leaves nothing open: closed below
    Path(f"{target}-shm").write_bytes(b"stale index")
    with pytest.raises(backup.TargetExists):
        backup.restore(source, target)
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(2,)]
    done = backup.restore(source, target, force=True, now=1_800_000_000)
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(10,)]
    assert done.moved_aside == f"{target}.pre-restore-20270115T080000Z"
    assert query(Path(done.moved_aside), "SELECT COUNT(*) FROM pairs") == [(2,)]
    assert f"{target}-shm" in done.removed and not Path(f"{target}-shm").exists()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert Database(str(target)).migrate() == backup.code_schema_version()  # the bridge opens it as is


def test_restore_moves_the_old_wal_with_its_database_and_never_applies_it_to_the_copy(tmp_path):
    source = backup.backup(make_db(tmp_path / "old.db", rows=5), tmp_path / "copy.db").verified.path
    target = tmp_path / "bridge.db"
    # A database killed with committed pages still in its WAL (the connection never closed).
    script = textwrap.dedent("""
        import os, sqlite3, sys
        c = sqlite3.connect(sys.argv[1], isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA wal_autocheckpoint=0")
        c.execute("PRAGMA user_version = 4"); c.execute("CREATE TABLE orders (x)")
        c.execute("CREATE TABLE pairs (id INTEGER PRIMARY KEY, txn, side, pad)")
        c.execute("INSERT INTO pairs (txn) VALUES (777)")
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script, str(target)], check=True)
    assert Path(f"{target}-wal").stat().st_size > 0
    done = backup.restore(source, target, force=True, now=1_800_000_000)
    assert not Path(f"{target}-wal").exists() and not Path(f"{target}-shm").exists()
    assert query(target, "SELECT COUNT(*) FROM pairs WHERE txn = 777") == [(0,)]
    assert query(Path(done.moved_aside), "SELECT txn FROM pairs") == [(777,)]  # its WAL went with it


def test_restore_removes_a_stale_wal_beside_a_missing_database(tmp_path):
    source = backup.backup(make_db(tmp_path / "old.db", rows=1), tmp_path / "copy.db").verified.path
    target = tmp_path / "fresh" / "bridge.db"
    target.parent.mkdir()
    Path(f"{target}-wal").write_bytes(b"x" * 100)
    Path(f"{target}-shm").write_bytes(b"x" * 100)
    done = backup.restore(source, target)
    assert done.moved_aside is None
    assert sorted(Path(p).name for p in done.removed) == ["bridge.db-shm", "bridge.db-wal"]
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(2,)]


def test_restore_refuses_a_database_open_in_another_process_even_when_forced(tmp_path):
    source = backup.backup(make_db(tmp_path / "old.db", rows=1), tmp_path / "copy.db").verified.path
    target = make_db(tmp_path / "bridge.db", rows=3)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sqlite3, sys
        c = sqlite3.connect(sys.argv[1])
        c.execute("SELECT COUNT(*) FROM pairs").fetchone()
        print("open", flush=True)
        sys.stdin.read()
    """), str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        assert backup.in_use(target) == [f"process {holder.pid} has it open"]
        with pytest.raises(backup.DatabaseInUse, match=f"process {holder.pid} has it open"):
            backup.restore(source, target, force=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(6,)]  # untouched
    assert backup.in_use(target) == []
    backup.restore(source, target, force=True)
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(2,)]


def test_restore_refuses_while_a_bridge_lease_is_held(tmp_path):
    source = backup.backup(make_db(tmp_path / "old.db", rows=1), tmp_path / "copy.db").verified.path
    target = make_db(tmp_path / "bridge.db", rows=3)
    lease = leases.try_hold(str(target), "reconciler")
    try:
        with pytest.raises(backup.DatabaseInUse, match=f"lease 'reconciler' held by process {os.getpid()}"):
            backup.restore(source, target, force=True)
    finally:
        lease.release()
    backup.restore(source, target, force=True)


def test_restore_of_a_corrupted_source_leaves_the_target_untouched(tmp_path):
    backup.backup(make_db(tmp_path / "old.db", rows=2000), tmp_path / "copy.db")
    corrupt(tmp_path / "copy.db")
    target = make_db(tmp_path / "bridge.db", rows=3)
    with pytest.raises(backup.BackupError, match="copy"):
        backup.restore(tmp_path / "copy.db", target, force=True)
    assert query(target, "SELECT COUNT(*) FROM pairs") == [(6,)]
    assert leftovers(tmp_path) == []


# --- the commands ---------------------------------------------------------------------------------

def test_backup_and_restore_commands(writer, tmp_path):
    live, _ = writer
    runner = CliRunner()
    env = {"OTC_DB_PATH": str(live)}
    result = runner.invoke(main, ["backup", str(tmp_path / "nightly.db")], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["ok"] and summary["restarts"] == 0 and summary["schema_version"] == backup.code_schema_version()
    again = runner.invoke(main, ["backup", str(tmp_path / "nightly.db")], env=env)
    assert again.exit_code == 1 and "exists (pass --force" in again.output

    refused = runner.invoke(main, ["restore", str(tmp_path / "nightly.db"), "--force"], env=env)
    assert refused.exit_code == 1 and "is in use" in refused.output  # the writer has it open
    target = tmp_path / "restored.db"
    done = runner.invoke(main, ["restore", str(tmp_path / "nightly.db"), "--db", str(target)], env=env)
    assert done.exit_code == 0, done.output
    assert half_transactions(target) == []
    assert runner.invoke(main, ["restore"], env=env).exit_code == 2  # neither SOURCE nor --from-replica
