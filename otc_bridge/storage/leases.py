"""Named leases in SQLite: one holder at a time, across threads and processes.

Used to serialise escrow creation per wallet (the node over-locks when one poster creates
jobs concurrently: docs/escrow-node.md §4, "Concurrent job creation by the same poster") and, later,
to elect the single reconciler / outbox driver. A lease has an expiry so a crashed holder
cannot block others forever.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from otc_bridge.storage.db import Database


class LeaseBusy(RuntimeError):
    """The lease stayed held by someone else for the whole wait."""


def new_holder() -> str:
    """A holder id unique to this process and call."""
    return f"{os.getpid()}:{uuid.uuid4().hex[:12]}"


def try_acquire(db: Database, name: str, holder: str, ttl_seconds: float, now: float) -> bool:
    """Take (or renew, if ``holder`` already has it) the lease ``name`` until ``now + ttl``."""
    with db.transaction() as tx:
        row = tx.execute("SELECT holder, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
        if row is not None and row["holder"] != holder and row["expires_at"] > now:
            return False
        tx.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
            (name, holder, now + ttl_seconds),
        )
        return True


def release(db: Database, name: str, holder: str) -> None:
    """Give the lease back if ``holder`` still has it."""
    with db.transaction() as tx:
        tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


def _local_lock(name: str) -> threading.Lock:
    with _local_locks_guard:
        return _local_locks.setdefault(name, threading.Lock())


@contextmanager
def held(
    db: Database,
    name: str,
    *,
    ttl_seconds: float,
    wait_seconds: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Hold lease ``name`` for the ``with`` block; raises :class:`LeaseBusy` after waiting.

    Threads of one process queue on an in-process lock first, so only one of them polls
    the table; processes poll every 50 ms. ``ttl_seconds`` must exceed the longest time
    the block can take (node timeouts included), or a second holder may enter.
    """
    local = _local_lock(name)
    if not local.acquire(timeout=wait_seconds):
        raise LeaseBusy(name)
    holder = new_holder()
    try:
        deadline = clock() + wait_seconds
        while not try_acquire(db, name, holder, ttl_seconds, clock()):
            if clock() >= deadline:
                raise LeaseBusy(name)
            sleep(0.05)
        try:
            yield holder
        finally:
            release(db, name, holder)
    finally:
        local.release()
