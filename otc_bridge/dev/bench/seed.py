"""Putting the book in a known state before a measurement, and emptying it afterwards.

Wallets are deterministic from seeds (:meth:`otc_bridge.client.Wallet.from_seed`), so a
driver process rebuilds them from text, and :class:`Wallets` remembers every wallet the
benchmark created and what it minted into each (micro-RTC), for the conservation check.

The node allows at most 20 active escrow jobs per poster (docs/escrow-node.md §1.2), so open
orders are spread over ``ceil(n / 20)`` sellers.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.dev.bench import drivers, tally
from otc_bridge.dev.bench.procs import DevNode

NODE_ACTIVE_JOBS_PER_POSTER = 20
SELLER_FUNDS_MICRO_RTC = 100_000 * 1_000_000  # far more than any run spends (1.05 RTC a lifecycle)
SEED_THREADS = 8


class Wallets:
    """Every wallet the benchmark made, by address: its seed and the micro-RTC minted into it."""

    def __init__(self, run_id: str) -> None:
        self.run_id, self.seeds, self.minted = run_id, {}, {}
        self._lock, self._next = threading.Lock(), 0

    def new(self, role: str, node: DevNode, fund_micro_rtc: int = 0) -> str:
        """A fresh wallet's seed (funded on the node with ``fund_micro_rtc`` if > 0)."""
        with self._lock:
            self._next += 1
            seed = f"otc-bench {self.run_id} {role} {self._next}"
        address = Wallet.from_seed(seed).address
        if fund_micro_rtc:
            node.fund(address, fund_micro_rtc)
        with self._lock:
            self.seeds[address] = seed
            self.minted[address] = self.minted.get(address, 0) + fund_micro_rtc
        return seed

    def pair(self, node: DevNode) -> tuple[str, str]:
        """A funded seller and an unfunded buyer (the buyer only receives RTC)."""
        return self.new("seller", node, SELLER_FUNDS_MICRO_RTC), self.new("buyer", node)


def new_run_id() -> str:
    return secrets.token_hex(4)


def lifecycle_clients(url: str, node: DevNode, wallets: Wallets, n: int) -> list[drivers.LifecycleClient]:
    """``n`` lifecycle clients, each with its own funded seller and its own buyer."""
    return [drivers.LifecycleClient(url, *wallets.pair(node)) for _ in range(n)]


def completed_trades(url: str, node: DevNode, wallets: Wallets, n: int,
                     threads: int = SEED_THREADS) -> tuple[tally.Tally, drivers.Outcome, list[str]]:
    """Run ``n`` lifecycles with ``threads`` in-process clients (their completion comes with
    the reconciler; the caller waits for it)."""
    if n <= 0:
        return tally.new(), drivers.Outcome(), []
    budget = drivers.Budget(n)
    clients = lifecycle_clients(url, node, wallets, min(threads, n))
    for client in clients:
        client.budget = budget
    return drivers.run_in_process(clients, end_at=time.time() + 3600)


def open_orders(url: str, node: DevNode, wallets: Wallets, n: int,
                threads: int = SEED_THREADS) -> tuple[list[dict[str, Any]], tally.Tally]:
    """Create ``n`` open sell orders, 20 per seller; returns ``[{order_id, seller_seed}]``
    (in creation order per seller) and the requests' records."""
    sellers = [wallets.new("maker", node, SELLER_FUNDS_MICRO_RTC)
               for _ in range(-(-n // NODE_ACTIVE_JOBS_PER_POSTER))]
    quotas = [min(NODE_ACTIVE_JOBS_PER_POSTER, n - i * NODE_ACTIVE_JOBS_PER_POSTER) for i in range(len(sellers))]
    records, created, lock = tally.new(), [], threading.Lock()

    def make(seller_seed: str, count: int, index: int) -> None:
        api, seller, mine, got = BridgeClient(url, timeout_seconds=drivers.REQUEST_TIMEOUT_SECONDS), \
            Wallet.from_seed(seller_seed), tally.new(), []
        for seq in range(count):
            # Prices spread over a band, so the book has many levels.
            price = drivers.PRICE_NANO_QUOTE + (index * NODE_ACTIVE_JOBS_PER_POSTER + seq) * 10_000
            status, body = drivers.timed(mine, drivers.CREATE, lambda p=price: api.create_order(
                seller, side="sell", pair=drivers.PAIR, amount_micro_rtc=drivers.AMOUNT_MICRO_RTC,
                price_nano_quote=p, eth_address=drivers.SELLER_QUOTE_ADDRESS))
            if status == 201:
                got.append({"order_id": body["order_id"], "seller_seed": seller_seed})
        with lock:
            tally.merge(records, mine)
            created.extend(got)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(make, sellers, quotas, range(len(sellers))))
    return created, records


def cancel(url: str, orders: list[dict[str, Any]], threads: int = SEED_THREADS) -> tally.Tally:
    """Cancel each ``{order_id, seller_seed}`` as its maker; returns the requests' records."""
    records, lock = tally.new(), threading.Lock()
    by_seller: dict[str, list[str]] = {}
    for order in orders:
        by_seller.setdefault(order["seller_seed"], []).append(order["order_id"])

    def cancel_all(seller_seed: str) -> None:
        api, seller, mine = BridgeClient(url, timeout_seconds=drivers.REQUEST_TIMEOUT_SECONDS), \
            Wallet.from_seed(seller_seed), tally.new()
        for order_id in by_seller[seller_seed]:
            drivers.timed(mine, drivers.CANCEL, lambda o=order_id: api.cancel(seller, o))
        with lock:
            tally.merge(records, mine)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(cancel_all, list(by_seller)))
    return records


def finish_leftovers(url: str, leftovers: list[dict[str, Any]], retry_seconds: float = 60.0) -> tally.Tally:
    """Finish the orders clients left mid-way: an order never matched is cancelled, a
    matched one is confirmed again with its preimage (a confirm that lost its answer is
    answered with the order's state the second time). A confirm answered 5xx or not at all
    (e.g. 503 while releases are paused, which says "retry later") is retried every 0.5 s
    for at most ``retry_seconds``. Returns the requests' records (every answer counts)."""
    records = tally.new()
    api = BridgeClient(url, timeout_seconds=drivers.REQUEST_TIMEOUT_SECONDS)
    deadline = time.monotonic() + retry_seconds
    for left in leftovers:
        order_id = left["order_id"]
        if left["stage"] in ("create", "match"):
            seller = Wallet.from_seed(left["seller_seed"])
            drivers.timed(records, drivers.CANCEL, lambda o=order_id, s=seller: api.cancel(s, o))
        if left["stage"] not in ("match", "confirm") or not left.get("secret"):
            continue
        while True:
            status, _ = drivers.timed(records, drivers.CONFIRM, lambda o=order_id, s=left["secret"]: api.confirm(
                o, secret=s, quote_tx="0xbench-retry"))
            if (status != tally.TRANSPORT and status < 500) or time.monotonic() >= deadline:
                break
            time.sleep(0.5)  # the bridge asked to retry later
    return records
