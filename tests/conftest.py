"""Fixtures for the bridge's tests: a dev node and a bridge per test, both on 127.0.0.1.

Every bridge fixture checks, when its test ends, that each written transition is in the
transition table, that order versions rise without gaps, and that every order satisfies
the post-commit invariants: a test cannot pass while the money path broke a rule.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bridge_support import (  # noqa: E402
    NODE_ADMIN_KEY,
    NodeHandle,
    bridge_env,
    broken_orders,
    check_history,
    serve,
)

from otc_bridge.app import build_bridge, create_app  # noqa: E402
from otc_bridge.client import BridgeClient, Wallet  # noqa: E402
from otc_bridge.config import Config  # noqa: E402
from otc_bridge.context import Bridge  # noqa: E402
from otc_bridge.dev.node import create_app as create_devnode  # noqa: E402
from otc_bridge.dev.node.server import start_in_thread  # noqa: E402


@pytest.fixture
def node_db_path(tmp_path) -> Path:
    """Where the dev node keeps its SQLite file (checks may read it directly, read-only)."""
    return tmp_path / "devnode.db"


@pytest.fixture
def dev_node(node_db_path) -> Iterator[NodeHandle]:
    """A fresh dev escrow node (own SQLite file) served on a free loopback port."""
    server = start_in_thread(create_devnode(str(node_db_path), NODE_ADMIN_KEY))
    yield NodeHandle(server.url)
    server.shutdown()


@pytest.fixture
def bridge_config(tmp_path, dev_node) -> Config:
    return Config.from_env(bridge_env(tmp_path, dev_node.url))


@pytest.fixture
def bridge(bridge_config) -> Iterator[Bridge]:
    """The bridge's services on a fresh database; history and invariants checked at the end."""
    b = build_bridge(bridge_config)
    yield b
    check_history(b.db)
    assert broken_orders(b.db.connection()) == {}


@pytest.fixture
def bridge_app(bridge):
    app = create_app(bridge=bridge)
    app.testing = True
    return app


@pytest.fixture
def http_client(bridge_app):
    """Flask's test client (no socket) for request-shape tests."""
    return bridge_app.test_client()


@pytest.fixture
def live_bridge(bridge_app) -> Iterator[str]:
    """The bridge served over real HTTP; yields its base URL."""
    server = serve(bridge_app)
    yield server.url
    server.shutdown()


@pytest.fixture
def api(live_bridge) -> BridgeClient:
    return BridgeClient(live_bridge)


@pytest.fixture
def seller(dev_node) -> Wallet:
    """A wallet holding 1000 RTC on the dev node."""
    wallet = Wallet.generate()
    dev_node.fund(wallet.address, "1000")
    return wallet


@pytest.fixture
def buyer(dev_node) -> Wallet:
    """A wallet holding 1000 RTC on the dev node (it sells RTC in buy-order matches)."""
    wallet = Wallet.generate()
    dev_node.fund(wallet.address, "1000")
    return wallet
