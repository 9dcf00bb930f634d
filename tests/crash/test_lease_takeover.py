"""A SIGKILLed ``serve`` does not stall settlement: its leases die with it (docs/leases.md).

The issue this answers: a killed ``serve`` left the reconciler's lease in SQLite for its TTL
(300 s), so orders whose payouts the node had confirmed stayed ``payout_pending`` and every
pass, ``POST /admin/reconcile`` included, answered ``skipped_locked``. Here the real
``otc-bridge serve`` (gunicorn, background reconciler every :data:`INTERVAL` s, outbox worker
delivering to a webhook receiver on 127.0.0.1) drives trades to ``payout_pending``; then

* a dev-node fault makes the next payout status read hang, so a reconcile pass sits mid-way
  holding the reconciler lease, and the receiver holds its first delivery unanswered, so an
  outbox pass sits mid-way holding the outbox lease (both checked: the holder recorded in the
  lock file is the serve worker, ``/readyz`` names it, and this process cannot take either);
* the node confirms every payout, and the whole ``serve`` session is SIGKILLed;
* a fresh ``serve`` on the same database completes every paid order within one reconcile
  interval of its worker booting, and its outbox delivers again, with no clock moved and no
  lease expired by hand.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bridge_support import ADMIN_TOKEN, matched_sell
from crash_support import bridge_env, bridge_process, db_rows

from otc_bridge.client import Wallet
from otc_bridge.storage import leases

INTERVAL = 5  # OTC_RECONCILE_INTERVAL_SECONDS of both serve processes
TRADES = 4
AMOUNTS = [10_000_000 + i * 1_000_000 for i in range(TRADES)]  # micro-RTC; distinct, so each create is its own message
HANG_SECONDS = 60  # how long the hung node call and the hung webhook would take


class Receiver:
    """A webhook receiver on 127.0.0.1 that, while ``hanging``, holds every request open."""

    def __init__(self) -> None:
        self.hanging = True
        self.release = threading.Event()
        self.in_flight = 0
        self.events: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.hanging:
                    with receiver.lock:
                        receiver.in_flight += 1
                    receiver.release.wait(HANG_SECONDS)
                    return  # the sender is dead by now: no answer
                with receiver.lock:
                    receiver.events.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def answer_again(self) -> None:
        self.hanging = False
        self.release.set()

    def completed(self) -> set[str]:
        with self.lock:
            return {e["order_id"] for e in self.events if e["type"] == "order.completed"}

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition, timeout: float, what: str, step: float = 0.05) -> float:
    """Poll ``condition`` until true; the seconds it took (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(step)
    return time.monotonic() - started


def statuses(db_path, order_ids) -> dict[str, str]:
    marks = ",".join("?" * len(order_ids))
    return dict(db_rows(db_path, f"SELECT order_id, status FROM orders WHERE order_id IN ({marks})",  # noqa: S608
                        tuple(order_ids)))


def can_take(db_path, name: str) -> bool:
    """Whether this process can take lease ``name`` now (given back at once if so)."""
    lease = leases.try_hold(str(db_path), name)
    if lease is None:
        return False
    lease.release()
    return True


def held_by_a_process_of(proc, db_path, name: str) -> int:
    """The pid of the process of ``proc``'s session that holds lease ``name`` (asserted)."""
    seen = leases.holder(str(db_path), name)
    assert seen is not None and seen.held, f"{name} lease not held: {seen}"
    assert os.getpgid(seen.pid) == proc.popen.pid, f"{name} lease held by {seen.pid}, not by the serve session"
    assert not can_take(db_path, name), f"{name} lease could be taken from outside"
    return seen.pid


def test_a_sigkilled_serve_holding_both_leases_is_taken_over_at_once(crash_node, tmp_path):
    node, db_path, receiver = crash_node, tmp_path / "bridge.db", Receiver()
    seller, buyer = Wallet.generate(), Wallet.generate()
    for wallet in (seller, buyer):
        node.fund(wallet.address, "100")
    buyer_before = node.balance(buyer.address)
    env = {k: v for k, v in bridge_env(node.url, db_path).items() if k != "OTC_RECONCILE_DISABLED"}
    env.update(OTC_RECONCILE_INTERVAL_SECONDS=str(INTERVAL), OTC_NODE_TIMEOUT_SECONDS=str(HANG_SECONDS + 30),
               OTC_WEBHOOK_TIMEOUT_SECONDS=str(HANG_SECONDS + 30), OTC_OUTBOX_VISIBILITY_SECONDS="600",
               OTC_WEBHOOKS=json.dumps([{"name": "recv", "url": receiver.url, "secret": "s" * 16, "events": ["*"]}]))
    timings: dict[str, float] = {}
    try:
        # 1. Trades to payout_pending under a serve whose reconciler and outbox run in the background.
        with bridge_process(env, tmp_path) as (proc, api):
            order_ids = []
            for amount in AMOUNTS:
                order_id, secret = matched_sell(api, seller, buyer, amount_micro_rtc=amount)
                status, body = api.confirm(order_id, secret=secret, quote_tx="0x" + "ab" * 32)
                assert (status, body["status"]) == (200, "payout_pending"), body
                order_ids.append(order_id)
            # 2. The next payout status read hangs: a reconcile pass stops there, lease in hand.
            node.add_fault(endpoint="GET /wallet/tx/<tx_hash>", kind="latency", latency_ms=HANG_SECONDS * 1000,
                           count=1)
            wait_until(lambda: node.get("/dev/faults").json()["faults"] == [], 3 * INTERVAL,
                       "a reconcile pass reaching the node's payout status")
            wait_until(lambda: receiver.in_flight >= 1, 10, "an outbox pass posting to the receiver")
            # 3. The node confirms every payout while that pass is stuck.
            assert node.post("/dev/confirm").json()["confirmed_count"] == TRADES
            worker = held_by_a_process_of(proc, db_path, "reconciler")
            assert held_by_a_process_of(proc, db_path, "outbox") == worker
            ready = api.session.get(api.base_url + "/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                    timeout=10).json()
            assert ready["checks"]["reconciler"]["lease"]["pid"] == worker
            assert ready["checks"]["outbox"]["lease"]["pid"] == worker
            assert set(statuses(db_path, order_ids).values()) == {"payout_pending"}
            # 4. SIGKILL to the whole serve session, mid-pass.
            proc.kill()
            killed = time.monotonic()
            timings["leases free after the kill"] = wait_until(
                lambda: all(can_take(db_path, name) for name in ("reconciler", "outbox")), 5, "the dead serve's leases")
        receiver.answer_again()
        assert set(statuses(db_path, order_ids).values()) == {"payout_pending"}

        # 5. A fresh serve: paid orders complete within one reconcile interval, outbox delivers.
        with bridge_process(env, tmp_path) as (proc, api):
            booted = time.monotonic()
            timings["restart until the worker booted"] = booted - killed
            timings["worker boot until all completed"] = wait_until(
                lambda: set(statuses(db_path, order_ids).values()) == {"completed"}, INTERVAL, "every paid order")
            timings["kill until all completed"] = time.monotonic() - killed
            timings["worker boot until completions delivered"] = (
                wait_until(lambda: receiver.completed() >= set(order_ids), 2 * INTERVAL, "order.completed webhooks")
                + timings["worker boot until all completed"])
            beats = {r["name"]: r["last_run_at"] for r in db_rows(db_path, "SELECT * FROM heartbeats")}
            assert min(beats["reconciler"], beats["outbox"]) >= int(time.time()) - 2 * INTERVAL
    finally:
        receiver.close()
        node.clear_faults()
    print("lease takeover timings (s):", {k: round(v, 2) for k, v in timings.items()})
    assert node.balance(buyer.address) == buyer_before + sum(AMOUNTS)  # each buyer payout exactly once
    node.assert_conserved()
