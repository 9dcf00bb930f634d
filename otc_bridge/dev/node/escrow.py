"""RIP-302 job escrow of the dev node: amounts, the state machine and the money moves.

Every function takes a connection on which the caller holds the write lock
(``store.transaction()``). Amounts are integers in micro-RTC. Job escrow moves never write
to the ``ledger`` table, like the real node (docs/escrow-node.md §0).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from typing import Any

from . import store

FEE_RATE = 0.05  # docs/escrow-node.md §1.2: 5 % platform fee on top of the reward
MIN_REWARD_RTC = 0.01
MAX_REWARD_RTC = 10_000.0
DEFAULT_TTL_SECONDS = 604_800  # 7 days
MIN_TTL_SECONDS = 3_600
MAX_TTL_SECONDS = 2_592_000  # 30 days
MAX_ACTIVE_JOBS = 20
ACTIVE_STATUSES = ("open", "claimed", "delivered")  # counted by the 20-job limit
EXPIRABLE_STATUSES = ("open", "claimed")  # delivered/disputed never expire (docs/escrow-node.md §1.9)
CATEGORIES = (
    "research", "code", "video", "audio", "writing",
    "translation", "data", "design", "testing", "other",
)

# The state machine of docs/escrow-node.md §1.9 as data: (from, to) pairs a job may take.
TRANSITIONS = frozenset(
    {
        ("open", "claimed"),
        ("claimed", "delivered"),
        ("delivered", "completed"),
        ("delivered", "disputed"),
        ("open", "cancelled"),
        ("disputed", "cancelled"),
        ("open", "expired"),
        ("claimed", "expired"),
    }
)
# One guarded (compare-and-swap) UPDATE per target status; the caller checks the rowcount.
_MOVE_SQL = {
    "claimed": "UPDATE agent_jobs SET status = 'claimed', worker_wallet = :worker_wallet, "
    "claimed_at = :now WHERE job_id = :job_id AND status = :from_status",
    "delivered": "UPDATE agent_jobs SET status = 'delivered', delivered_at = :now, "
    "deliverable_url = :deliverable_url, deliverable_hash = :deliverable_hash, "
    "result_summary = :result_summary WHERE job_id = :job_id AND status = :from_status",
    "completed": "UPDATE agent_jobs SET status = 'completed', completed_at = :now "
    "WHERE job_id = :job_id AND status = :from_status",
    "disputed": "UPDATE agent_jobs SET status = 'disputed', rejection_reason = :reason "
    "WHERE job_id = :job_id AND status = :from_status",
    "cancelled": "UPDATE agent_jobs SET status = 'cancelled' "
    "WHERE job_id = :job_id AND status = :from_status",
    "expired": "UPDATE agent_jobs SET status = 'expired' "
    "WHERE job_id = :job_id AND status = :from_status",
}


def job_amounts(reward_rtc: float) -> tuple[int, int, int]:
    """``(reward_i64, platform_fee_i64, escrow_i64)`` with the node's float truncation.

    docs/escrow-node.md §1.2: ``reward_i64 = int(reward_rtc*1e6)``, ``fee = int(reward_i64*0.05)``;
    so 2.01 RTC gives a reward of 2,009,999 micro-RTC.
    """
    reward_i64 = int(reward_rtc * 1e6)
    fee_i64 = int(reward_i64 * FEE_RATE)
    return reward_i64, fee_i64, reward_i64 + fee_i64


def clamp_ttl(ttl_seconds: int) -> int:
    """Clamp a TTL to [1 h, 30 d] (docs/escrow-node.md §1.2)."""
    return max(MIN_TTL_SECONDS, min(MAX_TTL_SECONDS, ttl_seconds))


def get_job(conn: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
    """The ``agent_jobs`` row, or None."""
    return conn.execute("SELECT * FROM agent_jobs WHERE job_id = ?", (job_id,)).fetchone()


def active_job_count(conn: sqlite3.Connection, poster_wallet: str) -> int:
    """Jobs of ``poster_wallet`` in open/claimed/delivered (the 20-job limit)."""
    return conn.execute(
        "SELECT COUNT(*) FROM agent_jobs WHERE poster_wallet = ? "
        "AND status IN ('open', 'claimed', 'delivered')",
        (poster_wallet,),
    ).fetchone()[0]


def log(conn: sqlite3.Connection, job_id: str, action: str, actor: str | None,
        details: dict[str, Any] | None, ts: int) -> None:
    """Append an ``agent_job_log`` row (details stored as JSON text)."""
    conn.execute(
        "INSERT INTO agent_job_log (job_id, action, actor_wallet, details, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (job_id, action, actor, json.dumps(details) if details is not None else None, ts),
    )


def bump_reputation(conn: sqlite3.Connection, wallet: str, *, posted: int = 0,
                    completed_as_poster: int = 0, completed_as_worker: int = 0,
                    disputed: int = 0, rtc_paid: float = 0.0, rtc_earned: float = 0.0) -> None:
    """Add to the informational ``agent_reputation`` counters of ``wallet``."""
    conn.execute(
        "INSERT INTO agent_reputation (wallet, jobs_posted, jobs_completed_as_poster, "
        "jobs_completed_as_worker, jobs_disputed, total_rtc_paid, total_rtc_earned) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(wallet) DO UPDATE SET "
        "jobs_posted = jobs_posted + excluded.jobs_posted, "
        "jobs_completed_as_poster = jobs_completed_as_poster + excluded.jobs_completed_as_poster, "
        "jobs_completed_as_worker = jobs_completed_as_worker + excluded.jobs_completed_as_worker, "
        "jobs_disputed = jobs_disputed + excluded.jobs_disputed, "
        "total_rtc_paid = total_rtc_paid + excluded.total_rtc_paid, "
        "total_rtc_earned = total_rtc_earned + excluded.total_rtc_earned",
        (wallet, posted, completed_as_poster, completed_as_worker, disputed, rtc_paid, rtc_earned),
    )


def transition(conn: sqlite3.Connection, job_id: str, from_status: str, to_status: str,
               ts: int, **columns: Any) -> bool:
    """Compare-and-swap the job from ``from_status`` to ``to_status``.

    Returns False when the row was no longer in ``from_status`` (the caller answers 409
    ``STATE_RACE``). Raises ValueError for an edge the state machine does not have.
    """
    if (from_status, to_status) not in TRANSITIONS:
        raise ValueError(f"no transition {from_status} -> {to_status}")
    params = {"job_id": job_id, "from_status": from_status, "now": ts, **columns}
    return conn.execute(_MOVE_SQL[to_status], params).rowcount == 1


def create_job(conn: sqlite3.Connection, *, poster_wallet: str, title: str, description: str,
               category: str, reward_rtc: float, ttl_seconds: int, tags_json: str,
               ts: int) -> sqlite3.Row:
    """Insert an ``open`` job and lock its escrow (poster → ``agent_escrow``); return the row.

    The caller has already checked the balance and the active-job limit in the same
    transaction. The job id is random, so creation is not idempotent (docs/escrow-node.md §1.1).
    """
    reward_i64, fee_i64, escrow_i64 = job_amounts(reward_rtc)
    seed = f"{poster_wallet}:{title}:{ts}:{secrets.token_hex(8)}"
    job_id = "job_" + hashlib.sha256(seed.encode()).hexdigest()[:16]
    conn.execute(
        "INSERT INTO agent_jobs (job_id, poster_wallet, title, description, category, "
        "reward_rtc, reward_i64, escrow_i64, platform_fee_i64, status, created_at, expires_at, "
        "tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
        (job_id, poster_wallet, title, description, category, reward_rtc, reward_i64,
         escrow_i64, fee_i64, ts, ts + ttl_seconds, tags_json),
    )
    store.add_balance(conn, poster_wallet, -escrow_i64)
    store.add_balance(conn, store.ESCROW_WALLET, escrow_i64)
    log(conn, job_id, "posted", poster_wallet, {"reward_i64": reward_i64}, ts)
    bump_reputation(conn, poster_wallet, posted=1)
    return get_job(conn, job_id)


def refund(conn: sqlite3.Connection, job: sqlite3.Row, ts: int) -> None:
    """Give the whole escrow (reward + fee) back to the poster."""
    store.add_balance(conn, store.ESCROW_WALLET, -job["escrow_i64"])
    store.add_balance(conn, job["poster_wallet"], job["escrow_i64"])
    log(conn, job["job_id"], "escrow_refunded", job["poster_wallet"],
        {"escrow_i64": job["escrow_i64"]}, ts)


def release(conn: sqlite3.Connection, job: sqlite3.Row, ts: int) -> None:
    """Pay an accepted job: reward to the worker, fee to ``founder_community``."""
    store.add_balance(conn, store.ESCROW_WALLET, -job["escrow_i64"])
    store.add_balance(conn, job["worker_wallet"], job["reward_i64"])
    store.add_balance(conn, store.FEE_WALLET, job["platform_fee_i64"])
    reward_rtc = store.to_rtc(job["reward_i64"])
    bump_reputation(conn, job["poster_wallet"], completed_as_poster=1, rtc_paid=reward_rtc)
    bump_reputation(conn, job["worker_wallet"], completed_as_worker=1, rtc_earned=reward_rtc)
    log(conn, job["job_id"], "completed", job["poster_wallet"],
        {"reward_i64": job["reward_i64"], "worker_wallet": job["worker_wallet"]}, ts)


def is_past_ttl(job: sqlite3.Row, ts: int) -> bool:
    """True for an open/claimed job whose ``expires_at`` has passed (lazy expiry applies)."""
    return job["status"] in EXPIRABLE_STATUSES and ts > job["expires_at"]


def expire(conn: sqlite3.Connection, job: sqlite3.Row, ts: int) -> bool:
    """Expire a job past its TTL and refund the poster; False if it changed under us."""
    if not transition(conn, job["job_id"], job["status"], "expired", ts):
        return False
    refund(conn, job, ts)
    log(conn, job["job_id"], "expired", None, {"expires_at": job["expires_at"]}, ts)
    return True


def sweep_expired(conn: sqlite3.Connection, ts: int) -> int:
    """Expire and refund every open/claimed job past TTL; return how many."""
    due = conn.execute(
        "SELECT * FROM agent_jobs WHERE status IN ('open', 'claimed') AND expires_at < ?",
        (ts,),
    ).fetchall()
    return sum(1 for job in due if expire(conn, job, ts))


def job_detail(conn: sqlite3.Connection, job: sqlite3.Row) -> dict[str, Any]:
    """Every ``agent_jobs`` column plus ``activity_log`` and ``ratings`` (GET job shape)."""
    detail = dict(job)
    detail["activity_log"] = [
        dict(row)
        for row in conn.execute(
            "SELECT action, actor_wallet, details, created_at FROM agent_job_log "
            "WHERE job_id = ? ORDER BY id",
            (job["job_id"],),
        )
    ]
    detail["ratings"] = [
        dict(row)
        for row in conn.execute(
            "SELECT rater_wallet, ratee_wallet, rating, created_at FROM agent_ratings "
            "WHERE job_id = ? ORDER BY id",
            (job["job_id"],),
        )
    ]
    return detail


def rate(conn: sqlite3.Connection, job: sqlite3.Row, rating: int, ts: int) -> None:
    """Store the poster's rating of the worker once per (job, rater); clamped to 1..5."""
    conn.execute(
        "INSERT OR IGNORE INTO agent_ratings (job_id, rater_wallet, ratee_wallet, rating, "
        "created_at) VALUES (?, ?, ?, ?, ?)",
        (job["job_id"], job["poster_wallet"], job["worker_wallet"],
         max(1, min(5, rating)), ts),
    )
