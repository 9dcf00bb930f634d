"""Helpers for the Idempotency-Key tests: signed bodies, keyed posts, a settable clock, a
crash hook, and the rows of the ``idempotency_keys`` table.

A module with a unique name (not conftest) so the test files can import it directly.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bridge_support import BUYER_ETH, SELLER_ETH, SimulatedCrash, dies_at  # noqa: F401

from otc_bridge.api.idempotency import HEADER, REPLAYED_HEADER, STALE_MARGIN_SECONDS
from otc_bridge.client import Wallet

WEEK = 7 * 86400
SELL_MICRO_RTC = 10_000_000
BUY_MICRO_RTC = 5_000_000
PRICE_NANO_QUOTE = 50_000_000


class Clock:
    """A settable bridge clock (unix seconds), starting at the real time so that signatures made
    with it stay inside their 300 s window until a test moves it far."""

    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


def new_key() -> str:
    return str(uuid.uuid4())


def stale_after(bridge) -> int:
    """Seconds after which an in-flight reservation may be taken over (the request bound + margin)."""
    return int(bridge.config.handler_timeout_seconds) + STALE_MARGIN_SECONDS + 1


def create_body(wallet: Wallet, side: str, *, timestamp: int, amount: int | None = None,
                price: int = PRICE_NANO_QUOTE, ttl: int = WEEK, eth_address: str | None = None) -> dict[str, Any]:
    """A signed create body (amounts as exact integers), signed at ``timestamp``."""
    amount = amount or (SELL_MICRO_RTC if side == "sell" else BUY_MICRO_RTC)
    address = eth_address if eth_address is not None else (SELLER_ETH if side == "sell" else BUYER_ETH)
    bound = {"side": side, "pair": "RTC/USDC", "amount_micro_rtc": amount, "price_per_rtc_nano_quote": price,
             "ttl_seconds": ttl, "eth_address": address}
    return {"side": side, "pair": "RTC/USDC", "wallet": wallet.address, "amount_micro_rtc": amount,
            "price_per_rtc_nano_quote": price, "ttl_seconds": ttl, "eth_address": address,
            "wallet_auth": wallet.auth("create_order", "create_order", bound, timestamp=timestamp)}


def match_body(wallet: Wallet, order_id: str, eth_address: str, *, timestamp: int) -> dict[str, Any]:
    return {"wallet": wallet.address, "eth_address": eth_address,
            "wallet_auth": wallet.auth("match_order", order_id, {"eth_address": eth_address}, timestamp=timestamp)}


def cancel_body(wallet: Wallet, order_id: str, *, timestamp: int) -> dict[str, Any]:
    return {"wallet": wallet.address, "wallet_auth": wallet.auth("cancel_order", order_id, {}, timestamp=timestamp)}


def post(client, path: str, body: dict | None, key: str | None = None, **headers: str):
    """POST ``body`` as JSON through the Flask test client, with ``Idempotency-Key: key``."""
    if key is not None:
        headers[HEADER] = key
    if body is None:
        return client.post(path, headers=headers)
    return client.post(path, json=body, headers=headers)


def replayed(response) -> bool:
    return response.headers.get(REPLAYED_HEADER) == "true"


def rows(bridge) -> list[dict[str, Any]]:
    """Every ``idempotency_keys`` row as a dict."""
    return [dict(r) for r in bridge.db.read("SELECT * FROM idempotency_keys ORDER BY created_at, key_id")]


def count(bridge, table: str) -> int:
    return bridge.db.read_one(f"SELECT COUNT(*) FROM {table}")[0]  # noqa: S608




def wall_clock_start() -> int:
    return int(time.time())
