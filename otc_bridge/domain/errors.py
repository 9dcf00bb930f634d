"""Domain errors that carry their HTTP meaning; the API maps them in one handler.

``error`` is the human-readable string clients see (the reference's wording where one
exists); ``field`` names the offending request field for validation errors; ``extra``
holds further public keys of the response body (never secrets or internals).
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Base: a refused request. ``status`` is the HTTP status (400 unless a subclass or
    ``http_status`` says); keyword extras become response keys."""

    status = 400

    def __init__(self, error: str, *, field: str | None = None, http_status: int | None = None,
                 **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.field = field
        if http_status is not None:
            self.status = http_status
        self.extra = extra  # may carry an order's "status": the HTTP one is ``self.status``

    def body(self) -> dict[str, Any]:
        """The JSON response body: ``{"error", "field"?, ...extra}``."""
        body: dict[str, Any] = {"error": self.error}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


class Invalid(BridgeError):
    """400: a field is missing, of the wrong type or out of range."""


class Unauthorized(BridgeError):
    """401: a wallet signature or admin token was refused."""

    status = 401


class Forbidden(BridgeError):
    """403: authenticated, but not a party allowed to do this."""

    status = 403


class NotFound(BridgeError):
    """404."""

    status = 404


class Conflict(BridgeError):
    """409: the order is not in a state that allows this, or another request won the race."""

    status = 409


class Gone(BridgeError):
    """410: the order has expired."""

    status = 410


class NodeUnavailable(BridgeError):
    """502: the escrow node did not give a usable answer; the outcome is recorded, not guessed."""

    status = 502


class NodeBusy(BridgeError):
    """503: the node rate-limited a call (429 + ``Retry-After``); nothing was applied and the
    order stays where it is for the reconciler, which backs off (docs/escrow-node.md §4, admin rate limit)."""

    status = 503

    def __init__(self, retry_after_seconds: int, **extra) -> None:
        super().__init__("Escrow node is rate limiting; the settlement will be finished by the reconciler",
                         retry_after_seconds=retry_after_seconds, **extra)
        self.retry_after_seconds = retry_after_seconds
