"""Fixtures of the seeded simulation: the shared dev node and bridge (tests/conftest.py,
whose ``node_db_path`` the checks read), with a 1 s node read timeout (a ``timeout_after``
fault then costs a second).

The money-path checks are shared with the fault matrix (``tests/faults/ledger_checks.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "faults"))

from otc_bridge.config import Config  # noqa: E402

NODE_READ_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def bridge_config(bridge_config) -> Config:
    """The shared bridge (tests/conftest.py), with a 1 s node read timeout."""
    return bridge_config.replace(node_read_timeout_seconds=NODE_READ_TIMEOUT_SECONDS)
