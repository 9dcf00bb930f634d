"""Helpers for the adversarial tests: a third party on the node's open routes, hand-built
signed bodies, and readers of what the bridge recorded (alerts, transitions, outbox).

A module with a unique name (not conftest) so the adversarial test files can import it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests
from bridge_support import SELLER_ETH, WORKER

from otc_bridge.client import BridgeClient, Wallet

MALLORY = "mallory"
SELL_AMOUNT, SELL_ESCROW, SELL_FEE = 10_000_000, 10_500_000, 500_000  # open_sell's default order


class Mallory:
    """A third party acting on ``/agent/*``, which authenticates nobody (docs/escrow-node.md §2).

    The worker string ``otc_bridge_worker`` and the poster's wallet are public (the job
    list and job detail show them), so Mallory simply puts them in the body.
    """

    def __init__(self, node) -> None:
        self.node = node

    def _act(self, job_id: str, action: str, body: dict) -> requests.Response:
        return self.node.post(f"/agent/jobs/{job_id}/{action}", body)

    def poster_of(self, job_id: str) -> str:
        return self.node.job(job_id)["poster_wallet"]

    def claim(self, job_id: str, worker: str = MALLORY) -> requests.Response:
        return self._act(job_id, "claim", {"worker_wallet": worker})

    def deliver(self, job_id: str, worker: str = WORKER) -> requests.Response:
        return self._act(job_id, "deliver", {"worker_wallet": worker, "result_summary": "mallory was here"})

    def accept(self, job_id: str, poster: str | None = None) -> requests.Response:
        return self._act(job_id, "accept", {"poster_wallet": poster or self.poster_of(job_id), "rating": 5})

    def dispute(self, job_id: str, poster: str | None = None) -> requests.Response:
        return self._act(job_id, "dispute", {"poster_wallet": poster or self.poster_of(job_id),
                                             "reason": "mallory disputes"})

    def cancel(self, job_id: str, poster: str | None = None) -> requests.Response:
        return self._act(job_id, "cancel", {"poster_wallet": poster or self.poster_of(job_id)})

    def expire(self, job_id: str) -> None:
        """Stand-in for "the job outlived its TTL": the node refunds the poster on the next touch."""
        assert self.node.post(f"/dev/jobs/{job_id}/expire").status_code == 200

    def hit(self, job_id: str, attack: str) -> None:
        """Run one successful attack on a job the bridge holds (claimed by its worker)."""
        steps = {"deliver": ["deliver"], "deliver+dispute": ["deliver", "dispute"],
                 "refund_to_poster": ["deliver", "dispute", "cancel"], "steal_to_worker": ["deliver", "accept"]}
        if attack == "expire":
            self.expire(job_id)
            return
        for step in steps[attack]:
            response = getattr(self, step)(job_id)
            assert response.status_code == 200, (step, response.text)


def post(api: BridgeClient, path: str, body: dict[str, Any]) -> tuple[int, dict]:
    """Send a hand-built JSON body to the bridge (exact bytes matter for replays)."""
    response = api.session.post(api.base_url + path, json=body, timeout=30)
    return response.status_code, response.json()


def create_body(wallet: Wallet, *, side: str = "sell", amount_micro_rtc: int = SELL_AMOUNT,
                wallet_as_sent: str | None = None, signer: Wallet | None = None,
                timestamp: int | None = None, eth_address: str = SELLER_ETH) -> dict[str, Any]:
    """A create body signed by ``signer`` (default ``wallet``) over ``wallet_as_sent``."""
    bound = {"side": side, "pair": "RTC/USDC", "amount_micro_rtc": amount_micro_rtc,
             "price_per_rtc_nano_quote": 50_000_000, "ttl_seconds": 86_400, "eth_address": eth_address}
    sent = wallet_as_sent or wallet.address
    auth = (signer or wallet).auth("create_order", "create_order", bound, wallet=sent, timestamp=timestamp)
    return {**bound, "wallet": sent, "wallet_auth": auth}


def match_body(wallet: Wallet, order_id: str, eth_address: str, *, wallet_as_sent: str | None = None,
               signer: Wallet | None = None, timestamp: int | None = None) -> dict[str, Any]:
    """A match body signed by ``signer`` (default ``wallet``) over ``wallet_as_sent``."""
    sent = wallet_as_sent or wallet.address
    auth = (signer or wallet).auth("match_order", order_id, {"eth_address": eth_address}, wallet=sent,
                                   timestamp=timestamp)
    return {"wallet": sent, "eth_address": eth_address, "wallet_auth": auth}


def cancel_body(wallet: Wallet, order_id: str, *, wallet_as_sent: str | None = None,
                signer: Wallet | None = None, timestamp: int | None = None) -> dict[str, Any]:
    sent = wallet_as_sent or wallet.address
    auth = (signer or wallet).auth("cancel_order", order_id, {}, wallet=sent, timestamp=timestamp)
    return {"wallet": sent, "wallet_auth": auth}


def alert_codes(bridge, order_id: str) -> list[str]:
    """Codes of the order's operator alerts, checked in both places they must appear: an
    ``alert`` event in ``order_events`` and an ``alert`` row in the outbox."""
    events = bridge.db.read("SELECT reason FROM order_events WHERE order_id = ? AND kind = 'alert' "
                            "ORDER BY event_id", (order_id,))
    outbox = bridge.db.read("SELECT payload FROM outbox WHERE order_id = ? AND topic = 'alert' "
                            "ORDER BY outbox_id", (order_id,))
    from_outbox = [json.loads(row["payload"])["code"] for row in outbox]
    assert [row["reason"].split(":", 1)[0] for row in events] == from_outbox
    return from_outbox


def transitions(bridge, order_id: str) -> list[tuple[str | None, str]]:
    """The order's written transitions, oldest first, as ``(from, to)``."""
    rows = bridge.db.read("SELECT from_status, to_status FROM order_events WHERE order_id = ? "
                          "AND kind = 'transition' ORDER BY event_id", (order_id,))
    return [(row["from_status"], row["to_status"]) for row in rows]


def node_calls(bridge, order_id: str) -> list[str]:
    """Endpoints of the node calls the bridge recorded for the order, oldest first."""
    rows = bridge.db.read("SELECT node_endpoint FROM order_events WHERE order_id = ? AND kind = 'node_call' "
                          "ORDER BY event_id", (order_id,))
    return [row["node_endpoint"] for row in rows]


def order_row(bridge, order_id: str):
    return bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (order_id,))


def no_payout(dev_node) -> bool:
    """True while the node's pending pool has never seen a transfer."""
    return dev_node.state()["pending"] == {}


def watch(predicate: Callable[[], Any], what: str, deadline_seconds: float = 10.0) -> Any:
    """Poll public state until ``predicate()`` is truthy and return it: an attacker watching
    for her moment (each poll is an HTTP or SQLite read; no sleep)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
    raise AssertionError(f"never saw {what}")
