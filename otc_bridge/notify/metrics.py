"""Prometheus metrics (``GET /metrics``) and the workers' pass heartbeats.

Two kinds of numbers, two sources:

* **State in SQLite**, read when scraped, so every process answers the same and nothing is
  lost on restart: orders by status, transitions (counted from ``order_events``, which is
  append-only, so the count is kept incrementally), outbox rows by state and the age of the
  oldest undelivered one, stuck orders, and the reconciler's last pass and cumulative
  actions (the ``heartbeats`` table, written by :func:`record_pass`).
* **Events inside a process**, counted with ``prometheus_client`` instruments: node calls
  (latency histogram and count by endpoint and outcome, observed at the HTTP edge in
  ``app.TransactionGuardSession``), invariant failures (``invariants.failure_counts()``),
  live streams. Under gunicorn every worker counts its own; set
  ``PROMETHEUS_MULTIPROC_DIR`` before ``prometheus_client`` is first imported (``serve``
  does) and each scrape sums all workers, the library's multiprocess mode.

Nothing here runs at import: instruments are created on first use.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from otc_bridge import crashpoints
from otc_bridge.context import Bridge
from otc_bridge.domain.status import Status
from otc_bridge.storage import invariants, pauses
from otc_bridge.storage.db import Database
from otc_bridge.storage.heartbeats import Heartbeat, read_heartbeats

log = logging.getLogger(__name__)
#: A ``payout_pending`` order unchanged this long counts as stuck (the node normally
#: confirms its pending pool well within it).
STUCK_PAYOUT_SECONDS = 3600
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_NODE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


# --- process instruments --------------------------------------------------------------------

@dataclass(frozen=True)
class Instruments:
    """This process's ``prometheus_client`` instruments (one set per process)."""

    node_seconds: Histogram
    node_calls: PromCounter
    invariant_failures: PromCounter
    stream_clients: Gauge
    stream_rejected: PromCounter

    def all(self) -> tuple:
        """Every instrument (to register in a registry)."""
        return (self.node_seconds, self.node_calls, self.invariant_failures, self.stream_clients,
                self.stream_rejected)


_instruments: Instruments | None = None
_instruments_lock = threading.Lock()
_invariants_seen: Counter[str] = Counter()
_invariants_lock = threading.Lock()


def instruments() -> Instruments:
    """The process's instruments, created on first use (registered in no global registry)."""
    global _instruments
    with _instruments_lock:
        if _instruments is None:
            labels = ("endpoint", "outcome")
            _instruments = Instruments(
                node_seconds=Histogram("otc_node_call_seconds", "Escrow node call latency.", labels,
                                       registry=None, buckets=_NODE_BUCKETS),
                node_calls=PromCounter("otc_node_calls", "Escrow node calls.", labels, registry=None),
                invariant_failures=PromCounter("otc_invariant_failures", "Post-commit invariant failures.",
                                               ("code",), registry=None),
                stream_clients=Gauge("otc_stream_clients", "Open /api/stream connections.", registry=None,
                                     multiprocess_mode="livesum"),
                stream_rejected=PromCounter("otc_stream_rejected", "Streams refused: all slots taken.",
                                            registry=None),
            )
        return _instruments


def node_outcome(status_code: int | None) -> str:
    """``ok`` for 2xx, ``failed`` for 4xx (an explicit refusal), ``unknown`` for anything else
    (5xx, 3xx, no answer): the escrow client's three outcomes, judged by status alone."""
    if status_code is None:
        return "unknown"
    if 200 <= status_code < 300:
        return "ok"
    return "failed" if 400 <= status_code < 500 else "unknown"


def observe_node_call(method: str, path: str, status_code: int | None, seconds: float) -> None:
    """Count one HTTP call to the node; ``endpoint`` is its short name (``claim``, ``transfer``,
    see :func:`otc_bridge.crashpoints.call_name`), ``status_code`` ``None`` if it raised."""
    labels = (crashpoints.call_name(method.upper(), path), node_outcome(status_code))
    inst = instruments()
    inst.node_seconds.labels(*labels).observe(seconds)
    inst.node_calls.labels(*labels).inc()


def stream_opened() -> None:
    """A ``/api/stream`` client took a slot."""
    instruments().stream_clients.inc()


def stream_closed() -> None:
    """A ``/api/stream`` client gave its slot back."""
    instruments().stream_clients.dec()


def stream_rejected() -> None:
    """A ``/api/stream`` client was refused: every slot was taken (503)."""
    instruments().stream_rejected.inc()


def _sync_invariant_failures() -> None:
    # invariants.py keeps a plain per-process Counter; mirror its growth into the instrument
    # so multiprocess mode can sum the workers.
    counter = instruments().invariant_failures
    with _invariants_lock:
        for code, total in invariants.failure_counts().items():
            if total > _invariants_seen[code]:
                counter.labels(code).inc(total - _invariants_seen[code])
                _invariants_seen[code] = total


# --- the scrape -----------------------------------------------------------------------------

class BridgeCollector:
    """Collects the SQLite-backed metrics of one bridge at scrape time (read-only queries)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._lock = threading.Lock()
        self._transitions_seen_to = 0
        self._transitions: Counter[tuple[str, str]] = Counter()

    def describe(self) -> list:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        """The metric families, queried now (short reads, no transaction held)."""
        db, now = self.bridge.db, self.bridge.now()
        yield self._orders(db)
        yield self._transition_counts(db)
        yield from self._outbox(db, now)
        yield self._stuck(db, now)
        yield from self._heartbeats(db)

    def _orders(self, db: Database) -> Metric:
        family = GaugeMetricFamily("otc_orders", "Orders by status.", labels=["status"])
        counts = dict(db.read("SELECT status, COUNT(*) FROM orders GROUP BY status"))
        for status in Status:
            family.add_metric([status.value], counts.get(status.value, 0))
        return family

    def _transition_counts(self, db: Database) -> Metric:
        # order_events is append-only (triggers), so only rows past the last scrape are counted.
        with self._lock:
            newest = db.read_one("SELECT COALESCE(MAX(event_id), 0) FROM order_events")[0]
            rows = db.read("SELECT COALESCE(from_status, 'none'), to_status, COUNT(*) FROM order_events "
                           "WHERE kind = 'transition' AND event_id > ? AND event_id <= ? GROUP BY 1, 2",
                           (self._transitions_seen_to, newest))
            for frm, to, count in rows:
                self._transitions[(frm, to)] += count
            self._transitions_seen_to = newest
            family = CounterMetricFamily("otc_order_transitions", "Order status transitions.",
                                         labels=["from", "to"])
            for (frm, to), count in sorted(self._transitions.items()):
                family.add_metric([frm, to], count)
        return family

    def _outbox(self, db: Database, now: int) -> Iterator[Metric]:
        rows = GaugeMetricFamily("otc_outbox_rows", "Outbox rows by state.", labels=["state"])
        counts = dict(db.read("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        for state in ("pending", "delivering", "delivered", "dead"):
            rows.add_metric([state], counts.get(state, 0))
        yield rows
        oldest = db.read_one("SELECT MIN(created_at) FROM outbox WHERE state IN ('pending', 'delivering')")[0]
        yield GaugeMetricFamily("otc_outbox_oldest_pending_age_seconds",
                                "Age of the oldest undelivered outbox row (0 if none).",
                                value=max(0, now - oldest) if oldest is not None else 0)

    def _stuck(self, db: Database, now: int) -> Metric:
        grace = now - self.bridge.config.settlement_stuck_seconds
        counts = dict(db.read(
            "SELECT status, COUNT(*) FROM orders WHERE (status IN ('locking', 'settling', 'refund_pending') "
            "AND updated_at <= ?) OR (status = 'payout_pending' AND updated_at <= ?) "
            "OR status = 'settlement_recovery' GROUP BY status", (grace, now - STUCK_PAYOUT_SECONDS)))
        family = GaugeMetricFamily(
            "otc_stuck_orders", "Orders stuck: locking/settling/refund_pending past OTC_SETTLEMENT_STUCK_SECONDS, "
            "payout_pending past 1 h, every settlement_recovery.", labels=["status"])
        for status in ("locking", "settling", "refund_pending", "payout_pending", "settlement_recovery"):
            family.add_metric([status], counts.get(status, 0))
        return family

    def _heartbeats(self, db: Database) -> Iterator[Metric]:
        try:
            beats = read_heartbeats(db)
        except sqlite3.OperationalError:
            log.warning("no heartbeats table: reconciler metrics left out (schema not migrated?)")
            return
        last_run = GaugeMetricFamily("otc_worker_last_run_timestamp_seconds",
                                     "Unix time of each worker's last recorded pass.", labels=["worker"])
        for beat in beats.values():
            last_run.add_metric([beat.name], beat.last_run_at)
        yield last_run
        yield from self._coverage(db, beats.get("coverage"))
        beat = beats.get("reconciler")
        if beat is None:
            return
        yield GaugeMetricFamily("otc_reconcile_last_run_timestamp_seconds",
                                "Unix time the last reconcile pass ended.", value=beat.last_run_at)
        yield CounterMetricFamily("otc_reconcile_passes", "Reconcile passes recorded.", value=beat.passes)
        actions = CounterMetricFamily("otc_reconcile_actions", "Reconcile pass counts, summed over passes.",
                                      labels=["action"])
        for action, count in sorted(beat.totals.items()):
            actions.add_metric([action], count)
        yield actions


    @staticmethod
    def _coverage(db: Database, beat: Heartbeat | None) -> Iterator[Metric]:
        """The worker wallet's last coverage check (settlement.coverage) and the release pause."""
        paused = pauses.current(db.connection(), pauses.RELEASES) is not None
        yield GaugeMetricFamily("otc_releases_paused",
                                "1 while releases are paused (the worker wallet does not cover its queue).",
                                value=int(paused))
        if beat is None:
            return
        yield GaugeMetricFamily("otc_worker_balance_micro_rtc", "The worker wallet's confirmed balance at the "
                                "last check (micro-RTC).", value=beat.last.get("balance_micro_rtc", 0))
        yield GaugeMetricFamily("otc_worker_owed_micro_rtc", "Payouts and refunds queued from the worker, and "
                                "escrow it holds for matches, at the last check (micro-RTC).",
                                value=beat.last.get("owed_micro_rtc", 0))


def multiprocess_dir() -> str | None:
    """The multiprocess directory if ``PROMETHEUS_MULTIPROC_DIR`` is set, else ``None``."""
    return os.environ.get(MULTIPROC_VARIABLE) or None


def build_registry(bridge: Bridge) -> CollectorRegistry:
    """The registry ``/metrics`` renders for one app: the SQLite collector plus this
    process's instruments, or, in multiprocess mode, every worker's instruments summed."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(bridge))
    path = multiprocess_dir()
    if path:
        MultiProcessCollector(registry, path=path)
    else:
        for instrument in instruments().all():
            registry.register(instrument)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry`` (invariant counts brought up to date)."""
    _sync_invariant_failures()
    return generate_latest(registry)
