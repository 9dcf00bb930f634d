"""Fixtures for the dev node tests: an app on a temp DB, its test client, a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from devnode_support import ADMIN_KEY, Node
from freezegun import freeze_time

from otc_bridge.dev.node import create_app
from otc_bridge.dev.node.server import DevServer, start_in_thread


@pytest.fixture
def make_app(tmp_path) -> Callable[..., Any]:
    """Build an app on a fresh DB in tmp_path; keyword arguments go to create_app."""

    def build(**kwargs: Any):
        return create_app(str(tmp_path / "devnode.sqlite3"), ADMIN_KEY, **kwargs)

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def node(client) -> Node:
    return Node(client)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], DevServer]]:
    """Start apps on 127.0.0.1 free ports; every server is shut down after the test."""
    servers: list[DevServer] = []

    def start(app) -> DevServer:
        server = start_in_thread(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def live(app, serve) -> DevServer:
    return serve(app)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    """Stop the wall clock, for tests that compare exact node times (test client only)."""
    # Frozen at the current instant so pytest's own timings stay sane.
    with freeze_time(datetime.now(UTC), ignore=["_pytest"]):
        yield
