"""Fixtures for the outbox tests: receivers on 127.0.0.1 and a node-less bridge."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from outbox_support import Receiver, migrate  # noqa: E402

from otc_bridge import crashpoints  # noqa: E402
from otc_bridge.config import Config  # noqa: E402
from otc_bridge.context import Bridge  # noqa: E402
from otc_bridge.storage.db import Database  # noqa: E402


@pytest.fixture
def make_receiver() -> Iterator:
    """``make_receiver(status=200)`` starts a receiver; all are stopped after the test."""
    started: list[Receiver] = []

    def make(status: int = 200) -> Receiver:
        receiver = Receiver(status).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.stop()


@pytest.fixture
def receiver(make_receiver) -> Receiver:
    return make_receiver()


@pytest.fixture
def local(tmp_path) -> Bridge:
    """A bridge with only a database and settings (the outbox never calls the node).

    Short webhook timeouts keep failure tests quick; tests set webhooks with
    ``local.config = local.config.replace(...)``.
    """
    db = Database(str(tmp_path / "outbox.db"), synchronous="NORMAL")
    db.migrate()
    migrate(db)
    config = Config(db_path=db.path, webhook_connect_timeout_seconds=1.0, webhook_read_timeout_seconds=1.0,
                    outbox_max_attempts=5)
    return Bridge(config=config, db=db, node=None)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_crash_hook() -> Iterator[None]:
    yield
    crashpoints.set_hook(None)
