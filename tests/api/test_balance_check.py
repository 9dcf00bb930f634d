"""A sell create or a buy-order match by a wallet that cannot pay the escrow (reward + the node's
5 % fee) is refused with the reference's 400, the node's figures in it: the node's own balance
check at job creation is the check (no balance read first, docs/protocol.md §5). Nothing is held;
the sell attempt ends ``cancelled`` (``escrow_refused``), the buy order goes back on the book."""

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


def _node_calls(dev_node) -> dict:
    return {route: n for route, n in dev_node.get("/dev/stats").json()["requests"].items() if "/dev/" not in route}


@pytest.mark.parametrize("funded, balance_micro_rtc", [(None, 0), ("10", 10_000_000), ("10.499999", 10_499_999)])
def test_sell_create_without_reward_plus_fee_is_refused_by_the_nodes_check(api, bridge, dev_node, funded,
                                                                          balance_micro_rtc):
    poor = _wallet(dev_node, funded)
    before = snapshot(bridge, dev_node)
    status, body = _sell(api, poor)
    assert (status, body) == (400, {
        "error": "Insufficient RTC balance", "balance_rtc": balance_micro_rtc / 1e6, "required_rtc": 10.5,
        "balance_micro_rtc": balance_micro_rtc, "required_micro_rtc": 10_500_000, "hint": HINT})
    after = snapshot(bridge, dev_node)
    # Nothing held anywhere, and the attempt is on record, ended: never on the book.
    assert (after["jobs"], after["balances"], after["pending"]) == (before["jobs"], before["balances"],
                                                                   before["pending"])
    order = bridge.db.read_one("SELECT status, end_cause, escrow_job_id FROM orders")
    assert tuple(order) == ("cancelled", "escrow_refused", None)
    assert _signatures(bridge) == 1
    status, book = api.get("/api/orders", pair="RTC/USDC")
    assert (status, book["orders"]) == (200, [])


def test_a_sell_create_asks_the_node_for_no_balance_and_reads_no_job(api, dev_node, seller):
    """Create + claim prove the lock (docs/protocol.md §5): two node calls, no read-back."""
    calls_before = _node_calls(dev_node)
    status, body = _sell(api, seller)
    assert status == 201, body
    made = {route: n - calls_before.get(route, 0) for route, n in _node_calls(dev_node).items()
            if n != calls_before.get(route, 0)}
    assert made == {"POST /agent/jobs": 1, "POST /agent/jobs/<job_id>/claim": 1}
    assert dev_node.state()["jobs_by_status"] == {"claimed": 1}


def test_sell_create_with_exactly_reward_plus_fee_locks(api, dev_node):
    exact = _wallet(dev_node, "10.5")
    status, body = _sell(api, exact)
    assert status == 201, body
    assert dev_node.balance(exact.address) == 0


def test_buy_create_needs_no_rtc(api, dev_node):
    status, body = api.create_order(_wallet(dev_node, None), side="buy", pair="RTC/USDC",
                                    amount_micro_rtc=10_000_000, price_nano_quote=50_000_000)
    assert status == 201, body


def test_buy_match_by_a_taker_without_reward_plus_fee_is_refused_and_the_order_reopens(api, bridge, dev_node,
                                                                                       buyer):
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
    assert (after["jobs"], after["balances"]) == ({}, before["balances"])
    order = bridge.db.read_one("SELECT status, taker_wallet, escrow_job_id FROM orders")
    assert tuple(order) == ("open", None, None)  # back on the book for another taker


def test_sell_match_needs_no_rtc_from_the_taker(api, dev_node, seller):
    status, made = _sell(api, seller)
    assert status == 201, made
    status, body = api.match(_wallet(dev_node, None), made["order_id"], BUYER_ETH)
    assert (status, body["status"]) == (200, "matched"), body
