"""The background workers' last passes (``heartbeats`` table), read by ``/readyz`` and ``/metrics``,
and the operator alert raised when a worker has not completed a pass for too long.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otc_bridge.storage import leases, outbox
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)

#: A worker whose last completed pass is older than this many of its intervals is stalled:
#: ``/readyz`` fails and :func:`alert_if_stalled` raises the operator alert.
STALE_AFTER_INTERVALS = 3

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


# --- staleness and its alert --------------------------------------------------------------------

def staleness(db: Database, name: str, *, now: int, max_age: int, waiting_since: int) -> dict[str, Any]:
    """How fresh worker ``name``'s last completed pass is, with its lease's holder.

    ``{"ok", "last_run_at", "age_seconds", "max_age_seconds", "lease"}`` plus ``"error"`` when
    not ok. ``ok``: the last pass is at most ``max_age`` seconds old; with no pass recorded,
    while at most ``max_age`` has passed since ``waiting_since`` (the asking process's start;
    then ``"starting": true``). ``lease`` is :meth:`otc_bridge.storage.leases.Holder.as_dict`
    (``{"held": false}`` when free): a lease held by a live process that completes no pass is
    a hung pass, one whose holder died was freed by the kernel. Read only; raises
    ``sqlite3.Error`` if the ``heartbeats`` table cannot be read.
    """
    row = db.read_one("SELECT last_run_at FROM heartbeats WHERE name = ?", (name,))
    holder = leases.holder(db, name)
    lease = holder.as_dict(now) if holder is not None else {"held": False}
    if row is None:
        waited = now - waiting_since
        result: dict[str, Any] = {"ok": waited <= max_age, "last_run_at": None, "max_age_seconds": max_age}
        if result["ok"]:
            result["starting"] = True
        else:
            result["error"] = f"no {name} pass recorded in {waited} s"
    else:
        age = now - row["last_run_at"]
        result = {"ok": age <= max_age, "last_run_at": row["last_run_at"], "age_seconds": age,
                  "max_age_seconds": max_age}
        if age > max_age:
            result["error"] = f"last {name} pass completed {age} s ago"
    if not result["ok"] and holder is not None and holder.held:
        result["error"] += (f"; its lease is held by process {holder.pid}"
                            + (f" for {lease['held_seconds']:g} s" if "held_seconds" in lease else ""))
    result["lease"] = lease
    return result


def alert_if_stalled(db: Database, name: str, *, now: int, max_age: int, waiting_since: int) -> bool:
    """Raise the ``<name>_stalled`` operator alert (an ``alert`` outbox row) if worker
    ``name`` is stale by :func:`staleness`; True if this call raised it.

    Deduplicated per stall: the event key names the last completed pass
    (``alert:reconciler_stalled:<last_run_at>``, ``…:never`` before the first), so every
    process may call this as often as it likes and one stall alerts once; the next stall,
    after a pass completed, alerts again. Writes only when it raises the alert.
    """
    state = staleness(db, name, now=now, max_age=max_age, waiting_since=waiting_since)
    if state["ok"]:
        return False
    key = f"alert:{name}_stalled:{state['last_run_at'] if state['last_run_at'] is not None else 'never'}"
    if db.read_one("SELECT 1 FROM outbox WHERE event_key = ?", (key,)) is not None:
        return False
    message = f"{state['error']} (limit {max_age} s)"
    with db.transaction() as tx:
        if tx.execute("SELECT 1 FROM outbox WHERE event_key = ?", (key,)).fetchone() is not None:
            return False
        outbox.enqueue(tx, topic="alert", event_key=key, now=now,
                       payload={"code": f"{name}_stalled", "order_id": None, "message": message, "status": None})
    log.error("%s stalled: %s", name, message)
    return True
