"""Helpers for the bridge's tests: a handle on the dev node, a live server, trade set-ups.

A module with a unique name (not conftest) so test files can import it directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from otc_bridge import crashpoints
from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import TRANSITIONS, Status
from otc_bridge.storage.invariants import violations

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
NODE_ADMIN_KEY = DEFAULT_DEV_ADMIN_KEY
SELLER_ETH = "0x" + "11" * 20
BUYER_ETH = "0x" + "22" * 20
WORKER = "otc_bridge_worker"


class NodeHandle:
    """The dev node over HTTP, as a test (or a third party) sees it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: dict | None = None, admin: bool = False) -> requests.Response:
        headers = {"X-Admin-Key": NODE_ADMIN_KEY} if admin else {}
        return self.http.post(self.url + path, json=body or {}, headers=headers, timeout=30)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(self.url + path, params=params, timeout=30)

    def fund(self, wallet: str, amount_rtc: str) -> None:
        assert self.post("/dev/fund", {"wallet": wallet, "amount_rtc": amount_rtc}).status_code == 200

    def balance(self, wallet: str) -> int:
        return self.get("/wallet/balance", miner_id=wallet).json()["amount_i64"]

    def job(self, job_id: str) -> dict:
        return self.get(f"/agent/jobs/{job_id}").json()["job"]

    def confirm_pending(self) -> int:
        response = self.post("/pending/confirm", admin=True)
        assert response.status_code == 200, response.text
        return response.json()["confirmed_count"]

    def state(self) -> dict:
        return self.get("/dev/state").json()

    def add_fault(self, **rule: Any) -> None:
        assert self.post("/dev/faults", rule).status_code in (200, 201)

    def clear_faults(self) -> None:
        self.http.delete(self.url + "/dev/faults", timeout=10)

    def assert_conserved(self) -> dict:
        """Every minted micro-RTC is in some balance, and the escrow pool equals the jobs'
        locked escrow (fees move, nothing is created or lost). Returns the state."""
        state = self.state()
        assert state["total_balance_i64"] == state["minted_i64"], state
        assert state["agent_escrow_i64"] == state["escrow_locked_i64"], state
        return state


@dataclass
class LiveServer:
    """A WSGI app served on 127.0.0.1 by a daemon thread."""

    url: str
    server: Any
    thread: threading.Thread

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve(app) -> LiveServer:
    """Serve ``app`` (threaded) on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return LiveServer(f"http://127.0.0.1:{server.port}", server, thread)


def open_sell(api: BridgeClient, seller: Wallet, amount_micro_rtc: int = 10_000_000,
              price_nano_quote: int = 50_000_000, **kwargs: Any) -> tuple[str, str]:
    """Create a sell order; returns ``(order_id, preimage)``."""
    status, body = api.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=amount_micro_rtc,
                                    price_nano_quote=price_nano_quote, eth_address=SELLER_ETH, **kwargs)
    assert status == 201, body
    return body["order_id"], body["htlc_secret"]


def matched_sell(api: BridgeClient, seller: Wallet, buyer: Wallet, **kwargs: Any) -> tuple[str, str]:
    """A sell order matched by ``buyer``; returns ``(order_id, preimage)``."""
    order_id, secret = open_sell(api, seller, **kwargs)
    status, body = api.match(buyer, order_id, BUYER_ETH)
    assert status == 200, body
    return order_id, secret


def matched_buy(api: BridgeClient, buyer: Wallet, seller: Wallet, amount_micro_rtc: int = 5_000_000,
                price_nano_quote: int = 60_000_000) -> tuple[str, str]:
    """A buy order matched by ``seller`` (who locks escrow); returns ``(order_id, preimage)``."""
    status, body = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=amount_micro_rtc,
                                    price_nano_quote=price_nano_quote, eth_address=BUYER_ETH)
    assert status == 201, body
    status, body = api.match(seller, body["order_id"], SELLER_ETH)
    assert status == 200, body
    return body["order_id"], body["htlc_secret"]


def check_history(db) -> None:
    """Every written transition is in the table; versions per order are gap-free and rising."""
    rows = db.read("SELECT order_id, order_version, from_status, to_status, kind FROM order_events "
                   "ORDER BY event_id")
    last: dict[str, int] = {}
    for row in rows:
        if row["kind"] == "transition" and row["from_status"] is not None:
            edge = (Status(row["from_status"]), Status(row["to_status"]))
            assert edge in TRANSITIONS, f"edge {edge} written for {row['order_id']}"
        if row["kind"] in ("transition", "note"):
            expected = last.get(row["order_id"], 0) + 1
            assert row["order_version"] == expected, f"{row['order_id']} version gap"
            last[row["order_id"]] = row["order_version"]
    for order in db.read("SELECT order_id, order_version FROM orders"):
        assert last.get(order["order_id"]) == order["order_version"], order["order_id"]


def violations_of(conn, row) -> list[str]:
    """The post-commit invariant codes an ``orders`` row breaks (whether its trade row exists
    is read here, as the CAS's ``RETURNING`` does in the bridge)."""
    has_trade = conn.execute("SELECT 1 FROM trades WHERE order_id = ?", (row["order_id"],)).fetchone() is not None
    return violations(Order.from_row(row), has_trade=has_trade)


def broken_orders(conn) -> dict[str, list[str]]:
    """``{order_id: codes}`` of every order that breaks an invariant (empty when all hold)."""
    found = {row["order_id"]: violations_of(conn, row) for row in conn.execute("SELECT * FROM orders")}
    return {order_id: codes for order_id, codes in found.items() if codes}


def bridge_env(tmp_path, node_url: str, **extra: str) -> dict[str, str]:
    """The environment a test bridge runs with (generous rate limit, short node timeouts)."""
    env = {"OTC_DB_PATH": str(tmp_path / "bridge.db"), "RUSTCHAIN_NODE": node_url,
           "RC_ADMIN_KEY": NODE_ADMIN_KEY, "OTC_ADMIN_TOKEN": ADMIN_TOKEN,
           "OTC_RATE_LIMIT": "100000/minute", "OTC_NODE_TIMEOUT_SECONDS": "5",
           "OTC_SQLITE_SYNCHRONOUS": "NORMAL"}
    env.update(extra)
    return env


def third_party(node: NodeHandle, job_id: str, poster: str, *steps: str) -> None:
    """A third party acts on job ``job_id`` through the node's open ``/agent/*`` routes, which
    authenticate nobody (docs/escrow-node.md §2): as the bridge's worker (``deliver``) or as
    the public ``poster`` (``accept``, ``dispute``, ``cancel``), in the order given; ``expire``
    stands for "the job outlived its TTL". Each step must succeed."""
    bodies = {"deliver": {"worker_wallet": WORKER, "result_summary": "not the bridge"},
              "accept": {"poster_wallet": poster, "rating": 5},
              "dispute": {"poster_wallet": poster, "reason": "not the bridge"},
              "cancel": {"poster_wallet": poster}}
    for step in steps:
        path = f"/dev/jobs/{job_id}/expire" if step == "expire" else f"/agent/jobs/{job_id}/{step}"
        response = node.post(path, bodies.get(step))
        assert response.status_code == 200, (step, response.text)


class SimulatedCrash(BaseException):
    """Raised by the in-process crash hook (a BaseException: nothing on the path catches it)."""


@contextmanager
def dies_at(point: str) -> Iterator[None]:
    """Stop the in-process operation at ``point`` as a crash would (nothing after it runs)."""
    def hook(name: str) -> None:
        if name == point:
            raise SimulatedCrash(point)

    crashpoints.set_hook(hook)
    try:
        with pytest.raises(SimulatedCrash):
            yield
    finally:
        crashpoints.set_hook(None)
