"""Operator tools (SPEC §7): the attention list, and ``resolve`` of ``settlement_recovery``.

Every operator action is audited: it names the operator (``actor = "operator:<name>"``) and
a non-empty reason in an ``order_events`` row, and moves the order only through
``settlement.move`` / ``settlement.complete`` (the transition table in :mod:`otc_bridge.model`).
An action is refused, with nothing written, unless an authoritative read of the node proves
it (SPEC §4 rule 3: only the node's state or an audited operator decision moves an order
out of ``settlement_recovery``, and never back into a retryable state). Refusals are
:mod:`otc_bridge.errors`: ``Invalid`` (400), ``NotFound`` (404), ``Conflict`` (409, the node's
state does not prove the action, or the order moved meanwhile), ``NodeUnavailable`` (502).

The payout re-drive lives in :mod:`otc_bridge.operator_payout`, the read-only audit in
:mod:`otc_bridge.operator_audit`; both share the helpers here.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from otc_bridge import leases, settlement, store, views
from otc_bridge.context import Bridge
from otc_bridge.errors import Conflict, Invalid, NodeUnavailable, NotFound
from otc_bridge.escrow import Job, payout_tx_hash
from otc_bridge.model import Status
from otc_bridge.store import ConcurrentUpdate, NodeRef

#: Where ``resolve`` may move a ``settlement_recovery`` order: forward only, never back into
#: a retryable state (``matched``, ``open``, ...), each edge in ``model.TRANSITIONS``.
RESOLVE_TARGETS = (Status.COMPLETED, Status.PAYOUT_PENDING, Status.CANCELLED, Status.EXPIRED)
DEFAULT_ATTENTION_AGE_SECONDS = 3600
MAX_REASON_CHARS = 500
_OPERATOR_NAME = re.compile(r"[A-Za-z0-9._@:+-]{1,64}")
#: ``GET /wallet/tx`` answers that mean money reached, or will reach, the buyer.
LIVE_PAYOUT = frozenset({"pending", "confirmed"})


def operator_actor(name: object, *, field: str = "operator") -> str:
    """``"operator:<name>"`` for the audit log; ``Invalid`` (naming ``field``) unless ``name``
    is 1..64 characters of ``[A-Za-z0-9._@:+-]``."""
    if not isinstance(name, str) or not _OPERATOR_NAME.fullmatch(name.strip()):
        raise Invalid(f"{field} must be 1..64 characters of letters, digits and ._@:+-", field=field)
    return f"operator:{name.strip()}"


def check_reason(reason: object) -> str:
    """The operator's reason, stripped; ``Invalid`` (field ``reason``) if empty or too long."""
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason required: say why this operator action is taken", field="reason")
    if len(reason.strip()) > MAX_REASON_CHARS:
        raise Invalid(f"reason is longer than {MAX_REASON_CHARS} characters", field="reason")
    return reason.strip()


def get_order(bridge: Bridge, order_id: str) -> sqlite3.Row:
    """The order row; ``NotFound`` if there is none."""
    order = store.get_order(bridge.db.connection(), order_id)
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
    """One operator action per order at a time, across processes (a SQLite lease, no wait).

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

def payout_keys(bridge: Bridge, order: sqlite3.Row) -> list[str]:
    """Every payout idempotency key the order ever used, oldest first: the confirm's
    ``otc_payout:<order_id>``, then each re-drive key ``otc_payout:<order_id>:<n>`` found in
    its events (recorded before the transfer is sent), then the current ``payout_key``.
    Empty for an order that never reached settlement."""
    if order["payout_key"] is None:
        return []
    base = f"otc_payout:{order['order_id']}"
    rows = bridge.db.read("SELECT DISTINCT node_ref FROM order_events WHERE order_id = ? AND node_ref LIKE ?",
                          (order["order_id"], base + ":%"))  # LIKE's _ is loose; the regex decides
    redrives = sorted(n for n in (redrive_number(order["order_id"], r["node_ref"]) for r in rows) if n)
    keys = [base, *(f"{base}:{n}" for n in redrives)]
    return keys if order["payout_key"] in keys else [*keys, order["payout_key"]]


def redrive_number(order_id: str, key: str | None) -> int | None:
    """``n`` of a re-drive key ``otc_payout:<order_id>:<n>``, else ``None``."""
    match = re.fullmatch(re.escape(f"otc_payout:{order_id}:") + r"([1-9][0-9]{0,5})", key or "")
    return int(match.group(1)) if match else None


def payout_states(bridge: Bridge, keys: list[str]) -> dict[str, str]:
    """``{key: status}`` from ``GET /wallet/tx/<tx_hash>`` (NODE_API §1.12): ``pending``,
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


def read_job_or_refuse(bridge: Bridge, order: sqlite3.Row) -> Job:
    """The order's escrow job, read without recording (a refusal must leave the DB as it was).

    Raises ``Conflict`` if no job is recorded or the node has none, ``NodeUnavailable`` if the
    answer is unusable."""
    if order["escrow_job_id"] is None:
        raise Conflict("The order has no escrow job recorded; the node cannot prove this action")
    read = bridge.node.get_job(order["escrow_job_id"])
    if read.not_found:
        raise Conflict(f"The node has no escrow job {order['escrow_job_id']}")
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


def attention(bridge: Bridge, *, older_than_seconds: int = DEFAULT_ATTENTION_AGE_SECONDS) -> list[dict[str, Any]]:
    """Orders an operator should look at, least recently changed first (SPEC §7).

    Every ``settlement_recovery`` and ``refund_pending`` order; ``payout_pending`` orders
    unchanged for ``older_than_seconds`` or more; ``locking`` and ``settling`` orders
    unchanged for ``config.settlement_stuck_seconds``. Each item is the public order view
    plus ``updated_at``, ``age_seconds`` (since ``updated_at``) and ``events`` (the audit
    trail, oldest first). Read-only. Raises ``ValueError`` for a negative age.
    """
    if older_than_seconds < 0:
        raise ValueError("older_than_seconds must be >= 0")
    now = bridge.now()
    rows = bridge.db.read(
        "SELECT * FROM orders WHERE status IN (?, ?) OR (status = ? AND updated_at <= ?)"
        " OR (status IN (?, ?) AND updated_at <= ?) ORDER BY updated_at, order_id",
        (Status.SETTLEMENT_RECOVERY, Status.REFUND_PENDING, Status.PAYOUT_PENDING, now - older_than_seconds,
         Status.LOCKING, Status.SETTLING, now - bridge.config.settlement_stuck_seconds))
    return [{**views.order_view(row), "updated_at": row["updated_at"], "age_seconds": now - row["updated_at"],
             "events": order_events(bridge, row["order_id"])} for row in rows]


# --- resolve --------------------------------------------------------------------------------

def resolve_target(to: object) -> Status:
    """The ``to`` status of a resolve; ``Invalid`` (field ``to``) unless one of
    :data:`RESOLVE_TARGETS` (a move back to a retryable state is never offered)."""
    allowed = ", ".join(str(s) for s in RESOLVE_TARGETS)
    if not isinstance(to, str) or to.strip().lower() not in {str(s) for s in RESOLVE_TARGETS}:
        raise Invalid(f"to must be one of {allowed}; a settlement_recovery order only moves forward", field="to")
    return Status(to.strip().lower())


def _prove_payout(bridge: Bridge, order: sqlite3.Row, needed: str) -> NodeRef:
    states = payout_states(bridge, payout_keys(bridge, order))
    current = states.get(order["payout_key"]) if order["payout_key"] else None
    if current != needed:
        raise Conflict(f"The node reports payout {order['payout_tx_hash']} as {current or 'absent'}; "
                       f"resolving to {'completed' if needed == 'confirmed' else 'payout_pending'} needs it {needed}")
    others = [k for k, s in states.items() if k != order["payout_key"] and s in LIVE_PAYOUT]
    if needed == "pending" and others:
        raise Conflict(f"Another payout of this order is {states[others[0]]} on the node ({payout_tx_hash(others[0])})")
    return NodeRef("GET /wallet/tx/<tx_hash>", "ok", order["payout_tx_hash"], {"status": needed})


def _prove_refund(bridge: Bridge, order: sqlite3.Row) -> NodeRef:
    job = read_job_or_refuse(bridge, order)
    if job.poster_wallet != order["escrow_wallet"]:
        raise Conflict(f"Escrow job poster is {job.poster_wallet!r}, not the order's escrow wallet")
    if job.status not in ("cancelled", "expired"):
        raise Conflict(f"The node reports escrow job {job.job_id} as {job.status}; "
                       "a refund is proven only by cancelled or expired")
    states = payout_states(bridge, payout_keys(bridge, order))
    live = [k for k, s in states.items() if s in LIVE_PAYOUT]
    if live:
        raise Conflict(f"A payout of this order is {states[live[0]]} on the node ({payout_tx_hash(live[0])}); "
                       "the buyer was or will be paid, so it cannot end as refunded")
    return NodeRef("GET /agent/jobs/<job_id>", "ok", job.job_id, {"status": job.status})


def resolve(bridge: Bridge, order_id: str, to: object, *, operator_name: str, reason: object) -> sqlite3.Row:
    """Move a ``settlement_recovery`` order forward once the node proves ``to``; fresh row.

    ``completed``: the current payout reads ``confirmed`` (``settlement.complete`` writes the
    trade row). ``payout_pending``: it reads ``pending`` and no other key of the order is
    live. ``cancelled`` / ``expired``: the escrow job reads cancelled or expired with the
    order's escrow wallet as poster (reward and fee refunded, NODE_API §1.7, §1.9) and no
    payout key is pending or confirmed. ``operator_name`` is the bare name. Raises ``Invalid``
    (``to``, ``reason``, ``operator``), ``NotFound``, ``Conflict`` (not in recovery, node
    state does not prove it, lost race, another operator action on the order in progress),
    ``NodeUnavailable``; every refusal writes nothing.
    """
    actor, why, target = operator_actor(operator_name), check_reason(reason), resolve_target(to)
    get_order(bridge, order_id)
    with exclusive(bridge, order_id):
        return _resolve(bridge, get_order(bridge, order_id), target, actor, why)


def _resolve(bridge: Bridge, order: sqlite3.Row, target: Status, actor: str, why: str) -> sqlite3.Row:
    if order["status"] != Status.SETTLEMENT_RECOVERY:
        raise Conflict(f"Only a settlement_recovery order can be resolved (current: {order['status']})")
    if target in (Status.COMPLETED, Status.PAYOUT_PENDING):
        proof = _prove_payout(bridge, order, "confirmed" if target == Status.COMPLETED else "pending")
    else:
        proof = _prove_refund(bridge, order)
    note = f"resolve to {target} (node: {proof.detail['status']}): {why}"
    with claimed():
        if target == Status.COMPLETED:
            return settlement.complete(bridge, order, proof, actor=actor, reason=note)
        # An ended order holds no preimage (invariants: only settling..completed or recovery may).
        changes = {} if target == Status.PAYOUT_PENDING else {
            "ended_at": bridge.now(), "end_cause": order["end_cause"] or f"operator_{target}", "htlc_secret": None}
        return settlement.move(bridge, order, target, actor=actor, reason=note, node=proof, changes=changes)


def operator_note(bridge: Bridge, order: sqlite3.Row, *, actor: str, reason: str, node: NodeRef | None = None,
                  changes: dict[str, Any] | None = None) -> sqlite3.Row:
    """Commit the operator's intent before acting: a CAS on the order as read (status and
    version) setting ``changes`` (default ``attention_reason``) with a ``note`` event naming
    ``actor`` and ``reason``. Returns the fresh row; ``store.ConcurrentUpdate`` if it moved."""
    changes = changes or {"attention_reason": f"{actor}: {reason}"[:MAX_REASON_CHARS]}
    with bridge.db.transaction() as tx:
        store.annotate(tx, order, changes, actor=actor, reason=reason, now=bridge.now(), node=node)
    return store.get_order(bridge.db.connection(), order["order_id"])
