"""Fixtures of the API tests: a settable bridge clock and extra apps built from the environment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from api_checks import Clock

from otc_bridge.app import create_app
from otc_bridge.config import Config

_ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture
def clock(bridge) -> Clock:
    """Replace the bridge's clock with one the test moves (starts at the real time)."""
    c = Clock(int(time.time()))
    bridge.clock = c
    return c


@pytest.fixture
def bridge_env(request):
    """``tests/conftest.py::bridge_env``: the environment of a test bridge."""
    plugin = request.config.pluginmanager.get_plugin(str(_ROOT_CONFTEST))
    assert plugin is not None, "tests/conftest.py is not loaded"
    return plugin.bridge_env


@pytest.fixture
def make_app(tmp_path, dev_node, bridge_env):
    """Build a separate app (own database) from a test environment: ``drop`` removes
    variables, keyword arguments add or override them. Returns the Flask app."""
    count = 0

    def build(*, drop: tuple[str, ...] = (), **extra: str):
        nonlocal count
        count += 1
        folder = tmp_path / f"app{count}"
        folder.mkdir()
        env = bridge_env(folder, dev_node.url, **extra)
        for name in drop:
            env.pop(name)
        app = create_app(Config.from_env(env))
        app.testing = True
        return app

    return build
