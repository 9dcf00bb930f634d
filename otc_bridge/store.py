"""Order rows: the compare-and-swap transition, the audit log and the outbox.

:func:`transition` is the only code that changes ``orders.status``. In one transaction it
writes the status change with ``order_version + 1`` (a CAS on status *and* version whose
row count is checked), the ``order_events`` row, and the outbox row for notifications
(SPEC §4 rule 5, the transactional outbox of §6).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from otc_bridge import views
from otc_bridge.crashpoints import crash_point
from otc_bridge.db import Tx
from otc_bridge.model import Status, check_transition
from otc_bridge.schema import ORDER_COLUMNS


class ConcurrentUpdate(RuntimeError):
    """The CAS matched no row: another actor changed the order first."""


@dataclass(frozen=True)
class NodeRef:
    """What a node call was and how it ended, for the audit log."""

    endpoint: str
    outcome: str
    ref: str | None = None
    detail: dict[str, Any] | None = None


def get_order(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    """The ``orders`` row, or ``None``."""
    return conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()


def transition(
    tx: Tx,
    order: sqlite3.Row,
    to: Status,
    *,
    actor: str,
    reason: str,
    now: int,
    changes: dict[str, Any] | None = None,
    node: NodeRef | None = None,
) -> int:
    """Move ``order`` (as read, with its version) to ``to``; returns the new version.

    ``changes`` sets other columns in the same UPDATE (names checked against
    ``schema.ORDER_COLUMNS``). Raises ``model.IllegalTransition`` for an edge not in the
    table and :class:`ConcurrentUpdate` when the row moved since it was read.
    """
    frm = Status(order["status"])
    check_transition(frm, to)
    changes = dict(changes or {})
    unknown = set(changes) - ORDER_COLUMNS
    if unknown:
        raise ValueError(f"not settable by a transition: {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in changes)
    params = dict(changes, to=str(to), now=now, order_id=order["order_id"], frm=str(frm),
                  version=order["order_version"])
    cur = tx.execute(
        f"UPDATE orders SET status = :to, order_version = order_version + 1, "  # noqa: S608
        f"updated_at = :now{sets} "
        "WHERE order_id = :order_id AND status = :frm AND order_version = :version",
        params,
    )
    if cur.rowcount != 1:
        raise ConcurrentUpdate(f"order {order['order_id']} changed under us ({frm} -> {to})")
    tx.after_commit(lambda: crash_point(f"after_commit:{to}"))
    version = order["order_version"] + 1
    record_event(tx, order["order_id"], version, "transition", actor=actor, reason=reason,
                 now=now, frm=frm, to=to, node=node)
    enqueue_order_event(tx, order["order_id"], frm, to, reason, now)
    return version


def enqueue_order_event(tx: Tx, order_id: str, frm: Status | None, to: Status, reason: str, now: int) -> None:
    """The outbox row of a transition: topic ``order.<to>`` and the public order view as it is
    in this very transaction (so a webhook never shows a later state than its event)."""
    fresh = get_order(tx.conn, order_id)
    enqueue(tx, topic=f"order.{to}", order_id=order_id, order_version=fresh["order_version"], now=now,
            payload={"order_id": order_id, "from": str(frm) if frm else None, "to": str(to),
                     "order_version": fresh["order_version"], "reason": reason,
                     "order": views.order_view(fresh)})


def annotate(
    tx: Tx,
    order: sqlite3.Row,
    changes: dict[str, Any],
    *,
    actor: str,
    reason: str,
    now: int,
    node: NodeRef | None = None,
) -> int:
    """Set columns without changing status (e.g. the escrow job id once the node made it).

    Same compare-and-swap as :func:`transition` (status and version), same version bump,
    and a ``note`` event, so clients still see that the order changed. Returns the version.
    """
    unknown = set(changes) - ORDER_COLUMNS
    if unknown or not changes:
        raise ValueError(f"not settable: {sorted(unknown) or 'nothing to set'}")
    sets = ", ".join(f"{name} = :{name}" for name in changes)
    params = dict(changes, now=now, order_id=order["order_id"], status=order["status"],
                  version=order["order_version"])
    cur = tx.execute(
        f"UPDATE orders SET {sets}, order_version = order_version + 1, updated_at = :now "  # noqa: S608
        "WHERE order_id = :order_id AND status = :status AND order_version = :version",
        params,
    )
    if cur.rowcount != 1:
        raise ConcurrentUpdate(f"order {order['order_id']} changed under us (annotate)")
    version = order["order_version"] + 1
    record_event(tx, order["order_id"], version, "note", actor=actor, reason=reason, now=now, node=node)
    return version


def record_event(
    tx: Tx,
    order_id: str,
    order_version: int,
    kind: str,
    *,
    actor: str,
    reason: str,
    now: int,
    frm: Status | None = None,
    to: Status | None = None,
    node: NodeRef | None = None,
) -> None:
    """Append one ``order_events`` row (transition, node call, alert or note)."""
    tx.execute(
        "INSERT INTO order_events (order_id, order_version, kind, from_status, to_status, actor,"
        " reason, node_endpoint, node_outcome, node_ref, detail, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            order_id, order_version, kind,
            str(frm) if frm else None, str(to) if to else None, actor, reason,
            node.endpoint if node else None, node.outcome if node else None,
            node.ref if node else None,
            json.dumps(node.detail, sort_keys=True) if node and node.detail else None,
            now,
        ),
    )


def enqueue(
    tx: Tx, *, topic: str, payload: dict[str, Any], now: int,
    order_id: str | None = None, order_version: int | None = None, event_key: str | None = None,
) -> None:
    """Write an outbox row in the caller's transaction (delivered later, at least once).

    ``event_key`` is the stable id receivers deduplicate on; by default it is derived from
    the order and its version, so one transition can never enqueue twice.
    """
    key = event_key or f"{topic}:{order_id}:{order_version}"
    tx.after_commit(_wake_outbox)
    tx.execute(
        "INSERT INTO outbox (event_key, topic, order_id, order_version, payload, next_attempt_at,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        (key, topic, order_id, order_version, json.dumps(payload, sort_keys=True), now, now),
    )


def _wake_outbox() -> None:
    """Wake this process's outbox worker now rather than at its next poll."""
    from otc_bridge import outbox  # lazy: outbox imports this module

    outbox.notify()


def alert(tx: Tx, order: sqlite3.Row, *, code: str, message: str, now: int,
          node: NodeRef | None = None) -> None:
    """Record an operator alert: an ``alert`` event plus an outbox row.

    Deduplicated per (order, version, code): re-detecting the same problem on the same
    order version does not alert again.
    """
    key = f"alert:{code}:{order['order_id']}:{order['order_version']}"
    if tx.execute("SELECT 1 FROM outbox WHERE event_key = ?", (key,)).fetchone():
        return
    record_event(tx, order["order_id"], order["order_version"], "alert", actor="bridge",
                 reason=f"{code}: {message}", now=now, node=node)
    enqueue(tx, topic="alert", event_key=key, order_id=order["order_id"],
            order_version=order["order_version"], now=now,
            payload={"code": code, "order_id": order["order_id"], "message": message,
                     "status": order["status"]})
