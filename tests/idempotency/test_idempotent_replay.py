"""Idempotency-Key on the trading POSTs: a retry gets the first answer, once per effect.

Every test runs against a dev node over HTTP (escrow jobs really are created), through the
Flask test client; the bridge fixture checks history and invariants when the test ends.
"""

from __future__ import annotations

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH
from idem_support import (
    cancel_body,
    count,
    create_body,
    match_body,
    new_key,
    post,
    replayed,
    rows,
)

from otc_bridge.api.idempotency import HEADER, INVALID_KEY, KEY_REUSED


def _sell(client, clock, seller, key=None):
    response = post(client, "/api/orders", create_body(seller, "sell", timestamp=clock.now), key)
    assert response.status_code == 201, response.get_json()
    return response


def test_sell_create_retried_gets_the_same_answer_and_secret_once_per_order(http_client, bridge, clock, seller,
                                                                           dev_node):
    key = new_key()
    body = create_body(seller, "sell", timestamp=clock.now)
    first = post(http_client, "/api/orders", body, key)
    assert first.status_code == 201 and not replayed(first)
    jobs_before = dev_node.state()["jobs_by_status"]
    clock.advance(3600)  # long after the signature's 300 s window: a replay needs no fresh signature
    again = post(http_client, "/api/orders", body, key)
    assert again.status_code == 201 and replayed(again)
    assert again.get_data() == first.get_data()
    assert again.get_json()["htlc_secret"] == first.get_json()["htlc_secret"]
    assert count(bridge, "orders") == 1
    assert dev_node.state()["jobs_by_status"] == jobs_before  # no second escrow


def test_a_retry_may_be_signed_again(http_client, bridge, clock, seller):
    key = new_key()
    first = post(http_client, "/api/orders", create_body(seller, "sell", timestamp=clock.now), key)
    clock.advance(10)
    again = post(http_client, "/api/orders", create_body(seller, "sell", timestamp=clock.now), key)
    assert (again.status_code, replayed(again)) == (201, True)
    assert again.get_json() == first.get_json()
    assert count(bridge, "orders") == 1


def test_same_key_with_another_body_is_422_and_changes_nothing(http_client, bridge, clock, seller):
    key = new_key()
    _sell(http_client, clock, seller, key)
    before = (count(bridge, "orders"), count(bridge, "used_signatures"), rows(bridge))
    other = post(http_client, "/api/orders", create_body(seller, "sell", timestamp=clock.now, amount=20_000_000), key)
    assert other.status_code == 422
    assert other.get_json() == {"error": KEY_REUSED, "field": HEADER}
    assert (count(bridge, "orders"), count(bridge, "used_signatures"), rows(bridge)) == before


def test_same_key_on_another_route_is_422(http_client, bridge, clock, seller):
    key = new_key()
    order_id = _sell(http_client, clock, seller, key).get_json()["order_id"]
    cancel = post(http_client, f"/api/orders/{order_id}/cancel", cancel_body(seller, order_id, timestamp=clock.now),
                  key)
    assert (cancel.status_code, cancel.get_json()["field"]) == (422, HEADER)
    assert bridge.db.read_one("SELECT status FROM orders")[0] == "open"


def test_a_key_belongs_to_its_wallet(http_client, bridge, clock, seller, buyer):
    key = new_key()
    _sell(http_client, clock, seller, key)
    theirs = post(http_client, "/api/orders", create_body(buyer, "sell", timestamp=clock.now), key)
    assert theirs.status_code == 201 and not replayed(theirs)
    assert count(bridge, "orders") == 2 and len(rows(bridge)) == 2


def test_a_refused_signature_reserves_nothing(http_client, bridge, clock, seller, buyer):
    key = new_key()
    forged = create_body(seller, "sell", timestamp=clock.now)
    forged["wallet_auth"] = create_body(buyer, "sell", timestamp=clock.now)["wallet_auth"]  # another key's signature
    assert post(http_client, "/api/orders", forged, key).status_code == 401
    assert rows(bridge) == []
    assert _sell(http_client, clock, seller, key).status_code == 201


def test_a_stale_signature_is_refused_by_the_service_and_not_stored(http_client, bridge, clock, seller):
    key = new_key()
    old = create_body(seller, "sell", timestamp=clock.now - 1000)
    response = post(http_client, "/api/orders", old, key)
    assert (response.status_code, response.get_json()) == (401, {"error": "wallet_auth_timestamp_expired"})
    assert rows(bridge) == []


@pytest.mark.parametrize("value", ["", " ", "a" * 256, "caf\u00e9", "tab\there", "line\x7f"],
                         ids=["empty", "blank", "too_long", "latin1", "tab", "del"])
def test_a_malformed_key_is_400_naming_the_header(http_client, bridge, clock, seller, value):
    response = post(http_client, "/api/orders", create_body(seller, "sell", timestamp=clock.now), value)
    assert (response.status_code, response.get_json()) == (400, {"error": INVALID_KEY, "field": HEADER})
    assert count(bridge, "orders") == 0 and count(bridge, "used_signatures") == 0


@pytest.mark.parametrize("value", ["a", "a" * 255, "order 42 / try #1 ~ {x}"])
def test_keys_of_1_to_255_printable_characters_are_taken(http_client, clock, seller, value):
    assert _sell(http_client, clock, seller, value).status_code == 201


def test_input_errors_are_answered_before_any_reservation(http_client, bridge, clock, seller):
    key = new_key()
    body = create_body(seller, "sell", timestamp=clock.now) | {"ttl_seconds": 60}
    assert post(http_client, "/api/orders", body, key).status_code == 400
    assert rows(bridge) == []


def test_buy_order_match_returns_the_takers_secret_again(http_client, bridge, clock, seller, buyer):
    made = post(http_client, "/api/orders", create_body(buyer, "buy", timestamp=clock.now), new_key())
    order_id = made.get_json()["order_id"]
    key, body = new_key(), match_body(seller, order_id, SELLER_ETH, timestamp=clock.now)
    first = post(http_client, f"/api/orders/{order_id}/match", body, key)
    assert first.status_code == 200 and first.get_json()["htlc_secret"]
    again = post(http_client, f"/api/orders/{order_id}/match", body, key)
    assert (again.status_code, replayed(again), again.get_data()) == (200, True, first.get_data())


def test_confirm_and_cancel_replay(http_client, bridge, clock, seller, buyer, dev_node):
    sell = _sell(http_client, clock, seller).get_json()
    order_id, secret = sell["order_id"], sell["htlc_secret"]
    assert post(http_client, f"/api/orders/{order_id}/match",
                match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now)).status_code == 200
    key, body = new_key(), {"secret": secret, "quote_tx": "0xabc"}
    first = post(http_client, f"/api/orders/{order_id}/confirm", body, key)
    assert (first.status_code, first.get_json()["status"]) == (200, "payout_pending")
    assert dev_node.confirm_pending() >= 1
    again = post(http_client, f"/api/orders/{order_id}/confirm", body, key)
    assert (again.status_code, replayed(again), again.get_data()) == (200, True, first.get_data())
    # Without the key the confirm runs: the order has moved on.
    assert post(http_client, f"/api/orders/{order_id}/confirm", body).status_code == 409

    clock.advance(1)  # two identical creates signed in one second are one message
    other = _sell(http_client, clock, seller).get_json()["order_id"]
    key, body = new_key(), cancel_body(seller, other, timestamp=clock.now)
    first = post(http_client, f"/api/orders/{other}/cancel", body, key)
    assert first.status_code == 200
    again = post(http_client, f"/api/orders/{other}/cancel", body, key)
    assert (again.status_code, replayed(again), again.get_data()) == (200, True, first.get_data())


def test_a_confirm_key_is_scoped_to_its_order(http_client, bridge, clock, seller):
    """The same key on two orders' confirms is two requests (each order's preimage holder)."""
    key = new_key()
    for _ in range(2):
        clock.advance(1)
        order_id = _sell(http_client, clock, seller).get_json()["order_id"]
        response = post(http_client, f"/api/orders/{order_id}/confirm", {"secret": "00" * 32, "quote_tx": "0x1"}, key)
        assert response.status_code == 409 and not replayed(response)  # not matched: stored as answered
    assert len(rows(bridge)) == 2


def test_stored_answers_keep_no_secret_in_the_clear(http_client, bridge, clock, seller):
    key = new_key()
    secret = _sell(http_client, clock, seller, key).get_json()["htlc_secret"]
    (row,) = rows(bridge)
    assert row["state"] == "done" and row["status_code"] == 201
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert secret.encode() not in stored and key.encode() not in stored and seller.address.encode() not in stored


def test_the_order_link_is_the_keyed_creates_only(http_client, bridge, clock, seller, buyer):
    """A create's reservation names its order (written in the intent's transaction); the link
    is cleared after the request, so a later create on the same connection links nothing."""
    key = new_key()
    first = _sell(http_client, clock, seller, key).get_json()["order_id"]
    assert rows(bridge)[0]["order_id"] == first
    conn = bridge.db.connection()  # the test client serves requests on this thread's connection
    assert conn.execute("SELECT COUNT(*) FROM temp.idempotency_link").fetchone()[0] == 0
    post(http_client, "/api/orders", create_body(buyer, "buy", timestamp=clock.now))
    assert [r["order_id"] for r in rows(bridge)] == [first] and count(bridge, "orders") == 2
