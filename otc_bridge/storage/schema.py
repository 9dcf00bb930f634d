"""Versioned schema migrations (``PRAGMA user_version``).

Money columns are INTEGER with the unit in the name (micro-RTC, nano-quote). Append-only
tables (``order_events``) are protected by triggers, so even a bug cannot rewrite history.
Statements run one by one with ``execute`` (``executescript`` would commit implicitly and
break the one-transaction-per-migration guarantee in ``db.Database.migrate``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from otc_bridge.storage import legacy

_V1 = [
    """
    CREATE TABLE orders (
        order_id                 TEXT PRIMARY KEY,
        side                     TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        pair                     TEXT NOT NULL,
        status                   TEXT NOT NULL,
        order_version            INTEGER NOT NULL DEFAULT 1 CHECK (order_version >= 1),
        maker_wallet             TEXT NOT NULL,
        maker_quote_address      TEXT NOT NULL,
        amount_micro_rtc         INTEGER NOT NULL CHECK (amount_micro_rtc > 0),
        price_nano_quote         INTEGER NOT NULL CHECK (price_nano_quote > 0),
        total_quote_nano         INTEGER NOT NULL CHECK (total_quote_nano > 0),
        ttl_seconds              INTEGER NOT NULL,
        created_at               INTEGER NOT NULL,
        expires_at               INTEGER NOT NULL,
        updated_at               INTEGER NOT NULL,
        taker_wallet             TEXT,
        taker_quote_address      TEXT,
        matched_at               INTEGER,
        settle_by                INTEGER,
        htlc_hash                TEXT,
        htlc_secret              TEXT,
        quote_tx                 TEXT,
        escrow_wallet            TEXT,
        escrow_ref               TEXT UNIQUE,
        escrow_job_id            TEXT UNIQUE,
        escrow_reward_micro_rtc  INTEGER,
        escrow_total_micro_rtc   INTEGER,
        escrow_ttl_seconds       INTEGER,
        payout_wallet            TEXT,
        payout_key               TEXT UNIQUE,
        payout_tx_hash           TEXT UNIQUE,
        payout_micro_rtc         INTEGER,
        settling_at              INTEGER,
        confirmed_at             INTEGER,
        ended_at                 INTEGER,
        end_cause                TEXT,
        attention_reason         TEXT
    )
    """,
    "CREATE INDEX orders_book ON orders (pair, side, status, price_nano_quote, created_at)",
    "CREATE INDEX orders_status ON orders (status, updated_at)",
    "CREATE INDEX orders_maker ON orders (maker_wallet, created_at)",
    "CREATE INDEX orders_taker ON orders (taker_wallet, created_at)",
    """
    CREATE TABLE trades (
        trade_id          TEXT PRIMARY KEY,
        order_id          TEXT NOT NULL UNIQUE REFERENCES orders (order_id),
        pair              TEXT NOT NULL,
        side              TEXT NOT NULL,
        seller_wallet     TEXT NOT NULL,
        buyer_wallet      TEXT NOT NULL,
        amount_micro_rtc  INTEGER NOT NULL CHECK (amount_micro_rtc > 0),
        price_nano_quote  INTEGER NOT NULL CHECK (price_nano_quote > 0),
        total_quote_nano  INTEGER NOT NULL CHECK (total_quote_nano > 0),
        payout_micro_rtc  INTEGER NOT NULL,
        quote_tx          TEXT,
        escrow_job_id     TEXT,
        payout_tx_hash    TEXT,
        created_at        INTEGER NOT NULL
    )
    """,
    "CREATE INDEX trades_pair_time ON trades (pair, created_at)",
    """
    CREATE TABLE order_events (
        event_id       INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id       TEXT NOT NULL REFERENCES orders (order_id),
        order_version  INTEGER NOT NULL,
        kind           TEXT NOT NULL CHECK (kind IN ('transition', 'node_call', 'alert', 'note')),
        from_status    TEXT,
        to_status      TEXT,
        actor          TEXT NOT NULL,
        reason         TEXT NOT NULL,
        node_endpoint  TEXT,
        node_outcome   TEXT,
        node_ref       TEXT,
        detail         TEXT,
        created_at     INTEGER NOT NULL
    )
    """,
    "CREATE INDEX order_events_order ON order_events (order_id, event_id)",
    """
    CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
    BEGIN SELECT RAISE(ABORT, 'order_events is append-only'); END
    """,
    """
    CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
    BEGIN SELECT RAISE(ABORT, 'order_events is append-only'); END
    """,
    """
    CREATE TABLE outbox (
        outbox_id        INTEGER PRIMARY KEY AUTOINCREMENT,
        event_key        TEXT NOT NULL UNIQUE,
        topic            TEXT NOT NULL,
        order_id         TEXT,
        order_version    INTEGER,
        payload          TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        delivered_at     INTEGER
    )
    """,
    "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
    """
    CREATE TABLE used_signatures (
        digest      TEXT PRIMARY KEY,
        wallet      TEXT NOT NULL,
        action      TEXT NOT NULL,
        used_at     INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    )
    """,
    "CREATE INDEX used_signatures_expiry ON used_signatures (expires_at)",
    """
    CREATE TABLE rate_limits (
        bucket        TEXT PRIMARY KEY,
        window_start  INTEGER NOT NULL,
        hits          INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE leases (
        name        TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        expires_at  REAL NOT NULL
    )
    """,
]


def _v1(conn: sqlite3.Connection) -> None:
    """The first schema; a reference bridge database in this file is imported (docs/protocol.md §6)."""
    reference = legacy.has_reference_tables(conn)
    if reference:
        legacy.rename_reference_tables(conn)
    for sql in _V1:
        conn.execute(sql)
    if reference:
        legacy.import_reference_rows(conn, int(time.time()))


#: Schema version 2: the per-destination delivery table. Idempotent (``IF NOT EXISTS``).
_V2 = [
    """
    CREATE TABLE IF NOT EXISTS outbox_deliveries (
        delivery_id      INTEGER PRIMARY KEY AUTOINCREMENT,
        outbox_id        INTEGER NOT NULL REFERENCES outbox (outbox_id),
        destination      TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT 'pending'
                         CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        delivered_at     INTEGER,
        UNIQUE (outbox_id, destination)
    )
    """,
    "CREATE INDEX IF NOT EXISTS outbox_deliveries_due ON outbox_deliveries (destination, state, next_attempt_at)",
]


def _v2(conn: sqlite3.Connection) -> None:
    """Per-destination delivery state of outbox rows (:mod:`otc_bridge.notify.outbox_worker`)."""
    for sql in _V2:
        conn.execute(sql)


def _v3(conn: sqlite3.Connection) -> None:
    """Background workers' last passes (:func:`otc_bridge.storage.heartbeats.record_pass`),
    read by /readyz and /metrics."""
    conn.execute(
        """
        CREATE TABLE heartbeats (
            name         TEXT PRIMARY KEY,
            last_run_at  INTEGER NOT NULL,
            detail       TEXT NOT NULL
        )
        """
    )


def _v4(conn: sqlite3.Connection) -> None:
    """Escrow tampering and custody refunds (docs/protocol.md §11): when the escrow watch saw
    the job moved by someone else, and the keyed transfer that returns escrow the bridge's
    worker holds; ``pauses`` holds switches such as ``releases`` (the worker wallet does not
    cover what is queued from it), which the claim of a settlement checks in its CAS."""
    for sql in (
        "ALTER TABLE orders ADD COLUMN escrow_tampered_at INTEGER",
        "ALTER TABLE orders ADD COLUMN refund_key TEXT",
        "ALTER TABLE orders ADD COLUMN refund_tx_hash TEXT",
        "ALTER TABLE orders ADD COLUMN refund_micro_rtc INTEGER",
        # ADD COLUMN cannot carry UNIQUE: unique indexes instead (NULLs never collide).
        "CREATE UNIQUE INDEX orders_refund_key ON orders (refund_key)",
        "CREATE UNIQUE INDEX orders_refund_tx_hash ON orders (refund_tx_hash)",
        "CREATE TABLE pauses (name TEXT PRIMARY KEY, since INTEGER NOT NULL, reason TEXT NOT NULL)",
    ):
        conn.execute(sql)


def _v5(conn: sqlite3.Connection) -> None:
    """The quote leg on chain (docs/protocol.md §12): who holds the preimage, the lock
    deadline, the order's one sticky lock and its claim; every ``SwapCreated`` the watcher
    counted (valid or not, with the reason); the watcher's block cursor; and every hashlock
    any order ever used (a reused hashlock is refused)."""
    for sql in (
        "ALTER TABLE orders ADD COLUMN preimage_holder TEXT",  # 'seller' | 'buyer'; NULL = seller
        "ALTER TABLE orders ADD COLUMN lock_by INTEGER",
        # quote_leg_state: awaiting_lock | locked | invalid | claimed | refunded; NULL: not verified on chain
        "ALTER TABLE orders ADD COLUMN quote_leg_state TEXT",
        "ALTER TABLE orders ADD COLUMN quote_leg_reason TEXT",
        "ALTER TABLE orders ADD COLUMN quote_lock_tx TEXT",
        "ALTER TABLE orders ADD COLUMN quote_swap_id TEXT",
        "ALTER TABLE orders ADD COLUMN quote_timelock INTEGER",
        "ALTER TABLE orders ADD COLUMN quote_claim_tx TEXT",
        "ALTER TABLE orders ADD COLUMN quote_claimed_at INTEGER",
        "CREATE UNIQUE INDEX orders_quote_swap_id ON orders (quote_swap_id)",
        """
        CREATE TABLE quote_locks (
            swap_id       TEXT PRIMARY KEY,
            chain_id      INTEGER NOT NULL,
            rtc_order_id  TEXT NOT NULL,
            order_id      TEXT,
            tx_hash       TEXT NOT NULL,
            block_number  INTEGER NOT NULL,
            block_hash    TEXT NOT NULL,
            log_index     INTEGER NOT NULL,
            block_time    INTEGER NOT NULL,
            buyer         TEXT NOT NULL,
            seller        TEXT NOT NULL,
            token         TEXT NOT NULL,
            amount        TEXT NOT NULL,
            hashlock      TEXT NOT NULL,
            timelock      INTEGER NOT NULL,
            valid         INTEGER NOT NULL CHECK (valid IN (0, 1)),
            reason        TEXT,
            state         TEXT NOT NULL CHECK (state IN ('open', 'claimed', 'refunded', 'reorged')),
            claim_tx      TEXT,
            claim_block   INTEGER,
            preimage      TEXT,
            refund_tx     TEXT,
            seen_at       INTEGER NOT NULL
        )
        """,
        "CREATE INDEX quote_locks_order ON quote_locks (order_id, block_number, log_index)",
        "CREATE INDEX quote_locks_hashlock ON quote_locks (hashlock)",
        """
        CREATE TABLE chain_cursor (
            chain_id      INTEGER NOT NULL,
            contract      TEXT NOT NULL,
            block_number  INTEGER NOT NULL,
            block_hash    TEXT NOT NULL,
            PRIMARY KEY (chain_id, contract)
        )
        """,
        "CREATE TABLE used_hashlocks (hashlock TEXT PRIMARY KEY, order_id TEXT NOT NULL, used_at INTEGER NOT NULL)",
        "INSERT OR IGNORE INTO used_hashlocks SELECT htlc_hash, order_id, created_at FROM orders "
        "WHERE htlc_hash IS NOT NULL",
        # Every hashlock an order ever carries is remembered, by the database itself.
        "CREATE TRIGGER orders_hashlock_inserted AFTER INSERT ON orders WHEN NEW.htlc_hash IS NOT NULL BEGIN "
        "INSERT OR IGNORE INTO used_hashlocks VALUES (NEW.htlc_hash, NEW.order_id, NEW.created_at); END",
        "CREATE TRIGGER orders_hashlock_updated AFTER UPDATE OF htlc_hash ON orders WHEN NEW.htlc_hash IS NOT NULL "
        "BEGIN INSERT OR IGNORE INTO used_hashlocks VALUES (NEW.htlc_hash, NEW.order_id, NEW.updated_at); END",
    ):
        conn.execute(sql)


def _v6(conn: sqlite3.Connection) -> None:
    """Idempotent POSTs (docs/protocol.md §3.3, :mod:`otc_bridge.storage.idempotency`): one row
    per ``Idempotency-Key`` and scope (a wallet, an order's preimage holder, the admin token),
    identified by a hash of both, so neither the key nor the scope is stored in the clear. The
    row is reserved ``in_flight`` before the request's first effect and holds the first answer
    once it is ``done``: status, kept headers and the body sealed under a key derived from the
    client's ``Idempotency-Key`` (the body of a create or a match carries ``htlc_secret``).
    Rows live 24 h (``expires_at``) and are pruned."""
    for sql in (
        """
        CREATE TABLE idempotency_keys (
            key_id        TEXT PRIMARY KEY,
            route         TEXT NOT NULL,
            fingerprint   TEXT NOT NULL,
            state         TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
            holder        TEXT NOT NULL,
            locked_at     INTEGER NOT NULL,
            order_id      TEXT,
            kept_secret   BLOB,
            status_code   INTEGER,
            response      BLOB,
            headers       TEXT,
            created_at    INTEGER NOT NULL,
            completed_at  INTEGER,
            expires_at    INTEGER NOT NULL,
            CHECK ((state = 'done') = (status_code IS NOT NULL AND response IS NOT NULL))
        )
        """,
        "CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at)",
    ):
        conn.execute(sql)


def _v7(conn: sqlite3.Connection) -> None:
    """The rate-limit counters moved to a file of their own (:mod:`otc_bridge.storage.ratelimit`),
    off this file's write lock. The old table's counts (one window at most) are dropped with
    it: a client may get one window's budget again once, at the upgrade."""
    conn.execute("DROP TABLE IF EXISTS rate_limits")


#: (version, migration) in order; append new versions, never edit an old one.
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),
    (4, _v4),
    (5, _v5),
    (6, _v6),
    (7, _v7),
]

#: The columns a transition may set (guards the dynamic UPDATE in ``store.transition``).
ORDER_COLUMNS = frozenset({
    "taker_wallet", "taker_quote_address", "matched_at", "settle_by", "htlc_hash",
    "htlc_secret", "quote_tx", "escrow_wallet", "escrow_ref", "escrow_job_id",
    "escrow_reward_micro_rtc", "escrow_total_micro_rtc", "escrow_ttl_seconds", "payout_wallet",
    "payout_key", "payout_tx_hash", "payout_micro_rtc", "settling_at", "confirmed_at",
    "ended_at", "end_cause", "attention_reason", "expires_at", "escrow_tampered_at", "refund_key",
    "refund_tx_hash", "refund_micro_rtc", "preimage_holder", "lock_by", "quote_leg_state", "quote_leg_reason",
    "quote_lock_tx", "quote_swap_id", "quote_timelock", "quote_claim_tx", "quote_claimed_at",
})
