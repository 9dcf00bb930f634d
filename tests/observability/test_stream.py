"""``GET /api/stream`` over real HTTP: live events, resume without gaps, filters, heartbeats,
the client cap and the release of a slot when a client goes."""

from __future__ import annotations

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH, matched_sell, open_sell
from sse_support import SseClient, reached
from werkzeug.test import EnvironBuilder

STREAMED = "SELECT event_id FROM order_events WHERE kind IN ('transition', 'note') AND event_id > ? ORDER BY event_id"


def _ids(frames) -> list[int]:
    return [int(f.id) for f in frames]


def test_events_arrive_live_with_order_versions(live_bridge, api, seller, buyer, bridge):
    with SseClient(live_bridge) as sse:
        ready = sse.ready()
        order_id, _ = matched_sell(api, seller, buyer)
        frames = sse.read_until(reached(order_id, "matched"))
    data = [f.json() for f in frames]
    assert [(d["event"]["kind"], d["event"]["to_status"]) for d in data] == [
        ("transition", "locking"), ("note", None), ("transition", "open"), ("transition", "matched")]
    assert [d["order_version"] for d in data] == [1, 2, 3, 4]
    assert all(d["event"]["order_version"] == d["order_version"] and d["order"]["order_version"] >= d["order_version"]
               for d in data)
    assert all(d["order_id"] == order_id and "htlc_secret" not in d["order"] for d in data)
    assert _ids(frames) == [row[0] for row in bridge.db.read(STREAMED, (int(ready.id),))]


def test_reconnect_with_last_event_id_has_no_gap_and_no_duplicate(live_bridge, api, seller, buyer, bridge):
    first = SseClient(live_bridge)
    start = int(first.ready().id)
    order_a, _ = open_sell(api, seller)
    seen = first.read_until(lambda frames: len(frames) == 2)  # stop mid-way through order A
    first.close()
    status, _ = api.match(buyer, order_a, BUYER_ETH)  # happens while no stream is open
    assert status == 200
    order_b, _ = open_sell(api, seller, amount_micro_rtc=3_000_000)  # a different signed body
    with SseClient(live_bridge, last_event_id=int(seen[-1].id)) as second:
        assert second.ready().json() == {"last_event_id": int(seen[-1].id), "replay": True}
        rest = second.read_until(reached(order_b, "open"))
    assert _ids(seen + rest) == [row[0] for row in bridge.db.read(STREAMED, (start,))]
    assert {f.json()["order_id"] for f in rest} == {order_a, order_b}


def test_resume_by_query_parameter_replays_an_orders_history(live_bridge, api, seller, buyer):
    order_id, _ = matched_sell(api, seller, buyer)
    with SseClient(live_bridge, params={"order_id": order_id, "last_event_id": "0"}) as sse:
        sse.ready()
        frames = sse.read_until(reached(order_id, "matched"))
    _, events = api.get(f"/api/orders/{order_id}/events")
    assert _ids(frames) == [e["event_id"] for e in events["events"] if e["kind"] in ("transition", "note")]


def test_filters_by_pair_order_and_wallet(live_bridge, api, seller, buyer):
    order_x, _ = open_sell(api, seller)
    with (SseClient(live_bridge, params={"pair": "rtc/eth"}) as by_pair,
          SseClient(live_bridge, params={"order_id": order_x}) as by_order,
          SseClient(live_bridge, params={"wallet": "RTC" + buyer.address[3:].upper()}) as by_wallet):
        for sse in (by_pair, by_order, by_wallet):
            sse.ready()
        assert api.match(buyer, order_x, BUYER_ETH)[0] == 200
        status, body = api.create_order(buyer, side="sell", pair="RTC/ETH", amount_micro_rtc=2_000_000,
                                        price_nano_quote=1_000_000, eth_address=SELLER_ETH)
        assert status == 201
        order_y = body["order_id"]
        pair_frames = by_pair.read_until(reached(order_y, "open"))
        order_frames = by_order.read_until(reached(order_x, "matched"))
        wallet_frames = by_wallet.read_until(reached(order_y, "open"))
    assert {f.json()["order_id"] for f in pair_frames} == {order_y}
    assert {f.json()["order_id"] for f in order_frames} == {order_x}
    # The buyer is order X's taker (from its match on) and order Y's maker.
    assert [f.json()["order_id"] for f in wallet_frames][0] == order_x
    assert {f.json()["order_id"] for f in wallet_frames} == {order_x, order_y}


@pytest.mark.parametrize("query, headers, status", [
    ("pair=RTC/DOGE", {}, 400),
    ("wallet=RTCnothex", {}, 400),
    ("order_id=otc_missing", {}, 404),
    ("", {"Last-Event-ID": "abc"}, 400),
    ("last_event_id=-1", {}, 400),
])
def test_bad_filters_are_refused_before_streaming(http_client, hub, query, headers, status):
    response = http_client.get(f"/api/stream?{query}", headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/json" and hub.active == 0


def test_heartbeat_comment_when_idle(live_bridge):
    with SseClient(live_bridge) as sse:
        sse.ready()
        assert sse.next_frame().comment == "keep-alive"


def test_client_cap_answers_503_until_a_client_leaves(live_bridge, hub):
    clients = [SseClient(live_bridge) for _ in range(3)]
    for sse in clients:
        sse.ready()
    refused = SseClient(live_bridge)
    assert refused.response.status_code == 503
    assert refused.response.headers["Retry-After"] == "5"
    assert refused.response.json()["error"].startswith("Too many live streams")
    refused.close()
    clients.pop().close()
    # The server notices on its next write (a heartbeat within 0.2 s) and frees the slot.
    assert hub.wait_for_active(lambda n: n == 2, timeout=10)
    with SseClient(live_bridge) as again:
        assert again.ready().event == "ready"
    for sse in clients:
        sse.close()
    assert hub.wait_for_active(lambda n: n == 0, timeout=10)


def test_slot_is_freed_when_the_body_is_never_read(bridge_app, hub):
    statuses = []
    body = bridge_app(EnvironBuilder(path="/api/stream").get_environ(),
                      lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"] and hub.active == 1
    body.close()  # what a WSGI server does when the client left before the first byte
    assert hub.active == 0


def test_slot_is_freed_when_the_generator_is_closed(http_client, hub):
    response = http_client.get("/api/stream")
    body = iter(response.response)
    assert b"event: ready" in next(body)
    assert hub.active == 1
    response.close()  # GeneratorExit inside the generator, then the close callback: once
    assert hub.active == 0
