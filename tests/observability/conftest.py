"""Fixtures of the observability tests: fast streams (short poll and heartbeat, three
slots) and the ``heartbeats`` table on the test bridge's database."""

from __future__ import annotations

import pytest

from otc_bridge.storage import heartbeats


@pytest.fixture
def bridge_config(bridge_config):
    """The test bridge's settings with streams that poll every 50 ms, beat every 200 ms and
    allow three clients."""
    return bridge_config.replace(stream_poll_seconds=0.05, stream_heartbeat_seconds=0.2, stream_max_clients=3)


@pytest.fixture
def bridge(bridge):
    """The test bridge, its database given the ``heartbeats`` table (a no-op once the schema
    migration that creates it exists)."""
    bridge.db.connection().execute(heartbeats.HEARTBEATS_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
    return bridge


@pytest.fixture
def hub(bridge_app):
    """The live app's stream hub."""
    return bridge_app.extensions["otc_stream"]
