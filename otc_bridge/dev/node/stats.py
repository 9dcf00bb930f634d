"""Dev-only request counter of the dev node, read at ``GET /dev/stats`` (the benchmark's
"node calls per lifecycle").

Every request the app receives is counted once, by method and Flask rule
(``POST /agent/jobs/<job_id>/claim``; ``<unmatched>`` for a path no route serves), with the
wall time its handling took. The count is taken in the first ``before_request`` hook, so a
faulted or rate-limited call is counted too, and it never answers nor changes a request:
the real routes behave exactly as without it. The counter lives in memory, per process, from
the app's creation; a reader takes the difference of two snapshots.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from flask import Flask, g, request

EXTENSION_KEY = "devnode_stats"
UNMATCHED = "<unmatched>"


class RequestStats:
    """Requests and their handling time (seconds, wall clock) by ``"METHOD /rule"``."""

    def __init__(self) -> None:
        self.started_at = time.time()  # unix seconds, when the app was built
        self._counts: Counter[str] = Counter()
        self._seconds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, key: str) -> None:
        """One more request of ``key``."""
        with self._lock:
            self._counts[key] += 1

    def add_time(self, key: str, seconds: float) -> None:
        """Add ``seconds`` (float: a duration, not money) of handling time to ``key``."""
        with self._lock:
            self._seconds[key] += seconds

    def snapshot(self) -> dict[str, Any]:
        """``{"since", "total", "requests": {key: n}, "seconds": {key: s}}`` (a copy)."""
        with self._lock:
            counts, seconds = dict(self._counts), dict(self._seconds)
        return {"since": self.started_at, "total": sum(counts.values()),
                "requests": dict(sorted(counts.items())),
                "seconds": {key: round(value, 6) for key, value in sorted(seconds.items())}}


def _key() -> str:
    rule = request.url_rule
    return f"{request.method} {rule.rule if rule is not None else UNMATCHED}"


def install(app: Flask) -> RequestStats:
    """Count every request of ``app``; call it before any other ``before_request`` hook is
    registered so that it runs first (a hook that answers early stops the later ones)."""
    stats = RequestStats()
    app.extensions[EXTENSION_KEY] = stats

    @app.before_request
    def _count() -> None:
        key = _key()
        stats.count(key)
        g.devnode_stats = (key, time.perf_counter())

    @app.teardown_request
    def _time(_exc: BaseException | None = None) -> None:
        started = g.pop("devnode_stats", None)
        if started is not None:
            stats.add_time(started[0], time.perf_counter() - started[1])

    return stats


def current(app: Flask) -> RequestStats:
    """``app``'s counter."""
    return app.extensions[EXTENSION_KEY]

