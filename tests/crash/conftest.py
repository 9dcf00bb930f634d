"""Fixtures of the crash tests: one dev node process per module (scenarios use fresh wallets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bridge_support import NodeHandle
from crash_support import devnode_process


@pytest.fixture(scope="module")
def crash_node(tmp_path_factory) -> Iterator[NodeHandle]:
    """``otc-bridge devnode`` as a real process, shared by a module's scenarios: each scenario
    funds fresh wallets, so its money and jobs are its own (the node is otherwise only read)."""
    with devnode_process(tmp_path_factory.mktemp("crash-node")) as node:
        yield node
