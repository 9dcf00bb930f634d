"""Per-endpoint request records and their summary (count, rate, latency percentiles, errors).

A tally maps an endpoint label (``"POST /api/orders"``) to the latencies of its answered
requests (milliseconds, floats: durations, never money) and a count per HTTP status, the
status ``0`` standing for a transport failure (no answer: refused, reset, timed out).
Tallies are plain dicts and lists so that driver processes can send them back pickled.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

TRANSPORT = 0  # the status recorded when no HTTP answer came back

Tally = dict[str, dict[str, Any]]  # label -> {"ms": [float], "codes": Counter}


def new() -> Tally:
    return {}


def record(tally: Tally, label: str, status: int, ms: float | None) -> None:
    """One request of ``label``: its status (0: no answer) and, if answered, its latency (ms)."""
    entry = tally.setdefault(label, {"ms": [], "codes": Counter()})
    entry["codes"][status] += 1
    if ms is not None:
        entry["ms"].append(ms)


def merge(into: Tally, other: Tally) -> Tally:
    """Add ``other``'s records to ``into``; returns ``into``."""
    for label, entry in other.items():
        mine = into.setdefault(label, {"ms": [], "codes": Counter()})
        mine["ms"].extend(entry["ms"])
        mine["codes"].update(entry["codes"])
    return into


def percentile(sorted_ms: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_ms:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_ms)))
    return sorted_ms[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarize_entry(entry: dict[str, Any], seconds: float) -> dict[str, Any]:
    """``count``, ``rps``, ``p50_ms``/``p90_ms``/``p99_ms``/``max_ms`` and the errors:
    ``errors_4xx`` (other non-2xx below 500), ``errors_5xx``, ``errors_transport``, and
    ``errors`` (all three) over a window of ``seconds``."""
    codes: Counter = entry["codes"]
    latencies = sorted(entry["ms"])
    count = sum(codes.values())
    non_2xx = sum(n for code, n in codes.items() if code != TRANSPORT and not 200 <= code < 300)
    five = sum(n for code, n in codes.items() if code >= 500)
    transport = codes.get(TRANSPORT, 0)
    return {"count": count, "rps": round(count / seconds, 1) if seconds > 0 else None,
            "p50_ms": _ms(percentile(latencies, 0.50)), "p90_ms": _ms(percentile(latencies, 0.90)),
            "p99_ms": _ms(percentile(latencies, 0.99)), "max_ms": _ms(latencies[-1] if latencies else None),
            "errors_4xx": non_2xx - five, "errors_5xx": five, "errors_transport": transport,
            "errors": non_2xx + transport,
            "statuses": {str(code): n for code, n in sorted(codes.items())}}


def summarize(tally: Tally, seconds: float) -> dict[str, dict[str, Any]]:
    """:func:`summarize_entry` for every label, sorted by label."""
    return {label: summarize_entry(entry, seconds) for label, entry in sorted(tally.items())}


def combined(tally: Tally, labels: list[str] | None = None) -> dict[str, Any]:
    """One entry merging ``labels`` (all when None), to summarize a group of endpoints."""
    merged: dict[str, Any] = {"ms": [], "codes": Counter()}
    for label, entry in tally.items():
        if labels is None or label in labels:
            merged["ms"].extend(entry["ms"])
            merged["codes"].update(entry["codes"])
    return merged
