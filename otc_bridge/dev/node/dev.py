"""Dev-only routes of the dev node (``/dev/*``, no key, never rate limited or faulted).

They set up and inspect a scenario: mint balances, move the clock, force a job past its
TTL, void or confirm pending transfers, read totals for conservation checks, and manage
fault rules (``faults.py``). Amounts are micro-RTC integers unless a name ends in ``_rtc``.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, current_app, jsonify

from . import escrow, faults, pending, stats, store
from .common import Answer, error, json_body, json_object
from .store import I64_MAX, MICRO_PER_RTC, db, to_rtc, transaction

bp = Blueprint("devnode_dev", __name__)


def _fund_amount(raw: Any) -> int | str:
    """Decimal string or number → micro-RTC; a str result is the 400 message."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return "amount_rtc must be a decimal string or a number"
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        return "amount_rtc must be a decimal string or a number"
    if not amount.is_finite():
        return "amount_rtc must be finite"
    if amount < 0:
        return "amount_rtc must not be negative"
    micro = amount * MICRO_PER_RTC
    if micro != micro.to_integral_value():
        return "amount_rtc must have at most 6 decimals"
    if micro > I64_MAX:
        return "amount_rtc is too large"
    return int(micro)


@bp.post("/dev/fund")
def fund() -> Answer:
    """Mint ``{"wallet", "amount_rtc"}`` into a wallet; answer its new balance."""
    body = json_object()
    wallet = body.get("wallet")
    if not isinstance(wallet, str) or not wallet.strip():
        return error(400, "wallet must be a non-empty string")
    amount_i64 = _fund_amount(body.get("amount_rtc"))
    if isinstance(amount_i64, str):
        return error(400, amount_i64)
    conn = db()
    with transaction(conn):
        balance = store.add_balance(conn, wallet.strip(), amount_i64)
        minted = _minted(conn) + amount_i64
        conn.execute(
            "INSERT INTO dev_settings (key, value) VALUES ('minted_i64', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(minted),),
        )
    return jsonify({"ok": True, "wallet": wallet.strip(), "amount_i64": balance,
                    "amount_rtc": to_rtc(balance)}), 200


def _minted(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM dev_settings WHERE key = 'minted_i64'").fetchone()
    return int(row["value"]) if row else 0


def _clock_answer(conn: sqlite3.Connection) -> Answer:
    return jsonify({"ok": True, "now": store.now(conn),
                    "offset_seconds": store.clock_offset(conn)}), 200


@bp.get("/dev/clock")
def get_clock() -> Answer:
    """``{"ok", "now", "offset_seconds"}``: node time = wall clock + offset."""
    return _clock_answer(db())


@bp.post("/dev/clock")
def move_clock() -> Answer:
    """``{"advance_seconds": N}`` adds to the offset; ``{"set_offset_seconds": N}`` sets it."""
    body = json_object()
    conn = db()
    for name in ("advance_seconds", "set_offset_seconds"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return error(400, f"{name} must be an integer")
        with transaction(conn):
            base = store.clock_offset(conn) if name == "advance_seconds" else 0
            store.set_clock_offset(conn, base + value)
        return _clock_answer(conn)
    return error(400, "advance_seconds or set_offset_seconds required")


@bp.post("/dev/jobs/<job_id>/expire")
def expire_job(job_id: str) -> Answer:
    """Set ``expires_at = now - 1``; the node's lazy expiry applies on the next touch."""
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        moved = conn.execute(
            "UPDATE agent_jobs SET expires_at = ? WHERE job_id = ?", (ts - 1, job_id)
        ).rowcount
        if not moved:
            return error(404, "Job not found")
        job = escrow.get_job(conn, job_id)
    return jsonify({"ok": True, "job_id": job_id, "status": job["status"],
                    "expires_at": job["expires_at"]}), 200


@bp.post("/dev/void")
def void() -> Answer:
    """Void a pending transfer like ``/pending/void`` (``voided_by`` defaults to ``dev``)."""
    body = json_object()
    conn = db()
    with transaction(conn):
        return pending.void(
            conn, pending_id=pending.pending_id_of(body), tx_hash=str(body.get("tx_hash") or ""),
            reason=str(body.get("reason") or "dev_void"),
            voided_by=str(body.get("voided_by") or "dev"),
        )


@bp.post("/dev/confirm")
def confirm() -> Answer:
    """Confirm due pending transfers like ``/pending/confirm`` without the key."""
    limit = pending.parse_limit(json_object().get("limit"))
    if limit is None:
        return jsonify({"ok": False, "error": "limit must be an integer"}), 400
    conn = db()
    with transaction(conn):
        return jsonify(pending.confirm_due(conn, store.now(conn), limit)), 200


@bp.get("/dev/state")
def state() -> Answer:
    """Totals for conservation checks (micro-RTC).

    ``total_balance_i64`` must always equal ``minted_i64`` (job moves and confirmed
    transfers only move money), and ``agent_escrow_i64`` must equal
    ``escrow_locked_i64`` (the escrow of open/claimed/delivered/disputed jobs).
    """
    conn = db()
    balances = {
        row["miner_id"]: row["amount_i64"]
        for row in conn.execute("SELECT miner_id, amount_i64 FROM balances ORDER BY miner_id")
    }
    pending_rows = conn.execute(
        "SELECT status, COUNT(*) AS n, SUM(amount_i64) AS amount FROM pending_ledger "
        "GROUP BY status"
    ).fetchall()
    jobs = conn.execute("SELECT status, COUNT(*) AS n FROM agent_jobs GROUP BY status").fetchall()
    locked = conn.execute(
        "SELECT COALESCE(SUM(escrow_i64), 0) FROM agent_jobs "
        "WHERE status IN ('open', 'claimed', 'delivered', 'disputed')"
    ).fetchone()[0]
    return jsonify({
        "ok": True, "now": store.now(conn), "offset_seconds": store.clock_offset(conn),
        "balances": balances, "total_balance_i64": sum(balances.values()),
        "minted_i64": _minted(conn),
        "agent_escrow_i64": balances.get(store.ESCROW_WALLET, 0),
        "founder_community_i64": balances.get(store.FEE_WALLET, 0),
        "escrow_locked_i64": locked,
        "pending": {row["status"]: {"count": row["n"], "amount_i64": row["amount"]}
                    for row in pending_rows},
        "jobs_by_status": {row["status"]: row["n"] for row in jobs},
    }), 200


@bp.get("/dev/stats")
def request_stats() -> Answer:
    """Requests this process received since it started, by method and route (``stats.py``):
    ``{"ok", "since", "total", "requests": {"POST /agent/jobs": n, ...}, "seconds": {...}}``,
    ``seconds`` being the wall time spent handling them. This request is counted too."""
    return jsonify({"ok": True, **stats.current(current_app).snapshot()}), 200


@bp.get("/dev/faults")
def list_faults() -> Answer:
    """``{"ok", "faults": [rule + id, remaining, matched, fired]}`` (rules that can fire)."""
    return jsonify({"ok": True, "faults": faults.active_rules(db())}), 200


@bp.post("/dev/faults")
def add_faults() -> Answer:
    """Add one rule (object) or several (list); 400 names the bad field."""
    body = json_body()
    try:
        rules = [faults.normalize_rule(item) for item in (body if isinstance(body, list)
                                                          else [body])]
    except faults.FaultSpecError as exc:
        return error(400, str(exc))
    conn = db()
    with transaction(conn):
        ids = faults.add_rules(conn, rules, store.now(conn))
    return jsonify({"ok": True, "ids": ids, "faults": faults.active_rules(conn)}), 200


@bp.delete("/dev/faults")
def clear_faults() -> Answer:
    """Remove every rule."""
    conn = db()
    with transaction(conn):
        cleared = conn.execute("DELETE FROM dev_faults").rowcount
    return jsonify({"ok": True, "cleared": cleared}), 200
