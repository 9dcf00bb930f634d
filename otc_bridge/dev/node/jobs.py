"""``/agent/*`` routes of the dev node (docs/escrow-node.md §1.2 to §1.8). No authentication.

Each write handler runs in one ``BEGIN IMMEDIATE`` transaction and performs the checks in
the order docs/escrow-node.md gives, so status codes match the real node even where the order is
surprising (accept: status before poster; cancel: poster before status). A lazy expiry done
by a refused call (410, or cancel's 200 "expired") is committed with that answer.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from . import escrow, store
from .common import Answer, error, json_body, json_object
from .store import db, to_rtc, transaction

bp = Blueprint("devnode_jobs", __name__)
logger = logging.getLogger(__name__)
STATE_RACE = {"code": "STATE_RACE"}
RACE_MESSAGE = "Job state changed under concurrent request — please retry"


@bp.errorhandler(Exception)
def internal_error(exc: Exception) -> Answer | HTTPException:
    """Any non-HTTP exception of an /agent route → 500 ``{"error":"Internal error"}``."""
    # docs/escrow-node.md §1.1: /agent/* handlers roll back (transaction() did) and answer JSON 500.
    if isinstance(exc, HTTPException):
        return exc
    logger.exception("devnode /agent handler failed")
    return error(500, "Internal error")


def _text(body: dict[str, Any], key: str) -> str:
    # The node does str(x).strip(): JSON null becomes "None" (docs/escrow-node.md §1.2).
    return str(body.get(key, "")).strip()


def _parse_new_job(body: dict[str, Any]) -> dict[str, Any] | str:
    """Validate a create body (docs/escrow-node.md §1.2 field rules); a str is the 400 message."""
    fields: dict[str, Any] = {"poster_wallet": _text(body, "poster_wallet")}
    if not fields["poster_wallet"]:
        return "poster_wallet required"
    fields["title"] = _text(body, "title")
    if len(fields["title"]) < 5:
        return "title must be at least 5 characters"
    fields["description"] = _text(body, "description")
    if len(fields["description"]) < 20:
        return "description must be at least 20 characters"
    fields["category"] = str(body.get("category", "other")).strip().lower()
    if fields["category"] not in escrow.CATEGORIES:
        return "category must be one of: " + ", ".join(escrow.CATEGORIES)
    raw_reward = body.get("reward_rtc")
    try:
        if raw_reward is None or isinstance(raw_reward, bool):
            raise TypeError
        reward = float(raw_reward)
    except (TypeError, ValueError):
        return "reward_rtc must be a number"
    if not math.isfinite(reward):
        return "reward_rtc must be finite"
    if not escrow.MIN_REWARD_RTC <= reward <= escrow.MAX_REWARD_RTC:
        return "reward_rtc must be between 0.01 and 10000 RTC"
    fields["reward_rtc"] = reward
    raw_ttl = body.get("ttl_seconds", escrow.DEFAULT_TTL_SECONDS)
    try:
        if isinstance(raw_ttl, bool):
            raise TypeError
        fields["ttl_seconds"] = escrow.clamp_ttl(int(raw_ttl))
    except (TypeError, ValueError, OverflowError):
        return "ttl_seconds must be an integer"
    fields["tags_json"] = json.dumps(body.get("tags", []))
    return fields


@bp.post("/agent/jobs")
def create_job() -> Answer:
    """Create a job and lock reward + 5 % fee from the poster (201; 400/429 as documented)."""
    body = json_body()
    if body is None:
        return error(400, "JSON body required")
    if not isinstance(body, dict):
        return error(400, "JSON object required")
    fields = _parse_new_job(body)
    if isinstance(fields, str):
        return error(400, fields)
    reward_i64, fee_i64, escrow_i64 = escrow.job_amounts(fields["reward_rtc"])
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        balance = store.get_balance(conn, fields["poster_wallet"])
        if balance < escrow_i64:
            return error(
                400, "Insufficient balance for escrow", balance_rtc=to_rtc(balance),
                escrow_required_rtc=to_rtc(escrow_i64), reward_rtc=fields["reward_rtc"],
                platform_fee_rtc=to_rtc(fee_i64), hint="Total escrow = reward + 5% platform fee",
            )
        active = escrow.active_job_count(conn, fields["poster_wallet"])
        if active >= escrow.MAX_ACTIVE_JOBS:
            return error(429, "Maximum 20 active jobs per agent", active_jobs=active)
        job = escrow.create_job(conn, ts=ts, **fields)
    escrow_rtc = to_rtc(escrow_i64)
    return jsonify({
        "ok": True, "job_id": job["job_id"], "status": "open",
        "poster_wallet": job["poster_wallet"], "reward_rtc": fields["reward_rtc"],
        "platform_fee_rtc": to_rtc(fee_i64), "escrow_total_rtc": escrow_rtc,
        "expires_at": job["expires_at"], "expires_in_hours": fields["ttl_seconds"] / 3600,
        "message": f"Job posted! {escrow_rtc} RTC locked in escrow.",
    }), 201


@bp.post("/agent/jobs/<job_id>/claim")
def claim(job_id: str) -> Answer:
    """Claim an open job for ``worker_wallet`` (docs/escrow-node.md §1.3). No money moves."""
    worker = _text(json_object(), "worker_wallet")
    if not worker:
        return error(400, "worker_wallet required")
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        job = escrow.get_job(conn, job_id)
        if job is None:
            return error(404, "Job not found")
        if job["status"] != "open":
            return error(409, f"Job is not open (status: {job['status']})")
        if worker == job["poster_wallet"]:
            return error(400, "Cannot claim your own job")
        if escrow.is_past_ttl(job, ts):
            if escrow.expire(conn, job, ts):
                return error(410, "Job has expired")
            return error(409, RACE_MESSAGE, **STATE_RACE)
        if not escrow.transition(conn, job_id, "open", "claimed", ts, worker_wallet=worker):
            return error(409, "Job was claimed by another worker")
        escrow.log(conn, job_id, "claimed", worker, None, ts)
    return jsonify({
        "ok": True, "job_id": job_id, "status": "claimed", "worker_wallet": worker,
        "reward_rtc": job["reward_rtc"], "expires_at": job["expires_at"],
        "message": "Job claimed! Submit your deliverable when ready.",
    }), 200


@bp.post("/agent/jobs/<job_id>/deliver")
def deliver(job_id: str) -> Answer:
    """Submit the deliverable of a claimed job (docs/escrow-node.md §1.4)."""
    body = json_object()
    worker = _text(body, "worker_wallet")
    url = str(body.get("deliverable_url") or "").strip()
    summary = str(body.get("result_summary") or "").strip()
    if not worker:
        return error(400, "worker_wallet required")
    if not url and not summary:
        return error(400, "deliverable_url or result_summary required")
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        job = escrow.get_job(conn, job_id)
        if job is None:
            return error(404, "Job not found")
        if job["status"] != "claimed":
            return error(409, f"Job must be in 'claimed' status (current: {job['status']})")
        if worker != job["worker_wallet"]:
            return error(403, "Only the assigned worker can deliver")
        if escrow.is_past_ttl(job, ts):
            if escrow.expire(conn, job, ts):
                return error(410, "Job has expired")
            return error(409, RACE_MESSAGE, **STATE_RACE)
        moved = escrow.transition(
            conn, job_id, "claimed", "delivered", ts, deliverable_url=url or None,
            deliverable_hash=str(body.get("deliverable_hash") or "").strip() or None,
            result_summary=summary or None,
        )
        if not moved:
            return error(409, RACE_MESSAGE, **STATE_RACE)
        escrow.log(conn, job_id, "delivered", worker, None, ts)
    return jsonify({
        "ok": True, "job_id": job_id, "status": "delivered",
        "message": "Deliverable submitted! Waiting for poster to accept.",
    }), 200


def _rating(body: dict[str, Any]) -> int | None:
    # docs/escrow-node.md §1.5: an optional rating; a value that is not a number is ignored.
    raw = body.get("rating")
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(raw)
    except (TypeError, ValueError, OverflowError):
        logger.info("ignoring unusable rating %r", raw)
        return None


@bp.post("/agent/jobs/<job_id>/accept")
def accept(job_id: str) -> Answer:
    """Accept a delivered job: pay reward to the worker, fee to founder_community (1.5)."""
    body = json_object()
    poster = _text(body, "poster_wallet")
    if not poster:
        return error(400, "poster_wallet required")
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        job = escrow.get_job(conn, job_id)
        if job is None:
            return error(404, "Job not found")
        # Status before poster: a wrong poster on a non-delivered job gets 409, not 403.
        if job["status"] != "delivered":
            return error(409, f"Job must be in 'delivered' status (current: {job['status']})")
        if poster != job["poster_wallet"]:
            return error(403, "Only the poster can accept delivery")
        if not escrow.transition(conn, job_id, "delivered", "completed", ts):
            return error(409, RACE_MESSAGE, **STATE_RACE)
        escrow.release(conn, job, ts)
        rating = _rating(body)
        if rating is not None:
            escrow.rate(conn, job, rating, ts)
    paid_rtc = to_rtc(job["reward_i64"])
    return jsonify({
        "ok": True, "job_id": job_id, "status": "completed",
        "worker_wallet": job["worker_wallet"], "reward_paid_rtc": paid_rtc,
        "platform_fee_rtc": to_rtc(job["platform_fee_i64"]),
        "message": f"Job complete! {paid_rtc} RTC paid to {job['worker_wallet']}.",
    }), 200


@bp.post("/agent/jobs/<job_id>/dispute")
def dispute(job_id: str) -> Answer:
    """Dispute a delivered job; escrow stays locked (docs/escrow-node.md §1.6)."""
    body = json_object()
    poster = _text(body, "poster_wallet")
    reason = str(body.get("reason") or "").strip()
    if not poster:
        return error(400, "poster_wallet required")
    if not reason:
        return error(400, "reason required")
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        job = escrow.get_job(conn, job_id)
        if job is None:
            return error(404, "Job not found")
        if job["status"] != "delivered":
            return error(409, f"Can only dispute delivered jobs (current: {job['status']})")
        if poster != job["poster_wallet"]:
            return error(403, "Only the poster can dispute")
        if not escrow.transition(conn, job_id, "delivered", "disputed", ts, reason=reason):
            return error(409, RACE_MESSAGE, **STATE_RACE)
        escrow.bump_reputation(conn, job["worker_wallet"], disputed=1)
        escrow.log(conn, job_id, "disputed", poster, {"reason": reason}, ts)
    return jsonify({
        "ok": True, "job_id": job_id, "status": "disputed",
        "message": "Job disputed. Escrow held pending resolution. "
        "Worker can re-deliver or admin can refund.",
    }), 200


@bp.post("/agent/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Answer:
    """Cancel an open/disputed job and refund reward + fee (docs/escrow-node.md §1.7)."""
    poster = _text(json_object(), "poster_wallet")
    if not poster:
        return error(400, "poster_wallet required")
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        job = escrow.get_job(conn, job_id)
        if job is None:
            return error(404, "Job not found")
        # Poster before status (the reverse of accept).
        if poster != job["poster_wallet"]:
            return error(403, "Only the poster can cancel")
        refunded_rtc = to_rtc(job["escrow_i64"])
        if job["status"] == "claimed" and escrow.is_past_ttl(job, ts):
            if not escrow.expire(conn, job, ts):
                return error(409, RACE_MESSAGE, **STATE_RACE)
            return jsonify({
                "ok": True, "job_id": job_id, "status": "expired",
                "refunded_rtc": refunded_rtc, "message": "Job expired. Escrow refunded.",
            }), 200
        if job["status"] not in ("open", "disputed"):
            return error(
                409, f"Can only cancel open or disputed jobs (current: {job['status']})"
            )
        if not escrow.transition(conn, job_id, job["status"], "cancelled", ts):
            return error(409, RACE_MESSAGE, **STATE_RACE)
        escrow.refund(conn, job, ts)
        escrow.log(conn, job_id, "cancelled", poster, None, ts)
    return jsonify({
        "ok": True, "job_id": job_id, "status": "cancelled", "refunded_rtc": refunded_rtc,
        "message": "Job cancelled. Escrow refunded.",
    }), 200
