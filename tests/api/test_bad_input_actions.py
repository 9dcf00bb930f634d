"""Bad input on every POST endpoint (body shapes, size) and on match, confirm and cancel:
4xx with the reference's error (and the field), nothing written, no escrow moved."""

from __future__ import annotations

import json

import pytest
import requests
from api_checks import DROP, create, encode, post_raw, snapshot
from bridge_support import BUYER_ETH, SELLER_ETH

from otc_bridge.client import Wallet

LIMIT = 64 * 1024
TOO_LARGE = f"Request body too large (limit {LIMIT} bytes)"
MISSING_ID = "otc_00000000deadbeef"
ENDPOINTS = ["/api/orders", "/api/orders/{id}/match", "/api/orders/{id}/confirm", "/api/orders/{id}/cancel"]
ETH_SHAPE = "eth_address must be 0x followed by 40 hex characters for RTC/USDC"
TAKER_ADDRESS_REQUIRED = "eth_address required: the RTC seller's quote-chain address that the buyer's HTLC pays"


@pytest.fixture
def orders(api, seller, buyer):
    """One order of each kind: an open sell (seller), an open buy (buyer), an open ERG buy
    (buyer) and a matched sell (seller, taken by buyer, with its preimage)."""
    sell = create(api, seller, "sell")
    matched = create(api, seller, "sell", amount=2_000_000)
    status, body = api.match(buyer, matched["order_id"], BUYER_ETH)
    assert status == 200, body
    return {"sell": sell["order_id"], "buy": create(api, buyer, "buy")["order_id"],
            "erg_buy": create(api, buyer, "buy", pair="RTC/ERG")["order_id"],
            "matched": matched["order_id"], "secret": matched["htlc_secret"], "missing": MISSING_ID}


@pytest.fixture
def unchanged(bridge, dev_node, orders):
    """The whole watched state is identical after the test (orders, events, signatures,
    outbox, trades; node jobs, balances, pending pool)."""
    before = snapshot(bridge, dev_node)
    assert before["jobs"] == {"claimed": 2}
    yield
    assert snapshot(bridge, dev_node) == before


@pytest.fixture
def unchanged_but_burned(bridge, dev_node, orders):
    """As ``unchanged``, except that signatures which verified are burned even though the
    request was refused afterwards (single use: a refused request is never replayable)."""
    before = snapshot(bridge, dev_node)
    used_before = len(before["tables"].pop("used_signatures"))
    yield
    after = snapshot(bridge, dev_node)
    used_after = len(after["tables"].pop("used_signatures"))
    assert after == before
    assert used_after > used_before


BODY_SHAPES = {
    "empty": (b"", 400, "JSON body required"),
    "whitespace": (b" \n\t ", 400, "JSON body required"),
    "not_json": (b"wallet=RTCabc", 400, "JSON body required"),
    "truncated": (b'{"wallet": ', 400, "JSON body required"),
    "invalid_utf8": (b'{"wallet": "\xff\xfe"}', 400, "JSON body required"),
    "deep_nesting": (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "JSON body required"),
    "json_list": (b'[{"wallet": "RTC"}]', 400, "JSON object required"),
    "json_string": (b'"wallet"', 400, "JSON object required"),
    "json_number": (b"42", 400, "JSON object required"),
    # null and {} are "no body" to the reference (its `if not data`), so here too
    "json_null": (b"null", 400, "JSON body required"),
    "json_empty_object": (b"{}", 400, "JSON body required"),
    "json_empty_object_spaced": (b" { } ", 400, "JSON body required"),
    "json_empty_list": (b"[]", 400, "JSON object required"),
    "too_large": (b'{"wallet": "' + b"a" * LIMIT + b'"}', 413, TOO_LARGE),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("data, status, error", list(BODY_SHAPES.values()), ids=list(BODY_SHAPES))
def test_body_shape_refused(http_client, orders, unchanged, endpoint, data, status, error):
    response = post_raw(http_client, endpoint.format(id=orders["sell"]), data)
    assert (response.status_code, response.get_json()) == (status, {"error": error})


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_body_and_no_content_type(http_client, orders, unchanged, endpoint):
    response = http_client.post(endpoint.format(id=orders["sell"]))
    assert (response.status_code, response.get_json()) == (400, {"error": "JSON body required"})


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_body_exactly_at_the_limit_is_read(http_client, orders, unchanged, endpoint):
    prefix, suffix = b'{"pad": "', b'"}'
    data = prefix + b"a" * (LIMIT - len(prefix) - len(suffix)) + suffix
    assert len(data) == LIMIT
    response = post_raw(http_client, endpoint.format(id=orders["sell"]), data)
    assert response.status_code == 400
    assert response.get_json() == {"error": "unknown field: pad", "field": "pad"}


def test_chunked_body_over_the_limit_is_refused(live_bridge, orders, unchanged, seller):
    # The first 64 KiB are a complete, valid (unsigned) create; the bytes after the limit
    # are garbage the bridge must never act on without reading them.
    head = json.dumps({"side": "buy", "pair": "RTC/USDC", "wallet": seller.address, "amount_rtc": "1",
                       "price_per_rtc": "0.05"}).encode()
    head += b" " * (LIMIT - len(head))

    def chunks():
        yield head
        yield b"garbage, not JSON" * 100

    response = requests.post(live_bridge + "/api/orders", data=chunks(), timeout=30,
                             headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (413, {"error": TOO_LARGE})


# (order kind, overrides of the unsigned taker body, status, error, field or None)
MATCH_CASES = {
    "wallet_missing": ("sell", {"wallet": DROP}, 400, "wallet required", "wallet"),
    "wallet_number": ("sell", {"wallet": 7}, 400, "wallet must be a string", "wallet"),
    "unknown_field": ("sell", {"amount_rtc": "1"}, 400, "unknown field: amount_rtc", "amount_rtc"),
    "eth_malformed_taker_buys": ("sell", {"eth_address": "0xbad"}, 400, ETH_SHAPE, "eth_address"),
    "eth_missing_taker_sells": ("buy", {"eth_address": DROP}, 400, TAKER_ADDRESS_REQUIRED, "eth_address"),
    "eth_empty_taker_sells": ("buy", {"eth_address": ""}, 400, TAKER_ADDRESS_REQUIRED, "eth_address"),
    "eth_malformed_taker_sells": ("buy", {"eth_address": "0x" + "1" * 39}, 400, ETH_SHAPE, "eth_address"),
    "erg_needs_base58": ("erg_buy", {}, 400, "eth_address must be a base58 Ergo address for RTC/ERG",
                         "eth_address"),
    "missing_order_bad_field": ("missing", {"wallet": DROP}, 400, "wallet required", "wallet"),
    "bad_field_before_auth": ("buy", {"eth_address": DROP, "wallet": "nobody"}, 400, TAKER_ADDRESS_REQUIRED,
                              "eth_address"),
    "unsigned": ("sell", {}, 401, "wallet_auth_required", None),
    "unsigned_missing_order": ("missing", {}, 401, "wallet_auth_required", None),
    "not_native_wallet": ("sell", {"wallet": "bob"}, 401, "wallet_must_be_native_rtc_address", None),
    "empty_wallet_auth": ("sell", {"wallet_auth": {}}, 401, "wallet_auth_public_key_signature_timestamp_required",
                          None),
}


@pytest.mark.parametrize("kind, overrides, status, error, field", list(MATCH_CASES.values()), ids=list(MATCH_CASES))
def test_match_refused(http_client, orders, unchanged, seller, buyer, kind, overrides, status, error, field):
    taker = buyer if kind in ("sell", "missing") else seller
    body = {"wallet": taker.address, "eth_address": SELLER_ETH if kind == "buy" else BUYER_ETH}
    response = post_raw(http_client, f"/api/orders/{orders[kind]}/match", encode(body, overrides))
    expected = {"error": error} | ({"field": field} if field else {})
    assert (response.status_code, response.get_json()) == (status, expected)


def _match_body(wallet: Wallet, order_id: str, eth_address: str, *, signed_id: str | None = None,
                signed_address: str | None = None, as_sent: str | None = None) -> dict:
    bound = {"eth_address": eth_address if signed_address is None else signed_address}
    auth = wallet.auth("match_order", signed_id or order_id, bound, wallet=as_sent)
    return {"wallet": as_sent or wallet.address, "eth_address": eth_address, "wallet_auth": auth}


def test_match_signed_refusals(http_client, orders, unchanged_but_burned, seller, buyer):
    sell, matched = orders["sell"], orders["matched"]
    cases = [
        (sell, _match_body(buyer, sell, BUYER_ETH, signed_id=orders["buy"]), 401,
         {"error": "wallet_auth_invalid_signature"}),
        (sell, _match_body(buyer, sell, BUYER_ETH, signed_address=SELLER_ETH), 401,
         {"error": "wallet_auth_invalid_signature"}),
        (MISSING_ID, _match_body(buyer, MISSING_ID, BUYER_ETH), 404, {"error": "Order not found"}),
        (sell, _match_body(seller, sell, SELLER_ETH), 400, {"error": "Cannot match your own order"}),
        (sell, _match_body(seller, sell, SELLER_ETH, as_sent="RTC" + seller.address[3:].upper()), 400,
         {"error": "Cannot match your own order"}),
        (matched, _match_body(Wallet.generate(), matched, BUYER_ETH), 409,
         {"error": "Order is not open (status: matched)"}),
    ]
    for order_id, body, status, expected in cases:
        response = http_client.post(f"/api/orders/{order_id}/match", json=body)
        assert (response.status_code, response.get_json()) == (status, expected), body


WRONG_SECRET = "ab" * 32
STRANGER = Wallet.generate().address
# (overrides of a confirm body that carries the right secret, status, error, field)
CONFIRM_CASES = {
    "quote_tx_missing": ({"quote_tx": DROP}, 400, "quote_tx required", "quote_tx"),
    "quote_tx_empty": ({"quote_tx": ""}, 400, "quote_tx required", "quote_tx"),
    "quote_tx_number": ({"quote_tx": 5}, 400, "quote_tx must be a string", "quote_tx"),
    "quote_tx_bad_chars": ({"quote_tx": "tx id!"}, 400, "quote_tx must be 1-200 letters, digits or ':_-.'",
                           "quote_tx"),
    "quote_tx_too_long": ({"quote_tx": "a" * 201}, 400, "quote_tx is longer than 200 characters", "quote_tx"),
    "secret_missing": ({"secret": DROP}, 400, "HTLC secret (preimage) required to confirm settlement", "secret"),
    "secret_number": ({"secret": 123}, 400, "secret must be a string", "secret"),
    "secret_short": ({"secret": "abc"}, 400, "Invalid HTLC secret format", "secret"),
    "secret_63_hex": ({"secret": "a" * 63}, 400, "Invalid HTLC secret format", "secret"),
    "secret_not_hex": ({"secret": "zz" * 32}, 400, "Invalid HTLC secret format", "secret"),
    "secret_wrong": ({"secret": WRONG_SECRET}, 400, "Invalid HTLC secret", "secret"),
    "secret_wrong_with_buyer": ({"secret": WRONG_SECRET, "wallet": "buyer"}, 400, "Invalid HTLC secret", "secret"),
    "wallet_stranger": ({"wallet": STRANGER}, 403, "Only the RTC seller or buyer can confirm settlement", None),
    "wallet_not_native": ({"wallet": "alice"}, 403, "Only the RTC seller or buyer can confirm settlement", None),
    "wallet_number": ({"wallet": 5}, 400, "wallet must be a string", "wallet"),
    # wallet_auth is a confirm field since the buyer-held reveal (docs/protocol.md §12.5); htlc_hash is not.
    "htlc_hash_not_a_confirm_field": ({"htlc_hash": "00" * 32}, 400, "unknown field: htlc_hash", "htlc_hash"),
    "unknown_field": ({"amount_rtc": "1"}, 400, "unknown field: amount_rtc", "amount_rtc"),
}


@pytest.mark.parametrize("overrides, status, error, field", list(CONFIRM_CASES.values()), ids=list(CONFIRM_CASES))
def test_confirm_refused_leaves_escrow_held(http_client, api, dev_node, orders, unchanged, buyer,
                                            overrides, status, error, field):
    overrides = {k: buyer.address if v == "buyer" else v for k, v in overrides.items()}
    body = {"secret": orders["secret"], "quote_tx": "0xquote"}
    response = post_raw(http_client, f"/api/orders/{orders['matched']}/confirm", encode(body, overrides))
    expected = {"error": error} | ({"field": field} if field else {})
    assert (response.status_code, response.get_json()) == (status, expected)
    order = api.order(orders["matched"])[1]["order"]
    assert order["status"] == "matched"
    assert dev_node.job(order["escrow_job_id"])["status"] == "claimed"


def test_confirm_after_wrong_secret_still_settles(http_client, api, orders):
    path = f"/api/orders/{orders['matched']}/confirm"
    wrong = http_client.post(path, json={"secret": WRONG_SECRET, "quote_tx": "0xquote"})
    assert wrong.status_code == 400
    right = http_client.post(path, json={"secret": orders["secret"], "quote_tx": "0xquote"})
    assert right.status_code == 200 and right.get_json()["status"] == "payout_pending"


def test_confirm_state_and_existence_checks(http_client, orders, unchanged):
    body = {"secret": orders["secret"], "quote_tx": "0xquote"}
    response = http_client.post(f"/api/orders/{MISSING_ID}/confirm", json=body)
    assert (response.status_code, response.get_json()) == (404, {"error": "Order not found"})
    response = http_client.post(f"/api/orders/{orders['sell']}/confirm", json=body)
    assert (response.status_code, response.get_json()) == (409, {"error": "Order must be matched to confirm "
                                                                          "(current: open)"})


def _cancel_body(wallet: Wallet, order_id: str) -> dict:
    return {"wallet": wallet.address, "wallet_auth": wallet.auth("cancel_order", order_id, {})}


def test_cancel_refusals(http_client, orders, unchanged_but_burned, seller, buyer):
    sell = orders["sell"]
    cases = [
        (sell, {"wallet_auth": _cancel_body(seller, sell)["wallet_auth"]}, 400,
         {"error": "wallet required", "field": "wallet"}),
        (sell, {**_cancel_body(seller, sell), "reason": "x"}, 400, {"error": "unknown field: reason",
                                                                    "field": "reason"}),
        (MISSING_ID, {"wallet": 1}, 400, {"error": "wallet must be a string", "field": "wallet"}),
        (sell, {"wallet": seller.address}, 401, {"error": "wallet_auth_required"}),
        (sell, {"wallet": "alice", "wallet_auth": {}}, 401, {"error": "wallet_must_be_native_rtc_address"}),
        (sell, _cancel_body(seller, orders["buy"]), 401, {"error": "wallet_auth_invalid_signature"}),
        (MISSING_ID, {"wallet": seller.address}, 401, {"error": "wallet_auth_required"}),
        (sell, _cancel_body(buyer, sell), 403, {"error": "Only the order creator can cancel"}),
        (orders["buy"], _cancel_body(seller, orders["buy"]), 403, {"error": "Only the order creator can cancel"}),
        (MISSING_ID, _cancel_body(seller, MISSING_ID), 404, {"error": "Order not found"}),
        (orders["matched"], _cancel_body(seller, orders["matched"]), 409,
         {"error": "Can only cancel open orders (current: matched)"}),
    ]
    for order_id, body, status, expected in cases:
        response = http_client.post(f"/api/orders/{order_id}/cancel", json=body)
        assert (response.status_code, response.get_json()) == (status, expected), body


def test_get_missing_order_is_404(http_client):
    response = http_client.get(f"/api/orders/{MISSING_ID}")
    assert (response.status_code, response.get_json()) == (404, {"error": "Order not found"})
