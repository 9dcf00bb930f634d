"""The event body, its HMAC signature and the verification recipe; the alert embed."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from otc_bridge.domain.destinations import Webhook
from otc_bridge.notify.webhooks import COLORS, Event, alert_level, sign, verify_signature

SECRET = "0123456789abcdef-secret"
TS = 1_800_000_000
EVENT = Event(id="order.completed:otc_1:7", type="order.completed", order_id="otc_1", order_version=7,
              created_at=TS - 5, data={"order_id": "otc_1", "to": "completed", "order": {"status": "completed"}})


def test_body_has_the_documented_fields():
    assert json.loads(EVENT.body()) == {
        "id": "order.completed:otc_1:7", "type": "order.completed", "order_id": "otc_1", "order_version": 7,
        "created_at": TS - 5, "data": {"order_id": "otc_1", "to": "completed", "order": {"status": "completed"}}}


def test_signature_verifies_and_matches_the_recipe_without_this_package():
    body = EVENT.body()
    header = sign(SECRET, TS, body)
    assert verify_signature(SECRET, str(TS), body, header, now=TS)
    assert verify_signature(SECRET, TS, body.decode(), header, now=TS + 300)
    # The module docstring's recipe, by hand.
    mac = hmac.new(SECRET.encode(), f"{TS}".encode() + b"." + body, hashlib.sha256).hexdigest()
    assert header == "sha256=" + mac


@pytest.mark.parametrize("case", ["tampered body", "old timestamp", "future timestamp", "other timestamp",
                                  "wrong secret", "no header", "no timestamp", "bad timestamp",
                                  "bare hex", "other algorithm"])
def test_verification_refuses(case):
    body = EVENT.body()
    header = sign(SECRET, TS, body)
    args = {"secret": SECRET, "timestamp": str(TS), "body": body, "header": header, "now": TS}
    changes = {
        "tampered body": {"body": body.replace(b'"order_version":7', b'"order_version":8')},
        "old timestamp": {"now": TS + 301},
        "future timestamp": {"now": TS - 301},
        "other timestamp": {"timestamp": str(TS + 1)},
        "wrong secret": {"secret": SECRET + "x"},
        "no header": {"header": None},
        "no timestamp": {"timestamp": None},
        "bad timestamp": {"timestamp": "17e8"},
        "bare hex": {"header": header.removeprefix("sha256=")},
        "other algorithm": {"header": header.replace("sha256=", "sha1=")},
    }[case]
    assert verify_signature(**{**args, **changes}) is False


def test_alert_embed_keeps_the_reference_format():
    alert = Event(id="alert:payout_voided:otc_1:5", type="alert", order_id="otc_1", order_version=5,
                  created_at=TS, data={"code": "payout_voided", "order_id": "otc_1", "message": "node voided it",
                                       "status": "settlement_recovery"})
    embed = json.loads(alert.embed_body())
    assert embed == {"embeds": [{
        "title": "OTC Bridge CRITICAL", "description": "node voided it", "color": 16711680,
        "fields": [{"name": "order_id", "value": "otc_1", "inline": True},
                   {"name": "code", "value": "payout_voided", "inline": True},
                   {"name": "status", "value": "settlement_recovery", "inline": True}],
        "timestamp": "2027-01-15T08:00:00+00:00"}]}


@pytest.mark.parametrize(("code", "level"), [
    ("invariant_broken", "CRITICAL"), ("payout_missing", "CRITICAL"), ("escrow_job_moved", "CRITICAL"),
    ("outbox_dead", "WARNING"), ("refund_stuck", "WARNING")])
def test_alert_levels_and_colours(code, level):
    assert alert_level(code) == level
    assert COLORS == {"CRITICAL": 16711680, "WARNING": 16776960, "INFO": 3447003}


@pytest.mark.parametrize(("events", "topic", "wanted"), [
    (("*",), "order.open", True), (("*",), "alert", True),
    (("order.*",), "order.completed", True), (("order.*",), "alert", False),
    (("order.completed",), "order.completed", True), (("order.completed",), "order.cancelled", False),
    (("alert", "order.expired"), "alert", True), (("alert",), "order.open", False)])
def test_event_type_filters(events, topic, wanted):
    hook = Webhook(name="x", url="http://127.0.0.1/x", secret=SECRET, events=events)
    assert hook.accepts(topic) is wanted


def test_secrets_and_urls_stay_out_of_reprs():
    hook = Webhook(name="x", url="https://hooks.example/token123", secret=SECRET, events=("*",))
    assert "token123" not in repr(hook) and SECRET not in repr(hook)
