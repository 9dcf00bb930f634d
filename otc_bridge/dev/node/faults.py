"""Fault injection for the dev node: rules stored in its DB, applied before/after a view.

A rule is a dict::

    {"endpoint": "POST /wallet/transfer",   # "METHOD /rule-or-path", "METHOD *", or "*"
     "kind": "timeout_after",               # see KINDS
     "count": 1,                            # fire on the next N matching calls (optional)
     "probability": 0.5, "seed": 7,         # fire with probability p; seeded = reproducible
     "latency_ms": 200,                     # timeout_after (default 30000) and latency (1000)
     "status": 502, "html": false}          # error_5xx only: 500/502/503, HTML page or JSON

The path part is compared with the Flask rule (``/agent/jobs/<job_id>/accept``) and with the
literal path (``/agent/jobs/job_abc/accept``), so a rule can target one job. Without
``count`` and ``probability`` a rule fires on every matching call until cleared. ``/dev/*``
routes are never faulted, so a rule can always be removed.

Kinds: ``latency`` sleeps then serves normally; ``timeout_after`` serves and commits, then
sleeps before answering (the client times out although the effect happened);
``drop_before`` closes the TCP connection with no HTTP answer and no effect;
``error_5xx`` answers the status without any effect; ``rate_limit`` answers the admin
rate limit's 429 with ``Retry-After`` without any effect.

``parse_fault_spec`` reads a rule from a CLI string: either JSON (an object or a list) or
``"<endpoint>=<kind>[:key=value,key=value]"``, e.g.
``"POST /wallet/transfer=timeout_after:count=1,latency_ms=200"``.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sqlite3
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import default_exceptions

from . import store
from .common import rate_limited_body
from .store import db, transaction

KINDS = ("timeout_after", "drop_before", "error_5xx", "latency", "rate_limit")
DEFAULT_LATENCY_MS = {"timeout_after": 30_000, "latency": 1_000}
ERROR_STATUSES = (500, 502, 503)
_FIELDS = {"endpoint", "kind", "count", "probability", "seed", "latency_ms", "status", "html"}


class FaultSpecError(ValueError):
    """An invalid fault rule; the message names the field."""


def _int_or_none(spec: dict[str, Any], name: str, minimum: int | None = None) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultSpecError(f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise FaultSpecError(f"{name} must be >= {minimum}")
    return value


def normalize_endpoint(endpoint: Any) -> str:
    """``"post  /x"`` → ``"POST /x"``; ``"*"`` stays; raise FaultSpecError if malformed."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise FaultSpecError("endpoint must be a string like 'POST /wallet/transfer' or '*'")
    parts = endpoint.split()
    if parts == ["*"]:
        return "*"
    if len(parts) != 2 or not (parts[1] == "*" or parts[1].startswith("/")):
        raise FaultSpecError("endpoint must be 'METHOD /path', 'METHOD *' or '*'")
    return f"{parts[0].upper()} {parts[1]}"


def normalize_rule(spec: Any) -> dict[str, Any]:
    """Validate a rule dict and fill defaults; raise FaultSpecError naming the bad field."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault rule must be a JSON object")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise FaultSpecError(f"unknown fault field(s): {', '.join(unknown)}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of: {', '.join(KINDS)}")
    probability = spec.get("probability")
    if probability is not None and (
        isinstance(probability, bool)
        or not isinstance(probability, int | float)
        or not 0 <= probability <= 1
    ):
        raise FaultSpecError("probability must be a number between 0 and 1")
    status = _int_or_none(spec, "status")
    if kind == "error_5xx" and (status or 500) not in ERROR_STATUSES:
        raise FaultSpecError("status must be 500, 502 or 503")
    html = spec.get("html", False)
    if not isinstance(html, bool):
        raise FaultSpecError("html must be true or false")
    latency_ms = _int_or_none(spec, "latency_ms", 0)
    return {
        "endpoint": normalize_endpoint(spec.get("endpoint")),
        "kind": kind,
        "count": _int_or_none(spec, "count", 1),
        "probability": probability,
        "seed": _int_or_none(spec, "seed"),
        "latency_ms": latency_ms if latency_ms is not None else DEFAULT_LATENCY_MS.get(kind),
        "status": (status or 500) if kind == "error_5xx" else None,
        "html": html,
    }


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _scalar(text: str) -> Any:
    """A CLI option value: true/false, an int, a float, else the stripped string."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def parse_fault_spec(text: str) -> list[dict[str, Any]]:
    """Rules from a JSON string or ``"<endpoint>=<kind>[:k=v,...]"``; raise FaultSpecError."""
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise FaultSpecError(f"invalid JSON fault spec: {exc}") from exc
        return [normalize_rule(item) for item in (loaded if isinstance(loaded, list) else [loaded])]
    endpoint, sep, rest = text.partition("=")
    if not sep:
        raise FaultSpecError("expected '<endpoint>=<kind>[:key=value,...]'")
    kind, _, options = rest.partition(":")
    spec: dict[str, Any] = {"endpoint": endpoint, "kind": kind.strip()}
    for option in filter(None, (part.strip() for part in options.split(","))):
        name, sep, value = option.partition("=")
        if not sep:
            raise FaultSpecError(f"fault option {option!r} must be key=value")
        spec[name.strip()] = _scalar(value)
    return [normalize_rule(spec)]


def add_rules(conn: sqlite3.Connection, rules: list[dict[str, Any]], ts: int) -> list[int]:
    """Insert normalized rules; return their ids."""
    return [
        conn.execute(
            "INSERT INTO dev_faults (endpoint, kind, remaining, probability, seed, latency_ms, "
            "status, html, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rule["endpoint"], rule["kind"], rule["count"], rule["probability"], rule["seed"],
             rule["latency_ms"], rule["status"], int(rule["html"]), ts),
        ).lastrowid
        for rule in rules
    ]


def active_rules(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Rules that can still fire, oldest first (``remaining`` None = unlimited)."""
    rows = conn.execute(
        "SELECT * FROM dev_faults WHERE remaining IS NULL OR remaining > 0 ORDER BY id"
    ).fetchall()
    return [{**dict(row), "html": bool(row["html"])} for row in rows]


def _matches(endpoint: str, method: str, rule: str | None, path: str) -> bool:
    if endpoint == "*":
        return True
    want_method, want_path = endpoint.split(" ", 1)
    return want_method in ("*", method) and want_path in ("*", rule, path)


def _fires(rule: dict[str, Any]) -> bool:
    probability = rule["probability"]
    if probability is None:
        return True
    # A seeded rule decides its k-th matching call from (seed, k): reproducible whatever
    # thread serves the call.
    draw = (
        random.Random(f"{rule['seed']}:{rule['matched']}").random()
        if rule["seed"] is not None
        else random.random()
    )
    return draw < probability


def take(conn: sqlite3.Connection, method: str, rule: str | None,
         path: str) -> dict[str, Any] | None:
    """Count this call against matching rules; return the first rule that fires, or None."""
    if not any(_matches(r["endpoint"], method, rule, path) for r in active_rules(conn)):
        return None  # the common case takes no write lock
    with transaction(conn):
        for candidate in active_rules(conn):
            if not _matches(candidate["endpoint"], method, rule, path):
                continue
            fires = _fires(candidate)
            conn.execute(
                "UPDATE dev_faults SET matched = matched + 1, fired = fired + ?, "
                "remaining = CASE WHEN remaining IS NULL THEN NULL ELSE remaining - ? END "
                "WHERE id = ?",
                (int(fires), int(fires), candidate["id"]),
            )
            if fires:
                return candidate
    return None


def _drop_connection() -> Response:
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        # Flask's test client has no socket to drop.
        return jsonify({"error": "drop_before needs the werkzeug HTTP server"}), 500
    # shutdown (not close): werkzeug's later write fails with BrokenPipeError, which it
    # treats as a dropped connection, and its drain-the-socket step reads EOF instead of
    # hitting a closed descriptor.
    sock.shutdown(socket.SHUT_RDWR)
    return Response(status=500)


def _answer(rule: dict[str, Any]) -> Response | tuple[Response, int] | None:
    settings = store.settings()
    kind = rule["kind"]
    if kind == "latency":
        settings.sleep(rule["latency_ms"] / 1000)
        return None
    if kind == "timeout_after":
        g.devnode_delay_ms = rule["latency_ms"]
        return None
    if kind == "error_5xx":
        if rule["html"]:
            return default_exceptions[rule["status"]]().get_response()
        return jsonify({"error": "Internal error"}), rule["status"]
    if kind == "rate_limit":
        return rate_limited_body(settings.rate_limit_max or 12, settings.rate_limit_window_seconds)
    return _drop_connection()


def install(app: Flask) -> None:
    """Register the fault hooks. Call before other hooks so the delay runs last."""

    @app.before_request
    def _inject_fault() -> Response | tuple[Response, int] | None:
        if request.path.startswith("/dev/"):
            return None
        url_rule = request.url_rule.rule if request.url_rule is not None else None
        fired = take(db(), request.method, url_rule, request.path)
        return _answer(fired) if fired is not None else None

    @app.after_request
    def _delay_answer(response: Response) -> Response:
        # timeout_after: the view has committed; hold the answer back.
        delay_ms = g.pop("devnode_delay_ms", None)
        if delay_ms:
            store.settings().sleep(delay_ms / 1000)
        return response
