"""What every operator action shares: names and reasons checked, one action per order at a
time, the payout keys an order has used, and the order's history.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import Conflict, Invalid, NodeUnavailable, NotFound
from otc_bridge.domain.order import Order
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import Job
from otc_bridge.storage import leases, orders
from otc_bridge.storage.events import NodeRef
from otc_bridge.storage.orders import ConcurrentUpdate

MAX_REASON_CHARS = 500
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9._@:+-]{1,64}")
#: ``GET /wallet/tx`` answers that mean money reached, or will reach, the buyer.
LIVE_PAYOUT = frozenset({"pending", "confirmed"})


def operator_actor(name: object, *, field: str = "operator") -> str:
    """``"operator:<name>"`` for the audit log; ``Invalid`` (naming ``field``) unless ``name``
    is 1..64 characters of ``[A-Za-z0-9._@:+-]``."""
    # Strip ASCII blanks only: str.strip() would also take NBSP and other Unicode spaces away
    # and let a name with them through. The pattern itself is ASCII-only.
    stripped = name.strip(" \t") if isinstance(name, str) else ""
    if not _OPERATOR_NAME.fullmatch(stripped):
        raise Invalid(f"{field} must be 1..64 characters of letters, digits and ._@:+-", field=field)
    return f"operator:{stripped}"


def check_reason(reason: object) -> str:
    """The operator's reason, stripped; ``Invalid`` (field ``reason``) if empty or too long."""
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason required: say why this operator action is taken", field="reason")
    if len(reason.strip()) > MAX_REASON_CHARS:
        raise Invalid(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
    return reason.strip()


def get_order(bridge: Bridge, order_id: str) -> Order:
    """The order row; ``NotFound`` if there is none."""
    order = orders.get_order(bridge.db.connection(), order_id)
    if order is None:
        raise NotFound("Order not found")
    return order


@contextmanager
def claimed() -> Iterator[None]:
    """Turn a lost compare-and-swap into a 409: another actor moved the order first."""
    try:
        yield
    except ConcurrentUpdate:
        raise Conflict("Order changed while the operator action ran; re-read it and retry") from None


@contextmanager
def exclusive(bridge: Bridge, order_id: str) -> Iterator[None]:
    """One operator action per order at a time, across processes (a lease, no wait).

    The CAS alone cannot stop two new-key re-drives: the second could read the order after
    the first recorded its key but before it sent it, see that key ``not_found`` and issue
    another one. Raises ``Conflict`` if another action on the order holds the lease.
    """
    cfg = bridge.config
    ttl = 60 + 20 * (cfg.node_connect_timeout_seconds + cfg.node_read_timeout_seconds)
    try:
        with leases.held(bridge.db, f"operator:{order_id}", ttl_seconds=ttl, wait_seconds=0):
            yield
    except leases.LeaseBusy:
        raise Conflict("Another operator action on this order is in progress; retry when it has finished") from None


# --- payout keys ----------------------------------------------------------------------------

def payout_keys(bridge: Bridge, order: Order) -> list[str]:
    """Every payout idempotency key the order ever used, oldest first: the confirm's
    ``otc_payout:<order_id>``, then each re-drive key ``otc_payout:<order_id>:<n>`` found in
    its events (recorded before the transfer is sent), then the current ``payout_key``.
    Empty for an order that never reached settlement."""
    if order.payout_key is None:
        return []
    base = f"otc_payout:{order.order_id}"
    rows = bridge.db.read("SELECT DISTINCT node_ref FROM order_events WHERE order_id = ? AND node_ref LIKE ?",
                          (order.order_id, base + ":%"))  # LIKE's _ is loose; the regex decides
    redrives = sorted(n for n in (redrive_number(order.order_id, r["node_ref"]) for r in rows) if n)
    keys = [base, *(f"{base}:{n}" for n in redrives)]
    return keys if order.payout_key in keys else [*keys, order.payout_key]


def redrive_number(order_id: str, key: str | None) -> int | None:
    """``n`` of a re-drive key ``otc_payout:<order_id>:<n>``, else ``None``."""
    match = re.fullmatch(re.escape(f"otc_payout:{order_id}:") + r"([1-9][0-9]{0,5})", key or "")
    return int(match.group(1)) if match else None


def payout_states(bridge: Bridge, keys: list[str]) -> dict[str, str]:
    """``{key: status}`` from ``GET /wallet/tx/<tx_hash>`` (docs/escrow-node.md §1.12): ``pending``,
    ``confirmed``, ``failed`` (voided) or ``not_found``. Read-only, nothing recorded.
    Raises ``NodeUnavailable`` if any answer is unusable (nothing can be proven then)."""
    states = {}
    for key in keys:
        status = bridge.node.tx_status(payout_tx_hash(key))
        if status.status is None:
            raise NodeUnavailable(f"Escrow node did not answer the payout lookup for {payout_tx_hash(key)}",
                                  details=status.result.error)
        states[key] = status.status
    return states


def read_job_or_refuse(bridge: Bridge, order: Order) -> Job:
    """The order's escrow job, read without recording (a refusal must leave the DB as it was).

    Raises ``Conflict`` if no job is recorded or the node has none, ``NodeUnavailable`` if the
    answer is unusable."""
    if order.escrow_job_id is None:
        raise Conflict("The order has no escrow job recorded; the node cannot prove this action")
    read = bridge.node.get_job(order.escrow_job_id)
    if read.not_found:
        raise Conflict(f"The node has no escrow job {order.escrow_job_id}")
    if read.job is None:
        raise NodeUnavailable("Escrow node did not answer the job read", details=read.result.error)
    return read.job


# --- attention ------------------------------------------------------------------------------

def _event_view(row: sqlite3.Row) -> dict[str, Any]:
    event = {k: row[k] for k in ("event_id", "order_version", "kind", "from_status", "to_status", "actor",
                                 "reason", "node_endpoint", "node_outcome", "node_ref", "created_at")}
    event["detail"] = json.loads(row["detail"]) if row["detail"] else None
    return event


def order_events(bridge: Bridge, order_id: str) -> list[dict[str, Any]]:
    """The order's audit trail, oldest first (every ``order_events`` column; ``detail`` parsed)."""
    rows = bridge.db.read("SELECT * FROM order_events WHERE order_id = ? ORDER BY event_id", (order_id,))
    return [_event_view(row) for row in rows]


def operator_note(bridge: Bridge, order: Order, *, actor: str, reason: str, node: NodeRef | None = None,
                  changes: dict[str, Any] | None = None) -> Order:
    """Commit the operator's intent before acting: a CAS on the order as read (status and
    version) setting ``changes`` (default ``attention_reason``) with a ``note`` event naming
    ``actor`` and ``reason``. Returns the new order; ``orders.ConcurrentUpdate`` if it moved."""
    changes = changes or {"attention_reason": f"{actor}: {reason}"[:MAX_REASON_CHARS]}
    with bridge.db.transaction() as tx:
        return orders.annotate(tx, order, changes, actor=actor, reason=reason, now=bridge.now(), node=node)
