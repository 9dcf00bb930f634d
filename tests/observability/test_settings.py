"""The observability settings are validated like every other (docs/protocol.md §3: a bad value names its variable)."""

from __future__ import annotations

import pytest

from otc_bridge.config import Config, ConfigError


@pytest.mark.parametrize("variable, value", [
    ("OTC_STREAM_MAX_CLIENTS", "0"), ("OTC_STREAM_MAX_CLIENTS", "many"),
    ("OTC_STREAM_HEARTBEAT_SECONDS", "0"), ("OTC_STREAM_POLL_SECONDS", "-1"),
    ("OTC_METRICS_TOKEN", "short"),
])
def test_bad_values_name_their_variable(variable, value):
    with pytest.raises(ConfigError) as error:
        Config.from_env({variable: value})
    assert error.value.variable == variable


def test_defaults_and_overrides():
    assert (Config().stream_max_clients, Config().stream_heartbeat_seconds, Config().stream_poll_seconds,
            Config().metrics_token) == (64, 15.0, 0.5, None)
    cfg = Config.from_env({"OTC_STREAM_MAX_CLIENTS": "200", "OTC_STREAM_HEARTBEAT_SECONDS": "5",
                           "OTC_STREAM_POLL_SECONDS": "0.25", "OTC_METRICS_TOKEN": "m" * 24})
    assert (cfg.stream_max_clients, cfg.stream_heartbeat_seconds, cfg.stream_poll_seconds,
            cfg.metrics_token) == (200, 5.0, 0.25, "m" * 24)
