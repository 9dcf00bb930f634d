"""Helpers for the race tests: release real threads together, each with its own HTTP client.

A module with a unique name (not conftest) so the race test files can import it directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from otc_bridge.client import BridgeClient, Wallet

JOIN_TIMEOUT_SECONDS = 60.0


def clients(base_url: str, count: int) -> list[BridgeClient]:
    """``count`` bridge clients, each on its own ``requests.Session`` (own connection)."""
    return [BridgeClient(base_url) for _ in range(count)]


def funded_wallets(dev_node, count: int, amount_rtc: str = "1000") -> list[Wallet]:
    """``count`` fresh wallets, each minted ``amount_rtc`` on the dev node."""
    wallets = [Wallet.generate() for _ in range(count)]
    for wallet in wallets:
        dev_node.fund(wallet.address, amount_rtc)
    return wallets


def race(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run every action in its own thread, released together by a barrier; their results.

    Any exception in a thread (including a broken barrier) fails the calling test.
    """
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=JOIN_TIMEOUT_SECONDS)
            results[index] = actions[index]()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a racing request never returned"
    assert not errors, errors
    return results


def winners(results: list[tuple[int, dict]], status: int = 200) -> list[int]:
    """Indexes of the results that answered ``status``."""
    return [i for i, (code, _) in enumerate(results) if code == status]


def transitions(bridge, order_id: str) -> list[tuple[str | None, str]]:
    """The order's written transitions, oldest first, as ``(from, to)``."""
    rows = bridge.db.read("SELECT from_status, to_status FROM order_events WHERE order_id = ? "
                          "AND kind = 'transition' ORDER BY event_id", (order_id,))
    return [(row["from_status"], row["to_status"]) for row in rows]


def jobs_by_status(dev_node) -> dict[str, int]:
    """How many escrow jobs the node holds, by status."""
    return dev_node.state()["jobs_by_status"]
