"""The pending pool of the dev node: confirm, void and list (docs/escrow-node.md §1.12).

Nothing confirms automatically, as on the node: call ``POST /pending/confirm`` (admin key)
or ``POST /dev/confirm``. Confirming moves balances and writes two ``ledger`` rows per
transfer; a void moves nothing because nothing has moved yet.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from flask import Blueprint, jsonify, request

from . import store
from .common import Answer, error, is_admin, json_object
from .store import db, to_rtc, transaction

bp = Blueprint("devnode_pending", __name__)
logger = logging.getLogger(__name__)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_UNAUTHORIZED = "Unauthorized - admin key required"
_INTEGER = re.compile(r"[+-]?\d+")


def parse_limit(raw: Any, default: int = DEFAULT_LIMIT) -> int | None:
    """A limit clamped to [1, 500]; None when ``raw`` is not an integer (the caller's 400)."""
    if raw is None or raw == "":
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw)
    else:
        return None
    return max(1, min(MAX_LIMIT, value))


def overdue_stats(conn: sqlite3.Connection, ts: int) -> dict[str, Any]:
    """``stale_pending_count`` (pending rows past ``confirms_at``) and the largest delay."""
    count, oldest = conn.execute(
        "SELECT COUNT(*), MIN(confirms_at) FROM pending_ledger "
        "WHERE status = 'pending' AND confirms_at <= ?",
        (ts,),
    ).fetchone()
    return {
        "stale_pending_count": count,
        "max_confirm_overdue_seconds": ts - oldest if oldest is not None else 0,
        "overdue_stats_measured": True,
    }


def _confirm_one(conn: sqlite3.Connection, row: sqlite3.Row, ts: int) -> bool:
    """Confirm one pending row (True) or void it for lack of balance (False)."""
    moved = conn.execute(
        "UPDATE pending_ledger SET status = 'confirming' WHERE id = ? AND status = 'pending'",
        (row["id"],),
    ).rowcount
    if not moved:
        return False
    if store.get_balance(conn, row["from_miner"]) < row["amount_i64"]:
        conn.execute(
            "UPDATE pending_ledger SET status = 'voided', voided_by = 'system', "
            "voided_reason = 'insufficient_balance_at_confirm' WHERE id = ?",
            (row["id"],),
        )
        return False
    store.add_balance(conn, row["from_miner"], -row["amount_i64"])
    store.add_balance(conn, row["to_miner"], row["amount_i64"])
    epoch = store.current_slot(ts)
    conn.executemany(
        "INSERT INTO ledger (ts, epoch, miner_id, delta_i64, reason) VALUES (?, ?, ?, ?, ?)",
        [
            (ts, epoch, row["from_miner"], -row["amount_i64"],
             f"transfer_out:{row['to_miner']}:{row['tx_hash']}"),
            (ts, epoch, row["to_miner"], row["amount_i64"],
             f"transfer_in:{row['from_miner']}:{row['tx_hash']}"),
        ],
    )
    conn.execute(
        "UPDATE pending_ledger SET status = 'confirmed', confirmed_at = ? WHERE id = ?",
        (ts, row["id"]),
    )
    return True


def confirm_due(conn: sqlite3.Connection, ts: int, limit: int) -> dict[str, Any]:
    """Confirm up to ``limit`` due rows, oldest first, each in its own savepoint.

    Returns the body of ``POST /pending/confirm``. The caller holds the write lock.
    """
    before = overdue_stats(conn, ts)
    rows = conn.execute(
        "SELECT * FROM pending_ledger WHERE status = 'pending' AND confirms_at <= ? "
        "ORDER BY id LIMIT ?",
        (ts, limit),
    ).fetchall()
    confirmed_ids: list[int] = []
    errors: list[dict[str, Any]] = []
    for row in rows:
        conn.execute("SAVEPOINT confirm_row")
        try:
            if _confirm_one(conn, row, ts):
                confirmed_ids.append(row["id"])
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO confirm_row")
            logger.warning("devnode: confirming pending row %s failed: %s", row["id"], exc)
            errors.append({"id": row["id"], "error": str(exc)})
        conn.execute("RELEASE confirm_row")
    return {
        "ok": True, "limit": limit, "selected_count": len(rows),
        "confirmed_count": len(confirmed_ids), "confirmed_ids": confirmed_ids,
        "errors": errors or None,
        **{f"{name}_before": value for name, value in before.items()},
        **overdue_stats(conn, ts), "overdue_stats_error": None,
    }


def void(conn: sqlite3.Connection, *, pending_id: int | None, tx_hash: str | None,
         reason: str, voided_by: str) -> Answer:
    """Void a pending row by id or hash (400 / 404 / 400 not pending / 200 as on the node)."""
    if pending_id is None and not tx_hash:
        return error(400, "Provide pending_id or tx_hash")
    if pending_id is not None:
        row = conn.execute("SELECT * FROM pending_ledger WHERE id = ?", (pending_id,)).fetchone()
    else:
        row = conn.execute(
            "SELECT * FROM pending_ledger WHERE tx_hash = ?", (tx_hash.lower(),)
        ).fetchone()
    if row is None:
        return error(404, "Pending transfer not found")
    if row["status"] != "pending":
        return error(400, f"Cannot void - status is '{row['status']}'",
                     hint="Only pending transfers can be voided")
    conn.execute(
        "UPDATE pending_ledger SET status = 'voided', voided_by = ?, voided_reason = ? "
        "WHERE id = ? AND status = 'pending'",
        (voided_by, reason, row["id"]),
    )
    return jsonify({
        "ok": True, "voided_id": row["id"], "from_miner": row["from_miner"],
        "to_miner": row["to_miner"], "amount_rtc": to_rtc(row["amount_i64"]),
        "voided_by": voided_by, "reason": reason,
    }), 200


def pending_id_of(body: dict[str, Any]) -> int | None:
    """``pending_id`` from a void body if it is an integer (or a digit string), else None."""
    raw = body.get("pending_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    return None


@bp.post("/pending/confirm")
def confirm() -> Answer:
    """Confirm due pending transfers (admin key; ``?limit=`` or ``{"limit"}``, ≤ 500)."""
    if not is_admin("X-Admin-Key"):
        return error(401, _UNAUTHORIZED)
    raw = request.args.get("limit", json_object().get("limit"))
    limit = parse_limit(raw)
    if limit is None:
        return jsonify({"ok": False, "error": "limit must be an integer"}), 400
    conn = db()
    with transaction(conn):
        return jsonify(confirm_due(conn, store.now(conn), limit)), 200


@bp.post("/pending/void")
def void_route() -> Answer:
    """Void a pending transfer (admin key): ``{pending_id|tx_hash, reason?, voided_by?}``."""
    if not is_admin("X-Admin-Key"):
        return error(401, _UNAUTHORIZED)
    body = json_object()
    conn = db()
    with transaction(conn):
        return void(
            conn, pending_id=pending_id_of(body), tx_hash=str(body.get("tx_hash") or ""),
            reason=str(body.get("reason") or "admin_void"),
            voided_by=str(body.get("voided_by") or "admin"),
        )


@bp.get("/pending/list")
def list_pending() -> Answer:
    """Newest-first pending rows: admin sees all, public must give ``miner_id``.

    ``status`` defaults to ``pending`` (``all`` = no filter); ``limit`` clamped to
    [1, 500]; ``offset`` is deliberately IGNORED, as on the real node (docs/escrow-node.md §1.12).
    """
    miner_id = request.args.get("miner_id", "").strip()
    if not is_admin("X-Admin-Key", "X-API-Key") and not miner_id:
        return error(
            401, "Unauthorized. Provide miner_id for public check or Admin Key for full list."
        )
    limit = parse_limit(request.args.get("limit"))
    if limit is None:
        return jsonify({"ok": False, "error": "limit must be an integer"}), 400
    status = request.args.get("status", "pending").strip() or "pending"
    params = {"status": "" if status == "all" else status, "miner": miner_id, "limit": limit}
    conn = db()
    rows = conn.execute(
        "SELECT id, ts, from_miner, to_miner, amount_i64, reason, status, confirms_at, "
        "voided_by, voided_reason, tx_hash FROM pending_ledger "
        "WHERE (:status = '' OR status = :status) "
        "AND (:miner = '' OR from_miner = :miner OR to_miner = :miner) "
        "ORDER BY id DESC LIMIT :limit",
        params,
    ).fetchall()
    items = []
    for row in rows:
        item = dict(row)
        item["amount_rtc"] = to_rtc(item.pop("amount_i64"))
        items.append(item)
    return jsonify({
        "ok": True, "count": len(items), "pending": items,
        **overdue_stats(conn, store.now(conn)), "overdue_stats_error": None,
    }), 200
