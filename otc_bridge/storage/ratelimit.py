"""Rate limits that hold across worker processes, and the client address they key on.

Counters live in a SQLite file of their own beside the bridge's database, ``<db>-ratelimit``
(table ``rate_limits``, :func:`counters`), which every gunicorn worker opens, so every worker
sees the same count (docs/protocol.md §8). Not in the database itself: every POST counts a
hit, and in that file each hit would queue for the write lock that the order transactions
need (docs/performance.md, "Where the time goes" §1). The file is WAL with
``synchronous=NORMAL``: a hit costs no ``fsync`` (only checkpoints do), and a crash of the
machine may lose the counts written since the last checkpoint but cannot corrupt the file
(``OFF`` could). Counters are not money: lost counts let a client a few more requests in
the window they were counted in. The file is not backed up, replicated or migrated:
:data:`TABLE` creates what is missing, and a lost file only resets the windows.

A fixed window per bucket is enough here: the goal is to blunt floods and
signature-grinding, not to shape traffic precisely.

An IPv6 client is counted per /64 (:func:`bucket`): one host is routinely given a whole /64,
so per-address counting would give it 2^64 budgets and the table as many rows. Rows of ended
windows are deleted by :func:`prune`, which the app's POST hook runs once per window.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from otc_bridge.config import RateLimit
from otc_bridge.storage.db import Database

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The counters' file is ``<the bridge's database path><SUFFIX>``.
SUFFIX = "-ratelimit"
#: Run on every connection to that file: the whole schema of a file that has no migrations.
TABLE = ("CREATE TABLE IF NOT EXISTS rate_limits (bucket TEXT PRIMARY KEY, window_start INTEGER NOT NULL, "
         "hits INTEGER NOT NULL)")


@dataclass(frozen=True)
class Verdict:
    """``allowed``; if not, ``retry_after_seconds`` until the window resets."""

    allowed: bool
    retry_after_seconds: int = 0


def counters(db: Database) -> Database:
    """The counters' :class:`Database` for the bridge's database ``db``: the file
    ``<db.path>-ratelimit``, opened on first use (0600, like ``db``) and closed with ``db``."""
    return db.sibling(SUFFIX, synchronous="NORMAL", setup=(TABLE,))


def hit(db: Database, bucket: str, limit: RateLimit, now: int) -> Verdict:
    """Count one request against ``bucket`` (e.g. ``"ip:1.2.3.4"``) at ``now`` (unix s), in
    the counters' file of the bridge's database ``db`` (:func:`counters`).

    One upsert statement (its own short write transaction): a window that has ended starts
    again at ``now`` with one hit, otherwise the hit is added, up to ``requests + 1``: that
    value marks the window as refusing, and refused hits add nothing more. Raises
    ``sqlite3.OperationalError`` if the file stays locked for the busy timeout.
    """
    row = counters(db).write_one(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES (:bucket, :now, 1) "
        "ON CONFLICT (bucket) DO UPDATE SET "
        "window_start = CASE WHEN window_start + :window <= :now THEN :now ELSE window_start END, "
        "hits = CASE WHEN window_start + :window <= :now THEN 1 WHEN hits <= :requests THEN hits + 1 "
        "ELSE hits END RETURNING window_start, hits",
        {"bucket": bucket, "now": now, "window": limit.window_seconds, "requests": limit.requests})
    if row["hits"] <= limit.requests:
        return Verdict(True)
    return Verdict(False, max(1, row["window_start"] + limit.window_seconds - now))


def bucket(address: str) -> str:
    """The counter a client address (as :func:`client_ip` returns it) counts against:
    ``ip:<IPv4>`` (IPv4-mapped IPv6 counts as its IPv4), ``ip6:<network>/64`` for IPv6, and
    ``ip:<text>`` for anything that is not an address (a unix socket peer, ``unknown``)."""
    ip = _parse_ip(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # Integer masking rather than ip_network(): a scoped address (fe80::1%eth0) has no network.
        network = ipaddress.IPv6Address(int(ip) >> 64 << 64)
        return f"ip6:{network}/64"
    return f"ip:{ip or address}"


def prune(db: Database, now: int, max_window_seconds: int) -> int:
    """Delete the counters (of the bridge's database ``db``) whose window ended by ``now``
    (unix s); returns how many rows went."""
    with counters(db).transaction() as tx:
        return tx.execute(
            "DELETE FROM rate_limits WHERE window_start + ? <= ?", (max_window_seconds, now)
        ).rowcount


def _parse_ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address((text or "").strip())
    except ValueError:  # not an address (garbage header): the caller falls back to the socket peer
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def client_ip(remote_addr: str | None, headers: Mapping[str, str], trusted: Iterable[Network]) -> str:
    """The address to rate-limit on.

    The socket peer, unless that peer is a configured trusted proxy
    (``OTC_TRUSTED_PROXIES``); then the right-most ``X-Forwarded-For`` entry that is not
    itself a trusted proxy (entries to its left are client-controlled), else
    ``X-Real-IP``. Forwarding headers from anyone else are ignored: they are forgeable.
    """
    trusted = tuple(trusted)
    peer = _parse_ip(remote_addr)
    if peer is None:
        return remote_addr or "unknown"

    def is_trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip in net for net in trusted)

    if not is_trusted(peer):
        return str(peer)
    for entry in reversed((headers.get("X-Forwarded-For") or "").split(",")):
        ip = _parse_ip(entry)
        if ip is None:
            break
        if not is_trusted(ip):
            return str(ip)
    real = _parse_ip(headers.get("X-Real-IP"))
    return str(real) if real else str(peer)
