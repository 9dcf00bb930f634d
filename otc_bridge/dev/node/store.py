"""SQLite storage of the dev escrow node: schema, connections, transactions, clock, balances.

The dev node keeps its own database file (never the bridge's). Every request opens one
connection (``db()``), closed at the end of the request. Writes go through
``transaction()``, which starts with ``BEGIN IMMEDIATE`` so that concurrent requests served
by different threads take the write lock before they read what they are about to change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import current_app, g

MICRO_PER_RTC = 1_000_000
I64_MAX = 2**63 - 1  # balances and amounts are SQLite 64-bit integers
ESCROW_WALLET = "agent_escrow"  # docs/escrow-node.md §1.9: one shared pool for every job
FEE_WALLET = "founder_community"  # docs/escrow-node.md §1.9: receives the 5 % platform fee
# The real node's busy timeout (docs/escrow-node.md §4, "DB lock contention").
BUSY_TIMEOUT_SECONDS = 5.0
EXTENSION_KEY = "devnode"

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS balances (
        miner_id TEXT PRIMARY KEY,
        amount_i64 INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS agent_jobs (
        job_id TEXT PRIMARY KEY, poster_wallet TEXT NOT NULL, worker_wallet TEXT,
        title TEXT NOT NULL, description TEXT NOT NULL, category TEXT NOT NULL,
        reward_rtc REAL NOT NULL, reward_i64 INTEGER NOT NULL, escrow_i64 INTEGER NOT NULL,
        platform_fee_i64 INTEGER NOT NULL, status TEXT NOT NULL, deliverable_url TEXT,
        deliverable_hash TEXT, result_summary TEXT, rejection_reason TEXT,
        created_at INTEGER NOT NULL, claimed_at INTEGER, delivered_at INTEGER,
        completed_at INTEGER, expires_at INTEGER NOT NULL, tags TEXT NOT NULL DEFAULT '[]')""",
    "CREATE INDEX IF NOT EXISTS idx_agent_jobs_status ON agent_jobs(status)",
    "CREATE INDEX IF NOT EXISTS idx_agent_jobs_poster ON agent_jobs(poster_wallet, status)",
    """CREATE TABLE IF NOT EXISTS agent_job_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, action TEXT NOT NULL,
        actor_wallet TEXT, details TEXT, created_at INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS idx_agent_job_log_job ON agent_job_log(job_id)",
    """CREATE TABLE IF NOT EXISTS agent_ratings (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, rater_wallet TEXT NOT NULL,
        ratee_wallet TEXT NOT NULL, rating INTEGER NOT NULL, created_at INTEGER NOT NULL,
        UNIQUE (job_id, rater_wallet))""",
    """CREATE TABLE IF NOT EXISTS agent_reputation (
        wallet TEXT PRIMARY KEY, jobs_posted INTEGER NOT NULL DEFAULT 0,
        jobs_completed_as_poster INTEGER NOT NULL DEFAULT 0,
        jobs_completed_as_worker INTEGER NOT NULL DEFAULT 0,
        jobs_disputed INTEGER NOT NULL DEFAULT 0,
        total_rtc_paid REAL NOT NULL DEFAULT 0, total_rtc_earned REAL NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS pending_ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, epoch INTEGER NOT NULL,
        from_miner TEXT NOT NULL, to_miner TEXT NOT NULL, amount_i64 INTEGER NOT NULL,
        reason TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
        created_at INTEGER NOT NULL, confirms_at INTEGER NOT NULL, voided_by TEXT,
        voided_reason TEXT, confirmed_at INTEGER, tx_hash TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_pending_tx_hash ON pending_ledger(tx_hash)",
    "CREATE INDEX IF NOT EXISTS idx_pending_status ON pending_ledger(status, confirms_at)",
    """CREATE TABLE IF NOT EXISTS ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, epoch INTEGER NOT NULL,
        miner_id TEXT NOT NULL, delta_i64 INTEGER NOT NULL, reason TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS idx_ledger_reason ON ledger(reason)",
    # Dev-only state: the clock offset and the fault rules live in the DB so that every
    # thread (and a restarted process) sees the same values.
    """CREATE TABLE IF NOT EXISTS dev_settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS dev_faults (
        id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint TEXT NOT NULL, kind TEXT NOT NULL,
        remaining INTEGER, probability REAL, seed INTEGER, latency_ms INTEGER,
        status INTEGER, html INTEGER NOT NULL DEFAULT 0, matched INTEGER NOT NULL DEFAULT 0,
        fired INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL)""",
)
# Index i holds the statements that take the schema from user_version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)


@dataclass
class NodeSettings:
    """Validated configuration of one dev node app (kept in ``app.extensions``)."""

    db_path: str
    admin_key: str
    confirm_delay_seconds: int
    rate_limit_max: int
    rate_limit_window_seconds: int
    # Set when the serving thread stops, so fault-injected sleeps end early.
    stop_event: threading.Event = field(default_factory=threading.Event)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` unless the server is shutting down."""
        self.stop_event.wait(max(0.0, seconds))


def connect(db_path: str) -> sqlite3.Connection:
    """Open a connection in autocommit mode (transactions are explicit) with rows by name."""
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    # NORMAL is durable across a killed process in WAL mode (only an OS crash can lose
    # the last commits), which is what the crash tests exercise.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _private_file(db_path: str) -> None:
    """Create the node's SQLite file 0600 before SQLite does (umask-independent), or tighten an
    older one; SQLite gives its -wal/-shm files the same mode. The bridge's own helper
    (otc_bridge.storage.files) is out of reach: the dev node imports nothing of the bridge."""
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    for path in (db_path, db_path + "-wal", db_path + "-shm"):
        if os.path.exists(path):
            os.chmod(path, 0o600)


def migrate(db_path: str) -> int:
    """Create or upgrade the schema of ``db_path`` (a 0600 file); return the schema version."""
    _private_file(db_path)
    conn = connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        with transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        return len(MIGRATIONS)
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; roll back and re-raise on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def settings() -> NodeSettings:
    """The current app's ``NodeSettings``."""
    return current_app.extensions[EXTENSION_KEY]


def db() -> sqlite3.Connection:
    """The current request's connection (opened on first use, closed at teardown)."""
    if "devnode_db" not in g:
        g.devnode_db = connect(settings().db_path)
    return g.devnode_db


def close_db(_exc: BaseException | None = None) -> None:
    """Teardown hook: close the request's connection if one was opened."""
    conn = g.pop("devnode_db", None)
    if conn is not None:
        conn.close()


def clock_offset(conn: sqlite3.Connection) -> int:
    """Seconds added to the wall clock (moved by ``POST /dev/clock``)."""
    row = conn.execute(
        "SELECT value FROM dev_settings WHERE key = 'clock_offset_seconds'"
    ).fetchone()
    return int(row["value"]) if row else 0


def set_clock_offset(conn: sqlite3.Connection, offset_seconds: int) -> None:
    """Store the clock offset (seconds, may be negative)."""
    conn.execute(
        "INSERT INTO dev_settings (key, value) VALUES ('clock_offset_seconds', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(int(offset_seconds)),),
    )


def now(conn: sqlite3.Connection) -> int:
    """Server time in integer seconds: ``int(time.time()) + offset`` (the node's ``now``)."""
    return int(time.time()) + clock_offset(conn)


def current_slot(ts: int) -> int:
    """Epoch number stored on pending rows (dev approximation: 600-second slots)."""
    return ts // 600


def to_rtc(amount_i64: int) -> float:
    """micro-RTC integer → RTC float, as the node reports amounts (``*_rtc`` fields)."""
    return amount_i64 / MICRO_PER_RTC


def get_balance(conn: sqlite3.Connection, miner_id: str) -> int:
    """Confirmed balance of ``miner_id`` in micro-RTC (0 for an unknown wallet)."""
    row = conn.execute(
        "SELECT amount_i64 FROM balances WHERE miner_id = ?", (miner_id,)
    ).fetchone()
    return int(row["amount_i64"]) if row else 0


def add_balance(conn: sqlite3.Connection, miner_id: str, delta_i64: int) -> int:
    """Add ``delta_i64`` micro-RTC to ``miner_id`` (creating the row); return the new balance.

    Callers hold the write lock (``transaction()``), so this upsert cannot lose an update,
    unlike the real node's read-modify-write on job creation (docs/escrow-node.md §4).
    """
    conn.execute(
        "INSERT INTO balances (miner_id, amount_i64) VALUES (?, ?) "
        "ON CONFLICT(miner_id) DO UPDATE SET amount_i64 = amount_i64 + excluded.amount_i64",
        (miner_id, int(delta_i64)),
    )
    return get_balance(conn, miner_id)
