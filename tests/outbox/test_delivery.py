"""Delivery over real HTTP to receivers on 127.0.0.1: exactly once normally, filtered by
type, each destination on its own, signatures valid, and the pass's own guards."""

from __future__ import annotations

import fcntl
import os
import socket
import threading

from outbox_support import NOW, SECRET, add_event, deliveries, row

from otc_bridge.notify import outbox_worker
from otc_bridge.storage import leases


def test_each_event_is_delivered_exactly_once_with_a_valid_signature(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    keys = [add_event(local.db, f"order.{s}", order_id="otc_a", order_version=v)
            for v, s in enumerate(["open", "matched", "settling", "payout_pending", "completed"], start=1)]

    counts = outbox_worker.run_once(local, NOW)
    assert counts == {"fanned_out": 5, "delivered": 5, "retried": 0, "dead": 0, "errors": 0,
                      "skipped_locked": 0, "more": 0}
    assert receiver.ids() == keys  # oldest first
    for call in receiver.calls:
        assert call.signed_ok(now=NOW)
        assert call.headers["content-type"] == "application/json"
        assert call.headers["x-otc-timestamp"] == str(NOW)
        body = call.json()
        assert (body["id"], body["order_id"], body["created_at"]) == (call.event_id, "otc_a", NOW)
        assert body["type"] == "order." + body["data"]["to"]
    assert [call.json()["order_version"] for call in receiver.calls] == [1, 2, 3, 4, 5]
    for key in keys:
        assert (row(local.db, key)["state"], row(local.db, key)["delivered_at"]) == ("delivered", NOW)
        assert deliveries(local.db, key)["main"]["attempts"] == 1
    # A delivered row is never sent again.
    for later in (NOW + 1, NOW + 3600, NOW + 86400 * 30):
        assert outbox_worker.run_once(local, later)["delivered"] == 0
    assert len(receiver.calls) == 5


def test_each_destination_gets_only_the_types_it_asked_for(local, make_receiver):
    completed, orders, alerts, everything = (make_receiver() for _ in range(4))
    local.config = local.config.replace(
        webhooks=(completed.hook("completed", ("order.completed",)), orders.hook("orders", ("order.*",)),
                  everything.hook("all", ("*",))),
        alert_webhook_url=alerts.url)
    opened = add_event(local.db, "order.open", order_id="otc_b")
    done = add_event(local.db, "order.completed", order_id="otc_b", order_version=2)
    alert = add_event(local.db, "alert", order_id="otc_b", order_version=2, code="payout_voided", message="m")

    assert outbox_worker.run_once(local, NOW)["delivered"] == 7
    assert completed.ids() == [done]
    assert orders.ids() == [opened, done]
    assert everything.ids() == [opened, done, alert]
    assert alerts.ids() == [alert]
    assert set(deliveries(local.db, alert)) == {"all", "alert"}


def test_an_event_nobody_wants_is_done_at_once(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(events=("order.completed",)),))
    key = add_event(local.db, "order.open", order_id="otc_c")
    assert outbox_worker.run_once(local, NOW)["fanned_out"] == 1
    assert row(local.db, key)["state"] == "delivered" and deliveries(local.db, key) == {}
    assert receiver.calls == []


def test_a_failing_destination_does_not_hold_back_or_repeat_another(local, make_receiver):
    good, bad = make_receiver(), make_receiver(500)
    local.config = local.config.replace(webhooks=(good.hook("good"), bad.hook("bad")))
    keys = [add_event(local.db, "order.open", order_id=f"otc_{i}") for i in range(3)]

    counts = outbox_worker.run_once(local, NOW)
    assert (counts["delivered"], counts["retried"]) == (3, 1)
    # The bad receiver was tried once this pass: its other deliveries wait for the next.
    assert good.ids() == keys and len(bad.calls) == 1
    assert {row(local.db, k)["state"] for k in keys} == {"delivering"}
    bad.status = 200
    outbox_worker.run_once(local, NOW + 3600)
    assert bad.ids() == [keys[0], *keys] and good.ids() == keys  # the failed one, then all
    assert {row(local.db, k)["state"] for k in keys} == {"delivered"}


def test_a_redirect_is_a_failure_and_is_not_followed(local, receiver):
    receiver.status = 302
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    key = add_event(local.db)
    assert outbox_worker.run_once(local, NOW)["retried"] == 1
    assert [call.path for call in receiver.calls] == ["/hook"]
    assert deliveries(local.db, key)["main"]["last_error"] == "HTTP 302: receiver says no"


def test_timeouts_and_refused_connections_are_failed_attempts(local):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers: the read timeout must fire
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        local.config = local.config.replace(webhook_read_timeout_seconds=0.3, webhooks=(
            *(outbox_hook(name, f"http://127.0.0.1:{port}/h")
              for name, port in (("silent", silent.getsockname()[1]), ("closed", closed_port))),))
        key = add_event(local.db)
        assert outbox_worker.run_once(local, NOW)["retried"] == 2
    finally:
        silent.close()
    found = deliveries(local.db, key)
    assert found["silent"]["last_error"] == "ReadTimeout (no answer)"
    assert found["closed"]["last_error"] == "ConnectionError (no answer)"


def outbox_hook(name, url):
    from otc_bridge.domain.destinations import Webhook

    return Webhook(name=name, url=url, secret=SECRET, events=("*",))


def test_a_pass_is_skipped_while_another_process_holds_the_lease(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    add_event(local.db)
    # Another process's lock: its own open file (flock locks belong to the open file).
    other = os.open(leases.lock_path(local.db, outbox_worker.LEASE_NAME), os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert outbox_worker.run_once(local, NOW)["skipped_locked"] == 1
        assert receiver.calls == []
    finally:
        os.close(other)  # the other process ends (or dies): the kernel drops its lock
    assert outbox_worker.run_once(local, NOW)["delivered"] == 1  # at once, no clock moved


def test_racing_workers_deliver_each_event_once(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    keys = [add_event(local.db, "order.open", order_id=f"otc_{i}") for i in range(20)]
    start = threading.Barrier(4)

    def work():
        start.wait()
        for _ in range(5):
            outbox_worker.run_once(local, NOW)
        local.db.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(receiver.ids()) == sorted(keys)


def test_a_removed_destination_ends_dead_without_an_alert(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    receiver.status = 500
    key = add_event(local.db)
    outbox_worker.run_once(local, NOW)
    local.config = local.config.replace(webhooks=())
    assert outbox_worker.run_once(local, NOW + 3600)["dead"] == 1
    assert row(local.db, key)["state"] == "dead"
    assert "no longer configured" in deliveries(local.db, key)["main"]["last_error"]
    assert local.db.read("SELECT 1 FROM outbox WHERE topic = 'alert'") == []
