"""The two backends of the node contract suite: the stateful fake and a live dev node.

The ``backend`` fixture is parametrised, so every test in this directory runs once against
``FakeEscrowNode`` on the ``responses`` edge and once against the dev node served over HTTP
on 127.0.0.1. A test only talks to the node through ``EscrowNodeClient``; what it needs
behind the node's back (minting, forcing a TTL past, injecting a fault) goes through the
backend, which maps it onto the fake's methods or the dev node's ``/dev/*`` routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses
from node_fakes import FakeEscrowNode

from otc_bridge.dev.node import create_app
from otc_bridge.dev.node.server import start_in_thread
from otc_bridge.node.client import EscrowNodeClient

ADMIN_KEY = "contract-suite-admin-key-0123456789abcdef"
FAKE_BASE_URL = "http://127.0.0.1:8099"  # never opened: responses answers every request


class Backend:
    """One node the suite runs against: a client factory plus the test's back door."""

    name = "?"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def client(self, admin_key: str | None = ADMIN_KEY, *, path: str = "",
               **options: Any) -> EscrowNodeClient:
        """A fresh client of this node; ``path`` is appended to the base URL (a misconfigured
        node URL), ``options`` go to EscrowNodeClient."""
        return EscrowNodeClient(self.base_url + path, admin_key=admin_key, **options)

    def fund(self, wallet: str, amount_i64: int) -> None:
        """Mint ``amount_i64`` micro-RTC into ``wallet``."""
        raise NotImplementedError

    def expire(self, job_id: str) -> None:
        """Put the job's ``expires_at`` one second in the past (lazy expiry then applies)."""
        raise NotImplementedError

    def fault(self, endpoint: str, kind: str, **options: Any) -> None:
        """Make the next call to ``endpoint`` fail as the dev node's fault ``kind`` does."""
        raise NotImplementedError


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, node: FakeEscrowNode) -> None:
        super().__init__(node.base_url)
        self.node = node

    def fund(self, wallet: str, amount_i64: int) -> None:
        self.node.fund(wallet, amount_i64)

    def expire(self, job_id: str) -> None:
        self.node.expire(job_id)

    def fault(self, endpoint: str, kind: str, **options: Any) -> None:
        options.pop("latency_ms", None)  # the fake raises the timeout at once
        self.node.add_fault(endpoint, kind, **options)


class DevNodeBackend(Backend):
    name = "devnode"

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.http = requests.Session()

    def _dev(self, path: str, body: Any) -> None:
        response = self.http.post(self.base_url + path, json=body, timeout=10)
        assert response.status_code == 200, response.text

    def fund(self, wallet: str, amount_i64: int) -> None:
        self._dev("/dev/fund", {"wallet": wallet, "amount_rtc": str(Decimal(amount_i64).scaleb(-6))})

    def expire(self, job_id: str) -> None:
        self._dev(f"/dev/jobs/{job_id}/expire", {})

    def fault(self, endpoint: str, kind: str, **options: Any) -> None:
        self._dev("/dev/faults", {"endpoint": endpoint, "kind": kind, "count": 1, **options})


@pytest.fixture(params=["fake", "devnode"])
def backend(request, tmp_path) -> Iterator[Backend]:
    if request.param == "fake":
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            node = FakeEscrowNode(FAKE_BASE_URL, ADMIN_KEY)
            node.install(mock)
            yield FakeBackend(node)
        return
    # Transfers confirmable at once and no admin rate limit (RC_ADMIN_RATE_LIMIT_MAX=0), as
    # in the fake: the suite provokes a 429 with a fault rule instead (docs/escrow-node.md §0).
    app = create_app(str(tmp_path / "devnode.sqlite3"), ADMIN_KEY, confirm_delay_seconds=0,
                     admin_rate_limit_max=0)
    server = start_in_thread(app)
    dev_node = DevNodeBackend(server.url)
    yield dev_node
    dev_node.http.close()
    server.shutdown()


@pytest.fixture
def node(backend) -> EscrowNodeClient:
    """The client every contract test drives, with the node's admin key."""
    return backend.client()
