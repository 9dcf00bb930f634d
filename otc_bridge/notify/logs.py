"""Structured logs: one JSON object per line, each carrying the request id of its request.

The request id comes from the client's ``X-Request-Id`` when it is short and plain
(so a proxy's id threads through), otherwise a fresh one; it is echoed in the response
header and attached to every log record made while the request is handled (by
:class:`RequestIdFilter`, installed on the root handler by :func:`configure_logging`). Each
request also gets one access line (``otc_bridge.access``, INFO) with method, path, status,
duration and request id. Query strings are never logged; nor are bodies (they may hold a
preimage).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import TextIO

from flask import Response, g, has_request_context, request

ACCESS_LOGGER = "otc_bridge.access"
_GIVEN_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,64}")
#: Attributes every LogRecord has; anything else on a record came from ``extra=`` and is output.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

access_log = logging.getLogger(ACCESS_LOGGER)
#: The version (4) and variant (10xx) bits of a random UUID, as ``uuid.UUID(version=4)`` sets them.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def request_id_from(given: str | None) -> str:
    """``given`` if it is 1..64 characters of ``[A-Za-z0-9._:/+=@-]``, else a new 32-hex id."""
    if given and _GIVEN_ID.fullmatch(given):
        return given
    # uuid.uuid4().hex, bit for bit (random, version 4, RFC 4122 variant), without the UUID
    # object: every request without an id makes one (docs/performance.md, "Profile").
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)


def current_request_id() -> str | None:
    """The id of the request being handled by this thread, or ``None`` outside a request."""
    return g.get("request_id") if has_request_context() else None


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (the current request's, or ``None``) unless already set."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True


class JsonLineFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...extra, "exc"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": _timestamp(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _encode_line(out)


#: ``json.dumps(value, default=str, separators=(",", ":"))`` without building an encoder per
#: line (every request writes one: docs/performance.md, "Profile").
_encode_line = json.JSONEncoder(default=str, separators=(",", ":")).encode
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _timestamp(created: float, msecs: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds); the text of a second is formatted once."""
    global _second
    whole = int(created)
    second, text = _second
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        _second = (whole, text)
    return f"{text}.{int(msecs):03d}Z"


def configure_logging(level: str = "INFO", *, json_lines: bool = True, stream: TextIO | None = None) -> None:
    """Route every logger to one ``stream`` handler (stderr by default) with the request-id
    filter, as JSON lines or, with ``json_lines=False``, plain text for a terminal.
    Replaces the root logger's handlers (the CLI calls it once)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonLineFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


#: The WSGI environ key of the ``X-Request-Id`` header (read there directly: cheaper than
#: ``request.headers``, which builds a view per request). Not a process environment variable.
_REQUEST_ID_WSGI_KEY = "HTTP_X_REQUEST_ID"


def start_request() -> None:
    """Before a request: pick its id and start its clock."""
    g.request_id = request_id_from(request.environ.get(_REQUEST_ID_WSGI_KEY))
    g.request_started = time.perf_counter()


def finish_request(response: Response) -> Response:
    """After a request: echo the id and write the access line (duration to the response
    object; a stream's body time is not in it)."""
    request_id = g.get("request_id")
    response.headers["X-Request-Id"] = "" if request_id is None else request_id
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    method, path, status = request.method, request.path, response.status_code
    access_log.info("%s %s %s %sms", method, path, status, duration_ms,
                    extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms,
                           "request_id": request_id})
    return response
