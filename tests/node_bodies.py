"""The escrow node's JSON bodies, written once, for every fake of the node in the tests.

The unit tests fake the node at the ``requests`` edge and the contract suite
(tests/contract) runs a stateful fake; both build their answers here, so the contract suite,
which checks that fake against the dev node, also vouches for the unit tests' bodies. Field
names, messages and status codes follow docs/escrow-node.md (the section is cited per body).
The strings the fakes share with the tests' assertions are constants here, so an error text
the client passes on to its callers is spelled in one place.
"""

from __future__ import annotations

import json
from typing import Any

MICRO_PER_RTC = 1_000_000
CATEGORIES = ("research", "code", "video", "audio", "writing", "translation", "data", "design",
              "testing", "other")
HTML_500 = ("<!doctype html>\n<html lang=en><title>500 Internal Server Error</title>\n"
            "<h1>Internal Server Error</h1></html>")

# -- error strings the client hands to its callers (docs/escrow-node.md §1.2-§1.12) -------------
JOB_NOT_FOUND = "Job not found"
OWN_JOB = "Cannot claim your own job"
JOB_EXPIRED = "Job has expired"
WRONG_WORKER = "Only the assigned worker can deliver"
WRONG_POSTER_ACCEPT = "Only the poster can accept delivery"
WRONG_POSTER_DISPUTE = "Only the poster can dispute"
WRONG_POSTER_CANCEL = "Only the poster can cancel"
INSUFFICIENT_ESCROW = "Insufficient balance for escrow"
ACTIVE_JOB_CAP = "Maximum 20 active jobs per agent"
ADMIN_REQUIRED = "Unauthorized - admin key required"
INSUFFICIENT_AVAILABLE = "Insufficient available balance"
IDEMPOTENCY_CONFLICT = "idempotency_key_conflict"
PENDING_NOT_FOUND = "Pending transfer not found"
PENDING_LIST_UNAUTHORIZED = ("Unauthorized. Provide miner_id for public check or Admin Key for "
                             "full list.")
INTERNAL_ERROR = "Internal error"
TOO_LARGE = "request body exceeds the 1 MB limit"
RATE_LIMITED = "rate_limited"
TX_NOT_FOUND = "transaction_not_found"
INVALID_MINER_ID = "invalid miner_id"
TRANSFER_REPLAY_MESSAGE = "Transfer already pending for idempotency key."
# The node's wording of the §1.2 field rules (the doc gives the rules, the dev node the text).
POSTER_REQUIRED = "poster_wallet required"
TITLE_TOO_SHORT = "title must be at least 5 characters"
DESCRIPTION_TOO_SHORT = "description must be at least 20 characters"
BAD_CATEGORY = "category must be one of: " + ", ".join(CATEGORIES)


def not_open(status: str) -> str:
    return f"Job is not open (status: {status})"


def not_claimed(status: str) -> str:
    return f"Job must be in 'claimed' status (current: {status})"


def not_delivered(status: str) -> str:
    return f"Job must be in 'delivered' status (current: {status})"


def cannot_dispute(status: str) -> str:
    return f"Can only dispute delivered jobs (current: {status})"


def cannot_cancel(status: str) -> str:
    return f"Can only cancel open or disputed jobs (current: {status})"


def cannot_void(status: str) -> str:
    return f"Cannot void - status is '{status}'"


def rtc(micro_rtc: int) -> float:
    """A micro-RTC integer as the node renders it in ``*_rtc`` fields."""
    return micro_rtc / MICRO_PER_RTC


def error(message: str, **fields: Any) -> dict:
    """The node's refusal: ``{"error": message, **fields}`` (§1.1)."""
    return {"error": message, **fields}


# -- /agent/* (§1.2-§1.8) -------------------------------------------------------------------

def job_posted(*, job_id: str, poster_wallet: str, reward_rtc: float, reward_i64: int,
               fee_i64: int, expires_at: int, ttl_seconds: int) -> dict:
    """201 of ``POST /agent/jobs`` (§1.2); ``reward_rtc`` echoes the float as sent."""
    escrow_rtc = rtc(reward_i64 + fee_i64)
    return {"ok": True, "job_id": job_id, "status": "open", "poster_wallet": poster_wallet,
            "reward_rtc": reward_rtc, "platform_fee_rtc": rtc(fee_i64),
            "escrow_total_rtc": escrow_rtc, "expires_at": expires_at,
            "expires_in_hours": ttl_seconds / 3600,
            "message": f"Job posted! {escrow_rtc} RTC locked in escrow."}


def insufficient_escrow(*, balance_i64: int, reward_rtc: float, reward_i64: int,
                        fee_i64: int) -> dict:
    """400 of ``POST /agent/jobs`` when the poster cannot cover reward + fee (§1.2 check 3)."""
    return error(INSUFFICIENT_ESCROW, balance_rtc=rtc(balance_i64),
                 escrow_required_rtc=rtc(reward_i64 + fee_i64), reward_rtc=reward_rtc,
                 platform_fee_rtc=rtc(fee_i64), hint="Total escrow = reward + 5% platform fee")


def job_row(*, job_id: str, poster_wallet: str, title: str, description: str,
            reward_rtc: float, reward_i64: int, fee_i64: int, created_at: int, expires_at: int,
            status: str = "open", worker_wallet: str | None = None, category: str = "other",
            tags: list | str = "[]", **columns: Any) -> dict:
    """``job`` of ``GET /agent/jobs/<id>`` (§1.8): every column, ``tags`` as a JSON string."""
    row = {"job_id": job_id, "poster_wallet": poster_wallet, "worker_wallet": worker_wallet,
           "title": title, "description": description, "category": category,
           "reward_rtc": reward_rtc, "reward_i64": reward_i64, "escrow_i64": reward_i64 + fee_i64,
           "platform_fee_i64": fee_i64, "status": status, "deliverable_url": None,
           "deliverable_hash": None, "result_summary": None, "rejection_reason": None,
           "created_at": created_at, "claimed_at": None, "delivered_at": None,
           "completed_at": None, "expires_at": expires_at,
           "tags": tags if isinstance(tags, str) else json.dumps(tags),
           "activity_log": [], "ratings": []}
    row.update(columns)
    return row


JOB_COLUMNS = frozenset(job_row(job_id="", poster_wallet="", title="", description="",
                                reward_rtc=0.0, reward_i64=0, fee_i64=0, created_at=0,
                                expires_at=0))
SUMMARY_COLUMNS = ("job_id", "poster_wallet", "title", "description", "category", "reward_rtc",
                   "status", "created_at", "expires_at", "tags", "worker_wallet")


def job_read(job: dict) -> dict:
    """200 of ``GET /agent/jobs/<id>``."""
    return {"ok": True, "job": job}


def job_list(jobs: list[dict], *, total: int, limit: int, offset: int) -> dict:
    """200 of ``GET /agent/jobs`` (§1.8): summaries of ``jobs`` (full rows are cut down)."""
    return {"ok": True, "jobs": [{k: job[k] for k in SUMMARY_COLUMNS} for job in jobs],
            "total": total, "limit": limit, "offset": offset, "categories": list(CATEGORIES)}


def job_claimed(*, job_id: str, worker_wallet: str, reward_rtc: float, expires_at: int) -> dict:
    """200 of ``.../claim`` (§1.3)."""
    return {"ok": True, "job_id": job_id, "status": "claimed", "worker_wallet": worker_wallet,
            "reward_rtc": reward_rtc, "expires_at": expires_at,
            "message": "Job claimed! Submit your deliverable when ready."}


def job_delivered(*, job_id: str) -> dict:
    """200 of ``.../deliver`` (§1.4)."""
    return {"ok": True, "job_id": job_id, "status": "delivered",
            "message": "Deliverable submitted! Waiting for poster to accept."}


def job_completed(*, job_id: str, worker_wallet: str, reward_i64: int, fee_i64: int) -> dict:
    """200 of ``.../accept`` (§1.5): ``reward_paid_rtc`` is the truncated reward credited."""
    paid = rtc(reward_i64)
    return {"ok": True, "job_id": job_id, "status": "completed", "worker_wallet": worker_wallet,
            "reward_paid_rtc": paid, "platform_fee_rtc": rtc(fee_i64),
            "message": f"Job complete! {paid} RTC paid to {worker_wallet}."}


def job_disputed(*, job_id: str) -> dict:
    """200 of ``.../dispute`` (§1.6), misleading message included."""
    return {"ok": True, "job_id": job_id, "status": "disputed",
            "message": "Job disputed. Escrow held pending resolution. "
                       "Worker can re-deliver or admin can refund."}


def job_cancelled(*, job_id: str, escrow_i64: int, expired: bool = False) -> dict:
    """200 of ``.../cancel`` (§1.7): ``cancelled``, or ``expired`` for a claimed job past TTL."""
    status, message = (("expired", "Job expired. Escrow refunded.") if expired
                       else ("cancelled", "Job cancelled. Escrow refunded."))
    return {"ok": True, "job_id": job_id, "status": status, "refunded_rtc": rtc(escrow_i64),
            "message": message}


# -- /wallet/* (§1.10-§1.12) ----------------------------------------------------------------

def balance(miner_id: str, amount_i64: int) -> dict:
    """200 of ``GET /wallet/balance`` (§1.10): no ``ok`` key."""
    return {"miner_id": miner_id, "amount_i64": amount_i64, "amount_rtc": rtc(amount_i64)}


def ok_false(message: str) -> dict:
    """A 400 that carries ``ok:false`` besides the error: ``/wallet/balance`` (§1.10), a malformed
    ``/wallet/tx`` hash and a non-integer ``/pending/list`` limit (§1.12)."""
    return {"ok": False, "error": message}


def transfer_answer(*, pending_id: int, tx_hash: str, from_miner: str, to_miner: str,
                    amount_i64: int, confirms_at: int, confirm_delay_seconds: int,
                    phase: str = "pending", replay: bool = False) -> dict:
    """200 of ``POST /wallet/transfer`` (§1.11): a new row, or a replay with the current phase."""
    message = (TRANSFER_REPLAY_MESSAGE if replay else
               f"Transfer pending. Will confirm in {confirm_delay_seconds // 3600} hours unless "
               "voided.")
    return {"ok": True, "phase": phase, "pending_id": pending_id, "tx_hash": tx_hash,
            "from_miner": from_miner, "to_miner": to_miner, "amount_rtc": rtc(amount_i64),
            "confirms_at": confirms_at, "confirms_in_hours": confirm_delay_seconds / 3600,
            "message": message}


def insufficient_available(*, balance_i64: int, debits_i64: int, requested_i64: int) -> dict:
    """400 of ``POST /wallet/transfer`` (§1.11 check 6): balance minus pending debits."""
    return error(INSUFFICIENT_AVAILABLE, balance_rtc=rtc(balance_i64),
                 pending_debits_rtc=rtc(debits_i64), available_rtc=rtc(balance_i64 - debits_i64),
                 requested_rtc=rtc(requested_i64))


def admin_required() -> dict:
    """401 of ``POST /wallet/transfer`` without the admin key (§1.11 check 2)."""
    return error(ADMIN_REQUIRED, hint="Use /wallet/transfer/signed for user transfers")


def tx_answer(tx_hash: str, status: str, block_height: int | None = None) -> dict:
    """200 of ``GET /wallet/tx/<h>`` (§1.12): pending, confirmed or failed (voided)."""
    return {"ok": True, "tx_hash": tx_hash, "status": status,
            "confirmations": 1 if status == "confirmed" else 0, "block_height": block_height}


def tx_not_found() -> dict:
    """404 of ``GET /wallet/tx/<h>`` for an unknown hash: an authoritative answer (§1.12)."""
    return {"ok": False, "status": "not_found", "error": TX_NOT_FOUND}


def confirm_answer(*, limit: int, selected: int, confirmed_ids: list[int],
                   stats_before: dict, stats_after: dict) -> dict:
    """200 of ``POST /pending/confirm`` (§1.12); ``stats_*`` from :func:`overdue_stats`."""
    return {"ok": True, "limit": limit, "selected_count": selected,
            "confirmed_count": len(confirmed_ids), "confirmed_ids": confirmed_ids,
            "errors": None, **{f"{k}_before": v for k, v in stats_before.items()},
            **stats_after, "overdue_stats_error": None}


def overdue_stats(count: int, max_overdue_seconds: int) -> dict:
    """The pool's overdue figures as ``/pending/confirm`` and ``/pending/list`` report them."""
    return {"stale_pending_count": count, "max_confirm_overdue_seconds": max_overdue_seconds,
            "overdue_stats_measured": True}


def void_answer(*, voided_id: int, from_miner: str, to_miner: str, amount_i64: int,
                reason: str, voided_by: str = "admin") -> dict:
    """200 of ``POST /pending/void`` (§1.12)."""
    return {"ok": True, "voided_id": voided_id, "from_miner": from_miner, "to_miner": to_miner,
            "amount_rtc": rtc(amount_i64), "voided_by": voided_by, "reason": reason}


def void_refused(status: str) -> dict:
    """400 of ``POST /pending/void`` for a row that is no longer pending (§1.12)."""
    return error(cannot_void(status), hint="Only pending transfers can be voided")


PENDING_ITEM_KEYS = ("id", "ts", "from_miner", "to_miner", "amount_rtc", "reason", "status",
                     "confirms_at", "voided_by", "voided_reason", "tx_hash")


def pending_list(items: list[dict], stats: dict) -> dict:
    """200 of ``GET /pending/list`` (§1.12): items have no ``idempotency_key``."""
    return {"ok": True, "count": len(items), "pending": items, **stats,
            "overdue_stats_error": None}


# -- answers common to several routes (§1.1, §4) ------------------------------------------------

def rate_limited(limit: int = 12, window_seconds: int = 60) -> dict:
    """429 of the admin rate limit (§4); sent with ``Retry-After``."""
    return {"ok": False, "error": RATE_LIMITED, "code": "ADMIN_RATE_LIMIT", "limit": limit,
            "window_seconds": window_seconds}


def too_large() -> dict:
    """413 for a body over 1 MB (§1.1)."""
    return {"ok": False, "code": "REQUEST_TOO_LARGE", "error": TOO_LARGE}
