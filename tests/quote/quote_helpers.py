"""Helpers for the quote-leg tests: orders on the EVM pairs, locks made by the demo buyer."""

from __future__ import annotations

from typing import Any

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.domain import money
from otc_bridge.settlement import reconcile

AMOUNT_MICRO_RTC = 10_000_000  # 10 RTC
PRICE_NANO_QUOTE = 2_000_000  # 0.002 quote per RTC


def due_base_units(pair: str, amount_micro_rtc: int = AMOUNT_MICRO_RTC, price: int = PRICE_NANO_QUOTE) -> int:
    return money.total_quote_base_units(amount_micro_rtc, price, money.PAIRS[pair].decimals)


def matched(api: BridgeClient, evm, seller: Wallet, buyer: Wallet, pair: str = "RTC/ETH",
            price: int = PRICE_NANO_QUOTE) -> tuple[str, str, dict]:
    """A sell order on ``pair`` paying the demo seller's EVM account, matched by ``buyer``
    with the demo buyer's account; returns ``(order_id, seller's preimage, order view)``.
    (Two orders signed in the same second need different prices: a signed body is single-use.)"""
    status, body = api.create_order(seller, side="sell", pair=pair, amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=price, eth_address=evm.accounts["seller"].address)
    assert status == 201, body
    order_id, secret = body["order_id"], body["htlc_secret"]
    status, body = api.match(buyer, order_id, evm.accounts["buyer"].address)
    assert status == 200, body
    return order_id, secret, body


def view(api: BridgeClient, order_id: str) -> dict[str, Any]:
    status, body = api.order(order_id)
    assert status == 200, body
    return body["order"]


def lock_eth(evm, order: dict, *, amount: int | None = None, hashlock: str | None = None, seller: str | None = None,
             timelock: int | None = None, rtc_order_id: str | None = None, account: str = "buyer"):
    """The buyer locks ETH for the order as the instructions say, unless told otherwise;
    returns the ``SwapCreated``."""
    created, _ = evm.htlc.create_swap_eth(
        evm.accounts[account].signer, seller=seller or evm.accounts["seller"].address,
        hashlock=bytes.fromhex(hashlock or order["htlc_hash"]),
        timelock=timelock or order["matched_at"] + 13 * 3600,
        rtc_order_id=rtc_order_id or order["order_id"],
        amount_wei=due_base_units("RTC/ETH") if amount is None else amount)
    return created


def run_pass(bridge) -> dict[str, int]:
    summary = reconcile.run_once(bridge)
    assert summary["errors"] == 0 and summary["chain_unavailable"] == 0, summary
    return summary
