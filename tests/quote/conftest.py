"""A bridge watching the dev chain (anvil, started once per session by ``chain_support``),
beside a fresh dev escrow node; each test runs inside a chain snapshot that is reverted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bridge_support import bridge_env, broken_orders, check_history
from chain_support import dev_chain, evm  # noqa: F401  (fixtures)

from otc_bridge.app import build_bridge
from otc_bridge.config import Config
from otc_bridge.context import Bridge


@pytest.fixture
def bridge_config(tmp_path, dev_node, evm) -> Config:  # noqa: F811  (evm is a fixture)
    """The test bridge's settings plus the dev chain's (confirmations 0: anvil mines on demand)."""
    return Config.from_env(bridge_env(tmp_path, dev_node.url, **evm.env()))


@pytest.fixture
def bridge(bridge_config, evm) -> Iterator[Bridge]:  # noqa: F811
    """The bridge on the chain's clock: tests move chain time, and the watcher compares
    block times with the order's match times. History and invariants checked at the end."""
    b = build_bridge(bridge_config, clock=evm.latest_timestamp)
    yield b
    check_history(b.db)
    assert broken_orders(b.db.connection()) == {}
