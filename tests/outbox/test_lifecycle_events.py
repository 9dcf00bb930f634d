"""A real swap against the dev node, then the worker: every transition reaches the
receiver exactly once, in order, signed, with the public order view; an alert committed
just before the process dies is still delivered."""

from __future__ import annotations

import pytest
from bridge_support import matched_sell
from outbox_support import migrate

from otc_bridge import crashpoints
from otc_bridge.notify import outbox_worker
from otc_bridge.settlement import reconcile


@pytest.fixture
def wired(bridge, make_receiver):
    """The test bridge with the outbox table, a webhook for every order event and the
    alert webhook; returns ``(orders_receiver, alert_receiver)``."""
    migrate(bridge.db)
    orders, alerts = make_receiver(), make_receiver()
    bridge.config = bridge.config.replace(webhooks=(orders.hook("orders", ("order.*",)),),
                                          alert_webhook_url=alerts.url)
    return orders, alerts


def test_a_completed_swap_reaches_the_webhook_once_per_transition(api, dev_node, seller, buyer, bridge, wired):
    orders, alerts = wired
    order_id, secret = matched_sell(api, seller, buyer)
    assert api.confirm(order_id, secret=secret, quote_tx="0xq")[0] == 200
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert api.order(order_id)[1]["order"]["status"] == "completed"

    assert outbox_worker.run_once(bridge)["errors"] == 0
    keys = [r["event_key"] for r in bridge.db.read(
        "SELECT event_key FROM outbox WHERE order_id = ? AND topic LIKE 'order.%' ORDER BY outbox_id", (order_id,))]
    assert orders.ids() == keys and len(set(keys)) == len(keys)
    bodies = [call.json() for call in orders.calls]
    assert [b["type"] for b in bodies] == ["order.locking", "order.open", "order.matched", "order.settling",
                                           "order.payout_pending", "order.completed"]
    versions = [b["order_version"] for b in bodies]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    for body, call in zip(bodies, orders.calls, strict=True):
        assert call.signed_ok()
        assert body["order_id"] == order_id and body["data"]["order"]["order_version"] == body["order_version"]
        assert body["data"]["order"]["status"] == body["data"]["to"] == body["type"].removeprefix("order.")
        assert "ip_hash" not in body["data"]["order"]
    assert "htlc_secret" not in bodies[-2]["data"]["order"]  # never before completed
    assert alerts.calls == []
    # Nothing is sent twice.
    outbox_worker.run_once(bridge, bridge.now() + 86400)
    assert len(orders.calls) == len(keys)


class ProcessDied(BaseException):
    """The process ends right after the commit (nothing after it runs)."""


def test_an_alert_committed_just_before_the_process_dies_is_delivered(api, dev_node, seller, buyer, bridge, wired):
    orders, alerts = wired
    order_id, secret = matched_sell(api, seller, buyer)
    api.confirm(order_id, secret=secret, quote_tx="0xq")
    payout = bridge.db.read_one("SELECT payout_tx_hash FROM orders WHERE order_id = ?", (order_id,))[0]
    assert dev_node.post("/pending/void", {"tx_hash": payout}, admin=True).status_code == 200

    def die(name: str) -> None:
        if name == "after_commit:settlement_recovery":
            raise ProcessDied(name)

    crashpoints.set_hook(die)
    with pytest.raises(ProcessDied):
        reconcile.run_once(bridge)
    crashpoints.set_hook(None)
    assert alerts.calls == []  # no worker ran: nothing was sent, nothing was lost
    pending = bridge.db.read("SELECT * FROM outbox WHERE topic = 'alert' AND state = 'pending'")
    assert [r["order_id"] for r in pending] == [order_id]

    assert outbox_worker.run_once(bridge)["errors"] == 0
    assert alerts.ids() == [pending[0]["event_key"]]
    embed = alerts.calls[0].json()["embeds"][0]
    assert embed["title"] == "OTC Bridge CRITICAL" and embed["color"] == 16711680
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {"order_id": order_id, "code": "payout_voided", "status": "settlement_recovery"}
    assert all(f["inline"] is True for f in embed["fields"])
    assert "x-otc-signature" not in alerts.calls[0].headers  # the reference's unsigned format
    assert orders.ids()[-1].startswith("order.settlement_recovery:")
