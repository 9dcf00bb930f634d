"""The order history and wallet order reads (issue #4 part 1)."""

from __future__ import annotations

from bridge_support import ADMIN_TOKEN, matched_sell, open_sell


def test_events_of_a_full_lifecycle_are_complete_ordered_and_secret_free(api, dev_node, seller, buyer):
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xq")
    dev_node.confirm_pending()
    api.reconcile(ADMIN_TOKEN)
    status, body = api.get(f"/api/orders/{order_id}/events")
    assert status == 200 and body["order_version"] == api.order(order_id)[1]["order"]["order_version"]
    events = body["events"]
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids)
    path = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "transition"]
    assert path == [(None, "locking"), ("locking", "open"), ("open", "matched"), ("matched", "settling"),
                    ("settling", "payout_pending"), ("payout_pending", "completed")]
    versions = [e["order_version"] for e in events]
    assert versions == sorted(versions) and versions[-1] == body["order_version"]
    assert {"POST /agent/jobs", "POST /wallet/transfer", "GET /wallet/tx/<tx_hash>"} <= {
        e["node_endpoint"] for e in events}
    assert secret not in str(body)
    # Paging with ``after``.
    tail = api.get(f"/api/orders/{order_id}/events", after=ids[2])[1]["events"]
    assert [e["event_id"] for e in tail] == ids[3:]


def test_events_errors(api):
    assert api.get("/api/orders/otc_0000000000000000/events") == (404, {"error": "Order not found"})


def test_wallet_orders_as_maker_or_taker_newest_first(api, seller, buyer):
    first, _ = open_sell(api, seller, amount_micro_rtc=2_000_000)  # not the same signed message as below
    second, _ = matched_sell(api, seller, buyer)
    status, body = api.get(f"/api/wallets/RTC{seller.address[3:].upper()}/orders")
    assert status == 200 and body["wallet"] == seller.address
    assert [o["order_id"] for o in body["orders"]] == [second, first] and body["total"] == 2
    as_taker = api.get(f"/api/wallets/{buyer.address}/orders")[1]
    assert [o["order_id"] for o in as_taker["orders"]] == [second]
    matched_only = api.get(f"/api/wallets/{seller.address}/orders", status="matched")[1]
    assert [o["order_id"] for o in matched_only["orders"]] == [second]
    page = api.get(f"/api/wallets/{seller.address}/orders", limit=1, offset=1)[1]
    assert [o["order_id"] for o in page["orders"]] == [first]
    assert all("htlc_secret" not in o for o in body["orders"])


def test_wallet_orders_refuses_bad_input(api, seller):
    assert api.get("/api/wallets/alice/orders")[0] == 400
    assert api.get(f"/api/wallets/{seller.address}/orders", status="nope")[1]["field"] == "status"
