"""Fixtures of the operator-tool tests: the test bridge with short node timeouts, and its
environment (for the CLI, which builds its own bridge on the same files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from otc_bridge.config import Config

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture
def bridge_env_vars(request, tmp_path, dev_node) -> dict[str, str]:
    """``tests/conftest.py::bridge_env`` for this test, with a 2 s node read timeout so a
    node fault of kind ``timeout_after`` costs little."""
    plugin = request.config.pluginmanager.get_plugin(str(_ROOT_CONFTEST))
    assert plugin is not None, "tests/conftest.py is not loaded"
    return plugin.bridge_env(tmp_path, dev_node.url, OTC_NODE_TIMEOUT_SECONDS="2")


@pytest.fixture
def bridge_config(bridge_env_vars) -> Config:
    """Overrides the root fixture: the ``bridge`` (and ``api``) of these tests use it."""
    return Config.from_env(bridge_env_vars)
