"""The outbox worker: deliver every committed event at least once (docs/protocol.md §6).

A transition writes its ``outbox`` row in its own transaction (``outbox.enqueue``); this
module delivers it. ``run_once(bridge, now)`` is one pass (``otc-bridge worker``, and a
background thread in ``serve`` and ``dev``):

1. Take the lease ``outbox`` (one driver across threads and processes), else skip.
2. Fan out: each due ``pending`` outbox row gets one ``outbox_deliveries`` row per
   destination that wants its topic (every matching ``OTC_WEBHOOKS`` entry, and the alert
   webhook ``RC_SOPHIACHECK_WEBHOOK`` for ``alert``) and moves to ``delivering``, in one
   transaction (CAS on its state). A row no destination wants is ``delivered`` at once.
3. Per destination, due deliveries oldest first: claim (CAS from ``pending``, or from a
   ``delivering`` whose claim expired, to ``delivering`` with ``attempts + 1``; while
   delivering, ``next_attempt_at`` is the claim's expiry), commit, POST with no transaction
   open, then CAS the outcome. 2xx: ``delivered``, never sent again. Anything else (3xx,
   4xx, 5xx, timeout, refused): ``pending`` again at ``now + backoff_seconds(attempts)``,
   or ``dead`` once ``attempts`` reaches ``OTC_OUTBOX_MAX_ATTEMPTS``. A destination that
   failed is not tried again in the same pass (no head-of-line wait on a dead receiver).
4. The outbox row follows its deliveries: ``delivered`` when all are; ``dead`` when one
   died and none is left. A death raises an ``outbox_dead`` operator alert (through the
   outbox, deduplicated per order version), except for ``alert`` rows: a dead alert is
   logged at error level and counted, never re-alerted (no alert loop).

At least once: a worker that dies between its claim and the outcome leaves the delivery
``delivering``; once the claim expires (``OTC_OUTBOX_VISIBILITY_SECONDS``) the next pass
sends the same event id again, and receivers deduplicate on it. A delivery whose
destination was removed from the configuration ends ``dead`` (logged, not alerted).

Latency: the loop polls every ``OTC_OUTBOX_INTERVAL_SECONDS``; :func:`notify` after a
commit wakes it at once.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sqlite3
from collections import Counter
from collections.abc import Callable

import requests

from otc_bridge.context import Bridge
from otc_bridge.crashpoints import crash_point
from otc_bridge.domain import destinations
from otc_bridge.notify import webhooks
from otc_bridge.storage import heartbeats, leases, orders, outbox
from otc_bridge.storage.db import Tx

log = logging.getLogger(__name__)

LEASE_NAME = "outbox"
COUNTS = ("fanned_out", "delivered", "retried", "dead", "errors")
BATCH = 100


def backoff_seconds(attempt: int, *, base: int = 2, cap: int = 3600, rng: random.Random | None = None) -> int:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential with "equal jitter": ``ceil(uniform(d / 2, d))`` with
    ``d = min(cap, base * 2 ** (attempt - 1))``, so retries spread out (no thundering herd),
    yet, below the cap, the delay after attempt n + 1 is never shorter than any after attempt
    n. Defaults: 1-2 s, 2-4 s, 4-8 s, ... up to 30-60 min. Raises ``ValueError`` if
    ``attempt < 1``.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    ceiling = min(cap, base * 2 ** min(attempt - 1, 40))
    return max(1, math.ceil((rng or random).uniform(ceiling / 2, ceiling)))


def run_once(bridge: Bridge, now: int | None = None, *, session: requests.Session | None = None,
             limit: int = BATCH) -> dict[str, int]:
    """One delivery pass; returns the counts in ``COUNTS`` plus ``skipped_locked`` (1 if
    another process held the lease) and ``more`` (1 if a batch of ``limit`` was full).

    ``now`` (unix s) fixes the pass's clock (tests); by default ``bridge.now()`` is read at
    each step. A failure on one delivery is logged with its traceback, counted in ``errors``
    and retried later like any failed attempt; it never stops the pass.
    """
    clock = (lambda: now) if now is not None else bridge.now
    worker = _Pass(bridge, clock, limit)
    # Held while this process lives (a file lock the kernel frees if it dies: docs/leases.md).
    lease = leases.try_hold(bridge.db, LEASE_NAME, now=clock())
    if lease is None:
        return {**dict.fromkeys(COUNTS, 0), "skipped_locked": 1, "more": 0}
    worker.session = session or requests.Session()
    try:
        worker.fan_out()
        hooks = webhooks.destinations(bridge.config)
        for hook in hooks.values():
            worker.deliver_to(hook)
        worker.drop_orphans(set(hooks))
    finally:
        lease.release()
        if session is None:
            worker.session.close()
    result = {name: worker.counts.get(name, 0) for name in COUNTS}
    result.update(skipped_locked=0, more=int(worker.counts.get("more", 0) > 0))
    heartbeats.record_pass(bridge.db, LEASE_NAME, result, int(clock()))
    if any(result.values()):
        log.info("outbox pass: %s", {k: v for k, v in result.items() if v})
    return result


class _Pass:
    """State of one pass: the clock, the HTTP session and the counts."""

    session: requests.Session

    def __init__(self, bridge: Bridge, clock: Callable[[], int], limit: int) -> None:
        self.bridge, self.db, self.config = bridge, bridge.db, bridge.config
        self.clock, self.limit = clock, limit
        self.counts: Counter[str] = Counter()

    def fan_out(self) -> None:
        """Give each due ``pending`` outbox row its deliveries (see the module docstring)."""
        now, hooks = self.clock(), webhooks.destinations(self.config).values()
        rows = self.db.read("SELECT outbox_id, topic FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
                            "ORDER BY outbox_id LIMIT ?", (now, self.limit))
        if not rows:
            return
        with self.db.transaction() as tx:
            for row in rows:
                wanted = [hook.name for hook in hooks if hook.accepts(row["topic"])]
                state = "delivering" if wanted else "delivered"
                cur = tx.execute("UPDATE outbox SET state = ?, delivered_at = ? "
                                 "WHERE outbox_id = ? AND state = 'pending'",
                                 (state, None if wanted else now, row["outbox_id"]))
                if cur.rowcount != 1:
                    continue
                if not wanted and row["topic"] == "alert":
                    log.warning("operator alert %s has no destination: set RC_SOPHIACHECK_WEBHOOK or an "
                                "OTC_WEBHOOKS entry with events ['alert']", row["outbox_id"])
                for name in wanted:
                    tx.execute("INSERT OR IGNORE INTO outbox_deliveries (outbox_id, destination, next_attempt_at,"
                               " created_at) VALUES (?, ?, ?, ?)", (row["outbox_id"], name, now, now))
                self.counts["fanned_out"] += 1
        if len(rows) == self.limit:
            self.counts["more"] += 1

    def due(self, destinations: list[str], *, exclude: bool = False) -> list[sqlite3.Row]:
        """Due deliveries to ``destinations`` (or to any other, ``exclude``), with their events."""
        marks = ", ".join("?" * len(destinations))
        return self.db.read(
            "SELECT d.*, o.event_key, o.topic, o.order_id, o.order_version, o.payload, o.created_at AS event_at "  # noqa: S608
            "FROM outbox_deliveries d JOIN outbox o USING (outbox_id) "
            f"WHERE d.destination {'NOT IN' if exclude else 'IN'} ({marks}) "
            "AND d.state IN ('pending', 'delivering') AND d.next_attempt_at <= ? ORDER BY d.delivery_id LIMIT ?",
            (*destinations, self.clock(), self.limit))

    def deliver_to(self, hook: destinations.Webhook) -> None:
        """Deliver ``hook``'s due rows, oldest first, until one fails."""
        rows = self.due([hook.name])
        if len(rows) == self.limit:
            self.counts["more"] += 1
        for row in rows:
            attempts = self.claim(row)
            if attempts is not None and not self.deliver_one(hook, row, attempts):
                break

    def claim(self, row: sqlite3.Row) -> int | None:
        """CAS the delivery to ``delivering`` (committed before any HTTP); its new attempt count."""
        now = self.clock()
        with self.db.transaction() as tx:
            cur = tx.execute(
                "UPDATE outbox_deliveries SET state = 'delivering', attempts = attempts + 1, next_attempt_at = ? "
                "WHERE delivery_id = ? AND state = ? AND attempts = ? AND next_attempt_at <= ?",
                (now + self.config.outbox_visibility_seconds, row["delivery_id"], row["state"], row["attempts"], now))
        return row["attempts"] + 1 if cur.rowcount == 1 else None

    def deliver_one(self, hook: destinations.Webhook, row: sqlite3.Row, attempts: int) -> bool:
        """POST the claimed delivery and record the outcome; True if it was delivered."""
        if self.db.in_write_transaction():
            raise RuntimeError("webhook delivery attempted inside a write transaction")
        event = webhooks.Event(id=row["event_key"], type=row["topic"], order_id=row["order_id"],
                               order_version=row["order_version"], created_at=row["event_at"],
                               data=json.loads(row["payload"]))
        timeout = (self.config.webhook_connect_timeout_seconds, self.config.webhook_read_timeout_seconds)
        try:
            crash_point("outbox:before_send")
            outcome = webhooks.post(self.session, hook, event, now=self.clock(), timeout=timeout)
            crash_point("outbox:after_send")
        except Exception:
            log.exception("delivery of event %s to %s failed unexpectedly", event.id, hook.name)
            self.counts["errors"] += 1
            outcome = webhooks.Outcome(ok=False, error="internal error in the bridge (see its log)")
        if not outcome.ok:
            log.warning("event %s to %s: attempt %d failed: %s", event.id, hook.name, attempts, outcome.error)
        with self.db.transaction() as tx:
            self.record(tx, row, attempts, outcome.error if not outcome.ok else None)
        return outcome.ok

    def record(self, tx: Tx, row: sqlite3.Row, attempts: int, error: str | None) -> None:
        """CAS the claimed delivery to its outcome (``error`` ``None`` = delivered)."""
        now, dead = self.clock(), error is not None and attempts >= self.config.outbox_max_attempts
        if error is None:
            state, at = "delivered", now
        elif dead:
            state, at = "dead", now
        else:
            state = "pending"
            at = now + backoff_seconds(attempts, base=self.config.outbox_backoff_base_seconds,
                                       cap=self.config.outbox_backoff_max_seconds)
        cur = tx.execute(
            "UPDATE outbox_deliveries SET state = ?, next_attempt_at = ?, last_error = ?, delivered_at = ? "
            "WHERE delivery_id = ? AND state = 'delivering' AND attempts = ?",
            (state, at, error, now if error is None else None, row["delivery_id"], attempts))
        if cur.rowcount != 1:
            log.warning("delivery %s was reclaimed before its outcome was recorded", row["delivery_id"])
            return
        self.counts[{"delivered": "delivered", "dead": "dead", "pending": "retried"}[state]] += 1
        _follow(tx, row["outbox_id"], now, error)
        if dead:
            _alert_dead(tx, row, attempts, error or "", now)

    def drop_orphans(self, configured: set[str]) -> None:
        """Deliveries to a destination no longer configured end ``dead`` (an operator removed it)."""
        orphans = self.due(sorted(configured), exclude=True)
        if not orphans:
            return
        with self.db.transaction() as tx:
            for row in orphans:
                error = f"destination {row['destination']} is no longer configured"
                cur = tx.execute("UPDATE outbox_deliveries SET state = 'dead', last_error = ? "
                                 "WHERE delivery_id = ? AND state = ? AND attempts = ?",
                                 (error, row["delivery_id"], row["state"], row["attempts"]))
                if cur.rowcount == 1:
                    log.warning("event %s: %s; not delivered there", row["event_key"], error)
                    self.counts["dead"] += 1
                    _follow(tx, row["outbox_id"], self.clock(), error)


def _follow(tx: Tx, outbox_id: int, now: int, error: str | None) -> None:
    """Bring the outbox row in line with its deliveries (attempts = the most any made)."""
    states = dict(tx.execute("SELECT state, COUNT(*) FROM outbox_deliveries WHERE outbox_id = ? GROUP BY state",
                             (outbox_id,)).fetchall())
    if states.get("pending") or states.get("delivering"):
        state = "delivering"
    else:
        state = "dead" if states.get("dead") else "delivered"
    tx.execute(
        "UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error), delivered_at = ?, "
        "attempts = (SELECT MAX(attempts) FROM outbox_deliveries WHERE outbox_id = ?) WHERE outbox_id = ?",
        (state, error, now if state == "delivered" else None, outbox_id, outbox_id))


def _alert_dead(tx: Tx, row: sqlite3.Row, attempts: int, error: str, now: int) -> None:
    """The ``outbox_dead`` operator alert for a delivery that gave up (never for an alert row)."""
    message = (f"event {row['event_key']} was not delivered to {row['destination']} "
               f"after {attempts} attempt(s): {error}")
    if row["topic"] == "alert":
        log.error("operator alert lost: %s", message)
        return
    log.error("outbox delivery dead: %s", message)
    order = orders.get_order(tx.conn, row["order_id"]) if row["order_id"] else None
    if order is not None:
        outbox.alert(tx, order, code="outbox_dead", message=message, now=now)
        return
    key = f"alert:outbox_dead:{row['event_key']}"
    if tx.execute("SELECT 1 FROM outbox WHERE event_key = ?", (key,)).fetchone() is None:
        outbox.enqueue(tx, topic="alert", event_key=key, now=now,
                      payload={"code": "outbox_dead", "order_id": None, "message": message, "status": None})
