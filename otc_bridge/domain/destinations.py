"""Webhook destinations as configured (``OTC_WEBHOOKS``) and the topics they may subscribe to.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from otc_bridge.domain.status import Status

if TYPE_CHECKING:
    pass

#: The destination name of ``RC_SOPHIACHECK_WEBHOOK`` (reserved: no webhook may use it).
ALERT_DESTINATION = "alert"
#: Topics a webhook may subscribe to by name; ``*`` and ``order.*`` are accepted as well.
TOPICS = frozenset({"alert", "escrow_tampered", "quote_leg", *(f"order.{status}" for status in Status)})

_KEYS = frozenset({"url", "secret", "events", "name"})
_URL = re.compile(r"https?://[^\s/?#]+(/[^\s]*)?")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Webhook:
    """One destination. ``secret`` is ``None`` only for the (unsigned) alert webhook, whose
    body is the embed (``embed=True``). ``name`` identifies it in the delivery table and the
    logs; the URL, which may carry a token, is never logged."""

    name: str
    url: str = field(repr=False)
    secret: str | None = field(repr=False)
    events: tuple[str, ...]
    embed: bool = False

    def accepts(self, topic: str) -> bool:
        """True if ``topic`` matches one of ``events``."""
        return any(p in ("*", topic) or (p.endswith(".*") and topic.startswith(p[:-1])) for p in self.events)


def parse_webhooks(raw: str) -> tuple[Webhook, ...]:
    """Parse ``OTC_WEBHOOKS``; raises ``ValueError`` with a message naming the bad entry."""
    try:
        entries = json.loads(raw)
    except ValueError:
        raise ValueError("must be a JSON list of {url, secret, events} objects") from None
    if not isinstance(entries, list):
        raise ValueError("must be a JSON list of {url, secret, events} objects")
    hooks = tuple(_parse_entry(index, entry) for index, entry in enumerate(entries))
    if len({hook.name for hook in hooks}) != len(hooks):
        raise ValueError("two webhooks have the same name (or the same URL)")
    return hooks


def _parse_entry(index: int, entry: Any) -> Webhook:
    def bad(message: str) -> ValueError:
        return ValueError(f"entry {index}: {message}")

    if not isinstance(entry, dict) or set(entry) - _KEYS:
        raise bad(f"must be an object with the keys {sorted(_KEYS)} (name optional)")
    url, secret, events = entry.get("url"), entry.get("secret"), entry.get("events")
    if not isinstance(url, str) or not _URL.fullmatch(url):
        raise bad("url must be an http:// or https:// URL")
    if not isinstance(secret, str) or len(secret.strip()) < 16:
        raise bad("secret must be a string of at least 16 characters")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise bad('events must be a non-empty list such as ["order.completed", "order.*", "alert", "*"]')
    unknown = sorted(set(events) - TOPICS - {"*", "order.*"})
    if unknown:
        raise bad(f"unknown event types {unknown}; known: *, order.*, {', '.join(sorted(TOPICS))}")
    name = entry.get("name", "wh-" + hashlib.sha256(url.encode()).hexdigest()[:10])
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == ALERT_DESTINATION:
        raise bad("name must be 1-40 characters of a-z, 0-9, _ and -, and not 'alert'")
    return Webhook(name=name, url=url, secret=secret, events=tuple(events))
