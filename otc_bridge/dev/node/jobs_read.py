"""Read routes of ``/agent/*`` (docs/escrow-node.md §1.8). Public.

Reads are not pure on the node: GET of one job expires it (with refund) when it is
open/claimed past TTL, and the list first sweeps every such job. Only a read that has
something to expire takes the write lock.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from . import escrow, store
from .common import Answer, error
from .jobs import internal_error
from .store import db, to_rtc, transaction

bp = Blueprint("devnode_jobs_read", __name__)
bp.register_error_handler(Exception, internal_error)

MAX_LIST_LIMIT = 100
_LIST_COLUMNS = (
    "job_id, poster_wallet, title, description, category, reward_rtc, status, created_at, "
    "expires_at, tags, worker_wallet"
)
_LIST_WHERE = (
    " FROM agent_jobs WHERE (:status = '' OR status = :status) "
    "AND (:category = '' OR category = :category) AND reward_rtc >= :min_reward"
)


@bp.get("/agent/jobs/<job_id>")
def get_job(job_id: str) -> Answer:
    """``{"ok":true,"job":{every column, activity_log, ratings}}`` or 404 ``Job not found``.

    ``tags`` stays the stored JSON string, as on the node.
    """
    conn = db()
    job = escrow.get_job(conn, job_id)
    if job is not None and escrow.is_past_ttl(job, store.now(conn)):
        with transaction(conn):
            ts = store.now(conn)
            job = escrow.get_job(conn, job_id)
            if escrow.is_past_ttl(job, ts):
                escrow.expire(conn, job, ts)
            job = escrow.get_job(conn, job_id)
    if job is None:
        return error(404, "Job not found")
    return jsonify({"ok": True, "job": escrow.job_detail(conn, job)}), 200


def _non_negative_int(name: str, default: int) -> int | str:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return f"{name} must be a non-negative integer"
    return value if value >= 0 else f"{name} must be a non-negative integer"


@bp.get("/agent/jobs")
def list_jobs() -> Answer:
    """List jobs: ``?status=open&category=&limit=50&offset=0&min_reward=0``.

    ``limit`` is capped at 100 (negative/non-integer → 400), ``offset`` works here,
    order is reward desc then created desc, there is no poster filter. An empty
    ``status`` lists every status. Answer: ``{ok, jobs, total, limit, offset, categories}``.
    """
    limit = _non_negative_int("limit", 50)
    offset = _non_negative_int("offset", 0)
    for value in (limit, offset):
        if isinstance(value, str):
            return error(400, value)
    try:
        min_reward = float(request.args.get("min_reward", 0))
    except ValueError:
        return error(400, "min_reward must be a number")
    params = {
        "status": request.args.get("status", "open").strip(),
        "category": request.args.get("category", "").strip().lower(),
        "min_reward": min_reward,
        "limit": min(limit, MAX_LIST_LIMIT),
        "offset": offset,
    }
    conn = db()
    due = conn.execute(
        "SELECT 1 FROM agent_jobs WHERE status IN ('open', 'claimed') AND expires_at < ? "
        "LIMIT 1",
        (store.now(conn),),
    ).fetchone()
    if due:
        with transaction(conn):
            escrow.sweep_expired(conn, store.now(conn))
    rows = conn.execute(
        "SELECT " + _LIST_COLUMNS + _LIST_WHERE  # noqa: S608 - constant SQL fragments
        + " ORDER BY reward_rtc DESC, created_at DESC LIMIT :limit OFFSET :offset",
        params,
    ).fetchall()
    total = conn.execute("SELECT COUNT(*)" + _LIST_WHERE, params).fetchone()[0]  # noqa: S608
    return jsonify({
        "ok": True, "jobs": [dict(row) for row in rows], "total": total,
        "limit": params["limit"], "offset": offset, "categories": list(escrow.CATEGORIES),
    }), 200


@bp.get("/agent/stats")
def stats() -> Answer:
    """Informational totals: jobs by status, escrow locked, paid rewards and fees (RTC)."""
    conn = db()
    by_status = {
        row["status"]: row["n"]
        for row in conn.execute("SELECT status, COUNT(*) AS n FROM agent_jobs GROUP BY status")
    }
    locked, paid, fees = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN status IN ('open','claimed','delivered','disputed') "
        "THEN escrow_i64 END), 0), "
        "COALESCE(SUM(CASE WHEN status = 'completed' THEN reward_i64 END), 0), "
        "COALESCE(SUM(CASE WHEN status = 'completed' THEN platform_fee_i64 END), 0) "
        "FROM agent_jobs"
    ).fetchone()
    return jsonify({
        "ok": True,
        "stats": {
            "total_jobs": sum(by_status.values()), "by_status": by_status,
            "escrow_locked_rtc": to_rtc(locked), "total_rewards_paid_rtc": to_rtc(paid),
            "platform_fees_rtc": to_rtc(fees),
        },
    }), 200


@bp.get("/agent/reputation/<wallet>")
def reputation(wallet: str) -> Answer:
    """Informational counters of ``wallet`` (zeros for an unknown wallet)."""
    row = db().execute("SELECT * FROM agent_reputation WHERE wallet = ?", (wallet,)).fetchone()
    rep = dict(row) if row else {
        "wallet": wallet, "jobs_posted": 0, "jobs_completed_as_poster": 0,
        "jobs_completed_as_worker": 0, "jobs_disputed": 0, "total_rtc_paid": 0.0,
        "total_rtc_earned": 0.0,
    }
    return jsonify({"ok": True, "reputation": rep}), 200
