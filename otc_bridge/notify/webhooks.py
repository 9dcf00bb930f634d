"""Webhooks: who receives which events, the signed event body, the alert embed, one POST.

Operators list webhooks in ``OTC_WEBHOOKS`` (or ``otc-bridge worker --webhooks``), a JSON
list of ``{"url": "https://...", "secret": "<at least 16 chars>", "events": [...],
"name": "optional-id"}``. ``events`` holds topics (``order.<status>``, ``alert``) or the
patterns ``order.*`` and ``*``. The outbox worker (:mod:`otc_bridge.notify.outbox_worker`) POSTs each
event to every webhook whose ``events`` match, at least once.

Event body (UTF-8 JSON, compact, sorted keys)::

    {"id": "order.completed:otc_ab12:7",  # stable event id (the outbox event_key)
     "type": "order.completed",           # order.<status> or alert
     "order_id": "otc_ab12", "order_version": 7,
     "created_at": 1767225600,            # unix seconds, when the event was committed
     "data": {...}}  # order.*: {order_id, from, to, order_version, reason, order: <public view>}
                     # alert:   {code, order_id, message, status}

Headers: ``Content-Type: application/json``, ``X-OTC-Event-Id: <id>``,
``X-OTC-Timestamp: <unix seconds of this attempt>`` and
``X-OTC-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.

Verifying a delivery (receivers):

1. Take the raw body bytes, before any JSON parsing.
2. Refuse it if ``|now - X-OTC-Timestamp| > 300`` seconds (replay window).
3. Compute the hex HMAC-SHA256 of ``timestamp + "." + body`` with the shared secret and
   compare it to the header's value in constant time.
4. Deduplicate on ``id``: delivery is at least once (a worker that dies after the POST sends
   it again), and events may arrive out of order after retries: keep, per order, the
   highest ``order_version`` seen.

In Python, with this package: ``verify_signature(secret, headers["X-OTC-Timestamp"], body,
headers["X-OTC-Signature"], now=int(time.time()))``. Without it::

    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    ok = abs(time.time() - int(ts)) <= 300 and hmac.compare_digest("sha256=" + mac, header)

In a shell: ``printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"``.

Operator alerts (topic ``alert``) also go to ``RC_SOPHIACHECK_WEBHOOK`` in the reference
bridge's Discord-style embed format (unsigned, as the reference sent them, but with
``X-OTC-Event-Id``): ``{"embeds": [{"title": "OTC Bridge CRITICAL", "description": message,
"color": 16711680, "fields": [{"name": "order_id", "value": .., "inline": true}, code,
status], "timestamp": ISO-8601}]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from otc_bridge.config import Config
from otc_bridge.domain.destinations import ALERT_DESTINATION, Webhook
from otc_bridge.domain.parsing import ascii_int

#: The reference's embed colours.
COLORS = {"CRITICAL": 16711680, "WARNING": 16776960, "INFO": 3447003}


def destinations(config: Config) -> dict[str, Webhook]:
    """Every configured destination by name: ``OTC_WEBHOOKS`` plus the alert webhook."""
    found = {hook.name: hook for hook in config.webhooks}
    if config.alert_webhook_url:
        found[ALERT_DESTINATION] = Webhook(name=ALERT_DESTINATION, url=config.alert_webhook_url, secret=None,
                                           events=("alert",), embed=True)
    return found


@dataclass(frozen=True)
class Event:
    """One outbox row as receivers see it (``id`` is the row's stable ``event_key``)."""

    id: str
    type: str
    order_id: str | None
    order_version: int | None
    created_at: int
    data: dict[str, Any]

    def body(self) -> bytes:
        """The signed event body (see the module docstring)."""
        return _compact({"id": self.id, "type": self.type, "order_id": self.order_id,
                         "order_version": self.order_version, "created_at": self.created_at, "data": self.data})

    def embed_body(self) -> bytes:
        """The reference's alert embed for an ``alert`` event."""
        code = str(self.data.get("code") or "alert")
        level = alert_level(code)
        fields = [{"name": name, "value": str(self.data.get(name) or "-"), "inline": True}
                  for name in ("order_id", "code", "status")]
        return _compact({"embeds": [{
            "title": f"OTC Bridge {level}", "description": str(self.data.get("message") or code)[:2000],
            "color": COLORS[level], "fields": fields,
            "timestamp": datetime.fromtimestamp(self.created_at, UTC).isoformat()}]})


def alert_level(code: str) -> str:
    """``CRITICAL`` for broken invariants and payout or escrow trouble, else ``WARNING``."""
    return "CRITICAL" if code == "invariant_broken" or code.startswith(("payout_", "escrow_")) else "WARNING"


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: int | str | None, body: bytes | str, header: str | None,
                     now: float, tolerance: int = 300) -> bool:
    """True if ``header`` signs ``body`` at ``timestamp`` (unix s) within ``tolerance`` s of
    ``now``. Any malformed input is ``False``, never an exception."""
    # ASCII digits only: "²".isdigit() is true but int("²") raises (docs/protocol.md §8).
    seconds = ascii_int(str(timestamp)) if timestamp is not None and not isinstance(timestamp, bool) else None
    if header is None or seconds is None or abs(now - seconds) > tolerance:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, seconds, raw), header)


@dataclass(frozen=True)
class Outcome:
    """How one POST ended: ``ok`` only on a 2xx; ``error`` says why not (no URL in it)."""

    ok: bool
    status: int | None = None
    error: str | None = None


def post(session: requests.Session, hook: Webhook, event: Event, *, now: int,
         timeout: tuple[float, float]) -> Outcome:
    """POST ``event`` to ``hook`` (``timeout`` = (connect, read) seconds, redirects not followed).

    Transport failures (timeout, refused connection, ...) are an :class:`Outcome`, not an
    exception; only a bug in the caller's data can raise.
    """
    body = event.embed_body() if hook.embed else event.body()
    headers = {"Content-Type": "application/json", "X-OTC-Event-Id": event.id}
    if hook.secret is not None:
        headers["X-OTC-Timestamp"] = str(now)
        headers["X-OTC-Signature"] = sign(hook.secret, now, body)
    try:
        response = session.post(hook.url, data=body, headers=headers, timeout=timeout,
                                allow_redirects=False, stream=True)
        with response:
            answer = _read_some(response)  # read (bounded) so the connection can be reused
    except requests.RequestException as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__} (no answer)")
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, status=response.status_code)
    snippet = " ".join(answer[:200].decode("utf-8", "replace").split())
    return Outcome(ok=False, status=response.status_code, error=f"HTTP {response.status_code}: {snippet}")


def _read_some(response: requests.Response, limit: int = 64 * 1024) -> bytes:
    data = b""
    for chunk in response.iter_content(4096):
        data += chunk
        if len(data) >= limit:
            break
    return data


def _compact(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
