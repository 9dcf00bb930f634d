"""Fixtures of the Idempotency-Key tests: a settable bridge clock."""

from __future__ import annotations

import pytest
from idem_support import Clock, wall_clock_start


@pytest.fixture
def clock(bridge) -> Clock:
    """Replace the bridge's clock with one the test moves (starts at the real time)."""
    c = Clock(wall_clock_start())
    bridge.clock = c
    return c
