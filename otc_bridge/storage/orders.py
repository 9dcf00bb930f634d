"""The order repository: read an order, and the one compare-and-swap that changes it.

:func:`transition` is the only code that changes ``orders.status``. In one transaction it
writes the status change with ``order_version + 1`` (a CAS on status *and* version whose
row count is checked), the ``order_events`` rows and the outbox row (docs/protocol.md §4
rule 5, the transactional outbox of §6). The ``UPDATE ... RETURNING`` hands back the new
:class:`~otc_bridge.domain.order.Order`, so nobody re-reads the row it just wrote, and the
invariants of the new row are checked once the transaction has committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from otc_bridge.crashpoints import crash_point
from otc_bridge.domain import views
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status, check_transition
from otc_bridge.storage import events, invariants, outbox
from otc_bridge.storage.db import Tx
from otc_bridge.storage.events import Event, NodeRef
from otc_bridge.storage.schema import ORDER_COLUMNS

#: Appended to every CAS: the new row, and whether a trade row exists for it (an invariant).
_RETURNING = " RETURNING *, EXISTS (SELECT 1 FROM trades WHERE trades.order_id = orders.order_id) AS has_trade"


class ConcurrentUpdate(RuntimeError):
    """The CAS matched no row: another actor changed the order first."""


def get_order(conn: sqlite3.Connection, order_id: str) -> Order | None:
    """The order, or ``None``."""
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else Order.from_row(row)


def find(conn: sqlite3.Connection, where: str = "1", params: tuple = (), *,
         order_by: str = "updated_at, order_id", limit: int | None = None) -> list[Order]:
    """Orders matching ``where`` (an SQL condition written by the caller, values bound from
    ``params``, never from input), sorted by ``order_by``, at most ``limit``."""
    sql = f"SELECT * FROM orders WHERE {where} ORDER BY {order_by}"  # noqa: S608
    if limit is not None:
        sql, params = sql + " LIMIT ?", (*params, limit)
    return [Order.from_row(row) for row in conn.execute(sql, params)]


def held_for_matches_micro_rtc(conn: sqlite3.Connection) -> int:
    """Micro-RTC the worker wallet holds in custody for ``matched`` orders whose job was
    tampered with (docs/protocol.md §11): it must stay there for the match or the refund."""
    return conn.execute("SELECT COALESCE(SUM(escrow_reward_micro_rtc), 0) FROM orders "
                        "WHERE status = 'matched' AND escrow_tampered_at IS NOT NULL").fetchone()[0]


def queued_from_worker_micro_rtc(conn: sqlite3.Connection) -> int:
    """Micro-RTC the bridge has queued from the worker as it knows it: payouts of
    ``payout_pending`` orders and custody refunds in flight. Counts transfers the node may
    already have confirmed (promotion lags), so it is only a fallback for the node's list."""
    return conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN status = 'payout_pending' THEN payout_micro_rtc"
        " WHEN status = 'refund_pending' AND refund_key IS NOT NULL THEN refund_micro_rtc ELSE 0 END), 0)"
        " FROM orders").fetchone()[0]


def insert_order(tx: Tx, columns: dict[str, Any], *, actor: str, reason: str, now: int) -> Order:
    """Write a new order (``order_version`` 1) with its ``transition`` event and outbox row.

    ``columns`` maps ``orders`` columns to values; ``status`` is the first status.
    """
    names = ", ".join(columns)
    marks = ", ".join(f":{name}" for name in columns)
    row = _one(tx.execute(f"INSERT INTO orders ({names}) VALUES ({marks}){_RETURNING}", columns))  # noqa: S608
    order = Order.from_row(row)
    tx.after_commit(lambda: crash_point(f"after_commit:{order.status}"))
    events.append(tx, order.order_id, [Event(1, "transition", actor, reason, now, to=order.status)])
    _enqueue_transition(tx, order, None, reason, now)
    _check_after_commit(tx, order, bool(row["has_trade"]))
    return order


def transition(
    tx: Tx,
    order: Order,
    to: Status,
    *,
    actor: str,
    reason: str,
    now: int,
    changes: dict[str, Any] | None = None,
    node: NodeRef | None = None,
    earlier: Sequence[Event] = (),
    then: Sequence[Event] = (),
    guard: str | None = None,
) -> Order:
    """Move ``order`` (as read, with its version) to ``to``; returns the new order.

    ``changes`` sets other columns in the same UPDATE (names checked against
    ``schema.ORDER_COLUMNS``). ``earlier`` are audit rows of what led here (node calls made
    since the last write), appended before the transition's own event, and ``then`` (an
    intent the new status leads to) after it, all in one statement. ``guard`` is an extra SQL
    condition of the CAS (a constant such as ``pauses.NO_RELEASE_PAUSE``, never input): when
    it is false the CAS matches no row, as when another actor moved the order.
    Raises ``status.IllegalTransition`` for an edge not in the table and
    :class:`ConcurrentUpdate` when the row moved since it was read.
    """
    check_transition(order.status, to)
    if changes and "status" in changes:
        raise ValueError("not settable by a transition: ['status'] (it is the transition itself)")
    new, has_trade = _cas(tx, order, dict(changes or {}, status=str(to)), now, guard)
    tx.after_commit(lambda: crash_point(f"after_commit:{to}"))
    events.append(tx, order.order_id, [*earlier, Event(new.order_version, "transition", actor, reason, now,
                                                      frm=order.status, to=to, node=node), *then])
    _enqueue_transition(tx, new, order.status, reason, now)
    _check_after_commit(tx, new, has_trade)
    return new


def annotate(
    tx: Tx,
    order: Order,
    changes: dict[str, Any],
    *,
    actor: str,
    reason: str,
    now: int,
    node: NodeRef | None = None,
    earlier: Sequence[Event] = (),
) -> Order:
    """Set columns without changing status (e.g. the escrow job id once the node made it).

    Same compare-and-swap as :func:`transition` (status and version), same version bump,
    and a ``note`` event, so clients still see that the order changed. Returns the new order.
    """
    if not changes:
        raise ValueError("annotate: nothing to set")
    if "status" in changes:
        raise ValueError("not settable by annotate: ['status'] (only a transition changes it)")
    new, _ = _cas(tx, order, changes, now)
    events.append(tx, order.order_id, [*earlier, Event(new.order_version, "note", actor, reason, now, node=node)])
    return new


def _cas(tx: Tx, order: Order, changes: dict[str, Any], now: int, guard: str | None = None) -> tuple[Order, bool]:
    """``UPDATE ... WHERE status = ? AND order_version = ?`` with the version bump; the new
    order and whether a trade exists. Raises :class:`ConcurrentUpdate` if no row matched."""
    unknown = set(changes) - ORDER_COLUMNS - {"status"}
    if unknown:
        raise ValueError(f"not settable by a transition: {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in changes)
    params = dict(changes, now=now, order_id=order.order_id, frm=str(order.status), version=order.order_version)
    row = _one(tx.execute(
        f"UPDATE orders SET order_version = order_version + 1, updated_at = :now{sets} "  # noqa: S608
        f"WHERE order_id = :order_id AND status = :frm AND order_version = :version"
        f"{' AND ' + guard if guard else ''}{_RETURNING}",
        params,
    ))
    if row is None:
        raise ConcurrentUpdate(f"order {order.order_id} changed under us ({order.status} -> {changes.get('status')})")
    return Order.from_row(row), bool(row["has_trade"])


def _one(cursor: sqlite3.Cursor) -> sqlite3.Row | None:
    """The single row a ``RETURNING`` statement gave, stepping it to its end (a statement
    left mid-way would keep running inside the transaction)."""
    rows = cursor.fetchall()
    return rows[0] if rows else None


def _enqueue_transition(tx: Tx, order: Order, frm: Status | None, reason: str, now: int) -> None:
    """The outbox row of a transition: topic ``order.<status>`` and the public order view as
    it is in this very transaction (so a webhook never shows a later state than its event)."""
    outbox.enqueue(tx, topic=f"order.{order.status}", order_id=order.order_id, order_version=order.order_version,
                   now=now, payload={"order_id": order.order_id, "from": str(frm) if frm else None,
                                     "to": str(order.status), "order_version": order.order_version,
                                     "reason": reason, "order": views.order_view(order)})


def enqueue_order_topic(tx: Tx, order: Order, topic: str, reason: str, now: int) -> None:
    """An outbox event ``topic`` (e.g. ``escrow_tampered``) about ``order`` as it is in this
    transaction, keyed by order version so it is enqueued once."""
    outbox.enqueue(tx, topic=topic, order_id=order.order_id, order_version=order.order_version, now=now,
                   payload={"order_id": order.order_id, "order_version": order.order_version, "reason": reason,
                            "order": views.order_view(order)})


def _check_after_commit(tx: Tx, order: Order, has_trade: bool) -> None:
    """Check the invariants of ``order`` once its transaction committed (docs/protocol.md §4
    rule 5); a broken one is alerted and raised by :func:`invariants.check_after_commit`."""
    tx.after_commit(lambda: invariants.check_after_commit(tx.database, order, has_trade=has_trade))
