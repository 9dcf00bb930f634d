"""Numbers read from text are ASCII-only everywhere (the shared parser, settings, webhook
signatures), and rate-limit buckets key IPv6 clients by their /64."""

from __future__ import annotations

from decimal import Decimal

import pytest

from otc_bridge.config import Config, ConfigError
from otc_bridge.domain.parsing import ascii_decimal, ascii_int
from otc_bridge.notify.webhooks import sign, verify_signature
from otc_bridge.storage import ratelimit

# isdigit() but not int(): superscript two; int() accepts all of the others.
UNICODE_NUMBERS = ["\u00b2", "\u0663", "\uff11", "\u0967", "1\u0660", "\u0661\u0660", "\U0001d7ce"]


@pytest.mark.parametrize(("text", "kwargs", "value"), [
    ("0", {}, 0), ("42", {}, 42), ("007", {}, 7), ("9" * 18, {}, 10**18 - 1),
    ("-5", {"signed": True}, -5), ("123456789", {"max_digits": 9}, 123456789),
])
def test_ascii_int_accepts_plain_ascii_digits(text, kwargs, value):
    assert ascii_int(text, **kwargs) == value


@pytest.mark.parametrize("text", [*UNICODE_NUMBERS, "", " 1", "1 ", "+1", "-1", "1_0", "1e3", "0x10", "1.0",
                                  "9" * 19, "--1", "-", None, 12, b"12", "12\n"])
def test_ascii_int_refuses_everything_else(text):
    assert ascii_int(text) is None


def test_ascii_int_sign_only_when_asked_and_digits_bounded():
    assert ascii_int("-", signed=True) is None and ascii_int("--1", signed=True) is None
    assert ascii_int("1234567890", max_digits=9) is None


@pytest.mark.parametrize(("text", "value"), [("0", Decimal(0)), ("2.5", Decimal("2.5")), ("10.000", Decimal(10))])
def test_ascii_decimal_accepts_plain_decimals(text, value):
    assert ascii_decimal(text) == value


@pytest.mark.parametrize("text", [*UNICODE_NUMBERS, "\u0661.5", "nan", "inf", "1e3", "-1", "+1", ".5", "5.",
                                  "1_0", " 1", "", "1" * 41, None])
def test_ascii_decimal_refuses_everything_else(text):
    assert ascii_decimal(text) is None


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["OTC_PORT", "OTC_MAX_BODY_BYTES", "OTC_OUTBOX_MAX_ATTEMPTS",
                                      "OTC_NODE_TIMEOUT_SECONDS", "OTC_NODE_DEADLINE_SECONDS",
                                      "OTC_NODE_MAX_RESPONSE_BYTES", "OTC_STREAM_POLL_SECONDS"])
@pytest.mark.parametrize("raw", ["\u0668\u0660", "\uff18\uff10", "8\u0660", "\u00b2", "1e1", "1_0"])
def test_settings_take_ascii_digits_only(variable, raw):
    with pytest.raises(ConfigError) as info:
        Config.from_env({variable: raw})
    assert info.value.variable == variable


@pytest.mark.parametrize("raw", ["\u0661\u0660/minute", "\u00b2/minute", "1\u0660/second"])
def test_rate_limit_setting_takes_ascii_digits_only(raw):
    with pytest.raises(ConfigError) as info:
        Config.from_env({"OTC_RATE_LIMIT": raw})
    assert info.value.variable == "OTC_RATE_LIMIT"


def test_node_deadline_and_size_cap_settings():
    cfg = Config.from_env({})
    assert (cfg.node_deadline_seconds, cfg.node_max_response_bytes) == (15.0, 1024 * 1024)
    assert cfg.escrow_create_lease_seconds == pytest.approx(10 + 2 * (3.05 + 10))
    cfg = Config.from_env({"OTC_NODE_DEADLINE_SECONDS": "2.5", "OTC_NODE_MAX_RESPONSE_BYTES": "65536"})
    assert (cfg.node_deadline_seconds, cfg.node_max_response_bytes) == (2.5, 65536)
    # Unset, the deadline follows short node timeouts down, so it stays below the lease.
    short = Config.from_env({"OTC_NODE_TIMEOUT_SECONDS": "1", "OTC_NODE_CONNECT_TIMEOUT_SECONDS": "1",
                             "OTC_ESCROW_LOCK_WAIT_SECONDS": "0.5"})
    assert short.node_deadline_seconds == 4.0 < short.escrow_create_lease_seconds == 4.5


@pytest.mark.parametrize(("env", "variable"), [
    ({"OTC_NODE_DEADLINE_SECONDS": "36.1"}, "OTC_NODE_DEADLINE_SECONDS"),  # == the default lease
    ({"OTC_NODE_DEADLINE_SECONDS": "21", "OTC_NODE_TIMEOUT_SECONDS": "2"}, "OTC_NODE_DEADLINE_SECONDS"),
    ({"OTC_NODE_DEADLINE_SECONDS": "0"}, "OTC_NODE_DEADLINE_SECONDS"),
    ({"OTC_NODE_MAX_RESPONSE_BYTES": "100"}, "OTC_NODE_MAX_RESPONSE_BYTES"),
    ({"OTC_NODE_MAX_RESPONSE_BYTES": str(65 * 1024 * 1024)}, "OTC_NODE_MAX_RESPONSE_BYTES"),
])
def test_node_deadline_below_the_lease_and_cap_in_range(env, variable):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert info.value.variable == variable


def test_replace_checks_the_deadline_against_the_lease():
    with pytest.raises(ConfigError) as info:
        Config().replace(node_read_timeout_seconds=0.5, node_connect_timeout_seconds=0.5,
                         escrow_lock_wait_seconds=0.5)
    assert info.value.variable == "OTC_NODE_DEADLINE_SECONDS"


# --- webhook signatures -----------------------------------------------------------------

SECRET, BODY, TS = "s" * 32, b'{"id":"x"}', 1_800_000_000


@pytest.mark.parametrize("timestamp", [*UNICODE_NUMBERS, "1800000000\u00b2", "\u0661" * 10, True, "", " 1800000000"])
def test_webhook_timestamp_must_be_ascii_digits(timestamp):
    header = sign(SECRET, TS, BODY)
    assert verify_signature(SECRET, timestamp, BODY, header, now=TS) is False


def test_webhook_signature_still_verifies():
    header = sign(SECRET, TS, BODY)
    assert verify_signature(SECRET, str(TS), BODY, header, now=TS + 300) is True
    assert verify_signature(SECRET, TS, BODY, header, now=TS) is True


# --- rate-limit buckets -----------------------------------------------------------------


@pytest.mark.parametrize(("address", "bucket"), [
    ("203.0.113.7", "ip:203.0.113.7"),
    ("::ffff:203.0.113.7", "ip:203.0.113.7"),
    ("2001:db8:1:2::1", "ip6:2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "ip6:2001:db8:1:2::/64"),
    ("2001:DB8:1:2:3:4:5:6", "ip6:2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "ip6:2001:db8:1:3::/64"),
    ("::1", "ip6:::/64"),
    ("fe80::1%eth0", "ip6:fe80::/64"),
    ("unknown", "ip:unknown"),
    ("not-an-ip", "ip:not-an-ip"),
])
def test_bucket(address, bucket):
    assert ratelimit.bucket(address) == bucket
