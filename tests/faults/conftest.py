"""Fixtures of the fault matrix: the shared dev node and bridge (tests/conftest.py, whose
``node_db_path`` the checks read), with a 1 s node read timeout, so a ``timeout_after`` fault
costs about a second instead of the suite's usual five."""

from __future__ import annotations

import pytest

from otc_bridge.config import Config

NODE_READ_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def bridge_config(bridge_config) -> Config:
    """The shared bridge (tests/conftest.py), with a 1 s node read timeout."""
    return bridge_config.replace(node_read_timeout_seconds=NODE_READ_TIMEOUT_SECONDS)
