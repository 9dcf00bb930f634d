"""Helpers for the API tests: state snapshots, raw requests, response scans, trade set-ups.

A module with a unique name (not conftest) so the test files can import it directly.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from bridge_support import BUYER_ETH, SELLER_ETH

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.settlement import reconcile

#: Tables a refused request must leave exactly as they were.
WATCHED_TABLES = ("orders", "order_events", "used_signatures", "outbox", "trades")
#: Internal columns that must never appear in any response body.
INTERNAL_KEYS = frozenset({"ip_hash", "escrow_ref", "payout_key", "attention_reason"})
#: A funded wallet holds this much on the dev node (the `seller`/`buyer` fixtures).
FUNDED_MICRO_RTC = 1000 * 10**6

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Raw:
    """A value written verbatim into the JSON text (``NaN``, ``1e1000000``, ``3600.5``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text})"


#: Marker: remove the field from the body.
DROP = object()


def erg_address() -> str:
    """A random string in the base58 alphabet, shaped like an Ergo P2PK address."""
    return "9" + "".join(secrets.choice(_BASE58) for _ in range(50))


def quote_address(pair: str, who: str = "seller") -> str:
    if pair == "RTC/ERG":
        return erg_address()
    return SELLER_ETH if who == "seller" else BUYER_ETH


def encode(body: dict[str, Any], overrides: dict[str, Any] | None = None) -> bytes:
    """``body`` with ``overrides`` applied (``DROP`` removes, ``Raw`` is written verbatim)."""
    merged = dict(body)
    raws: dict[str, str] = {}
    for key, value in (overrides or {}).items():
        if value is DROP:
            merged.pop(key, None)
        elif isinstance(value, Raw):
            marker = f"__raw_{len(raws)}__"
            raws[f'"{marker}"'] = value.text
            merged[key] = marker
        else:
            merged[key] = value
    text = json.dumps(merged)
    for marker, raw in raws.items():
        text = text.replace(marker, raw)
    return text.encode()


def post_raw(client, path: str, data: bytes | str, **kwargs: Any):
    """POST exact bytes as ``application/json`` through the Flask test client."""
    return client.post(path, data=data, content_type="application/json", **kwargs)


def snapshot(bridge, dev_node) -> dict[str, Any]:
    """Every watched table (all rows) and the node's jobs, balances and pending pool."""
    tables = {t: [tuple(r) for r in bridge.db.read(f"SELECT * FROM {t} ORDER BY rowid")]  # noqa: S608
              for t in WATCHED_TABLES}
    state = dev_node.state()
    return {"tables": tables, "jobs": state["jobs_by_status"], "balances": state["balances"],
            "pending": state["pending"]}


def all_keys(value: Any) -> set[str]:
    """Every dict key at any depth of a JSON value."""
    if isinstance(value, dict):
        return set(value).union(*(all_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(all_keys(v) for v in value))
    return set()


def assert_public(body: Any, *, secret: str | None = None) -> None:
    """No internal key anywhere; with ``secret``, the preimage appears nowhere either."""
    leaked = all_keys(body) & INTERNAL_KEYS
    assert not leaked, leaked
    if secret is not None:
        assert "htlc_secret" not in all_keys(body)
        assert secret not in json.dumps(body)


def assert_money_fields(view: dict[str, Any]) -> None:
    """An order view carries the display numbers, the exact integers and its version."""
    for key in ("amount_micro_rtc", "price_per_rtc_nano_quote", "total_quote_nano", "order_version"):
        assert isinstance(view[key], int) and not isinstance(view[key], bool), key
    assert view["amount_rtc"] == view["amount_micro_rtc"] / 10**6
    assert view["price_per_rtc"] == view["price_per_rtc_nano_quote"] / 10**9
    assert view["total_quote"] == view["total_quote_nano"] / 10**9
    assert view["total_quote_nano"] == -(-view["amount_micro_rtc"] * view["price_per_rtc_nano_quote"] // 10**6)


def create(api: BridgeClient, wallet: Wallet, side: str, *, pair: str = "RTC/USDC", amount: int = 1_000_000,
           price: int = 50_000_000, eth_address: str | None = None, **kwargs: Any) -> dict:
    """A signed create that must succeed (201); returns the response body."""
    address = quote_address(pair, "seller" if side == "sell" else "buyer") if eth_address is None else eth_address
    status, body = api.create_order(wallet, side=side, pair=pair, amount_micro_rtc=amount, price_nano_quote=price,
                                    eth_address=address, **kwargs)
    assert status == 201, body
    return body


def complete_sell(api: BridgeClient, bridge, dev_node, seller: Wallet, buyer: Wallet, *, pair: str = "RTC/USDC",
                  amount: int = 1_000_000, price: int = 50_000_000) -> str:
    """A sell order taken, confirmed, paid out and promoted to ``completed``; returns its id."""
    made = create(api, seller, "sell", pair=pair, amount=amount, price=price)
    order_id = made["order_id"]
    status, body = api.match(buyer, order_id, quote_address(pair, "buyer"))
    assert status == 200, body
    status, body = api.confirm(order_id, secret=made["htlc_secret"], quote_tx=f"q-{order_id}")
    assert (status, body["status"]) == (200, "payout_pending"), body
    assert dev_node.confirm_pending() >= 1
    reconcile.run_once(bridge)
    status, body = api.order(order_id)
    assert body["order"]["status"] == "completed", body
    return order_id


class Clock:
    """A settable bridge clock (unix seconds) that starts at the real time, so signatures
    made with the wall clock stay inside their 300 s window until the test moves it far."""

    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now
