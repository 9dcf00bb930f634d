"""The background workers' last passes (``heartbeats`` table), read by ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)

#: The table :func:`record_pass` writes (schema migration; ``detail`` is JSON).
HEARTBEATS_DDL = """
    CREATE TABLE heartbeats (
        name         TEXT PRIMARY KEY,
        last_run_at  INTEGER NOT NULL,
        detail       TEXT NOT NULL
    )
"""
_NOT_ACTIONS = frozenset({"skipped_locked", "backoff_seconds"})


# --- heartbeats -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Heartbeat:
    """A worker's last recorded pass: unix seconds, its counts, cumulative totals, pass count."""

    name: str
    last_run_at: int
    last: dict[str, int]
    totals: dict[str, int]
    passes: int


def record_pass(db: Database, name: str, result: Mapping[str, int], now: int) -> None:
    """Record that worker ``name`` (``"reconciler"``) finished a pass at ``now`` with the counts
    ``result``; ``/readyz`` and ``/metrics`` read it, from any process.

    A pass skipped because another process held the lease (``skipped_locked``) is not a
    pass of this worker and is not recorded. Never raises: a failure is logged (a missing
    heartbeat shows up in ``/readyz`` instead of breaking the pass).
    """
    if result.get("skipped_locked"):
        return
    actions = {k: v for k, v in result.items()
               if k not in _NOT_ACTIONS and isinstance(v, int) and not isinstance(v, bool) and v > 0}
    try:
        with db.transaction() as tx:
            row = tx.execute("SELECT detail FROM heartbeats WHERE name = ?", (name,)).fetchone()
            before = json.loads(row["detail"]) if row else {}
            totals = Counter(before.get("totals", {}))
            totals.update(actions)
            last = {k: v for k, v in result.items() if isinstance(v, int)}
            detail = {"last": last, "totals": dict(totals), "passes": before.get("passes", 0) + 1}
            tx.execute("INSERT INTO heartbeats (name, last_run_at, detail) VALUES (?, ?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET last_run_at = excluded.last_run_at, detail = excluded.detail",
                       (name, now, json.dumps(detail, sort_keys=True)))
    except Exception:  # the pass itself succeeded; /readyz will show the missing heartbeat
        log.exception("could not record the %s heartbeat", name)


def read_heartbeats(db: Database) -> dict[str, Heartbeat]:
    """Every recorded heartbeat by name. Raises ``sqlite3.OperationalError`` if the
    ``heartbeats`` table does not exist (schema not migrated)."""
    out = {}
    for row in db.read("SELECT name, last_run_at, detail FROM heartbeats"):
        detail = json.loads(row["detail"])
        out[row["name"]] = Heartbeat(row["name"], row["last_run_at"], detail.get("last", {}),
                                     detail.get("totals", {}), detail.get("passes", 0))
    return out
