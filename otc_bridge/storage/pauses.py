"""Switches that stop part of the money path: the ``pauses`` table.

``releases`` is set by the reconciler when the worker wallet no longer covers the payouts and
refunds queued from it (anyone can debit any wallet on the node, docs/escrow-node.md §0), and
cleared when it does again. The claim of a settlement checks it inside its compare-and-swap
(:data:`NO_RELEASE_PAUSE`), so no confirm can start a release while it is set.
"""

from __future__ import annotations

import sqlite3

from otc_bridge.storage.db import Tx

RELEASES = "releases"
#: A condition for the settlement claim's ``UPDATE``: no pause of releases is set.
NO_RELEASE_PAUSE = "NOT EXISTS (SELECT 1 FROM pauses WHERE name = 'releases')"


def set_pause(tx: Tx, name: str, *, reason: str, now: int) -> bool:
    """Set pause ``name`` (unix ``now``); True if it was not set before."""
    return tx.execute("INSERT OR IGNORE INTO pauses (name, since, reason) VALUES (?, ?, ?)",
                      (name, now, reason)).rowcount == 1


def clear_pause(tx: Tx, name: str) -> bool:
    """Clear pause ``name``; True if it was set."""
    return tx.execute("DELETE FROM pauses WHERE name = ?", (name,)).rowcount == 1


def current(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    """The pause row (``name``, ``since``, ``reason``), or ``None`` when not paused."""
    return conn.execute("SELECT * FROM pauses WHERE name = ?", (name,)).fetchone()
