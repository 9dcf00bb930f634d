"""The rendered public reads, kept per process until the orders change (issue #12).

``GET /api/orders``, ``/api/orders/<id>``, ``/api/orderbook``, ``/api/stats`` and
``/api/trades`` keep the JSON body they rendered and answer the next identical request with
it, as long as nothing it was built from can have changed (docs/performance.md, "Reads and
the ceiling"). Never a stale book after a transition: an entry is used only when both hold

* **its version is the orders' version now**, found with one ``SELECT`` on the primary key
  per request: the newest ``order_events.event_id``. Every write to ``orders`` appends a
  ``transition`` or ``note`` event in the same transaction (``storage.orders.insert_order``,
  ``transition``, ``annotate``; docs/protocol.md §4.3 rule 5 and §6) and a trade row is only
  written with the ``completed`` transition, so a committed change to an order or a trade
  always comes with a newer event. Most events change nothing a read shows (the escrow watch
  logs a ``node_call`` per open order per pass), so when the newest id moved, the events in
  between are looked at once per process (:meth:`ReadCache.orders_version`) and the version
  moves only if one of them is a ``transition`` or ``note``. One order's detail uses its
  ``order_version`` instead, which every change to its row increments.
  ``tests/api/test_read_cache.py`` fails if code that writes ``orders`` or ``trades``
  appears anywhere else than where those events are written.
* **the bridge clock is inside the entry's time window**: from the second it was rendered
  (a clock moved back renders again) to the first second at which time alone changes the
  answer: the earliest ``expires_at`` of the open orders it counted (they leave the book
  then, before the reconciler marks them expired) and the moment its oldest trade leaves a
  24 h or 7 d window.

An entry is rendered inside one read transaction (a WAL snapshot), so its body, its version
and its window describe the same state; a write committed meanwhile moves the counter, and
the next request renders again. A 404 is not kept. Each gunicorn worker process holds its
own entries (:class:`ReadCache`, bounded in count and bytes, least recently used out first);
nothing is shared between processes and nothing needs to be told about a write.

:func:`encode` renders the body as Flask's ``jsonify`` does (sorted keys, compact,
``ensure_ascii``, a newline), byte for byte, with orjson where its output is the same.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask, Response, current_app
from flask.json.provider import DefaultJSONProvider

from otc_bridge.storage import reads

#: Where each app keeps its cache (``app.extensions``).
EXTENSION = "otc_bridge.readcache"
MAX_ENTRIES = 4096
MAX_BYTES = 32 * 1024 * 1024
#: A jump of the newest event id larger than this is not scanned: the version just moves
#: (a render more, never a stale one). It bounds the one scan after a long quiet stretch.
MAX_SCAN_EVENTS = 20_000
#: Python writes a float outside [1e-4, 1e16) in exponent form (``1e-05``, ``1e+16``) and
#: orjson does not always (``0.00001``, ``1e16``); inside it both write the same digits.
_POSITIONAL = (1e-4, 1e16)


@dataclass(frozen=True, slots=True)
class Rendered:
    """What a read renders: its JSON ``payload`` and ``until``, the first bridge-clock second
    (unix) at which time alone may change it (``None``: time never does)."""

    payload: dict[str, Any]
    until: int | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    since: int  # the bridge clock (unix seconds) when it was rendered
    until: int | None
    body: bytes


class ReadCache:
    """Rendered bodies by key (a tuple naming the read and its arguments), each with the
    version and time window it holds for. Thread-safe; at most ``max_entries`` entries and
    ``max_bytes`` of bodies, the least recently used dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._seen: tuple[int, int | None] = (0, None)  # newest event id seen, the orders' version then
        self._advance = threading.Lock()

    def orders_version(self, conn: sqlite3.Connection) -> int | None:
        """The version of ``orders`` and ``trades`` as ``conn`` sees them: an event id that
        changes whenever they may have changed (see the module docstring). ``None`` keeps
        nothing: no event yet, or ``conn`` reads an older snapshot than one already seen
        here (whose version would not describe it)."""
        newest = reads.newest_event_id(conn)
        if newest is None:
            return None
        seen, version = self._seen
        if newest == seen:
            return version
        with self._advance:
            seen, version = self._seen
            if newest <= seen:
                return version if newest == seen else None
            if version is None or newest - seen > MAX_SCAN_EVENTS or reads.rows_changed_between(conn, seen, newest):
                version = newest
            self._seen = (newest, version)
            return version

    def get(self, key: Hashable, version: int, now: int) -> bytes | None:
        """The body kept for ``key`` if it was rendered at ``version`` and ``now`` is in its
        window, else ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.version != version or now < entry.since or (
                    entry.until is not None and now >= entry.until):
                return None
            self._entries.move_to_end(key)
            return entry.body

    def put(self, key: Hashable, version: int, now: int, until: int | None, body: bytes) -> None:
        """Keep ``body`` for ``key``, unless an entry of a newer version is there already (a
        request that read the counter before a commit finished rendering after it)."""
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
                if old.version > version:
                    self._entries[key] = old
                    self._bytes += len(old.body)
                    return
            self._entries[key] = _Entry(version, now, until, body)
            self._bytes += len(body)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.body)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def for_app(app: Flask) -> ReadCache:
    """``app``'s cache, made on first use (one per app, so per worker process)."""
    cache = app.extensions.get(EXTENSION)
    if cache is None:
        cache = app.extensions.setdefault(EXTENSION, ReadCache())
    return cache


def respond(conn: sqlite3.Connection, key: Hashable, now: int, render: Callable[[sqlite3.Connection, int], Rendered],
            *, version: Callable[[sqlite3.Connection], int | None] | None = None) -> Response:
    """The 200 JSON response of the read named ``key`` (the route and everything of the
    request its answer depends on, e.g. the raw query string) at bridge time ``now``: the
    kept body if it still holds (see the module docstring), else ``render(conn, now)``'s,
    kept for the next request. ``render`` parses the request itself, so a hit skips that
    too; what it raises (a 400, a 404) passes and keeps nothing. ``version`` reads the
    version the body depends on (default: :meth:`ReadCache.orders_version`); ``None``
    keeps nothing."""
    cache = for_app(current_app)
    version = version or cache.orders_version
    current = version(conn)
    if current is not None:
        body = cache.get(key, current, now)
        if body is not None:
            return _response(body)
    with _snapshot(conn):
        current = version(conn)
        rendered = render(conn, now)
    body = encode(rendered.payload)
    if current is not None:
        cache.put(key, current, now, rendered.until, body)
    return _response(body)


def earliest(*times: int | None) -> int | None:
    """The smallest of ``times`` that is not ``None`` (``None`` if all are)."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def encode(payload: Any) -> bytes:
    """``payload`` as ``jsonify`` writes it (``json.dumps`` with sorted keys, ``(",", ":")``
    separators and ``ensure_ascii``, then a newline), byte for byte. orjson (several times
    faster) renders it when its bytes are the same: all ASCII without DEL (``ensure_ascii``
    escapes both), and no float that the two write differently (:func:`_floats_differ`,
    checked on the payload); otherwise Flask's encoder does."""
    try:
        out = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an int beyond 64 bits, a lone surrogate, a type only Flask's encoder knows
        out = None
    if out is not None and out.isascii() and b"\x7f" not in out and _plain_jsonify(current_app) and (
            not _floats_differ(payload)):
        return out + b"\n"
    return current_app.json.response(payload).get_data()


def _plain_jsonify(app: Flask) -> bool:
    """True if ``jsonify`` writes what the orjson path does: Flask's default provider with
    sorted keys, ``ensure_ascii`` and compact output (not the debug mode's indentation)."""
    provider = app.json
    return (type(provider) is DefaultJSONProvider and provider.sort_keys and provider.ensure_ascii
            and (provider.compact if provider.compact is not None else not app.debug))


def _floats_differ(payload: Any) -> bool:
    """True if ``payload`` holds a float (at any depth) that ``json.dumps`` and orjson write
    differently: non-zero outside :data:`_POSITIONAL`, or not finite."""
    low, high = _POSITIONAL
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, float):
            if value and not low <= abs(value) < high:  # NaN and infinities fail the range too
                return True
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def _response(body: bytes) -> Response:
    return current_app.response_class(body, mimetype="application/json")


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around the statements inside (WAL: they all see one commit). On a
    connection already in a transaction, that transaction is the snapshot."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")  # read-only: committing and rolling back are the same
