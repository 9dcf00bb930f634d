"""``GET /api/stream``: live order events as Server-Sent Events (docs/protocol.md §3, additions).

**Sent:** every ``order_events`` row that gives an order a new ``order_version`` (kinds
``transition`` and ``note``; node calls and alerts change no order and stay in
``GET /api/orders/<id>/events``) as ``id: <event_id>``, ``event: order`` and one ``data:``
line ``{"order_id", "order_version", "event": <event view>, "order": <order view now>}``
(the order's version may be newer than the event's: drop what is older than you hold).
First comes ``event: ready`` whose ``id`` is where the stream starts, so a reconnect before
any event resumes there; then a ``: keep-alive`` comment every
``OTC_STREAM_HEARTBEAT_SECONDS``, which keeps proxies open and reveals a vanished client
(the write fails, the server closes the response, the slot is freed).
**Filters:** ``pair``, ``order_id``, ``wallet`` (the order's current maker or taker).
**Resume:** ``Last-Event-ID`` (or ``?last_event_id=``) replays the later events from the log,
then goes live, with no gap and no duplicate: replay ends at the tail's cursor as read
under the lock that advances it. Ids work as a cursor because SQLite has one writer: an id is
taken inside ``BEGIN IMMEDIATE``, so ids become visible in increasing order.

**Serving model.** One tail thread per process (started by the first subscriber, ended
after the last) reads the log every ``OTC_STREAM_POLL_SECONDS`` with one short query and
fans events out to the subscribers' bounded queues: N clients cost one query per poll, and
no client holds a transaction. A client that does not read fills its queue and is dropped
(its stream ends; it resumes from its Last-Event-ID). A WSGI response still occupies one
server thread while open, blocked on its queue, so streams are capped per process
(``OTC_STREAM_MAX_CLIENTS``, then 503 with ``Retry-After``) and ``serve`` gives each gunicorn
worker that many threads on top of the API's: open streams never take the API's threads.
"""

from __future__ import annotations

import logging
import weakref

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from otc_bridge.api import body
from otc_bridge.context import Bridge
from otc_bridge.domain import wallets
from otc_bridge.domain.errors import Invalid, NotFound
from otc_bridge.domain.parsing import ascii_int
from otc_bridge.notify import metrics
from otc_bridge.notify.stream import RETRY_AFTER_SECONDS, Filters, StreamFull, StreamHub, frames
from otc_bridge.storage import orders
from otc_bridge.storage.db import Database

log = logging.getLogger(__name__)
bp = Blueprint("stream", __name__)

EXTENSION = "otc_stream"


_hubs: weakref.WeakSet[StreamHub] = weakref.WeakSet()


def init_app(app: Flask, bridge: Bridge) -> None:
    """Give ``app`` its stream hub (no thread starts until the first client)."""
    cfg = bridge.config
    hub = StreamHub(bridge.db, max_clients=cfg.stream_max_clients, poll_seconds=cfg.stream_poll_seconds,
                    heartbeat_seconds=cfg.stream_heartbeat_seconds)
    app.extensions[EXTENSION] = hub
    _hubs.add(hub)


def close_all() -> None:
    """Close every stream hub of this process (a gunicorn worker's exit hooks call it, so
    open streams do not hold the worker's threads while it stops)."""
    for hub in list(_hubs):
        hub.close()


def _filters(db: Database) -> Filters:
    order_id = request.args.get("order_id") or None
    if order_id is not None and orders.get_order(db.connection(), order_id) is None:
        raise NotFound("Order not found")
    wallet = request.args.get("wallet") or None
    if wallet is not None:
        if not wallets.is_native_wallet(wallet):
            raise Invalid("wallet must be a native RTC address (RTC + 40 hex)", field="wallet")
        wallet = wallets.canonical_wallet(wallet)
    return Filters(pair=body.pair_arg(), order_id=order_id, wallet=wallet)


def _resume_after() -> int | None:
    """The ``Last-Event-ID`` header or ``?last_event_id=``: up to 18 ASCII digits, else 400."""
    raw = (request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "").strip(" \t")
    if not raw:
        return None
    event_id = ascii_int(raw)
    if event_id is None:
        raise Invalid("Last-Event-ID must be a non-negative event id", field="last_event_id")
    return event_id


@bp.get("/api/stream")
def stream():
    """Order events as Server-Sent Events (see the module docstring); 503 when full."""
    hub: StreamHub = current_app.extensions[EXTENSION]
    filters, resume_after = _filters(hub.db), _resume_after()
    try:
        sub = hub.subscribe(filters)
    except StreamFull:
        metrics.stream_rejected()
        return (jsonify(error="Too many live streams; retry later", retry_after_seconds=RETRY_AFTER_SECONDS),
                503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    response = Response(frames(hub, sub, resume_after), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each frame on at once
    # The WSGI server closes the response even if the body was never iterated (client gone
    # before the first byte), when a generator's finally would not run.
    response.call_on_close(lambda: hub.unsubscribe(sub))
    return response
