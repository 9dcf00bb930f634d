"""Admin token, rate limit, security headers, request ids, CORS and the generic error bodies."""

from __future__ import annotations

import re

import pytest
from api_checks import post_raw
from bridge_support import ADMIN_TOKEN, NODE_ADMIN_KEY

from otc_bridge.config import Config, ConfigError
from otc_bridge.domain import views
from otc_bridge.trading import create

# --- admin ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    {"X-Admin-Key": ADMIN_TOKEN},
    {"X-Admin-Key": NODE_ADMIN_KEY},
])
def test_admin_absent_without_token(make_app, headers):
    client = make_app(drop=("OTC_ADMIN_TOKEN",)).test_client()
    response = client.post("/admin/reconcile", headers=headers)
    assert (response.status_code, response.get_json()) == (404, {"error": "Not found"})


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-0123456789abcdef"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": f"Basic {ADMIN_TOKEN}"},
    {"Authorization": ADMIN_TOKEN},
    {"Authorization": "Bearer "},
    {"X-Admin-Key": ADMIN_TOKEN[:-1]},
    {"X-Admin-Key": ""},
    {"Authorization": f"Bearer {NODE_ADMIN_KEY}"},
    {"X-Admin-Key": NODE_ADMIN_KEY},
], ids=["none", "wrong_bearer", "longer", "basic", "no_scheme", "empty_bearer", "prefix", "empty_key",
        "node_key_bearer", "node_key_header"])
def test_admin_refuses_wrong_token(http_client, bridge, headers):
    before = bridge.db.read("SELECT COUNT(*) FROM order_events")[0][0]
    response = http_client.post("/admin/reconcile", headers=headers)
    assert (response.status_code, response.get_json()) == (401, {"error": "unauthorized"})
    assert bridge.db.read("SELECT COUNT(*) FROM order_events")[0][0] == before


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    {"Authorization": f"bearer {ADMIN_TOKEN}"},
    {"X-Admin-Key": ADMIN_TOKEN},
])
def test_admin_reconcile_with_token(http_client, headers):
    response = http_client.post("/admin/reconcile", headers=headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and isinstance(body["summary"], dict)
    assert response.headers["Cache-Control"] == "no-store"


def test_admin_get_is_not_allowed(http_client):
    response = http_client.get("/admin/reconcile", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (response.status_code, response.get_json()) == (405, {"error": "Method not allowed"})


# --- rate limit -------------------------------------------------------------------------


def _post(client, ip, **headers):
    return post_raw(client, "/api/orders", b"", environ_base={"REMOTE_ADDR": ip}, headers=headers)


def test_fourth_post_from_one_ip_is_limited(make_app):
    client = make_app(OTC_RATE_LIMIT="3/minute").test_client()
    for _ in range(3):
        assert _post(client, "203.0.113.7").status_code == 400  # counted, then refused as bad input
    limited = _post(client, "203.0.113.7")
    assert limited.status_code == 429
    body = limited.get_json()
    assert body["error"] == "Rate limit exceeded"
    retry = int(limited.headers["Retry-After"])
    assert 1 <= retry <= 60 and body["retry_after_seconds"] == retry
    # Every POST route shares the per-IP budget; another address has its own.
    assert _post(client, "203.0.113.7").status_code == 429
    assert client.post("/api/orders/otc_x/cancel", environ_base={"REMOTE_ADDR": "203.0.113.7"}).status_code == 429
    assert _post(client, "203.0.113.8").status_code == 400


def test_gets_are_not_limited(make_app):
    client = make_app(OTC_RATE_LIMIT="3/minute").test_client()
    for path in ["/api/orders", "/api/trades", "/api/orderbook", "/api/stats", "/", "/healthz"] * 2:
        assert client.get(path, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200, path
    assert _post(client, "203.0.113.9").status_code == 400


def test_forwarded_for_is_ignored_from_untrusted_peers(make_app):
    client = make_app(OTC_RATE_LIMIT="3/minute").test_client()
    for n in range(3):
        assert _post(client, "198.51.100.1", **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 400
    spoofed = _post(client, "198.51.100.1", **{"X-Forwarded-For": "192.0.2.99", "X-Real-IP": "192.0.2.98"})
    assert spoofed.status_code == 429


def test_forwarded_for_is_used_behind_a_trusted_proxy(make_app):
    client = make_app(OTC_RATE_LIMIT="3/minute", OTC_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    for _ in range(3):
        assert _post(client, "10.1.2.3", **{"X-Forwarded-For": "192.0.2.1"}).status_code == 400
    assert _post(client, "10.1.2.3", **{"X-Forwarded-For": "192.0.2.1"}).status_code == 429
    # The client may prepend anything; the right-most untrusted entry is the one that counts.
    assert _post(client, "10.9.9.9", **{"X-Forwarded-For": "1.2.3.4, 192.0.2.1, 10.0.0.5"}).status_code == 429
    assert _post(client, "10.1.2.3", **{"X-Forwarded-For": "192.0.2.2"}).status_code == 400
    # A peer outside the trusted range is keyed on itself, whatever it forwards.
    for _ in range(3):
        assert _post(client, "198.51.100.2", **{"X-Forwarded-For": "192.0.2.3"}).status_code == 400
    assert _post(client, "198.51.100.2", **{"X-Forwarded-For": "192.0.2.4"}).status_code == 429


# --- headers, request id, CORS ----------------------------------------------------------


def test_page_has_security_headers(http_client):
    response = http_client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "*" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path, method", [("/api/orders", "get"), ("/api/orders", "post"), ("/nowhere", "get")])
def test_security_headers_on_api_and_errors(http_client, path, method):
    response = getattr(http_client, method)(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_request_id_echoed_or_generated(http_client):
    assert http_client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    generated = http_client.get("/healthz").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert http_client.get("/healthz").headers["X-Request-Id"] != generated
    too_long = http_client.get("/healthz", headers={"X-Request-Id": "r" * 65}).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", too_long)
    on_error = http_client.post("/api/orders", headers={"X-Request-Id": "err-1"})
    assert on_error.status_code == 400 and on_error.headers["X-Request-Id"] == "err-1"


def test_cors_allows_only_listed_origins(make_app):
    client = make_app(OTC_CORS_ORIGINS="https://good.example").test_client()
    good = client.get("/api/orderbook", headers={"Origin": "https://good.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    for origin in ("https://evil.example", "https://good.example.evil.example", "http://good.example"):
        response = client.get("/api/orderbook", headers={"Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers, origin
    preflight = client.options("/api/orders", headers={"Origin": "https://good.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://good.example"
    evil = client.options("/api/orders", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_no_cors_headers_without_configuration(http_client):
    response = http_client.get("/api/orderbook", headers={"Origin": "https://good.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("value", ["*", "https://good.example,*", " * "])
def test_wildcard_cors_is_a_config_error(bridge_env, tmp_path, dev_node, value):
    with pytest.raises(ConfigError) as info:
        Config.from_env(bridge_env(tmp_path, dev_node.url, OTC_CORS_ORIGINS=value))
    assert info.value.variable == "OTC_CORS_ORIGINS"
    assert "OTC_CORS_ORIGINS" in str(info.value)


# --- generic error bodies ---------------------------------------------------------------


def test_internal_error_on_post_is_generic(http_client, monkeypatch, seller, bridge):
    def explode(*args, **kwargs):
        raise RuntimeError("db password hunter2 at /srv/otc/bridge.db")

    monkeypatch.setattr(create, "create_order", explode)
    body = {"side": "buy", "pair": "RTC/USDC", "wallet": seller.address, "amount_rtc": "1",
            "price_per_rtc": "0.05"}
    response = http_client.post("/api/orders", json=body)
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal server error"}
    assert b"hunter2" not in response.data and b"Traceback" not in response.data
    assert bridge.db.read("SELECT COUNT(*) FROM orders")[0][0] == 0


def test_internal_error_on_read_is_generic(http_client, monkeypatch, api, seller):
    api.create_order(seller, side="buy", pair="RTC/USDC", amount_micro_rtc=1_000_000, price_nano_quote=50_000_000)

    def explode(order):
        raise RuntimeError(f"bad row {order['order_id']}")

    monkeypatch.setattr(views, "book_entry", explode)
    response = http_client.get("/api/orders")
    assert (response.status_code, response.get_json()) == (500, {"error": "Internal server error"})
    assert b"bad row" not in response.data


@pytest.mark.parametrize("method, path", [
    ("get", "/api/orders/otc_1/match"), ("get", "/api/orders/otc_1/confirm"), ("get", "/api/orders/otc_1/cancel"),
    ("post", "/api/orderbook"), ("post", "/api/trades"), ("post", "/api/stats"), ("delete", "/api/orders"),
    ("put", "/api/orders/otc_1"),
])
def test_method_not_allowed_is_json(http_client, method, path):
    response = getattr(http_client, method)(path)
    assert (response.status_code, response.get_json()) == (405, {"error": "Method not allowed"})


@pytest.mark.parametrize("path", ["/api/nothing", "/api/orders/otc_1/refund", "/admin/nothing", "/static/missing.js"])
def test_not_found_is_json(http_client, path):
    response = http_client.get(path)
    assert (response.status_code, response.get_json()) == (404, {"error": "Not found"})
