"""Request plumbing shared by the dev node's blueprints.

JSON bodies and errors, the admin key check, the admin rate limit, the 1 MB body limit and
the ``X-Request-Id`` header: the conventions of docs/escrow-node.md §1.1 and the rate limit of
docs/escrow-node.md §4.
"""

from __future__ import annotations

import hmac
import re
import threading
import uuid
from collections import deque
from typing import Any

from flask import Flask, Response, jsonify, request

from . import store

Answer = tuple[Response, int]  # what a view returns: (JSON response, status)
MAX_BODY_BYTES = 1024 * 1024  # docs/escrow-node.md §1.1: "a body over 1 MB returns 413"
# A client id is echoed only if it is a plain token, so a header never reflects junk.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def error(status: int, message: str, **fields: Any) -> Answer:
    """A JSON error response ``{"error": message, **fields}`` with ``status``."""
    return jsonify({"error": message, **fields}), status


def json_body() -> Any:
    """The request's JSON with ``get_json(silent=True)`` semantics (None when absent/invalid)."""
    return request.get_json(silent=True)


def json_object() -> dict[str, Any]:
    """The JSON body if it is an object, else ``{}`` ("a missing body counts as {}")."""
    body = json_body()
    return body if isinstance(body, dict) else {}


def is_admin(*header_names: str) -> bool:
    """True if one of the headers carries the admin key (constant-time comparison)."""
    expected = store.settings().admin_key.encode()
    for name in header_names:
        given = request.headers.get(name)
        if given is not None and hmac.compare_digest(
            given.encode("utf-8", "surrogateescape"), expected
        ):
            return True
    return False


def rate_limited_body(limit: int, window_seconds: int) -> Answer:
    """The node's 429 answer (docs/escrow-node.md §4) with ``Retry-After``."""
    response = jsonify(
        {
            "ok": False,
            "error": "rate_limited",
            "code": "ADMIN_RATE_LIMIT",
            "limit": limit,
            "window_seconds": window_seconds,
        }
    )
    response.headers["Retry-After"] = str(max(1, window_seconds))
    return response, 429


class AdminRateLimiter:
    """Sliding-window counter per (bucket, client IP), in memory, on the dev node clock.

    ``max_requests == 0`` disables it (the dev default, like ``RC_ADMIN_RATE_LIMIT_MAX=0``).
    """

    def __init__(self, max_requests: int, window_seconds: int) -> None:
        self.max_requests = max_requests
        self.window_seconds = window_seconds
        self._hits: dict[tuple[str, str], deque[int]] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, client: str, now: int) -> int | None:
        """Count one request; return None if allowed, else the seconds until a slot frees."""
        if self.max_requests <= 0:
            return None
        with self._lock:
            hits = self._hits.setdefault((bucket, client), deque())
            while hits and hits[0] <= now - self.window_seconds:
                hits.popleft()
            if len(hits) >= self.max_requests:
                return max(1, hits[0] + self.window_seconds - now)
            hits.append(now)
            return None


def admin_bucket(path: str) -> str | None:
    """Rate-limit bucket of a path: ``/wallet/transfer`` alone, all of ``/pending/*`` shared."""
    if path == "/wallet/transfer":
        return "transfer"
    if path.startswith("/pending/"):
        return "pending"
    return None


def install(app: Flask) -> None:
    """Register the 1 MB body limit and the response headers on ``app``."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    def too_large(_exc: Exception | None = None) -> Answer:
        return jsonify(
            {
                "ok": False,
                "code": "REQUEST_TOO_LARGE",
                "error": "request body exceeds the 1 MB limit",
            }
        ), 413

    app.register_error_handler(413, too_large)

    @app.before_request
    def _limit_body() -> Answer | None:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return too_large()
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        given = request.headers.get("X-Request-Id", "")
        response.headers["X-Request-Id"] = (
            given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        )
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def install_rate_limit(app: Flask, limiter: AdminRateLimiter) -> None:
    """Register the admin rate limit, counted before auth (docs/escrow-node.md §4)."""
    if limiter.max_requests <= 0:
        return

    @app.before_request
    def _admin_rate_limit() -> Answer | None:
        bucket = admin_bucket(request.path)
        if bucket is None:
            return None
        retry_after = limiter.hit(bucket, request.remote_addr or "", store.now(store.db()))
        if retry_after is None:
            return None
        response, status = rate_limited_body(limiter.max_requests, limiter.window_seconds)
        response.headers["Retry-After"] = str(retry_after)
        return response, status
