"""The bridge's files are 0600 and the directories it creates 0700, whatever the umask: the
SQLite file with its -wal/-shm, the dev node's database, and ``dev.json`` (the admin token)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from otc_bridge.dev import tools
from otc_bridge.dev.node import store as devnode_store
from otc_bridge.storage import files
from otc_bridge.storage.db import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o277], ids=["umask000", "umask022", "umask277"])
def umask(request) -> Iterator[int]:
    """Run the test under a permissive, the usual, and an over-strict umask."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _write(db: Database) -> None:
    db.migrate()
    db.write_one("INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'h', 1)")


def test_bridge_database_and_new_directories(tmp_path, umask):
    path = tmp_path / "state" / "nested" / "bridge.db"
    db = Database(str(path))
    _write(db)
    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
        assert mode(path.parent / name) == 0o600, name
    assert mode(path.parent) == mode(path.parent.parent) == 0o700
    db.close()


def test_existing_files_are_tightened_and_an_existing_directory_is_left_alone(tmp_path):
    tmp_path.chmod(0o755)
    path = tmp_path / "bridge.db"
    first = Database(str(path))
    _write(first)
    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
        (tmp_path / name).chmod(0o644)  # as an older version left them
    second = Database(str(path))
    second.connection()
    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
        assert mode(tmp_path / name) == 0o600, name
    assert mode(tmp_path) == 0o755  # not created by the bridge: not its to change
    first.close()
    second.close()


def test_write_private_replaces_atomically_with_0600(tmp_path, umask):
    target = tmp_path / "dev.json"
    target.write_text("old")
    target.chmod(0o644)
    files.write_private(target, '{"admin_token": "t"}')
    assert (target.read_text(), mode(target)) == ('{"admin_token": "t"}', 0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["dev.json"]  # no temporary file left


def test_private_dir_tightens_an_existing_directory_only_when_asked(tmp_path):
    existing = tmp_path / "data"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    files.private_dir(existing)
    assert mode(existing) == 0o755
    files.private_dir(existing, tighten_existing=True)
    assert mode(existing) == 0o700


def test_dev_node_database(tmp_path, umask):
    path = str(tmp_path / "devnode.db")
    devnode_store.migrate(path)
    conn = devnode_store.connect(path)
    with devnode_store.transaction(conn):
        devnode_store.add_balance(conn, "alice", 1)
    for suffix in ("", "-wal", "-shm"):
        assert mode(Path(path + suffix)) == 0o600, suffix
    conn.close()


class _StopAtOnce:
    """Stands in for the dev command's HTTP server: serving ends as a Ctrl-C would end it."""

    def serve_forever(self) -> None:
        raise KeyboardInterrupt

    def shutdown(self) -> None:
        pass


def test_dev_command_data_directory(tmp_path, umask, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    monkeypatch.setattr(tools, "make_server", lambda *args, **kwargs: _StopAtOnce())
    settings = tools.DevSettings(data_dir=data_dir, port=0, node_port=0, admin_token="a" * 32,
                                 auto_settle_seconds=0)
    tools.run_dev(settings, echo=lambda line: None)
    assert mode(data_dir) == 0o700
    assert json.loads((data_dir / "dev.json").read_text())["admin_token"] == "a" * 32
    for name in ("dev.json", "bridge.db", "devnode.db"):
        assert mode(data_dir / name) == 0o600, name
