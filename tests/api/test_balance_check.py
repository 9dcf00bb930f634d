"""A sell create or a buy-order match by a wallet that cannot pay the escrow (reward + the node's
5 % fee) is refused with the reference's 400 before anything is written or any escrow call is
made; an unusable balance answer is a 502/503 with nothing written."""

from __future__ import annotations

import pytest
from api_checks import snapshot
from bridge_support import BUYER_ETH, SELLER_ETH

from otc_bridge.client import Wallet

HINT = "The escrow locks the amount plus the node's 5% platform fee"


def _unsigned_rows(state: dict) -> dict:
    """The watched tables without ``used_signatures``: a verified signature is burned even when
    the request is then refused (docs/protocol.md §3.2), so that table does change."""
    return {k: v for k, v in state["tables"].items() if k != "used_signatures"}


def _signatures(bridge) -> int:
    return bridge.db.read_one("SELECT COUNT(*) FROM used_signatures")[0]


def _wallet(dev_node, rtc: str | None) -> Wallet:
    wallet = Wallet.generate()
    if rtc is not None:
        dev_node.fund(wallet.address, rtc)
    return wallet


def _sell(api, wallet: Wallet, amount_micro_rtc: int = 10_000_000):
    return api.create_order(wallet, side="sell", pair="RTC/USDC", amount_micro_rtc=amount_micro_rtc,
                            price_nano_quote=50_000_000, eth_address=SELLER_ETH)


@pytest.mark.parametrize("funded, balance_micro_rtc", [(None, 0), ("10", 10_000_000), ("10.499999", 10_499_999)])
def test_sell_create_without_reward_plus_fee_is_refused_before_any_write(api, bridge, dev_node, funded,
                                                                         balance_micro_rtc):
    poor = _wallet(dev_node, funded)
    before = snapshot(bridge, dev_node)
    status, body = _sell(api, poor)
    assert (status, body) == (400, {
        "error": "Insufficient RTC balance", "balance_rtc": balance_micro_rtc / 1e6, "required_rtc": 10.5,
        "balance_micro_rtc": balance_micro_rtc, "required_micro_rtc": 10_500_000, "hint": HINT})
    after = snapshot(bridge, dev_node)
    assert _unsigned_rows(after) == _unsigned_rows(before)  # no order, event, outbox row
    assert (after["jobs"], after["balances"], after["pending"]) == (before["jobs"], before["balances"],
                                                                   before["pending"])
    assert _signatures(bridge) == 1


def test_sell_create_with_exactly_reward_plus_fee_locks(api, dev_node):
    exact = _wallet(dev_node, "10.5")
    status, body = _sell(api, exact)
    assert status == 201, body
    assert dev_node.balance(exact.address) == 0


def test_buy_create_needs_no_rtc(api, dev_node):
    status, body = api.create_order(_wallet(dev_node, None), side="buy", pair="RTC/USDC",
                                    amount_micro_rtc=10_000_000, price_nano_quote=50_000_000)
    assert status == 201, body


NO_ANSWER = "Escrow node did not answer the balance check; nothing was changed, retry"


@pytest.mark.parametrize("fault, status, error", [
    ({"kind": "error_5xx", "status": 502}, 502, NO_ANSWER),
    ({"kind": "drop_before"}, 502, NO_ANSWER),
    ({"kind": "rate_limit"}, 503, "Escrow node is rate limiting; nothing was changed, retry later"),
])
def test_unusable_balance_answer_writes_nothing(api, bridge, dev_node, seller, fault, status, error):
    dev_node.add_fault(endpoint="GET /wallet/balance", **fault)
    before = snapshot(bridge, dev_node)
    got, body = _sell(api, seller)
    assert (got, body["error"]) == (status, error), body
    if status == 503:
        assert body["retry_after_seconds"] >= 1
    after = snapshot(bridge, dev_node)
    assert _unsigned_rows(after) == _unsigned_rows(before)
    assert after["jobs"] == before["jobs"] == {}


def test_buy_match_by_a_taker_without_reward_plus_fee_is_refused_before_any_write(api, bridge, dev_node, buyer):
    status, made = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                    price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, made
    taker = _wallet(dev_node, "5.2")
    before = snapshot(bridge, dev_node)
    status, body = api.match(taker, made["order_id"], SELLER_ETH)
    assert (status, body) == (400, {
        "error": "Insufficient RTC balance to fill this buy order", "balance_rtc": 5.2, "required_rtc": 5.25,
        "balance_micro_rtc": 5_200_000, "required_micro_rtc": 5_250_000, "hint": HINT})
    after = snapshot(bridge, dev_node)
    assert _unsigned_rows(after) == _unsigned_rows(before)
    assert after["jobs"] == {}
    order = bridge.db.read_one("SELECT status, order_version, taker_wallet FROM orders")
    assert tuple(order) == ("open", made["order_version"], None)


def test_sell_match_needs_no_rtc_from_the_taker(api, dev_node, seller):
    status, made = _sell(api, seller)
    assert status == 201, made
    status, body = api.match(_wallet(dev_node, None), made["order_id"], BUYER_ETH)
    assert (status, body["status"]) == (200, "matched"), body
