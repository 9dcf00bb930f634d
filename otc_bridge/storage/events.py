"""The append-only audit log of every order: ``order_events`` rows and what a node call was.

Rows are never updated or deleted (triggers refuse it, see :mod:`.schema`). Several rows of
one transaction go in as one multi-row ``INSERT`` (:func:`append`), so a settlement step
that made four node calls still costs one statement to record them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otc_bridge.domain.status import Status
from otc_bridge.storage.db import Tx

_COLUMNS = ("order_id, order_version, kind, from_status, to_status, actor, reason, node_endpoint,"
            " node_outcome, node_ref, detail, created_at")


@dataclass(frozen=True)
class NodeRef:
    """What a node call was and how it ended, for the audit log: ``endpoint`` such as
    ``POST /agent/jobs/<job_id>/accept``, ``outcome`` ``ok`` | ``failed`` | ``unknown`` |
    ``intent``, ``ref`` the job id, escrow reference or payout tx hash it concerned."""

    endpoint: str
    outcome: str
    ref: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Event:
    """One ``order_events`` row before it is written. ``kind`` is ``transition``,
    ``node_call``, ``alert`` or ``note``; ``created_at`` in unix seconds."""

    order_version: int
    kind: str
    actor: str
    reason: str
    created_at: int
    frm: Status | None = None
    to: Status | None = None
    node: NodeRef | None = None

    def values(self, order_id: str) -> tuple:
        """The row's column values, in the order of the ``INSERT``."""
        node = self.node
        return (order_id, self.order_version, self.kind, str(self.frm) if self.frm else None,
                str(self.to) if self.to else None, self.actor, self.reason,
                node.endpoint if node else None, node.outcome if node else None, node.ref if node else None,
                json.dumps(node.detail, sort_keys=True) if node and node.detail else None, self.created_at)


def append(tx: Tx, order_id: str, rows: Sequence[Event]) -> None:
    """Append ``rows`` (oldest first) for ``order_id`` in one statement; nothing if empty."""
    if not rows:
        return
    marks = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?)"] * len(rows))
    params = tuple(value for row in rows for value in row.values(order_id))
    tx.execute(f"INSERT INTO order_events ({_COLUMNS}) VALUES {marks}", params)  # noqa: S608


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
    append(tx, order_id, [Event(order_version, kind, actor, reason, now, frm, to, node)])
