"""Webhook and outbox settings: validated at startup, errors name the variable."""

from __future__ import annotations

import json

import pytest

from otc_bridge.config import Config, ConfigError

GOOD = {"url": "https://hooks.example.com/otc", "secret": "0123456789abcdef", "events": ["order.*", "alert"]}


def env(**values: object) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def test_defaults():
    cfg = Config.from_env({})
    assert cfg.webhooks == () and not cfg.outbox_disabled
    assert (cfg.outbox_interval_seconds, cfg.outbox_max_attempts, cfg.outbox_visibility_seconds) == (2.0, 8, 60)
    assert (cfg.outbox_backoff_base_seconds, cfg.outbox_backoff_max_seconds) == (2, 3600)
    assert (cfg.webhook_connect_timeout_seconds, cfg.webhook_read_timeout_seconds) == (3.0, 10.0)


def test_webhooks_are_parsed_with_stable_default_names():
    cfg = Config.from_env(env(OTC_WEBHOOKS=[GOOD, {**GOOD, "url": "http://127.0.0.1:9000/h", "name": "local",
                                                   "events": ["order.completed"]}]))
    first, second = cfg.webhooks
    assert first.name.startswith("wh-") and len(first.name) == 13
    assert Config.from_env(env(OTC_WEBHOOKS=[GOOD])).webhooks[0].name == first.name
    assert (second.name, second.events, second.secret) == ("local", ("order.completed",), GOOD["secret"])


@pytest.mark.parametrize(("value", "complaint"), [
    ("not json", "JSON list"),
    ({"url": GOOD["url"]}, "JSON list"),
    ([{**GOOD, "url": "ftp://hooks.example.com/x"}], "entry 0: url"),
    ([{**GOOD, "url": "file:///etc/passwd"}], "entry 0: url"),
    ([{**GOOD, "url": "javascript:alert(1)"}], "entry 0: url"),
    ([GOOD, {**GOOD, "url": "https://b.example", "secret": "short"}], "entry 1: secret"),
    ([{**GOOD, "secret": None}], "secret"),
    ([{**GOOD, "events": []}], "events"),
    ([{**GOOD, "events": "order.*"}], "events"),
    ([{**GOOD, "events": ["order.complete"]}], "unknown event types ['order.complete']"),
    ([{**GOOD, "event": ["order.*"]}], "keys"),
    (["https://hooks.example.com"], "entry 0"),
    ([GOOD, GOOD], "same name"),
    ([{**GOOD, "name": "alert"}], "name"),
    ([{**GOOD, "name": "Has Spaces"}], "name"),
])
def test_bad_webhooks_name_the_variable(value, complaint):
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(OTC_WEBHOOKS=value))
    assert caught.value.variable == "OTC_WEBHOOKS"
    assert str(caught.value).startswith("OTC_WEBHOOKS: ") and complaint in str(caught.value)
    assert GOOD["secret"] not in str(caught.value)


@pytest.mark.parametrize(("variable", "value"), [
    ("OTC_OUTBOX_MAX_ATTEMPTS", "0"), ("OTC_OUTBOX_MAX_ATTEMPTS", "many"),
    ("OTC_OUTBOX_INTERVAL_SECONDS", "0"), ("OTC_OUTBOX_DISABLED", "maybe"),
    ("OTC_WEBHOOK_TIMEOUT_SECONDS", "-1"), ("OTC_OUTBOX_BACKOFF_BASE_SECONDS", "0"),
])
def test_bad_outbox_settings_name_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: value})
    assert caught.value.variable == variable


def test_claim_expiry_must_outlast_a_delivery():
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"OTC_OUTBOX_VISIBILITY_SECONDS": "12", "OTC_WEBHOOK_TIMEOUT_SECONDS": "10"})
    assert caught.value.variable == "OTC_OUTBOX_VISIBILITY_SECONDS"
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"OTC_OUTBOX_BACKOFF_BASE_SECONDS": "60", "OTC_OUTBOX_BACKOFF_MAX_SECONDS": "30"})
    assert caught.value.variable == "OTC_OUTBOX_BACKOFF_MAX_SECONDS"
