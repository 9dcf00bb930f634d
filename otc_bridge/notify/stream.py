"""The live-stream hub: one tail thread per process reads new ``order_events`` rows and fans
them out to subscribers' bounded queues; replay from a ``Last-Event-ID``; SSE framing.

The route and the wire contract (what is sent, filters, resume, the serving model) are
described in :mod:`otc_bridge.api.stream`. Here: :class:`StreamHub` (subscribe, tail,
drop a client that does not read), :func:`fetch_events` (one short read per poll, never a
transaction held) and :func:`frames` (replay, then live, with no gap and no duplicate).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from otc_bridge.domain import views
from otc_bridge.domain.order import Order
from otc_bridge.notify import metrics
from otc_bridge.storage import orders
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)
PAGE_SIZE = 500
QUEUE_SIZE = 1000
RETRY_MS = 3000
RETRY_AFTER_SECONDS = 5


class StreamFull(RuntimeError):
    """Every stream slot of this process is taken."""


@dataclass(frozen=True)
class Filters:
    """What a client asked to see; ``wallet`` is canonical."""

    pair: str | None = None
    order_id: str | None = None
    wallet: str | None = None

    def matches(self, event: StreamEvent) -> bool:
        """Does ``event`` pass every filter set?"""
        return ((self.pair is None or event.pair == self.pair)
                and (self.order_id is None or event.order_id == self.order_id)
                and (self.wallet is None or self.wallet in event.wallets))

    def sql(self) -> tuple[str, list]:
        """``AND ...`` conditions on ``order_events e JOIN orders o``, and their parameters."""
        parts = [(self.pair, "o.pair = ?", [self.pair]), (self.order_id, "e.order_id = ?", [self.order_id]),
                 (self.wallet, "(o.maker_wallet = ? OR o.taker_wallet = ?)", [self.wallet, self.wallet])]
        used = [(clause, params) for value, clause, params in parts if value]
        return "".join(f" AND {clause}" for clause, _ in used), [p for _, params in used for p in params]


@dataclass(frozen=True)
class StreamEvent:
    """One streamed event, its frame encoded once for every subscriber."""

    event_id: int
    order_id: str
    pair: str
    wallets: tuple[str | None, str | None]
    frame: bytes


def fetch_events(db: Database, after: int, *, until: int | None = None, filters: Filters = Filters(),
                 limit: int = PAGE_SIZE) -> list[StreamEvent]:
    """Streamed events with ``after < event_id [<= until]`` matching ``filters``, oldest first,
    at most ``limit`` (two short reads, no transaction held)."""
    where, params = filters.sql()
    if until is not None:
        where += " AND e.event_id <= ?"
        params.append(until)
    rows = db.read("SELECT e.* FROM order_events e JOIN orders o ON o.order_id = e.order_id "  # noqa: S608
                   f"WHERE e.event_id > ? AND e.kind IN ('transition', 'note'){where} "
                   "ORDER BY e.event_id LIMIT ?", (after, *params, limit))
    if not rows:
        return []
    ids = sorted({row["order_id"] for row in rows})
    marks = ",".join("?" * len(ids))
    found = {o.order_id: o for o in orders.find(db.connection(), f"order_id IN ({marks})", tuple(ids))}
    return [_event(row, found[row["order_id"]]) for row in rows]


def _event(row: sqlite3.Row, order: Order) -> StreamEvent:
    data = {"order_id": row["order_id"], "order_version": row["order_version"],
            "event": views.event_view(row), "order": views.order_view(order)}
    frame = f"id: {row['event_id']}\nevent: order\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
    return StreamEvent(row["event_id"], row["order_id"], order.pair, (order.maker_wallet, order.taker_wallet),
                       frame.encode())


@dataclass(eq=False)
class Subscription:
    """One client's queue. ``start_id``: the tail's cursor when it subscribed (replay ends
    there, live delivery starts after it). ``dropped``: no more events will be queued."""

    filters: Filters
    start_id: int
    queue: queue.Queue[StreamEvent | None]
    dropped: bool = False
    closed: bool = False


class StreamHub:
    """The process's subscribers and the tail thread that feeds them (see the module doc).

    ``start_tail=False`` (tests) starts no thread: the caller drives :meth:`poll_once`.
    """

    def __init__(self, db: Database, *, max_clients: int, poll_seconds: float, heartbeat_seconds: float,
                 queue_size: int = QUEUE_SIZE, start_tail: bool = True) -> None:
        self.db = db
        self.start_tail = start_tail
        self.max_clients = max_clients
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._subscribers: set[Subscription] = set()
        self._active = 0
        self._cursor: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def active(self) -> int:
        """Open streams (slots taken) in this process."""
        with self._cond:
            return self._active

    def wait_for_active(self, predicate: Callable[[int], bool], timeout: float) -> bool:
        """Block until ``predicate(active)`` holds or ``timeout`` seconds pass; returns whether it held."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._active), timeout)

    def subscribe(self, filters: Filters) -> Subscription:
        """Take a slot; raises :class:`StreamFull` when none is left. Starts the tail if idle."""
        with self._cond:
            if self._active >= self.max_clients or self._stop.is_set():
                raise StreamFull()
            if self._cursor is None or (self.start_tail and self._thread is None):
                # No subscriber needs continuity with an earlier cursor: start at the newest event.
                self._cursor = self.db.read_one("SELECT COALESCE(MAX(event_id), 0) FROM order_events")[0]
            if self.start_tail and self._thread is None:
                self._thread = threading.Thread(target=self._tail, daemon=True, name="otc-stream-tail")
                self._thread.start()
            sub = Subscription(filters, self._cursor, queue.Queue(self.queue_size))
            self._subscribers.add(sub)
            self._active += 1
        metrics.stream_opened()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Give the slot back (idempotent: the generator and the response both call it)."""
        with self._cond:
            if sub.closed:
                return
            sub.closed = True
            self._subscribers.discard(sub)
            self._active -= 1
            self._cond.notify_all()
        metrics.stream_closed()

    def _tail(self) -> None:
        try:
            while True:
                with self._cond:
                    if not self._subscribers or self._stop.is_set():
                        self._thread = None  # decided under the lock subscribe() takes
                        return
                try:
                    count = self.poll_once()
                except Exception:
                    log.exception("stream tail: reading order_events failed; retrying")
                    count = 0
                if count < PAGE_SIZE:  # a full page means more is already waiting
                    self._stop.wait(self.poll_seconds)
        finally:
            with self._cond:
                if self._thread is threading.current_thread():  # died of an unexpected error
                    self._thread = None
            self.db.close()  # this thread's connection

    def poll_once(self) -> int:
        """Read the events after the cursor once and fan them out; returns how many. A
        subscriber whose queue is full is dropped (its client resumes from the log)."""
        with self._cond:
            cursor = self._cursor or 0
        events = fetch_events(self.db, cursor)
        with self._cond:
            for event in events:
                for sub in [s for s in self._subscribers if s.filters.matches(event)]:
                    try:
                        sub.queue.put_nowait(event)
                    except queue.Full:
                        log.warning("stream client too slow (%d events queued); dropping it", self.queue_size)
                        sub.dropped = True
                        self._subscribers.discard(sub)
            if events:
                self._cursor = events[-1].event_id
        return len(events)

    def close(self) -> None:
        """End every open stream (after what is queued) and stop the tail; later clients get
        503. For worker shutdown: the clients resume on another worker from Last-Event-ID."""
        self._stop.set()
        with self._cond:
            for sub in self._subscribers:
                sub.dropped = True
                with contextlib.suppress(queue.Full):  # a full queue: it ends once drained
                    sub.queue.put_nowait(None)  # wakes its generator now
            self._subscribers.clear()


def frames(hub: StreamHub, sub: Subscription, resume_after: int | None) -> Iterator[bytes]:
    """The response body: ``ready``, the replay after ``resume_after`` (if given), then live
    events and heartbeats until the client goes or is dropped. Always frees the slot."""
    try:
        last = sub.start_id if resume_after is None else resume_after
        ready = json.dumps({"last_event_id": last, "replay": resume_after is not None})
        yield f"retry: {RETRY_MS}\nid: {last}\nevent: ready\ndata: {ready}\n\n".encode()
        page_full = resume_after is not None
        while page_full:
            page = fetch_events(hub.db, last, until=sub.start_id, filters=sub.filters)
            for event in page:
                yield event.frame
            last = page[-1].event_id if page else last
            page_full = len(page) == PAGE_SIZE
        while not (sub.dropped and sub.queue.empty()):
            try:
                event = sub.queue.get(timeout=hub.heartbeat_seconds)
            except queue.Empty:
                yield b": keep-alive\n\n"
                continue
            if event is None:  # the hub closed
                return
            # A client resuming from another worker may be ahead of this process's tail.
            if event.event_id > last:
                last = event.event_id
                yield event.frame
    finally:
        hub.unsubscribe(sub)
