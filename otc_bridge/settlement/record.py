"""How the money path writes what it did: :class:`Step`, the one writer of a settlement step.

A step (a confirm's release, a refund, a reconcile action) holds the order as it last wrote
it and the node calls it made since. Those call records are written together with the
step's next write: the compare-and-swap the calls led to, an alert, or an intent. So a
release that makes four node calls and ends in one transition costs one write transaction,
not five. Intents are the exception that proves the rule: they are committed *before* the
call they announce (docs/protocol.md §4 rule 1).

Every write is its own short transaction; none is ever open during a node call
(docs/protocol.md §6). A crash between a node call and the next write loses the call's
record, never its effect: the committed intent (or the status itself, such as ``settling``
with its payout key) makes the reconciler re-read the node and finish.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.node.results import NodeResult
from otc_bridge.storage import events, orders, outbox
from otc_bridge.storage.db import Tx
from otc_bridge.storage.events import Event, NodeRef

log = logging.getLogger(__name__)


def node_ref(result: NodeResult, ref: str | None = None) -> NodeRef:
    """An audit-log reference for one node call (status code and error, never a secret)."""
    detail = {"status_code": result.status_code, "latency_ms": result.latency_ms}
    if result.error:
        detail["error"] = result.error
    return NodeRef(result.endpoint, str(result.outcome), ref, detail)


class Step:
    """One settlement step on one order. ``order`` is the order as last read or written.

    Use it as a context manager: on leaving, call records not yet written are flushed in
    one transaction, also when an ``Exception`` leaves the block (a flush that fails then is
    logged and the original exception goes on), but not on ``SystemExit`` and the like.
    """

    def __init__(self, bridge: Bridge, order: Order) -> None:
        self.bridge = bridge
        self.order = order
        self._pending: list[Event] = []

    def __enter__(self) -> Step:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.flush()
            return
        if not issubclass(kind, Exception):
            return  # the process is going down (or a test stands in for a crash): record nothing more
        try:
            self.flush()
        except Exception:
            log.exception("could not record the node calls of order %s", self.order.order_id)

    @contextmanager
    def writing(self) -> Iterator[tuple[Tx, list[Event]]]:
        """A write transaction and the pending call records to write in it; once it has
        committed, they are no longer pending (after a rollback they still are)."""
        with self.bridge.db.transaction() as tx:
            yield tx, list(self._pending)
        self._pending.clear()

    def call(self, result: NodeResult, *, ref: str | None, reason: str) -> None:
        """Remember a node call's outcome; it is written with the next write of this step."""
        self._pending.append(Event(self.order.order_version, "node_call", "bridge", reason, self.bridge.now(),
                                   node=node_ref(result, ref)))

    def intent(self, endpoint: str, reason: str, ref: str | None = None) -> None:
        """Commit, before a node call that moves funds, which call the bridge is making (a
        ``node_call`` event with outcome ``intent``, ``ref`` the job id by default)."""
        note = Event(self.order.order_version, "node_call", "bridge", reason, self.bridge.now(),
                     node=NodeRef(endpoint, "intent", ref or self.order.escrow_job_id))
        with self.writing() as (tx, pending):
            events.append(tx, self.order.order_id, [*pending, note])

    def move(self, to: Status, *, reason: str, actor: str = "bridge", changes: dict | None = None,
             node: NodeRef | None = None, alert: tuple[str, str] | None = None,
             intent: tuple[str, str] | None = None, guard: str | None = None) -> Order:
        """CAS the order to ``to`` (with the pending call records); returns the new order.

        ``alert`` = ``(code, message)`` raises an operator alert in the same transaction.
        ``intent`` = ``(endpoint, reason)`` commits, with the move, the intent of the node
        call the new status leads to (as :meth:`intent` would, without its own transaction).
        ``guard`` is an extra condition of the CAS (see ``storage.orders.transition``).
        Raises ``orders.ConcurrentUpdate`` if the row moved since it was read (the call
        records stay pending and are flushed on leaving the step).
        """
        now = self.bridge.now()
        then = []
        if intent:
            then.append(Event(self.order.order_version + 1, "node_call", "bridge", intent[1], now,
                              node=NodeRef(intent[0], "intent", self.order.escrow_job_id)))
        with self.writing() as (tx, pending):
            new = orders.transition(tx, self.order, to, actor=actor, reason=reason, now=now, changes=changes,
                                    node=node, earlier=pending, then=then, guard=guard)
            if alert:
                log.warning("alert %s on order %s: %s", alert[0], new.order_id, alert[1])
                outbox.alert(tx, new, code=alert[0], message=alert[1], now=now, node=node)
        self.order = new
        return new

    def annotate(self, changes: dict, *, reason: str, node: NodeRef | None = None,
                 alert: tuple[str, str] | None = None, topic: str | None = None) -> Order:
        """Set columns without a status change (CAS + version bump + note); the new order.
        ``alert`` = ``(code, message)`` raises an operator alert and ``topic`` enqueues an
        outbox event with the order view, both in the same transaction."""
        now = self.bridge.now()
        with self.writing() as (tx, pending):
            new = orders.annotate(tx, self.order, changes, actor="bridge", reason=reason, now=now,
                                  node=node, earlier=pending)
            if topic:
                orders.enqueue_order_topic(tx, new, topic, reason, now)
            if alert:
                log.warning("alert %s on order %s: %s", alert[0], new.order_id, alert[1])
                outbox.alert(tx, new, code=alert[0], message=alert[1], now=now, node=node)
        self.order = new
        return new

    def alert(self, code: str, message: str) -> None:
        """An operator alert about the order without a status change (deduplicated per
        order version), written with the pending call records."""
        log.warning("alert %s on order %s: %s", code, self.order.order_id, message)
        with self.writing() as (tx, pending):
            events.append(tx, self.order.order_id, pending)
            outbox.alert(tx, self.order, code=code, message=message, now=self.bridge.now())

    def to_recovery(self, reason: str, code: str, node: NodeRef | None = None) -> Order:
        """``settlement_recovery`` with an alert; an order already there only gets the alert
        (the reconciler re-drives payouts from recovery, and recovery -> recovery is no edge)."""
        if self.order.status == Status.SETTLEMENT_RECOVERY:
            self.alert(code, reason)
            return self.order
        return self.move(Status.SETTLEMENT_RECOVERY, reason=reason, node=node, alert=(code, reason))

    def flush(self) -> None:
        """Write the pending call records now (nothing if there are none)."""
        if not self._pending:
            return
        with self.writing() as (tx, pending):
            events.append(tx, self.order.order_id, pending)


def move(bridge: Bridge, order: Order, to: Status, *, reason: str, actor: str = "bridge",
         changes: dict | None = None, node: NodeRef | None = None,
         alert: tuple[str, str] | None = None) -> Order:
    """One CAS of ``order`` to ``to`` outside any longer step (see :meth:`Step.move`)."""
    return Step(bridge, order).move(to, reason=reason, actor=actor, changes=changes, node=node, alert=alert)


def bridge_stepped(bridge: Bridge, order_id: str, step: str) -> bool:
    """True if the bridge already attempted a ``step`` call ("refund step", "release step")
    for this order (its intent note is written before the call, so a crash right after the
    call still counts): otherwise a job found past ``claimed`` was moved by someone else."""
    return bridge.db.read_one(
        "SELECT 1 FROM order_events WHERE order_id = ? AND reason LIKE ? LIMIT 1",
        (order_id, step + "%")) is not None


def bridge_claimed(bridge: Bridge, order_id: str, job_id: str) -> bool:
    """True if the node answered one of the bridge's claims of ``job_id`` with OK."""
    return bridge.db.read_one(
        "SELECT 1 FROM order_events WHERE order_id = ? AND kind = 'node_call' AND node_ref = ? "
        "AND node_endpoint = 'POST /agent/jobs/<job_id>/claim' AND node_outcome = 'ok' LIMIT 1",
        (order_id, job_id)) is not None
