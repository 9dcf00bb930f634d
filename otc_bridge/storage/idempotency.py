"""Idempotency keys of POST requests (docs/protocol.md §3.3): reserve, answer, replay, expire.

One row of ``idempotency_keys`` (schema v6) per ``Idempotency-Key`` *and scope* (the signing
wallet, an order's preimage holder, the admin token: the API decides). The row is found by
:func:`key_id`, a hash of both, so neither is stored in the clear.

Life of a row:

* :func:`reserve` writes it ``in_flight`` in its own autocommit statement, **committed before
  the request has any effect**; a row that exists and has not expired is left alone (the API
  then replays it, refuses a different request with it, or answers "in progress").
* :func:`complete` stores the first answer, **after the request's last write**: status code,
  the headers worth keeping, and the body sealed (:func:`seal`) under a key derived from the
  client's own ``Idempotency-Key``, which is never stored. A database copy (a backup, a
  Litestream replica) therefore does not show the ``htlc_secret`` a create or a match
  answered with, unless its reader also knows the key.
* :func:`release` deletes a reservation whose request proved nothing (a refused signature);
  :func:`abandon` marks one whose outcome is unknown (an unexpected error) as stale at once.
* A process that dies between the reservation and the stored answer leaves an ``in_flight``
  row. Once it is stale (:func:`is_stale`: its holder's process is gone, or it is older than
  the request bound), a retry takes it over (:func:`take_over`, a compare-and-swap) and the API
  decides from the order's state what to answer; :func:`link_orders_to` makes sure a create's
  row names the order its first attempt wrote.
* Rows expire ``TTL_SECONDS`` after their first use; an expired row is replaced by the next
  request with the key and deleted by :func:`prune` (the API runs it every few minutes).

Times are the bridge clock's unix seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from otc_bridge.storage.db import Database

#: How long a key answers with its first response: 24 h from its first use.
TTL_SECONDS = 24 * 3600
_ID_DOMAIN = b"otc_bridge idempotency key v1\0"
_SEAL_SALT = b"otc_bridge idempotency seal v1"
_NONCE_BYTES = 12

_COLUMNS = ("key_id, route, fingerprint, state, holder, locked_at, order_id, status_code, response, headers, "
            "created_at, expires_at")


@dataclass(frozen=True)
class Row:
    """One stored key. ``state`` is ``in_flight`` or ``done``; ``locked_at`` (unix s) is when the
    current attempt began (0: abandoned); ``order_id`` the order a create wrote (else ``None``);
    ``response`` the sealed body and ``headers`` the kept headers once ``done``."""

    key_id: str
    route: str
    fingerprint: str
    state: str
    holder: str
    locked_at: int
    order_id: str | None
    status_code: int | None
    response: bytes | None
    headers: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    expires_at: int = 0

    @property
    def done(self) -> bool:
        return self.state == "done"

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Row:
        return cls(key_id=row["key_id"], route=row["route"], fingerprint=row["fingerprint"], state=row["state"],
                   holder=row["holder"], locked_at=row["locked_at"], order_id=row["order_id"],
                   status_code=row["status_code"], response=row["response"],
                   headers=json.loads(row["headers"]) if row["headers"] else {},
                   created_at=row["created_at"], expires_at=row["expires_at"])


def key_id(scope: str, key: str) -> str:
    """The row id of ``key`` in ``scope``: 64 hex characters (sha256 of both, domain-separated)."""
    return hashlib.sha256(_ID_DOMAIN + scope.encode() + b"\0" + key.encode()).hexdigest()


def this_holder() -> str:
    """``<host>:<pid>`` of this process: who runs an attempt (see :func:`holder_gone`)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(holder: str) -> bool:
    """True only when ``holder``'s process certainly no longer runs: same host, another pid,
    and no process has that pid. A reused pid or another host reads as alive, which only
    makes a retry wait for the age bound instead."""
    host, _, pid_text = holder.rpartition(":")
    if host != socket.gethostname() or not pid_text.isascii() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: an existence check, nothing is sent
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, as another user's process
        return False
    return False


def is_stale(row: Row, *, now: int, stale_after_seconds: int) -> bool:
    """An ``in_flight`` row nobody is still working on: abandoned (``locked_at`` 0), older than
    ``stale_after_seconds`` (beyond the request bound, its request cannot still run), or held
    by a process that is gone."""
    return row.locked_at + stale_after_seconds <= now or holder_gone(row.holder)


def reserve(db: Database, key_id: str, *, route: str, fingerprint: str, holder: str, now: int,
            ttl_seconds: int = TTL_SECONDS) -> bool:
    """Reserve ``key_id`` for one attempt, ``in_flight``; True if this call holds it.

    One autocommit statement, so the reservation is durable before the caller does anything.
    An existing row is replaced only once expired; otherwise nothing is written and False
    is returned (read it with :func:`find`)."""
    row = db.write_one(
        f"INSERT INTO idempotency_keys ({_COLUMNS}) VALUES (:key_id, :route, :fingerprint, 'in_flight', "  # noqa: S608
        ":holder, :now, NULL, NULL, NULL, NULL, :now, :expires_at) "
        "ON CONFLICT (key_id) DO UPDATE SET route = excluded.route, fingerprint = excluded.fingerprint, "
        "state = 'in_flight', holder = excluded.holder, locked_at = excluded.locked_at, order_id = NULL, "
        "status_code = NULL, response = NULL, headers = NULL, created_at = excluded.created_at, "
        "completed_at = NULL, expires_at = excluded.expires_at "
        "WHERE idempotency_keys.expires_at <= excluded.created_at RETURNING key_id",
        {"key_id": key_id, "route": route, "fingerprint": fingerprint, "holder": holder, "now": now,
         "expires_at": now + ttl_seconds})
    return row is not None


def find(conn: sqlite3.Connection, key_id: str, *, now: int) -> Row | None:
    """The row of ``key_id`` if it exists and has not expired at ``now``."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM idempotency_keys WHERE key_id = ? AND expires_at > ?",  # noqa: S608
                       (key_id, now)).fetchone()
    return None if row is None else Row.from_row(row)


def take_over(db: Database, row: Row, *, holder: str, now: int) -> bool:
    """Move a stale ``in_flight`` row to a new attempt (compare-and-swap on the holder and
    ``locked_at`` read); False if another retry took it first or it completed meanwhile."""
    return db.write_one(
        "UPDATE idempotency_keys SET holder = ?, locked_at = ? WHERE key_id = ? AND state = 'in_flight' "
        "AND holder = ? AND locked_at = ? RETURNING key_id",
        (holder, now, row.key_id, row.holder, row.locked_at)) is not None


def complete(db: Database, key_id: str, *, holder: str, locked_at: int, status_code: int, response: bytes,
             headers: dict[str, str], now: int) -> bool:
    """Store the attempt's answer (``response`` already sealed); False if the attempt no longer
    holds the row (another retry took it over after it went stale)."""
    return db.write_one(
        "UPDATE idempotency_keys SET state = 'done', status_code = ?, response = ?, headers = ?, completed_at = ? "
        "WHERE key_id = ? AND state = 'in_flight' AND holder = ? AND locked_at = ? RETURNING key_id",
        (status_code, response, json.dumps(headers, sort_keys=True), now, key_id, holder, locked_at)) is not None


def release(db: Database, key_id: str, *, holder: str, locked_at: int) -> bool:
    """Delete the attempt's reservation (nothing to remember); False if it is no longer ours."""
    return db.write_one(
        "DELETE FROM idempotency_keys WHERE key_id = ? AND state = 'in_flight' AND holder = ? AND locked_at = ? "
        "RETURNING key_id", (key_id, holder, locked_at)) is not None


def abandon(db: Database, key_id: str, *, holder: str, locked_at: int) -> bool:
    """Leave the reservation ``in_flight`` but stale at once (``locked_at`` 0): the outcome is
    unknown, so the next retry decides from the order's state instead of waiting."""
    return db.write_one(
        "UPDATE idempotency_keys SET locked_at = 0 WHERE key_id = ? AND state = 'in_flight' AND holder = ? "
        "AND locked_at = ? RETURNING key_id", (key_id, holder, locked_at)) is not None


def prune(db: Database, now: int) -> int:
    """Delete every expired row (with its sealed answer); returns how many went. One indexed
    autocommit statement."""
    if db.in_write_transaction():
        raise RuntimeError("prune() inside transaction(): it would join it")
    return db.connection().execute("DELETE FROM idempotency_keys WHERE expires_at <= ?", (now,)).rowcount


# --- sealing the stored answer ---------------------------------------------------------------------

def _seal_key(key: str, key_id: str) -> AESGCM:
    """AES-256-GCM under HKDF-SHA256 of the client's ``Idempotency-Key``, bound to the row."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SEAL_SALT,
                   info=key_id.encode()).derive(key.encode())
    return AESGCM(derived)


def seal(key: str, key_id: str, plaintext: bytes) -> bytes:
    """``nonce || ciphertext`` of ``plaintext`` (the response body) for the row ``key_id``."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + _seal_key(key, key_id).encrypt(nonce, plaintext, key_id.encode())


def unseal(key: str, key_id: str, sealed: bytes) -> bytes:
    """The body :func:`seal` sealed; raises ``cryptography.exceptions.InvalidTag`` if the row
    was altered or moved to another id."""
    return _seal_key(key, key_id).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], key_id.encode())


# --- linking a create to the order it writes ------------------------------------------------------

def keep_secret(db: Database, key_id: str, *, holder: str, locked_at: int, sealed: bytes) -> bool:
    """Store a preimage made for this request, sealed (:func:`seal`), in its reservation,
    committed before the order that uses it is written: a retry after a crash anywhere later
    can give it back (docs/protocol.md §3.3). True if this attempt still held the row."""
    row = db.write_one("UPDATE idempotency_keys SET kept_secret = ? WHERE key_id = ? AND state = 'in_flight' "
                       "AND holder = ? AND locked_at = ? RETURNING key_id", (sealed, key_id, holder, locked_at))
    return row is not None


def kept_secret(conn: sqlite3.Connection, key_id: str) -> bytes | None:
    """The sealed preimage :func:`keep_secret` stored for ``key_id``, if any."""
    row = conn.execute("SELECT kept_secret FROM idempotency_keys WHERE key_id = ?", (key_id,)).fetchone()
    return None if row is None else row["kept_secret"]


def link_orders_to(conn: sqlite3.Connection, key_id: str) -> None:
    """Until :func:`unlink_orders`, an order inserted through ``conn`` is written into the
    ``in_flight`` row ``key_id`` (if that row names no order yet), **in the insert's own
    transaction**: a create that dies after its intent row committed leaves a reservation that
    names the order, and a create that never committed leaves none.

    A TEMP trigger and a TEMP table: both belong to this connection only (connections are per
    thread, as a request is), so other connections and processes never see them, and the
    trading code needs no hook. Call outside a write transaction.
    """
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS idempotency_link (key_id TEXT NOT NULL)")
    # Trigger bodies may not qualify the tables they write: idempotency_keys resolves to main's.
    conn.execute(
        "CREATE TEMP TRIGGER IF NOT EXISTS idempotency_link_order AFTER INSERT ON main.orders "
        "WHEN EXISTS (SELECT 1 FROM temp.idempotency_link) BEGIN "
        "UPDATE idempotency_keys SET order_id = NEW.order_id WHERE order_id IS NULL AND state = 'in_flight' "
        "AND key_id IN (SELECT key_id FROM temp.idempotency_link); END")
    conn.execute("DELETE FROM temp.idempotency_link")
    conn.execute("INSERT INTO temp.idempotency_link (key_id) VALUES (?)", (key_id,))


def unlink_orders(conn: sqlite3.Connection) -> None:
    """Stop :func:`link_orders_to` on ``conn`` (the trigger stays, idle while the table is empty)."""
    conn.execute("DELETE FROM temp.idempotency_link")
