"""The outbox table: rows written inside the transaction that caused them, and operator alerts.

The delivery worker (:mod:`otc_bridge.notify.outbox_worker`) waits on :func:`wait_for_work`;
:func:`enqueue` wakes it after commit, so nothing here imports the worker.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from otc_bridge.domain.order import Order
from otc_bridge.storage.db import Tx
from otc_bridge.storage.events import NodeRef, record_event


def enqueue(
    tx: Tx, *, topic: str, payload: dict[str, Any], now: int,
    order_id: str | None = None, order_version: int | None = None, event_key: str | None = None,
) -> None:
    """Write an outbox row in the caller's transaction (delivered later, at least once).

    ``event_key`` is the stable id receivers deduplicate on; by default it is derived from
    the order and its version, so one transition can never enqueue twice.
    """
    key = event_key or f"{topic}:{order_id}:{order_version}"
    tx.after_commit(notify)
    tx.execute(
        "INSERT INTO outbox (event_key, topic, order_id, order_version, payload, next_attempt_at,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        (key, topic, order_id, order_version, json.dumps(payload, sort_keys=True), now, now),
    )


def alert(tx: Tx, order: Order, *, code: str, message: str, now: int, node: NodeRef | None = None) -> None:
    """Record an operator alert: an ``alert`` event plus an outbox row.

    Deduplicated per (order, version, code): re-detecting the same problem on the same
    order version does not alert again (the outbox's unique ``event_key`` decides).
    """
    key = f"alert:{code}:{order.order_id}:{order.order_version}"
    payload = {"code": code, "order_id": order.order_id, "message": message, "status": str(order.status)}
    inserted = tx.execute(
        "INSERT OR IGNORE INTO outbox (event_key, topic, order_id, order_version, payload, next_attempt_at,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        (key, "alert", order.order_id, order.order_version, json.dumps(payload, sort_keys=True), now, now),
    ).rowcount
    if inserted:
        tx.after_commit(notify)
        record_event(tx, order.order_id, order.order_version, "alert", actor="bridge",
                     reason=f"{code}: {message}", now=now, node=node)


def alert_once(tx: Tx, *, code: str, message: str, key: str, now: int) -> bool:
    """An operator alert about no single order (the worker wallet, a foreign job), enqueued
    once per ``key``; True if this call enqueued it."""
    payload = {"code": code, "order_id": None, "message": message, "status": None}
    inserted = tx.execute(
        "INSERT OR IGNORE INTO outbox (event_key, topic, order_id, order_version, payload, next_attempt_at,"
        " created_at) VALUES (?, 'alert', NULL, NULL, ?, ?, ?)",
        (f"alert:{code}:{key}", json.dumps(payload, sort_keys=True), now, now),
    ).rowcount == 1
    if inserted:
        tx.after_commit(notify)
    return inserted


log = logging.getLogger(__name__)

_work_arrived = threading.Event()


def notify() -> None:
    """Wake this process's outbox loop now. Call it after committing outbox rows (an
    ``after_commit`` callback); without it the loop finds them at its next poll."""
    _work_arrived.set()


def wait_for_work(timeout: float) -> bool:
    """Block until :func:`notify` or ``timeout`` seconds; True if notified. A notify during
    the pass that follows is kept for the next wait, so no wake-up is lost."""
    notified = _work_arrived.wait(timeout)
    _work_arrived.clear()
    return notified
