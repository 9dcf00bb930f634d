"""Settings from the environment (docs/protocol.md §3): defaults, every bad value names its
variable, and the cross-field timelock rules."""

from __future__ import annotations

import ipaddress

import pytest

from otc_bridge.config import NODE_MAX_JOB_TTL_SECONDS, Config, ConfigError, RateLimit

HOUR, DAY = 3600, 86400


def test_defaults():
    cfg = Config.from_env({})
    assert cfg == Config()
    assert (cfg.db_path, cfg.node_url, cfg.host, cfg.port) == ("otc_bridge.storage.db", None, "127.0.0.1", 5580)
    assert cfg.node_admin_key is None and cfg.admin_token is None
    assert cfg.node_tls_verify is True and cfg.allow_insecure_admin is False
    assert (cfg.node_connect_timeout_seconds, cfg.node_read_timeout_seconds) == (3.05, 10.0)
    assert cfg.cors_origins == () and cfg.trusted_proxies == ()
    assert cfg.rate_limit == RateLimit(10, 60)
    assert cfg.max_body_bytes == 64 * 1024
    assert cfg.sqlite_synchronous == "FULL"
    assert (cfg.settle_window_seconds, cfg.htlc_min_seconds) == (48 * HOUR, 12 * HOUR)
    assert (cfg.claim_margin_seconds, cfg.escrow_margin_seconds) == (DAY, DAY)
    assert cfg.default_order_ttl_seconds == 7 * DAY
    assert (cfg.reconcile_interval_seconds, cfg.settlement_stuck_seconds) == (10, 300)
    assert cfg.reconcile_disabled is False and cfg.alert_webhook_url is None
    assert cfg.worker_wallet == "otc_bridge_worker"


def test_blank_values_mean_default():
    assert Config.from_env({"OTC_PORT": "  ", "OTC_DB_PATH": "", "OTC_RATE_LIMIT": ""}) == Config()


@pytest.mark.parametrize(("env", "attr", "value"), [
    ({"OTC_PORT": "8080"}, "port", 8080),
    ({"OTC_PORT": " 1 "}, "port", 1),
    ({"OTC_PORT": "65535"}, "port", 65535),
    ({"OTC_DB_PATH": "/data/x.db"}, "db_path", "/data/x.db"),
    ({"RUSTCHAIN_NODE": "https://node.example:8099/"}, "node_url", "https://node.example:8099"),
    ({"RUSTCHAIN_NODE": "http://127.0.0.1:9"}, "node_url", "http://127.0.0.1:9"),
    ({"RC_ADMIN_KEY": " k "}, "node_admin_key", "k"),
    ({"RUSTCHAIN_TLS_VERIFY": "0"}, "node_tls_verify", False),
    ({"RUSTCHAIN_TLS_VERIFY": "Yes"}, "node_tls_verify", True),
    ({"RUSTCHAIN_CA_BUNDLE": "/etc/ca.pem"}, "node_tls_verify", "/etc/ca.pem"),
    ({"RUSTCHAIN_CA_BUNDLE": "/etc/ca.pem", "RUSTCHAIN_TLS_VERIFY": "1"}, "node_tls_verify", "/etc/ca.pem"),
    ({"OTC_NODE_TIMEOUT_SECONDS": "2.5"}, "node_read_timeout_seconds", 2.5),
    ({"OTC_NODE_CONNECT_TIMEOUT_SECONDS": "1"}, "node_connect_timeout_seconds", 1.0),
    ({"OTC_ALLOW_INSECURE_ADMIN": "on"}, "allow_insecure_admin", True),
    ({"OTC_ADMIN_TOKEN": "x" * 24}, "admin_token", "x" * 24),
    ({"OTC_CORS_ORIGINS": "https://a.example, http://b.example:8080/"}, "cors_origins",
     ("https://a.example", "http://b.example:8080")),
    ({"OTC_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1,::1"}, "trusted_proxies",
     (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))),
    ({"OTC_TRUSTED_PROXIES": "10.1.2.3/8"}, "trusted_proxies", (ipaddress.ip_network("10.0.0.0/8"),)),
    ({"OTC_RATE_LIMIT": "10/minute"}, "rate_limit", RateLimit(10, 60)),
    ({"OTC_RATE_LIMIT": "5/second"}, "rate_limit", RateLimit(5, 1)),
    ({"OTC_RATE_LIMIT": "100 / Hours"}, "rate_limit", RateLimit(100, 3600)),
    ({"OTC_RATE_LIMIT": "1/day"}, "rate_limit", RateLimit(1, 86400)),
    ({"OTC_SQLITE_SYNCHRONOUS": "normal"}, "sqlite_synchronous", "NORMAL"),
    ({"OTC_SQLITE_SYNCHRONOUS": "EXTRA"}, "sqlite_synchronous", "EXTRA"),
    ({"OTC_DEFAULT_TTL_SECONDS": "3600"}, "default_order_ttl_seconds", 3600),
    ({"OTC_DEFAULT_TTL_SECONDS": "2332800"}, "default_order_ttl_seconds", 2332800),
    ({"OTC_HTLC_MIN_SECONDS": "86399"}, "htlc_min_seconds", 86399),
    ({"OTC_RECONCILE_DISABLED": "true"}, "reconcile_disabled", True),
    ({"RC_SOPHIACHECK_WEBHOOK": "https://hooks.example/x"}, "alert_webhook_url", "https://hooks.example/x"),
    ({"OTC_WORKER_WALLET": "my_worker"}, "worker_wallet", "my_worker"),
    ({"OTC_MAX_BODY_BYTES": "1024"}, "max_body_bytes", 1024),
])
def test_good_values(env, attr, value):
    assert getattr(Config.from_env(env), attr) == value


BAD = [
    ("OTC_PORT", {"OTC_PORT": "abc"}),
    ("OTC_PORT", {"OTC_PORT": "0"}),
    ("OTC_PORT", {"OTC_PORT": "70000"}),
    ("OTC_PORT", {"OTC_PORT": "-1"}),
    ("OTC_PORT", {"OTC_PORT": "80.5"}),
    ("OTC_RATE_LIMIT", {"OTC_RATE_LIMIT": "ten"}),
    ("OTC_RATE_LIMIT", {"OTC_RATE_LIMIT": "0/minute"}),
    ("OTC_RATE_LIMIT", {"OTC_RATE_LIMIT": "10/fortnight"}),
    ("OTC_RATE_LIMIT", {"OTC_RATE_LIMIT": "10"}),
    ("OTC_RATE_LIMIT", {"OTC_RATE_LIMIT": "-1/minute"}),
    ("OTC_CORS_ORIGINS", {"OTC_CORS_ORIGINS": "*"}),
    ("OTC_CORS_ORIGINS", {"OTC_CORS_ORIGINS": "https://a.example,*"}),
    ("OTC_CORS_ORIGINS", {"OTC_CORS_ORIGINS": "a.example"}),
    ("OTC_CORS_ORIGINS", {"OTC_CORS_ORIGINS": "https://a.example/path"}),
    ("OTC_TRUSTED_PROXIES", {"OTC_TRUSTED_PROXIES": "nope"}),
    ("OTC_TRUSTED_PROXIES", {"OTC_TRUSTED_PROXIES": "10.0.0.0/33"}),
    ("RUSTCHAIN_NODE", {"RUSTCHAIN_NODE": "ftp://x"}),
    ("RUSTCHAIN_NODE", {"RUSTCHAIN_NODE": "node.example"}),
    ("RUSTCHAIN_NODE", {"RUSTCHAIN_NODE": "http://"}),
    ("RC_SOPHIACHECK_WEBHOOK", {"RC_SOPHIACHECK_WEBHOOK": "ftp://hooks"}),
    ("RUSTCHAIN_TLS_VERIFY", {"RUSTCHAIN_TLS_VERIFY": "maybe"}),
    ("RUSTCHAIN_CA_BUNDLE", {"RUSTCHAIN_CA_BUNDLE": "/ca.pem", "RUSTCHAIN_TLS_VERIFY": "0"}),
    ("OTC_ALLOW_INSECURE_ADMIN", {"OTC_ALLOW_INSECURE_ADMIN": "2"}),
    ("OTC_RECONCILE_DISABLED", {"OTC_RECONCILE_DISABLED": "disabled"}),
    ("OTC_ADMIN_TOKEN", {"OTC_ADMIN_TOKEN": "short"}),
    ("OTC_ADMIN_TOKEN", {"OTC_ADMIN_TOKEN": "x" * 23}),
    ("OTC_NODE_TIMEOUT_SECONDS", {"OTC_NODE_TIMEOUT_SECONDS": "soon"}),
    ("OTC_NODE_TIMEOUT_SECONDS", {"OTC_NODE_TIMEOUT_SECONDS": "0"}),
    ("OTC_NODE_TIMEOUT_SECONDS", {"OTC_NODE_TIMEOUT_SECONDS": "nan"}),
    ("OTC_NODE_TIMEOUT_SECONDS", {"OTC_NODE_TIMEOUT_SECONDS": "inf"}),
    ("OTC_NODE_CONNECT_TIMEOUT_SECONDS", {"OTC_NODE_CONNECT_TIMEOUT_SECONDS": "3601"}),
    ("OTC_ESCROW_LOCK_WAIT_SECONDS", {"OTC_ESCROW_LOCK_WAIT_SECONDS": "-1"}),
    ("OTC_MAX_BODY_BYTES", {"OTC_MAX_BODY_BYTES": "100"}),
    ("OTC_SQLITE_SYNCHRONOUS", {"OTC_SQLITE_SYNCHRONOUS": "OFF"}),
    ("OTC_SETTLE_WINDOW_SECONDS", {"OTC_SETTLE_WINDOW_SECONDS": "60"}),
    ("OTC_SETTLE_WINDOW_SECONDS", {"OTC_SETTLE_WINDOW_SECONDS": str(29 * DAY)}),
    ("OTC_HTLC_MIN_SECONDS", {"OTC_HTLC_MIN_SECONDS": "86400"}),  # == settle window - claim margin
    ("OTC_HTLC_MIN_SECONDS", {"OTC_HTLC_MIN_SECONDS": "100"}),
    ("OTC_CLAIM_MARGIN_SECONDS", {"OTC_CLAIM_MARGIN_SECONDS": "1"}),
    ("OTC_ESCROW_MARGIN_SECONDS", {"OTC_ESCROW_MARGIN_SECONDS": "1"}),
    ("OTC_DEFAULT_TTL_SECONDS", {"OTC_DEFAULT_TTL_SECONDS": "2332801"}),  # max_order_ttl_seconds + 1
    ("OTC_DEFAULT_TTL_SECONDS", {"OTC_DEFAULT_TTL_SECONDS": "3599"}),
    ("OTC_DEFAULT_TTL_SECONDS", {"OTC_DEFAULT_TTL_SECONDS": "x"}),
    ("OTC_DEFAULT_TTL_SECONDS", {"OTC_SETTLE_WINDOW_SECONDS": str(10 * DAY),
                                 "OTC_DEFAULT_TTL_SECONDS": str(20 * DAY)}),
    ("OTC_RECONCILE_INTERVAL_SECONDS", {"OTC_RECONCILE_INTERVAL_SECONDS": "0"}),
    ("OTC_SETTLEMENT_STUCK_SECONDS", {"OTC_SETTLEMENT_STUCK_SECONDS": "never"}),
]


def _bad_id(variable: str, env: dict) -> str:
    # "escrow" kept out of test ids: the suite is often run with -k "not escrow"
    return f"{variable}={list(env.values())[-1]}".replace("ESCROW", "ESCR")


@pytest.mark.parametrize(("variable", "env"), BAD, ids=[_bad_id(v, e) for v, e in BAD])
def test_bad_value_names_its_variable(variable, env):
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")


@pytest.mark.parametrize(("env", "mentions"), [
    ({"OTC_ESCROW_MARGIN_SECONDS": str(27 * DAY)}, "escrow margin"),
    ({"OTC_CLAIM_MARGIN_SECONDS": str(2 * DAY)}, "OTC_CLAIM_MARGIN_SECONDS"),
], ids=["margin_leaves_no_order_ttl", "claim_margin_swallows_window"])
def test_cross_field_errors_mention_the_other_variable(env, mentions):
    # A margin too big for the window is reported on the rule's anchor variable; the message
    # names the margin too, so the operator can find either.
    with pytest.raises(ConfigError, match=mentions):
        Config.from_env(env)


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_tls_verify_keeps_verification_on(blank):
    assert Config.from_env({"RUSTCHAIN_TLS_VERIFY": blank}).node_tls_verify is True


@pytest.mark.parametrize(("settle", "margin"), [(48 * HOUR, DAY), (10 * DAY, 2 * DAY), (HOUR * 26, 600)])
def test_max_order_ttl(settle, margin):
    cfg = Config.from_env({"OTC_SETTLE_WINDOW_SECONDS": str(settle), "OTC_ESCROW_MARGIN_SECONDS": str(margin),
                           "OTC_HTLC_MIN_SECONDS": "600", "OTC_CLAIM_MARGIN_SECONDS": "600",
                           "OTC_DEFAULT_TTL_SECONDS": "3600"})
    assert cfg.max_order_ttl_seconds == 30 * DAY - settle - margin == NODE_MAX_JOB_TTL_SECONDS - settle - margin


def test_default_max_order_ttl_is_27_days():
    assert Config().max_order_ttl_seconds == 27 * DAY


def test_replace_revalidates():
    cfg = Config.from_env({})
    assert cfg.replace(port=1234).port == 1234
    with pytest.raises(ConfigError) as info:
        cfg.replace(default_order_ttl_seconds=28 * DAY)
    assert info.value.variable == "OTC_DEFAULT_TTL_SECONDS"
    with pytest.raises(ConfigError) as info:
        cfg.replace(cors_origins=("*",))
    assert info.value.variable == "OTC_CORS_ORIGINS"
    with pytest.raises(ConfigError) as info:
        cfg.replace(htlc_min_seconds=DAY)
    assert info.value.variable == "OTC_HTLC_MIN_SECONDS"


def test_config_error_is_a_value_error():
    err = ConfigError("OTC_PORT", "bad")
    assert isinstance(err, ValueError) and err.variable == "OTC_PORT" and str(err) == "OTC_PORT: bad"
