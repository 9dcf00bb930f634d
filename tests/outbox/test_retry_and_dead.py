"""A failing receiver: retries on the backoff schedule (freezegun), then dead after the
limit, never re-sent, with one operator alert; a dead alert is not re-alerted."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from freezegun import freeze_time
from outbox_support import NOW, add_event, deliveries, insert_order, row

from otc_bridge.notify import outbox_worker


def test_failing_receiver_follows_the_backoff_schedule_then_ends_dead(local, make_receiver):
    failing, alerts = make_receiver(500), make_receiver()
    local.config = local.config.replace(webhooks=(failing.hook(events=("order.*",)),), alert_webhook_url=alerts.url,
                                        outbox_max_attempts=6)
    order = insert_order(local.db)
    key = add_event(local.db, "order.open", order_id=order.order_id)
    attempts_at: list[int] = []
    with freeze_time(datetime.fromtimestamp(NOW, UTC)) as frozen:
        for _ in range(6):
            before = len(failing.calls)
            assert outbox_worker.run_once(local)["skipped_locked"] == 0
            assert len(failing.calls) == before + 1
            attempts_at.append(int(frozen().timestamp()))
            due = deliveries(local.db, key)["main"]["next_attempt_at"]
            # Not due before next_attempt_at: a pass one second early sends nothing.
            frozen.move_to(datetime.fromtimestamp(due - 1, UTC))
            outbox_worker.run_once(local)
            assert len(failing.calls) == before + 1
            frozen.move_to(datetime.fromtimestamp(max(due, int(frozen().timestamp())), UTC))
        delivery = deliveries(local.db, key)["main"]
        assert (delivery["state"], delivery["attempts"]) == ("dead", 6)
        gaps = [b - a for a, b in zip(attempts_at, attempts_at[1:], strict=False)]
        for attempt, gap in enumerate(gaps, start=1):
            ceiling = 2 * 2 ** (attempt - 1)
            assert ceiling / 2 <= gap <= ceiling, (attempt, gaps)
        assert gaps == sorted(gaps)  # the schedule only grows
        # Dead is final: never sent again, however long we wait.
        for _ in range(3):
            frozen.tick(86400)
            outbox_worker.run_once(local)
    assert len(failing.calls) == 6
    assert set(failing.ids()) == {key} and all(call.signed_ok() for call in failing.calls)
    assert (row(local.db, key)["state"], row(local.db, key)["attempts"]) == ("dead", 6)
    assert row(local.db, key)["last_error"] == "HTTP 500: receiver says no"
    # One operator alert, delivered to the alert webhook in the reference's format.
    alert_rows = local.db.read("SELECT * FROM outbox WHERE topic = 'alert'")
    assert [r["event_key"] for r in alert_rows] == [f"alert:outbox_dead:{order.order_id}:1"]
    assert alert_rows[0]["state"] == "delivered"
    assert len(alerts.calls) == 1
    embed = alerts.calls[0].json()["embeds"][0]
    assert embed["title"] == "OTC Bridge WARNING" and embed["color"] == 16776960
    assert key in embed["description"] and "6 attempt(s)" in embed["description"]
    event = local.db.read("SELECT * FROM order_events WHERE kind = 'alert'")
    assert [e["reason"].split(":")[0] for e in event] == ["outbox_dead"]


def test_one_alert_per_order_version_however_many_events_die(local, make_receiver):
    failing = make_receiver(500)
    local.config = local.config.replace(webhooks=(failing.hook(events=("order.*",)),), outbox_max_attempts=1)
    order = insert_order(local.db)
    for status in ("open", "matched", "settling"):
        add_event(local.db, f"order.{status}", order_id=order.order_id, order_version=len(failing.calls) + 1)
        outbox_worker.run_once(local, NOW + 10 * len(failing.calls))
    assert outbox_worker.run_once(local, NOW + 100)["dead"] == 0
    assert len(failing.calls) == 3
    assert len(local.db.read("SELECT 1 FROM outbox WHERE topic = 'alert'")) == 1


def test_a_dead_alert_is_logged_and_counted_but_never_re_alerted(local, make_receiver, caplog):
    alerts, everything = make_receiver(500), make_receiver(500)
    local.config = local.config.replace(alert_webhook_url=alerts.url, outbox_max_attempts=2,
                                        webhooks=(everything.hook(events=("*",)),))
    key = add_event(local.db, "alert", order_id="otc_x", code="payout_voided", message="m", status="settling")
    outbox_worker.run_once(local, NOW)
    with caplog.at_level(logging.ERROR, logger="otc_bridge.outbox"):
        assert outbox_worker.run_once(local, NOW + 3600)["dead"] == 2
    assert row(local.db, key)["state"] == "dead"
    assert [r["event_key"] for r in local.db.read("SELECT event_key FROM outbox")] == [key]  # no new alert rows
    assert "operator alert lost" in caplog.text
    for _ in range(3):
        outbox_worker.run_once(local, NOW + 86400)
    assert (len(alerts.calls), len(everything.calls)) == (2, 2)


def test_a_dead_event_without_an_order_still_alerts(local, make_receiver):
    failing, alerts = make_receiver(500), make_receiver()
    local.config = local.config.replace(webhooks=(failing.hook(),), alert_webhook_url=alerts.url,
                                        outbox_max_attempts=1)
    key = add_event(local.db, "order.open", order_id=None)
    outbox_worker.run_once(local, NOW)
    outbox_worker.run_once(local, NOW + 1)
    assert len(alerts.calls) == 1
    data = json.loads(local.db.read_one("SELECT payload FROM outbox WHERE topic = 'alert'")["payload"])
    assert data["code"] == "outbox_dead" and key in data["message"]
