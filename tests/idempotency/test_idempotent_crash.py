"""Crash points between a request's effect and its stored answer (in process).

``dies_at(point)`` stops the request at an ``otc_bridge.crashpoints`` point as a process death
would: nothing after it runs, so the reservation stays ``in_flight`` without an answer. A
retry before the reservation is stale is 409; after it, the route's recovery answers from
the order's state (or runs the request again when nothing happened), and the reconciler
finishes whatever the crash left, with nothing written twice on the node.
"""

from __future__ import annotations

import hashlib

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH
from idem_support import (
    SimulatedCrash,
    cancel_body,
    count,
    create_body,
    dies_at,
    match_body,
    new_key,
    post,
    replayed,
    rows,
    stale_after,
)

from otc_bridge.api.idempotency import HEADER, IN_PROGRESS
from otc_bridge.settlement import reconcile


def _retry_in_flight_is_409(client, path, body, key):
    response = post(client, path, body, key)
    assert response.status_code == 409, response.get_json()
    assert response.get_json() == {"error": IN_PROGRESS, "field": HEADER, "retry_after_seconds": 2}
    assert response.headers["Retry-After"] == "2"


def _reconcile_until_settled(bridge, clock, dev_node):
    clock.advance(bridge.config.settlement_stuck_seconds + 1)
    for _ in range(3):
        reconcile.run_once(bridge)
    dev_node.assert_conserved()


@pytest.mark.parametrize("point", ["after_commit:locking", "after:create_job", "after:claim", "after_commit:open"])
def test_sell_create_dying_after_its_order_was_written(http_client, bridge, clock, seller, dev_node, point):
    key, body = new_key(), create_body(seller, "sell", timestamp=clock.now)
    with dies_at(point):
        post(http_client, "/api/orders", body, key)
    (row,) = rows(bridge)
    order_id = bridge.db.read_one("SELECT order_id FROM orders")[0]
    assert (row["state"], row["order_id"]) == ("in_flight", order_id)  # linked in the intent's transaction
    _retry_in_flight_is_409(http_client, "/api/orders", body, key)

    clock.advance(stale_after(bridge))
    answer = post(http_client, "/api/orders", body, key)
    status = bridge.db.read_one("SELECT status FROM orders")[0]
    if status == "open":
        # The preimage was kept with the key before the order was written: the retry gets it.
        assert answer.status_code == 201 and not replayed(answer), answer.get_json()
        secret, htlc_hash = answer.get_json()["htlc_secret"], answer.get_json()["htlc_hash"]
        assert hashlib.sha256(bytes.fromhex(secret)).hexdigest() == htlc_hash
        again = post(http_client, "/api/orders", body, key)
        assert (again.status_code, replayed(again), again.get_data()) == (201, True, answer.get_data())
    else:  # still locking: the reconciler refunds it whatever the trader holds
        assert answer.status_code == 409 and not replayed(answer)
        assert answer.get_json() | {"error": ""} == {"error": "", "field": HEADER, "order_id": order_id,
                                                     "status": status, "htlc_secret_lost": True}
        assert "htlc_secret" not in answer.get_json()
        again = post(http_client, "/api/orders", body, key)
        assert (again.status_code, replayed(again), again.get_data()) == (409, True, answer.get_data())
    assert count(bridge, "orders") == 1

    if status == "open":  # the seller follows the answer's advice
        cancel = post(http_client, f"/api/orders/{order_id}/cancel",
                      cancel_body(seller, order_id, timestamp=clock.now), new_key())
        assert cancel.status_code == 200, cancel.get_json()
    _reconcile_until_settled(bridge, clock, dev_node)
    assert bridge.db.read_one("SELECT status FROM orders")[0] == "cancelled"
    assert dev_node.balance(seller.address) == 1000 * 10**6  # every micro-RTC back, fee included


def test_create_dying_before_its_order_is_run_again(http_client, bridge, clock, seller, monkeypatch):
    """No order row: nothing happened but the burnt signature. The retry runs the create
    again: the same bytes are refused (single-use signature, not stored), a re-signed one creates."""
    from otc_bridge.storage import orders

    real = orders.insert_order

    def dies(*args, **kwargs):
        raise SimulatedCrash("before the order row")

    key, body = new_key(), create_body(seller, "sell", timestamp=clock.now)
    monkeypatch.setattr(orders, "insert_order", dies)
    with pytest.raises(SimulatedCrash):
        post(http_client, "/api/orders", body, key)
    monkeypatch.setattr(orders, "insert_order", real)
    assert rows(bridge)[0]["order_id"] is None and count(bridge, "orders") == 0
    clock.advance(stale_after(bridge))
    assert post(http_client, "/api/orders", body, key).get_json() == {"error": "wallet_auth_replayed"}
    assert rows(bridge) == []  # a refused credential keeps nothing
    made = post(http_client, "/api/orders", create_body(seller, "sell", timestamp=clock.now), key)
    assert made.status_code == 201 and made.get_json()["htlc_secret"]
    assert count(bridge, "orders") == 1


def test_buy_create_dying_after_commit_is_answered_from_the_order(http_client, bridge, clock, buyer):
    key, body = new_key(), create_body(buyer, "buy", timestamp=clock.now)
    with dies_at("after_commit:open"):
        post(http_client, "/api/orders", body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, "/api/orders", body, key)
    assert answer.status_code == 201, answer.get_json()
    order = answer.get_json()
    assert (order["side"], order["status"], order["maker_wallet"]) == ("buy", "open", buyer.address)
    assert "htlc_secret" not in order and count(bridge, "orders") == 1
    again = post(http_client, "/api/orders", body, key)
    assert (again.status_code, replayed(again), again.get_data()) == (201, True, answer.get_data())


def _open_sell(client, clock, seller):
    made = post(client, "/api/orders", create_body(seller, "sell", timestamp=clock.now))
    assert made.status_code == 201
    return made.get_json()


def test_sell_match_dying_after_commit_is_answered_from_the_order(http_client, bridge, clock, seller, buyer):
    order_id = _open_sell(http_client, clock, seller)["order_id"]
    key, body = new_key(), match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now)
    path = f"/api/orders/{order_id}/match"
    with dies_at("after_commit:matched"):
        post(http_client, path, body, key)
    _retry_in_flight_is_409(http_client, path, body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, body, key)
    assert answer.status_code == 200, answer.get_json()
    got = answer.get_json()
    assert (got["status"], got["taker_wallet"]) == ("matched", buyer.address)
    assert got["settlement_instructions"]["rtc_recipient"] == buyer.address


def test_sell_match_dying_before_its_effect_runs_again(http_client, bridge, clock, seller, buyer):
    order_id = _open_sell(http_client, clock, seller)["order_id"]
    key, path = new_key(), f"/api/orders/{order_id}/match"
    with dies_at("after:get_job"):  # the escrow check before the match's CAS
        post(http_client, path, match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now), key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now), key)
    assert (answer.status_code, answer.get_json()["status"]) == (200, "matched")


@pytest.mark.parametrize("point", ["after_commit:locking", "after:claim", "after_commit:matched"])
def test_buy_match_dying_keeps_or_safely_loses_the_takers_secret(http_client, bridge, clock, seller, buyer,
                                                                  dev_node, point):
    made = post(http_client, "/api/orders", create_body(buyer, "buy", timestamp=clock.now))
    order_id = made.get_json()["order_id"]
    key, body = new_key(), match_body(seller, order_id, SELLER_ETH, timestamp=clock.now)
    path = f"/api/orders/{order_id}/match"
    with dies_at(point):
        post(http_client, path, body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, body, key)
    if point == "after_commit:matched":
        # The taker's preimage was kept with the key before the match was written: the retry gets it.
        got = answer.get_json()
        assert answer.status_code == 200 and got["status"] == "matched", got
        assert hashlib.sha256(bytes.fromhex(got["htlc_secret"])).hexdigest() == got["htlc_hash"]
        return
    assert answer.status_code == 409 and answer.get_json()["htlc_secret_lost"] is True, answer.get_json()
    if answer.get_json()["status"] == "matched":  # nobody holds the preimage: the match unwinds at settle_by
        clock.advance(bridge.config.settle_window_seconds)
    _reconcile_until_settled(bridge, clock, dev_node)
    assert bridge.db.read_one("SELECT status, taker_wallet FROM orders WHERE order_id = ?", (order_id,))[:] == \
        ("open", None)
    assert dev_node.balance(seller.address) == 1000 * 10**6


@pytest.mark.parametrize("point, status", [("before:deliver", "settling"),
                                           ("after_commit:payout_pending", "payout_pending")])
def test_confirm_dying_after_its_claim_is_answered_from_the_order(http_client, bridge, clock, seller, buyer,
                                                                 dev_node, point, status):
    sell = _open_sell(http_client, clock, seller)
    order_id = sell["order_id"]
    assert post(http_client, f"/api/orders/{order_id}/match",
                match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now)).status_code == 200
    key, body, path = new_key(), {"secret": sell["htlc_secret"], "quote_tx": "0xabc"}, f"/api/orders/{order_id}/confirm"
    with dies_at(point):
        post(http_client, path, body, key)
    _retry_in_flight_is_409(http_client, path, body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, body, key)
    assert (answer.status_code, answer.get_json()["status"]) == (200, status)
    assert answer.get_json()["rtc_recipient"] == buyer.address
    _reconcile_until_settled(bridge, clock, dev_node)
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert bridge.db.read_one("SELECT status FROM orders")[0] == "completed"


def test_confirm_dying_before_its_claim_runs_again(http_client, bridge, clock, seller, buyer, monkeypatch):
    """A confirm that died before it claimed the settlement changed nothing: the retry runs it."""
    from otc_bridge.trading import confirm

    sell = _open_sell(http_client, clock, seller)
    order_id = sell["order_id"]
    post(http_client, f"/api/orders/{order_id}/match", match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now))
    key, body, path = new_key(), {"secret": sell["htlc_secret"], "quote_tx": "0xabc"}, f"/api/orders/{order_id}/confirm"
    real = confirm.confirm_order

    def dies(*args, **kwargs):
        raise SimulatedCrash("before the claim")

    monkeypatch.setattr(confirm, "confirm_order", dies)
    with pytest.raises(SimulatedCrash):
        post(http_client, path, body, key)
    monkeypatch.setattr(confirm, "confirm_order", real)
    assert bridge.db.read_one("SELECT status FROM orders")[0] == "matched"
    _retry_in_flight_is_409(http_client, path, body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, body, key)
    assert (answer.status_code, answer.get_json()["status"]) == (200, "payout_pending")


def test_cancel_dying_after_commit_is_answered_from_the_order(http_client, bridge, clock, seller, dev_node):
    order_id = _open_sell(http_client, clock, seller)["order_id"]
    key, body, path = new_key(), cancel_body(seller, order_id, timestamp=clock.now), f"/api/orders/{order_id}/cancel"
    with dies_at("after_commit:refund_pending"):
        post(http_client, path, body, key)
    clock.advance(stale_after(bridge))
    answer = post(http_client, path, body, key)
    assert answer.status_code == 200, answer.get_json()
    assert (answer.get_json()["status"], answer.get_json()["escrow_refunded"]) == ("refund_pending", False)
    _reconcile_until_settled(bridge, clock, dev_node)
    assert bridge.db.read_one("SELECT status FROM orders")[0] == "cancelled"


def test_an_unexpected_error_leaves_the_key_for_an_immediate_retry(http_client, bridge, clock, seller, buyer,
                                                                  monkeypatch):
    """A 500 is an unknown outcome: the reservation is abandoned (stale at once), so the retry
    decides from the order's state instead of replaying a 500 or waiting."""
    from otc_bridge.trading import confirm

    sell = _open_sell(http_client, clock, seller)
    order_id = sell["order_id"]
    post(http_client, f"/api/orders/{order_id}/match", match_body(buyer, order_id, BUYER_ETH, timestamp=clock.now))
    real = confirm.confirm_order

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(confirm, "confirm_order", broken)
    key, body, path = new_key(), {"secret": sell["htlc_secret"], "quote_tx": "0xabc"}, f"/api/orders/{order_id}/confirm"
    failed = post(http_client, path, body, key)
    assert (failed.status_code, failed.get_json()) == (500, {"error": "Internal server error"})
    assert rows(bridge)[0]["locked_at"] == 0
    monkeypatch.setattr(confirm, "confirm_order", real)
    answer = post(http_client, path, body, key)  # no clock move needed
    assert (answer.status_code, answer.get_json()["status"]) == (200, "payout_pending")
