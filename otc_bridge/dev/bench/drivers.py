"""The benchmark's clients and the driver processes that run them.

Two kinds of client, each a thread looping until the window's end:

* :class:`LifecycleClient`: a seller and a buyer wallet of its own; create a sell order
  (signed), match it (signed), confirm it with the preimage; again. It does not wait for the
  order's ``completed``: that comes asynchronously (the node operator's cron confirms the
  payout, then the bridge's reconciler promotes the order), so waiting would measure the
  reconcile interval, not the bridge. The benchmark waits for every order at the end instead.
  It uses :class:`otc_bridge.client.BridgeClient` (a ``requests`` keep-alive session),
  whose signing is the reference for bots.
* :class:`ReadClient`: one keep-alive ``http.client`` connection, round-robin over a list of
  GET paths; the cheapest Python HTTP client, so the driver side costs little per request.

Clients are spread over driver **processes** (``spawn``ed, each running its clients as
threads): one Python process driving 16 busy clients would be bound by its own GIL at a
few thousand requests per second and turn the driver into the bottleneck being measured.
Every process sets up its clients (connections opened), reports ready, then all start on
one signal and stop at one wall-clock deadline.
"""

from __future__ import annotations

import http.client
import multiprocessing
import queue
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.dev.bench import tally

AMOUNT_MICRO_RTC = 1_000_000  # 1 RTC per order: whole, so the node's float truncation is exact
PRICE_NANO_QUOTE = 50_000_000  # 0.05 USDC per RTC
PAIR = "RTC/USDC"
SELLER_QUOTE_ADDRESS = "0x" + "5e" * 20
BUYER_QUOTE_ADDRESS = "0x" + "b0" * 20
REQUEST_TIMEOUT_SECONDS = 60.0
READY_TIMEOUT_SECONDS = 120.0
CREATE, MATCH, CONFIRM, CANCEL = ("POST /api/orders", "POST /api/orders/<id>/match",
                                  "POST /api/orders/<id>/confirm", "POST /api/orders/<id>/cancel")
SETTLED = ("payout_pending", "completed")  # a confirm that won: the payout is queued or final


class Budget:
    """At most ``n`` lifecycles across threads (seeding runs a count, not a duration)."""

    def __init__(self, n: int) -> None:
        self._left, self._lock = n, threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


@dataclass
class Outcome:
    """What a client did beside its requests: lifecycles settled (confirm answered
    ``payout_pending`` or ``completed``) and orders it left mid-way (to clean up)."""

    lifecycles: int = 0
    leftovers: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.lifecycles += other.lifecycles
        self.leftovers.extend(other.leftovers)


def timed(records: tally.Tally, label: str, call: Callable[[], tuple[int, dict]]) -> tuple[int, dict]:
    """Run one API call, record its status and latency under ``label``; a transport failure
    is recorded as status 0 and returned as ``(0, {"error": ...})``."""
    started = time.perf_counter()
    try:
        status, body = call()
    except requests.RequestException as exc:
        tally.record(records, label, tally.TRANSPORT, None)
        return tally.TRANSPORT, {"error": f"{type(exc).__name__}: {exc}"}
    tally.record(records, label, status, (time.perf_counter() - started) * 1000)
    return status, body


@dataclass
class LifecycleClient:
    """Loops create (sell) -> match -> confirm with its own two wallets (see the module
    docstring). ``price_base`` + a sequence number makes each create a new signed message
    (two identical creates in one second would be one message, refused as a replay)."""

    url: str
    seller_seed: str
    buyer_seed: str
    price_base: int = PRICE_NANO_QUOTE
    budget: Budget | None = None  # in-process seeding only (not sent to driver processes)
    kind: str = "lifecycle"

    def setup(self) -> None:
        self.api = BridgeClient(self.url, timeout_seconds=REQUEST_TIMEOUT_SECONDS)
        self.seller, self.buyer = Wallet.from_seed(self.seller_seed), Wallet.from_seed(self.buyer_seed)
        self.api.get("/healthz")  # open the keep-alive connection before the window

    def run(self, end_at: float) -> tuple[tally.Tally, Outcome]:
        records, outcome, seq = tally.new(), Outcome(), 0
        while time.time() < end_at and (self.budget is None or self.budget.take()):
            seq += 1
            if not self._one(records, outcome, seq):
                time.sleep(0.05)  # a refused step: do not spin on a persistent error
        return records, outcome

    def _one(self, records: tally.Tally, outcome: Outcome, seq: int) -> bool:
        status, body = timed(records, CREATE, lambda: self.api.create_order(
            self.seller, side="sell", pair=PAIR, amount_micro_rtc=AMOUNT_MICRO_RTC,
            price_nano_quote=self.price_base + seq, eth_address=SELLER_QUOTE_ADDRESS))
        if status != 201:
            if body.get("order_id"):
                outcome.leftovers.append(self._leftover(body["order_id"], None, "create", status, body))
            return False
        order_id, secret = body["order_id"], body["htlc_secret"]
        status, body = timed(records, MATCH, lambda: self.api.match(self.buyer, order_id, BUYER_QUOTE_ADDRESS))
        if status != 200:
            outcome.leftovers.append(self._leftover(order_id, secret, "match", status, body))
            return False
        status, body = timed(records, CONFIRM, lambda: self.api.confirm(
            order_id, secret=secret, quote_tx=f"0xbench{seq:08x}"))
        if status != 200 or body.get("status") not in SETTLED:
            outcome.leftovers.append(self._leftover(order_id, secret, "confirm", status, body))
            return False
        outcome.lifecycles += 1
        return True

    def _leftover(self, order_id: str, secret: str | None, stage: str, status: int, body: dict) -> dict[str, Any]:
        return {"order_id": order_id, "secret": secret, "stage": stage, "http_status": status,
                "order_status": body.get("status"), "error": body.get("error"),
                "seller_seed": self.seller_seed, "buyer_seed": self.buyer_seed}


def read_paths(order_ids: list[str]) -> list[tuple[str, str]]:
    """The read mix, as ``(label, path)``: the three list/aggregate reads and one order by
    id, in turn; the ids rotate so every order is read."""
    fixed = [("GET /api/orders?pair=RTC/USDC", "/api/orders?pair=RTC/USDC"),
             ("GET /api/orderbook?pair=RTC/USDC", "/api/orderbook?pair=RTC/USDC"),
             ("GET /api/stats", "/api/stats")]
    paths: list[tuple[str, str]] = []
    for order_id in order_ids or [""]:
        paths.extend(fixed)
        if order_id:
            paths.append(("GET /api/orders/<id>", f"/api/orders/{order_id}"))
    return paths


@dataclass
class ReadClient:
    """GETs ``paths`` in turn on one keep-alive connection, from ``offset`` in the list (so
    that concurrent readers do not all read the same endpoint at the same moment)."""

    url: str
    paths: list[tuple[str, str]]
    offset: int = 0
    kind: str = "reads"

    def setup(self) -> None:
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        self.conn.request("GET", "/healthz")
        self.conn.getresponse().read()

    def run(self, end_at: float) -> tuple[tally.Tally, Outcome]:
        records, index = tally.new(), self.offset
        while time.time() < end_at:
            label, path = self.paths[index % len(self.paths)]
            index += 1
            started = time.perf_counter()
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                tally.record(records, label, tally.TRANSPORT, None)
                self.conn.close()  # the next request reconnects (http.client's auto_open)
                continue
            tally.record(records, label, response.status, (time.perf_counter() - started) * 1000)
        self.conn.close()
        return records, Outcome()


Client = LifecycleClient | ReadClient


@dataclass
class GroupResult:
    """What one run of clients did: records merged by label, outcomes, the driver's CPU."""

    records: tally.Tally
    outcome: Outcome
    started_at: float  # unix seconds
    seconds: float  # from the start signal to the last client's end
    driver_cpu_seconds: float
    processes: int
    errors: list[str]


def _run_threads(clients: list[Client], end_at: float) -> tuple[tally.Tally, Outcome, list[str]]:
    records, outcome, errors = tally.new(), Outcome(), []
    lock = threading.Lock()

    def work(client: Client) -> None:
        try:
            got, done = client.run(end_at)
        except Exception as exc:  # noqa: BLE001 - reported with the run; the other clients go on
            with lock:
                errors.append(f"{client.kind} client crashed: {type(exc).__name__}: {exc}")
            return
        with lock:
            tally.merge(records, got)
            outcome.add(done)

    threads = [threading.Thread(target=work, args=(client,), name=f"bench-{client.kind}") for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, outcome, errors


def run_in_process(clients: list[Client], end_at: float) -> tuple[tally.Tally, Outcome, list[str]]:
    """Set up and run ``clients`` as threads of this process (seeding; not measured)."""
    for client in clients:
        client.setup()
    return _run_threads(clients, end_at)


def _driver_main(clients: list[Client], ready: Any, go: Any, window: Any, results: Any) -> None:
    """A driver process: set up, report ready, wait for the signal, run, report."""
    try:
        for client in clients:
            client.setup()
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which fails the run with it
        results.put({"error": f"setup failed: {type(exc).__name__}: {exc}"})
        return
    ready.put(True)
    if not go.wait(READY_TIMEOUT_SECONDS * 2):
        results.put({"error": "no start signal"})
        return
    before = resource.getrusage(resource.RUSAGE_SELF)
    records, outcome, errors = _run_threads(clients, window[1])
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results.put({"records": records, "outcome": outcome, "errors": errors, "finished_at": time.time(),
                 "cpu_seconds": cpu})


def run_group(clients: list[Client], processes: int, seconds: float,
              before_start: Callable[[], None] = lambda: None) -> GroupResult:
    """Run ``clients`` for ``seconds`` spread round-robin over up to ``processes`` spawned
    driver processes; ``before_start`` runs once all are set up, just before the signal
    (the caller takes its "before" measurements there)."""
    count = max(1, min(processes, len(clients)))
    shares = [clients[i::count] for i in range(count)]
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    window = ctx.Array("d", 2)
    procs = [ctx.Process(target=_driver_main, args=(share, ready, go, window, results), daemon=True,
                         name=f"bench-driver-{i}") for i, share in enumerate(shares)]
    for proc in procs:
        proc.start()
    errors: list[str] = []
    try:
        _wait_ready(procs, ready, results)
        before_start()
        started = time.time()
        window[0], window[1] = started, started + seconds
        go.set()
        merged, outcome, cpu, finished = tally.new(), Outcome(), 0.0, started
        for _ in procs:
            got = results.get(timeout=seconds + REQUEST_TIMEOUT_SECONDS * 4)
            if "error" in got:
                errors.append(got["error"])
                continue
            tally.merge(merged, got["records"])
            outcome.add(got["outcome"])
            errors.extend(got["errors"])
            cpu += got["cpu_seconds"]
            finished = max(finished, got["finished_at"])
    finally:
        go.set()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
    return GroupResult(records=merged, outcome=outcome, started_at=started, seconds=finished - started,
                       driver_cpu_seconds=cpu, processes=count, errors=errors)


def _wait_ready(procs: list, ready: Any, results: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    waiting = len(procs)
    while waiting:
        try:
            ready.get(timeout=0.5)
            waiting -= 1
            continue
        except queue.Empty:
            pass
        try:
            failed = results.get_nowait()
            raise RuntimeError(f"a driver process failed: {failed.get('error')}")
        except queue.Empty:
            pass
        if any(not proc.is_alive() for proc in procs) or time.monotonic() > deadline:
            raise RuntimeError("a driver process died or did not get ready in time")
