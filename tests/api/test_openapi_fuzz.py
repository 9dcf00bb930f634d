"""Schemathesis runs ``/openapi.json`` against the live app (a dev node behind it).

Every documented operation but the endless ``/api/stream`` gets a fixed budget of generated
requests (``MAX_EXAMPLES`` each, plus the explicit and boundary cases Schemathesis derives from
the schemas). Checked on every answer: no 5xx from an internal error, the status is documented,
the media type is the documented one, and the body matches the status's schema. Path
parameters are swapped half of the time for real orders (open, matched, completed) and a real
wallet, so the POSTs also reach the services and not only their 404. Afterwards the bridge
fixture checks the database: every transition in the table, versions without gaps, every
order's invariants; and the outbox holds one row per transition.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import schemathesis
from api_checks import complete_sell, create
from bridge_support import ADMIN_TOKEN, BUYER_ETH
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Generated requests per operation (the budget keeps the whole run near a minute on 2 cores).
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api_schema(live_bridge):
    return schemathesis.openapi.from_url(f"{live_bridge}/openapi.json")


@pytest.fixture
def real(api, bridge, dev_node, seller, buyer) -> dict[str, list[str]]:
    """Orders in several states and a wallet with history, for the path parameters."""
    open_sell = create(api, seller, "sell")["order_id"]
    matched = create(api, seller, "sell", amount=2_000_000)["order_id"]
    status, _ = api.match(buyer, matched, BUYER_ETH)
    assert status == 200
    completed = complete_sell(api, bridge, dev_node, seller, buyer, amount=3_000_000)
    open_buy = create(api, buyer, "buy")["order_id"]
    return {"order_id": [open_sell, matched, completed, open_buy], "wallet": [seller.address]}


@pytest.fixture
def answers(bridge, api_schema):
    """The (method, path, status) of every call; once the run is over, the outbox is checked:
    one ``order.<status>`` row per transition event, with its version (the bridge fixture then
    checks transitions, versions and invariants)."""
    seen: list[tuple[str, str, int]] = []
    yield seen
    transitions = bridge.db.read("SELECT order_id, order_version FROM order_events WHERE kind = 'transition'")
    outbox = bridge.db.read("SELECT order_id, order_version FROM outbox WHERE topic LIKE 'order.%'")
    assert sorted(map(tuple, transitions)) == sorted(map(tuple, outbox))
    assert bridge.db.read("SELECT COUNT(*) FROM idempotency_keys WHERE state = 'in_flight'")[0][0] == 0
    paths = api_schema.raw_schema["paths"]
    # The coverage phase also tries undocumented methods (405): only documented operations count.
    documented = [(method, path, status) for method, path, status in seen if method.lower() in paths[path]]
    per_operation = Counter((method, path) for method, path, _ in documented)
    expected = {(method.upper(), path) for path, item in paths.items() for method in item
                if method in ("get", "post") and path not in ("/api/stream", "/openapi.json")}  # (Schemathesis
    # leaves out the document it was loaded from; test_openapi.py reads it)
    assert set(per_operation) == expected, expected - set(per_operation)
    assert {status for *_, status in documented} >= {200, 400, 401, 404, 409}, Counter(
        status for *_, status in documented)


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/stream")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_live_app_answers_as_documented(case, live_bridge, real, answers):
    for name, choices in real.items():
        value = case.path_parameters.get(name) if case.path_parameters else None
        if isinstance(value, str):
            pick = hashlib.sha256(value.encode()).digest()[0]
            if pick % 2:
                case.path_parameters[name] = choices[pick % len(choices)]
    headers = ADMIN if case.path.startswith("/admin/") else None
    response = case.call_and_validate(base_url=live_bridge, headers=headers, checks=CHECKS)
    answers.append((case.method, case.path, response.status_code))
