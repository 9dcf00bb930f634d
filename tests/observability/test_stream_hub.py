"""The stream hub driven by hand (no tail thread): slow clients, paged replay, a client ahead
of this process's tail, and the tail thread's life."""

from __future__ import annotations

import pytest
from bridge_support import matched_sell, open_sell

from otc_bridge.api.stream import close_all
from otc_bridge.notify import stream
from otc_bridge.notify.stream import Filters, StreamHub, frames

STREAMED = "SELECT event_id FROM order_events WHERE kind IN ('transition', 'note') AND event_id > ? ORDER BY event_id"


def _hub(bridge, **kwargs) -> StreamHub:
    options = {"max_clients": 4, "poll_seconds": 60, "heartbeat_seconds": 0.05, "start_tail": False}
    return StreamHub(bridge.db, **{**options, **kwargs})


def _event_ids(chunks: list[bytes]) -> list[int]:
    return [int(chunk.split(b"\n")[0][4:]) for chunk in chunks
            if chunk.startswith(b"id: ") and b"event: order" in chunk]


def test_a_client_that_does_not_read_is_dropped_after_its_queue(bridge, api, seller, buyer):
    hub = _hub(bridge, queue_size=2)
    slow, other = hub.subscribe(Filters()), hub.subscribe(Filters(pair="RTC/ETH"))
    matched_sell(api, seller, buyer)  # four streamed events
    assert hub.poll_once() == 4
    assert slow.dropped and not other.dropped and hub.active == 2
    body = list(frames(hub, slow, None))  # what was queued, then the end of the stream
    assert len(_event_ids(body)) == 2 and hub.active == 1
    hub.unsubscribe(other)
    assert hub.active == 0


def test_replay_pages_through_a_long_gap(bridge, api, seller, buyer, monkeypatch):
    monkeypatch.setattr(stream, "PAGE_SIZE", 2)
    first, _ = matched_sell(api, seller, buyer)
    open_sell(api, seller, amount_micro_rtc=3_000_000)
    hub = _hub(bridge)
    sub = hub.subscribe(Filters())
    body = frames(hub, sub, 0)
    chunks = [next(body) for _ in range(1 + 7)]  # ready + every streamed event so far
    assert _event_ids(chunks) == [row[0] for row in bridge.db.read(STREAMED, (0,))]
    assert next(body) == b": keep-alive\n\n"
    body.close()
    assert hub.active == 0


def test_a_client_ahead_of_this_tail_gets_no_duplicates(bridge, api, seller):
    hub = _hub(bridge)
    watcher = hub.subscribe(Filters())  # fixes this process's cursor before the order exists
    order_id, _ = open_sell(api, seller)
    newest = bridge.db.read_one("SELECT MAX(event_id) FROM order_events")[0]
    # Resuming from an id another worker already delivered, while this tail has not read it yet.
    resumed = hub.subscribe(Filters())
    body = frames(hub, resumed, newest)
    assert b"event: ready" in next(body)
    assert api.cancel(seller, order_id)[0] == 200
    hub.poll_once()
    later = [row[0] for row in bridge.db.read(STREAMED, (newest,))]
    assert later and _event_ids([next(body) for _ in later]) == later
    body.close()
    hub.unsubscribe(watcher)


def test_tail_thread_ends_with_its_last_subscriber(bridge):
    hub = StreamHub(bridge.db, max_clients=2, poll_seconds=0.01, heartbeat_seconds=1)
    sub = hub.subscribe(Filters())
    tail = hub._thread
    assert tail is not None and tail.is_alive()
    hub.unsubscribe(sub)
    tail.join(timeout=10)
    assert not tail.is_alive() and hub._thread is None


def test_close_ends_open_streams_at_once_and_refuses_new_ones(bridge):
    hub = _hub(bridge, heartbeat_seconds=5)
    body = frames(hub, hub.subscribe(Filters()), None)
    assert b"event: ready" in next(body)
    hub.close()
    assert list(body) == []  # ended by the close, not after a heartbeat
    assert hub.active == 0
    with pytest.raises(stream.StreamFull):
        hub.subscribe(Filters())


def test_close_all_closes_the_apps_hub(http_client, hub):
    close_all()  # what a gunicorn worker's exit hooks call
    response = http_client.get("/api/stream")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
