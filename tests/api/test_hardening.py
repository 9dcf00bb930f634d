"""The small holes of "Escrow under attack": ASCII-only numbers, JSON-only POST bodies (415),
JSON bodies on every 4xx the app itself sends, and the reference's answers to odd input.
Every refusal names the field and leaves the watched tables as they were."""

from __future__ import annotations

import sys

import pytest
from api_checks import snapshot
from bridge_support import ADMIN_TOKEN, SELLER_ETH
from werkzeug.exceptions import abort, default_exceptions

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MISSING_ID = "otc_00000000deadbeef"
WRONG_TYPE = {"error": "Content-Type must be application/json", "field": "Content-Type"}
POST_ROUTES = ["/api/orders", f"/api/orders/{MISSING_ID}/match", f"/api/orders/{MISSING_ID}/confirm",
               f"/api/orders/{MISSING_ID}/cancel", "/admin/reconcile", f"/admin/orders/{MISSING_ID}/resolve",
               f"/admin/orders/{MISSING_ID}/redrive-payout"]
# Digits of other scripts: superscript two (isdigit but not int()), Arabic-Indic three (int() == 3),
# fullwidth one, Devanagari seven.
UNICODE_DIGITS = ["\u00b2", "\u0663", "\uff11", "\u0967", "1\u0660"]


@pytest.fixture
def unchanged(bridge, dev_node):
    """No order, event, used signature, outbox row or trade written; no job on the node."""
    before = snapshot(bridge, dev_node)
    yield
    assert snapshot(bridge, dev_node) == before


# --- ASCII digits only ------------------------------------------------------------------


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
@pytest.mark.parametrize("path, param, error", [
    ("/api/stream", "last_event_id", "Last-Event-ID must be a non-negative event id"),
    ("/api/orders", "limit", "limit_must_be_integer"),
    ("/api/orders", "offset", "offset_must_be_integer"),
    ("/api/trades", "limit", "limit_must_be_integer"),
    (f"/api/wallets/RTC{'ab' * 20}/orders", "limit", "limit_must_be_integer"),
])
def test_query_numbers_are_ascii_only(http_client, unchanged, path, param, digit, error):
    response = http_client.get(path, query_string={param: digit})
    assert (response.status_code, response.get_json()) == (400, {"error": error, "field": param})


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_last_event_id_header_is_ascii_only(http_client, digit):
    # Headers arrive as latin-1 text: "²" is one of the characters a client can really send.
    response = http_client.get("/api/stream", headers={"Last-Event-ID": digit.encode().decode("latin-1")})
    assert response.status_code == 400
    assert response.get_json()["field"] == "last_event_id"


def test_superscript_last_event_id_in_the_url_is_a_400_not_a_500(http_client):
    response = http_client.get("/api/stream?last_event_id=%C2%B2")
    assert (response.status_code, response.get_json()) == (
        400, {"error": "Last-Event-ID must be a non-negative event id", "field": "last_event_id"})


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_event_paging_numbers_are_ascii_only(api, http_client, seller, digit):
    status, made = api.create_order(seller, side="buy", pair="RTC/USDC", amount_micro_rtc=1_000_000,
                                    price_nano_quote=50_000_000)
    assert status == 201, made
    for param in ("after", "limit"):
        response = http_client.get(f"/api/orders/{made['order_id']}/events", query_string={param: digit})
        assert response.status_code == 400 and response.get_json()["field"] == param


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_admin_older_than_is_ascii_only(http_client, digit):
    response = http_client.get("/admin/attention", query_string={"older_than": digit}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (
        400, {"error": "older_than must be a whole number of seconds", "field": "older_than"})


@pytest.mark.parametrize("name", ["\u00a0admin", "admin\u2003", "\uff41dmin", "ad\u0660min"])
def test_operator_names_are_ascii_only(http_client, unchanged, name):
    headers = {**ADMIN, "X-Operator": name.encode().decode("latin-1")}
    response = http_client.post(f"/admin/orders/{MISSING_ID}/resolve", json={"to": "completed", "reason": "r"},
                                headers=headers)
    assert response.status_code == 400 and response.get_json()["field"] == "X-Operator"


def test_ascii_numbers_still_work(http_client):
    assert http_client.get("/api/orders", query_string={"limit": " 2 ", "offset": "0"}).get_json()["limit"] == 2
    assert http_client.get("/admin/attention", query_string={"older_than": "60"}, headers=ADMIN).status_code == 200


# --- 415: POST bodies are JSON ----------------------------------------------------------


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                                          "application/jsonx", "application/merge-patch+json", "json"])
def test_post_with_a_non_json_content_type_is_415(http_client, unchanged, path, content_type):
    response = http_client.post(path, data=b'{"wallet": "RTCx"}', content_type=content_type, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (415, WRONG_TYPE)
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("path", POST_ROUTES)
def test_post_with_a_body_and_no_content_type_is_415(http_client, unchanged, path):
    response = http_client.post(path, data=b'{"wallet": "RTCx"}', headers=ADMIN)
    assert "Content-Type" not in response.request.headers
    assert (response.status_code, response.get_json()) == (415, WRONG_TYPE)


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON", "application/json; charset=utf-8",
                                          'application/json;charset="UTF-8"', "application/json;"])
def test_json_content_types_reach_the_route(http_client, unchanged, content_type):
    response = http_client.post("/api/orders", data=b"{}", content_type=content_type)
    assert (response.status_code, response.get_json()) == (400, {"error": "JSON body required"})


def test_admin_token_is_checked_before_the_content_type(http_client, unchanged):
    response = http_client.post("/admin/reconcile", data=b"x", content_type="text/plain")
    assert (response.status_code, response.get_json()) == (401, {"error": "unauthorized"})


def test_admin_reconcile_needs_no_body(http_client):
    assert http_client.post("/admin/reconcile", headers=ADMIN).status_code == 200


@pytest.mark.parametrize("path", POST_ROUTES[:4] + POST_ROUTES[5:])
def test_empty_object_is_no_body(http_client, unchanged, path):
    response = http_client.post(path, json={}, headers=ADMIN)
    assert (response.status_code, response.get_json()) == (400, {"error": "JSON body required"})


# --- every 4xx the app sends is JSON ------------------------------------------------------


CLIENT_ERRORS = sorted(code for code in default_exceptions if 400 <= code < 500)


@pytest.mark.parametrize("code", CLIENT_ERRORS)
def test_every_werkzeug_client_error_is_json(make_app, code):
    app = make_app()
    app.add_url_rule("/api/raise/<int:code>", "raise_for_test", lambda code: abort(code))
    response = app.test_client().get(f"/api/raise/{code}")
    assert response.status_code == code
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]
    assert b"<html" not in response.data.lower()


def test_bad_percent_encoding_and_odd_paths_are_json(http_client):
    for path in ("/api/orders/%ZZ", "/api/%00", "/api/orders/" + "x" * 5000, "/admin/../api/orders/x/match"):
        response = http_client.get(path)
        assert 400 <= response.status_code < 500, path
        assert response.mimetype == "application/json", path


# --- the reference's answers --------------------------------------------------------------


def test_create_with_a_two_character_wallet_is_400_not_401(http_client, unchanged):
    body = {"side": "sell", "pair": "RTC/USDC", "wallet": "ab", "amount_rtc": "1", "price_per_rtc": "0.05",
            "eth_address": SELLER_ETH}
    response = http_client.post("/api/orders", json=body)
    assert (response.status_code, response.get_json()) == (
        400, {"error": "wallet required (RTC wallet ID)", "field": "wallet"})


def test_negative_price_is_not_positive(http_client, unchanged):
    body = {"side": "buy", "pair": "RTC/USDC", "wallet": "RTC" + "ab" * 20, "amount_rtc": "1",
            "price_per_rtc": "-0.05"}
    response = http_client.post("/api/orders", json=body)
    assert (response.status_code, response.get_json()) == (
        400, {"error": "price_per_rtc must be positive", "field": "price_per_rtc"})


def test_trades_with_an_unknown_pair(http_client):
    response = http_client.get("/api/trades", query_string={"pair": "BAD"})
    assert (response.status_code, response.get_json()) == (400, {"error": "unsupported pair", "field": "pair"})


def test_stats_carry_the_reference_rate(http_client):
    for query in ({}, {"pair": "RTC/ETH"}):
        stats = http_client.get("/api/stats", query_string=query).get_json()["stats"]
        assert stats["reference_rate_usd"] == 0.1
    assert http_client.get("/api/orderbook").get_json()["reference_rate"] == 0.1


def test_deep_json_is_refused_before_parsing_even_with_a_raised_recursion_limit(http_client):
    """web3 raises the interpreter's recursion limit to 100,000 on import; the C JSON parser
    would then recurse 30,000 frames deep on this body. The depth is bounded first."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        body = b"[" * 30_000 + b"]" * 30_000
        response = http_client.post("/api/orders", data=body, content_type="application/json")
    finally:
        sys.setrecursionlimit(before)
    assert response.status_code == 400 and response.get_json() == {"error": "JSON body required"}
