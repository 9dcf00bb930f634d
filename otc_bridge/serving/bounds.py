"""The serving bounds and the server's own refusals.

:class:`Bounds` is how long a request may take at each stage and how large it may be
(docs/serving.md, from ``Config``). Every answer the server gives on its own (400, 408, 413,
414, 431, 501) is JSON like the application's: ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from otc_bridge.serving.framing import Limits

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 413: "Content Too Large",
            414: "URI Too Long", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}
_MESSAGES = {400: "Malformed request", 403: "Forbidden", 417: "Expectation failed",
             500: "Internal server error", 501: "Unsupported transfer coding"}
#: Sent while buffering a body whose client asked ``Expect: 100-continue``.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class Bounds:
    """How long a request may take at each stage (seconds) and how large it may be."""

    header_seconds: float = 10.0
    body_seconds: float = 10.0
    keepalive_seconds: float = 5.0
    write_seconds: float = 30.0
    handler_seconds: float = 120.0
    limits: Limits = field(default_factory=Limits)


def error_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` response with a JSON ``{"error": message}`` body."""
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


class CapturedResponse:
    """Stands in for a socket to catch the error response gunicorn's ``handle_error`` writes."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data


def json_refusal(gunicorn_response: bytes, limits: Limits) -> bytes:
    """The JSON version of a refusal gunicorn wrote as HTML (``gunicorn_response``, caught by
    :class:`CapturedResponse`): same status, ``{"error": ...}`` body naming the limit crossed."""
    try:
        status = int(gunicorn_response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 400
    message = _MESSAGES.get(status) or _REASONS.get(status, "Error")
    if status == 414:
        message = f"Request line too long (limit {limits.request_line} bytes)"
    elif status == 431:
        message = "Request header fields too large"
    return error_response(status, message)
