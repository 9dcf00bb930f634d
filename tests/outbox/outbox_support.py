"""Helpers for the outbox tests: a webhook receiver on 127.0.0.1, a bridge without a node,
and ways to put rows in the outbox as the services do.

A module with a unique name (not conftest) so test files can import it directly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass

from bridge_support import serve

from otc_bridge.domain.destinations import Webhook
from otc_bridge.domain.order import Order
from otc_bridge.notify.webhooks import verify_signature
from otc_bridge.storage import orders, outbox
from otc_bridge.storage.db import Database

SECRET = "s3cret-for-tests-0123456789"
NOW = 1_800_000_000


@dataclass(frozen=True)
class Call:
    """One request the receiver got: path, lower-case headers, raw body, wall time (s)."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["x-otc-event-id"]

    def signed_ok(self, secret: str = SECRET, now: float | None = None) -> bool:
        return verify_signature(secret, self.headers.get("x-otc-timestamp"), self.body,
                                self.headers.get("x-otc-signature"), now=now or int(self.headers["x-otc-timestamp"]))


class Receiver:
    """A WSGI webhook receiver: records every call and answers ``status`` (302s point
    elsewhere); served on a free loopback port by :func:`start`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[Call] = []
        self.arrived = threading.Condition()
        self.url = ""
        self._server = None

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self.arrived:
            self.calls.append(Call(environ["PATH_INFO"], headers, body, time.time()))
            status = self.status
            self.arrived.notify_all()
        extra = [("Location", "/elsewhere")] if 300 <= status < 400 else []
        start_response(f"{status} Test", [("Content-Type", "text/plain"), *extra])
        return [b"ok" if status < 300 else b"receiver says no"]

    def start(self) -> Receiver:
        self._server = serve(self)
        self.url = self._server.url + "/hook"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Call]:
        """Block until ``count`` calls arrived (or ``timeout`` s); returns the calls."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.calls) >= count, timeout)
            return list(self.calls)

    def ids(self) -> list[str]:
        return [call.event_id for call in self.calls]

    def hook(self, name: str = "main", events: tuple[str, ...] = ("*",), secret: str = SECRET) -> Webhook:
        return Webhook(name=name, url=self.url, secret=secret, events=events)


def migrate(db: Database) -> None:
    """Bring ``db`` to the newest schema (the outbox's delivery table is version 2)."""
    db.migrate()


def insert_order(db: Database, order_id: str = "otc_0011223344556677", status: str = "open") -> Order:
    """A minimal buy order row (enough for alerts and order events)."""
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO orders (order_id, side, pair, status, maker_wallet, maker_quote_address, amount_micro_rtc,"
            " price_nano_quote, total_quote_nano, ttl_seconds, created_at, expires_at, updated_at)"
            " VALUES (?, 'buy', 'RTC/USDC', ?, 'RTCa', '', 1000000, 1, 1, 3600, ?, ?, ?)",
            (order_id, status, NOW - 10, NOW + 3600, NOW - 10))
    return orders.get_order(db.connection(), order_id)


def add_event(db: Database, topic: str = "order.completed", *, now: int = NOW, order_id: str | None = None,
              order_version: int = 1, **payload) -> str:
    """One outbox row as a transition writes it; returns its event key."""
    key = f"{topic}:{order_id}:{order_version}"
    with db.transaction() as tx:
        outbox.enqueue(tx, topic=topic, order_id=order_id, order_version=order_version, now=now, event_key=key,
                      payload={"order_id": order_id, "to": topic.split(".")[-1], **payload})
    return key


def row(db: Database, event_key: str) -> sqlite3.Row:
    return db.read_one("SELECT * FROM outbox WHERE event_key = ?", (event_key,))


def deliveries(db: Database, event_key: str) -> dict[str, sqlite3.Row]:
    rows = db.read("SELECT d.* FROM outbox_deliveries d JOIN outbox o USING (outbox_id) WHERE o.event_key = ?",
                   (event_key,))
    return {r["destination"]: r for r in rows}
