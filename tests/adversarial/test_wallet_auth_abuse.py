"""Hostile use of wallet signatures over real HTTP: replays, self-matching by letter case,
stale timestamps, forged keys (docs/protocol.md §3 "Deliberate differences", §8).

Each test shows the refusal AND that nothing moved: no order row, no consumed signature,
no escrow job, no balance change on the node.
"""

from __future__ import annotations

import time

import pytest
from attack_helpers import SELL_ESCROW, cancel_body, create_body, match_body, order_row, post, transitions
from bridge_support import BUYER_ETH, SELLER_ETH, open_sell

from otc_bridge.client import Wallet

REPLAYED = (401, {"error": "wallet_auth_replayed"})


def _order_count(bridge) -> int:
    return bridge.db.read_one("SELECT COUNT(*) FROM orders")[0]


def _used(bridge, action: str) -> int:
    return bridge.db.read_one("SELECT COUNT(*) FROM used_signatures WHERE action = ?", (action,))[0]


# --- replays ------------------------------------------------------------------------------

def test_replayed_create_is_refused_and_locks_no_second_escrow(api, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    body = create_body(seller)

    first = post(api, "/api/orders", body)
    second = post(api, "/api/orders", body)

    assert first[0] == 201, first
    assert second == REPLAYED
    assert _order_count(bridge) == 1
    assert dev_node.state()["jobs_by_status"] == {"claimed": 1}
    assert dev_node.balance(seller.address) == before - SELL_ESCROW
    dev_node.assert_conserved()


def test_replayed_match_after_a_refused_lock_cannot_lock_the_takers_escrow(api, dev_node, buyer, bridge):
    status, created = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                       price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, created
    order_id = created["order_id"]
    taker = Wallet.generate()
    dev_node.fund(taker.address, "1")  # too little for 5 RTC + fee: the node refuses the taker's job
    body = match_body(taker, order_id, SELLER_ETH)

    status, refused = post(api, f"/api/orders/{order_id}/match", body)
    assert (status, refused["error"]) == (400, "Insufficient RTC balance to fill this buy order"), refused
    assert order_row(bridge, order_id)["status"] == "open"

    dev_node.fund(taker.address, "100")  # now the same signed body would lock the taker's RTC
    replay = post(api, f"/api/orders/{order_id}/match", body)

    assert replay == REPLAYED
    order = order_row(bridge, order_id)
    assert (order["status"], order["taker_wallet"], order["escrow_job_id"]) == ("open", None, None)
    # The refused lock's intent was undone; the replay was refused before any intent.
    assert transitions(bridge, order_id) == [(None, "open"), ("open", "locking"), ("locking", "open")]
    assert dev_node.state()["jobs_by_status"] == {}
    assert dev_node.balance(taker.address) == 101_000_000
    dev_node.assert_conserved()


def test_replayed_match_after_success_changes_nothing(api, dev_node, seller, buyer, bridge):
    order_id, _ = open_sell(api, seller)
    body = match_body(buyer, order_id, BUYER_ETH)
    assert post(api, f"/api/orders/{order_id}/match", body)[0] == 200
    version = order_row(bridge, order_id)["order_version"]

    replay = post(api, f"/api/orders/{order_id}/match", body)

    # Refused: today by the status check (it runs before the signature is consumed).
    assert replay in ((409, {"error": "Order is not open (status: matched)"}), REPLAYED)
    order = order_row(bridge, order_id)
    assert (order["status"], order["taker_wallet"], order["order_version"]) == ("matched", buyer.address, version)
    assert _used(bridge, "match_order") == 1


def test_match_signature_cannot_be_moved_to_another_order(api, dev_node, seller, buyer, bridge):
    signed_for, _ = open_sell(api, seller)
    target, _ = open_sell(api, seller, amount_micro_rtc=20_000_000)
    body = match_body(buyer, signed_for, BUYER_ETH)

    assert post(api, f"/api/orders/{target}/match", body) == (401, {"error": "wallet_auth_invalid_signature"})
    assert order_row(bridge, target)["status"] == "open"
    assert post(api, f"/api/orders/{signed_for}/match", body)[0] == 200  # still usable where it belongs


def test_replayed_cancel_refunds_exactly_once(api, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    body = cancel_body(seller, order_id)

    status, cancelled = post(api, f"/api/orders/{order_id}/cancel", body)
    replay = post(api, f"/api/orders/{order_id}/cancel", body)

    assert (status, cancelled["status"]) == (200, "cancelled")
    assert replay in ((409, {"error": "Can only cancel open orders (current: cancelled)"}), REPLAYED)
    assert dev_node.balance(seller.address) == before
    assert dev_node.state()["jobs_by_status"] == {"cancelled": 1}
    assert transitions(bridge, order_id).count(("refund_pending", "cancelled")) == 1
    dev_node.assert_conserved()


# --- self-match by letter case --------------------------------------------------------------

def _recased(address: str, how: str) -> str:
    hex_part = address[3:]
    if how == "upper":
        return "RTC" + hex_part.upper()
    letters = [i for i, c in enumerate(hex_part) if c.isalpha()]
    flip = set(letters[::2])  # every other letter, starting with the first: always a change
    return "RTC" + "".join(c.upper() if i in flip else c for i, c in enumerate(hex_part))


@pytest.mark.parametrize("how", ["upper", "mixed"])
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_maker_cannot_take_own_order_by_changing_letter_case(side, how, api, dev_node, seller, bridge):
    maker = seller
    if side == "sell":
        order_id, _ = open_sell(api, maker)
    else:
        status, body = api.create_order(maker, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                        price_nano_quote=60_000_000, eth_address=BUYER_ETH)
        assert status == 201, body
        order_id = body["order_id"]
    wallet_as_sent = _recased(maker.address, how)
    assert wallet_as_sent != maker.address
    before = (dict(order_row(bridge, order_id)), dev_node.state())
    body = match_body(maker, order_id, SELLER_ETH, wallet_as_sent=wallet_as_sent)

    assert post(api, f"/api/orders/{order_id}/match", body) == (400, {"error": "Cannot match your own order"})

    assert dict(order_row(bridge, order_id)) == before[0]  # not a single column changed
    after = dev_node.state()
    assert (after["jobs_by_status"], after["balances"]) == (before[1]["jobs_by_status"], before[1]["balances"])
    # The verified signature is burned even though the match was refused: single use means
    # a refused request can never be replayed later (see test_replay_theft.py).
    assert _used(bridge, "match_order") == 1
    assert post(api, f"/api/orders/{order_id}/match", body) == (401, {"error": "wallet_auth_replayed"})


def test_maker_may_cancel_with_any_letter_case(api, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    body = cancel_body(seller, order_id, wallet_as_sent=_recased(seller.address, "upper"))
    status, cancelled = post(api, f"/api/orders/{order_id}/cancel", body)
    assert (status, cancelled["status"], cancelled["maker_wallet"]) == (200, "cancelled", seller.address)


# --- timestamps and forged keys ---------------------------------------------------------------

@pytest.mark.parametrize("skew_seconds", [-301, -3600, 330])
def test_timestamp_outside_300_seconds_is_refused(skew_seconds, api, dev_node, seller, buyer, bridge):
    before = dev_node.balance(seller.address)
    stale = int(time.time()) + skew_seconds
    expired = (401, {"error": "wallet_auth_timestamp_expired"})

    assert post(api, "/api/orders", create_body(seller, timestamp=stale)) == expired
    assert _order_count(bridge) == 0 and dev_node.state()["jobs_by_status"] == {}
    assert dev_node.balance(seller.address) == before

    order_id, _ = open_sell(api, seller)
    match = match_body(buyer, order_id, BUYER_ETH, timestamp=stale)
    cancel = cancel_body(seller, order_id, timestamp=stale)
    assert post(api, f"/api/orders/{order_id}/match", match) == expired
    assert post(api, f"/api/orders/{order_id}/cancel", cancel) == expired
    assert order_row(bridge, order_id)["status"] == "open"
    assert _used(bridge, "match_order") == _used(bridge, "cancel_order") == 0


def test_timestamp_inside_the_window_is_accepted(api, dev_node, seller):
    assert post(api, "/api/orders", create_body(seller, timestamp=int(time.time()) - 240))[0] == 201


def _forge(body: dict, how: str, victim: Wallet) -> dict:
    if how == "victim_key_other_signature":  # claim the victim's key, sign with another
        body["wallet_auth"] = dict(body["wallet_auth"], public_key=victim.public_key_hex)
    return body


FORGERIES = [("other_key", "wallet_auth_public_key_does_not_match_wallet"),
             ("victim_key_other_signature", "wallet_auth_invalid_signature")]


@pytest.mark.parametrize(("how", "code"), FORGERIES)
def test_create_signed_by_another_key_cannot_lock_the_victims_rtc(how, code, api, dev_node, seller, bridge):
    mallory = Wallet.generate()
    before = dev_node.balance(seller.address)
    body = _forge(create_body(seller, signer=mallory), how, seller)

    assert post(api, "/api/orders", body) == (401, {"error": code})
    assert _order_count(bridge) == 0
    assert dev_node.state()["jobs_by_status"] == {}
    assert dev_node.balance(seller.address) == before


@pytest.mark.parametrize(("how", "code"), FORGERIES)
def test_match_and_cancel_signed_by_another_key_change_nothing(how, code, api, dev_node, seller, buyer, bridge):
    mallory = Wallet.generate()
    order_id, _ = open_sell(api, seller)
    before = dict(order_row(bridge, order_id))

    match = _forge(match_body(buyer, order_id, BUYER_ETH, signer=mallory), how, buyer)
    cancel = _forge(cancel_body(seller, order_id, signer=mallory), how, seller)
    assert post(api, f"/api/orders/{order_id}/match", match) == (401, {"error": code})
    assert post(api, f"/api/orders/{order_id}/cancel", cancel) == (401, {"error": code})
    # Mallory signing as herself is authenticated, but not the maker.
    own = post(api, f"/api/orders/{order_id}/cancel", cancel_body(mallory, order_id))
    assert own == (403, {"error": "Only the order creator can cancel"})

    assert dict(order_row(bridge, order_id)) == before
    assert dev_node.job(before["escrow_job_id"])["status"] == "claimed"


def test_tampered_bound_field_breaks_the_signature(api, dev_node, seller, bridge):
    body = create_body(seller)
    body["amount_micro_rtc"] = 900_000_000  # 900 RTC instead of the 10 the seller signed
    assert post(api, "/api/orders", body) == (401, {"error": "wallet_auth_invalid_signature"})
    assert _order_count(bridge) == 0 and dev_node.state()["jobs_by_status"] == {}
