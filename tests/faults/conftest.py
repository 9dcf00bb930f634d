"""Fixtures of the fault matrix: a dev node whose SQLite file the checks can read, and the
shared bridge with a 1 s node read timeout, so a ``timeout_after`` fault costs about a
second instead of the suite's usual five."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge_support import NODE_ADMIN_KEY, NodeHandle

from otc_bridge.config import Config
from otc_bridge.devnode import create_app as create_devnode
from otc_bridge.devnode.server import start_in_thread

NODE_READ_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def node_db_path(tmp_path) -> Path:
    return tmp_path / "devnode.db"


@pytest.fixture
def dev_node(node_db_path) -> Iterator[NodeHandle]:
    """A fresh dev escrow node on a loopback port, its SQLite file at ``node_db_path``."""
    server = start_in_thread(create_devnode(str(node_db_path), NODE_ADMIN_KEY))
    yield NodeHandle(server.url)
    server.shutdown()


@pytest.fixture
def bridge_config(bridge_config) -> Config:
    return bridge_config.replace(node_read_timeout_seconds=NODE_READ_TIMEOUT_SECONDS)
