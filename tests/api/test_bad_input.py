"""POST /api/orders refuses every malformed body with a 4xx naming the field, before the
signature is checked, and writes nothing: no order, event, used signature or outbox row,
and no escrow job or balance change on the node."""

from __future__ import annotations

import time

import pytest
from api_checks import DROP, FUNDED_MICRO_RTC, Raw, encode, erg_address, post_raw, snapshot
from bridge_support import SELLER_ETH

from otc_bridge.client import Wallet

MAX_TTL = 30 * 86400 - 48 * 3600 - 24 * 3600  # node's 30-day job cap minus settle window and margin
PLAIN = "amount_rtc must be a finite decimal number (plain decimal string like '12.5')"
NOT_DECIMAL = "amount_rtc must be a finite decimal number"
PRICE_PLAIN = "price_per_rtc must be a finite decimal number (plain decimal string like '12.5')"
OVER_PRECISE = "amount_rtc has more than 6 decimal places (rejected, never rounded)"
MIN_ORDER, MAX_ORDER = "Minimum order: 0.1 RTC", "Maximum order: 10000 RTC (the escrow node's reward cap)"
TTL_RANGE = f"ttl_seconds must be between 3600 and {MAX_TTL}"
ETH_SHAPE = "eth_address must be 0x followed by 40 hex characters for {}"
SELLER_ADDRESS_REQUIRED = "eth_address required: the seller's quote-chain address that the buyer's HTLC pays"
PAIRS_MSG = "Unsupported pair. Supported: ['RTC/ETH', 'RTC/USDC', 'RTC/ERG']"


def sell_body(wallet: str) -> dict:
    """A create body valid in every field but unsigned (so it alone would get 401)."""
    return {"side": "sell", "pair": "RTC/USDC", "wallet": wallet, "amount_rtc": "10", "price_per_rtc": "0.05",
            "eth_address": SELLER_ETH, "ttl_seconds": 86400}


# (overrides of sell_body, error, field). Every case is refused with 400 before any signature check.
FIELD_CASES = {
    # amount_rtc: wrong JSON types, malformed strings, out of range, over-precise
    "amount_bool": ({"amount_rtc": True}, NOT_DECIMAL, "amount_rtc"),
    "amount_list": ({"amount_rtc": [10]}, NOT_DECIMAL, "amount_rtc"),
    "amount_object": ({"amount_rtc": {"value": "10", "unit": "RTC"}}, NOT_DECIMAL, "amount_rtc"),
    "amount_null": ({"amount_rtc": None}, NOT_DECIMAL, "amount_rtc"),
    "amount_missing": ({"amount_rtc": DROP}, NOT_DECIMAL, "amount_rtc"),
    "amount_abc": ({"amount_rtc": "abc"}, PLAIN, "amount_rtc"),
    "amount_exponent_string": ({"amount_rtc": "1e5"}, PLAIN, "amount_rtc"),
    "amount_empty_string": ({"amount_rtc": ""}, PLAIN, "amount_rtc"),
    "amount_nan_string": ({"amount_rtc": "NaN"}, PLAIN, "amount_rtc"),
    "amount_infinity_string": ({"amount_rtc": "Infinity"}, PLAIN, "amount_rtc"),
    "amount_negative_string": ({"amount_rtc": "-5"}, PLAIN, "amount_rtc"),
    "amount_negative": ({"amount_rtc": -5}, "amount_rtc must not be negative", "amount_rtc"),
    "amount_negative_decimal": ({"amount_rtc": Raw("-0.5")}, "amount_rtc must not be negative", "amount_rtc"),
    "amount_7_decimals_string": ({"amount_rtc": "1.0000001"}, OVER_PRECISE, "amount_rtc"),
    "amount_7_decimals_number": ({"amount_rtc": Raw("1.0000001")}, OVER_PRECISE, "amount_rtc"),
    "amount_tiny_exponent": ({"amount_rtc": Raw("1e-7")}, OVER_PRECISE, "amount_rtc"),
    "amount_over_max": ({"amount_rtc": "10000.000001"}, MAX_ORDER, "amount_rtc"),
    "amount_over_max_int": ({"amount_rtc": 10001}, MAX_ORDER, "amount_rtc"),
    "amount_huge_number": ({"amount_rtc": Raw("1e300")}, MAX_ORDER, "amount_rtc"),
    "amount_under_min": ({"amount_rtc": "0.099999"}, MIN_ORDER, "amount_rtc"),
    "amount_zero": ({"amount_rtc": 0}, MIN_ORDER, "amount_rtc"),
    # amount_micro_rtc: integers only, and it must agree with amount_rtc
    "micro_disagrees": ({"amount_micro_rtc": 10_000_001}, "amount_rtc and amount_micro_rtc disagree",
                        "amount_micro_rtc"),
    "micro_float": ({"amount_rtc": DROP, "amount_micro_rtc": Raw("10000000.0")},
                    "amount_micro_rtc must be a positive integer", "amount_micro_rtc"),
    "micro_string": ({"amount_rtc": DROP, "amount_micro_rtc": "10000000"},
                     "amount_micro_rtc must be a positive integer", "amount_micro_rtc"),
    "micro_bool": ({"amount_rtc": DROP, "amount_micro_rtc": True},
                   "amount_micro_rtc must be a positive integer", "amount_micro_rtc"),
    "micro_negative": ({"amount_rtc": DROP, "amount_micro_rtc": -10_000_000},
                       "amount_micro_rtc must be a positive integer", "amount_micro_rtc"),
    # price
    "price_10_decimals": ({"price_per_rtc": "0.0500000001"},
                          "price_per_rtc has more than 9 decimal places (rejected, never rounded)", "price_per_rtc"),
    "price_zero": ({"price_per_rtc": 0}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_zero_string": ({"price_per_rtc": "0.000000000"}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_over_1000": ({"price_per_rtc": "1000.000000001"}, "price_per_rtc too high (max 1000)", "price_per_rtc"),
    # a negative price is the reference's "must be positive", whatever form it takes
    "price_negative": ({"price_per_rtc": -1}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_negative_decimal": ({"price_per_rtc": Raw("-0.05")}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_negative_string": ({"price_per_rtc": "-0.05"}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_negative_zero_string": ({"price_per_rtc": "-0"}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_negative_exponent": ({"price_per_rtc": Raw("-5e-2")}, "price_per_rtc must be positive", "price_per_rtc"),
    "price_negative_string_exponent": ({"price_per_rtc": "-5e-2"}, PRICE_PLAIN, "price_per_rtc"),
    "price_string_exponent": ({"price_per_rtc": "5e-2"}, PRICE_PLAIN, "price_per_rtc"),
    "price_bool": ({"price_per_rtc": False}, "price_per_rtc must be a finite decimal number", "price_per_rtc"),
    "price_missing": ({"price_per_rtc": DROP}, "price_per_rtc must be a finite decimal number", "price_per_rtc"),
    "price_nano_disagrees": ({"price_per_rtc_nano_quote": 50_000_001},
                             "price_per_rtc and price_per_rtc_nano_quote disagree", "price_per_rtc_nano_quote"),
    "price_nano_float": ({"price_per_rtc": DROP, "price_per_rtc_nano_quote": Raw("5e7")},
                         "price_per_rtc_nano_quote must be a positive integer", "price_per_rtc_nano_quote"),
    "price_nano_zero": ({"price_per_rtc": DROP, "price_per_rtc_nano_quote": 0},
                        "price_per_rtc_nano_quote must be a positive integer", "price_per_rtc_nano_quote"),
    # ttl_seconds: a JSON integer in [3600, max]
    "ttl_string": ({"ttl_seconds": "3600"}, "ttl_seconds must be an integer", "ttl_seconds"),
    "ttl_float": ({"ttl_seconds": Raw("3600.5")}, "ttl_seconds must be an integer", "ttl_seconds"),
    "ttl_float_whole": ({"ttl_seconds": Raw("3600.0")}, "ttl_seconds must be an integer", "ttl_seconds"),
    "ttl_bool": ({"ttl_seconds": True}, "ttl_seconds must be an integer", "ttl_seconds"),
    "ttl_below_min": ({"ttl_seconds": 3599}, TTL_RANGE, "ttl_seconds"),
    "ttl_negative": ({"ttl_seconds": -86400}, TTL_RANGE, "ttl_seconds"),
    "ttl_above_max": ({"ttl_seconds": MAX_TTL + 1}, TTL_RANGE, "ttl_seconds"),
    # side, pair, wallet
    "side_invalid": ({"side": "short"}, "side must be 'buy' or 'sell'", "side"),
    "side_missing": ({"side": DROP}, "side must be 'buy' or 'sell'", "side"),
    "side_list": ({"side": ["sell"]}, "side must be 'buy' or 'sell'", "side"),
    "pair_btc": ({"pair": "RTC/BTC"}, PAIRS_MSG, "pair"),
    "pair_number": ({"pair": 1}, PAIRS_MSG, "pair"),
    "pair_empty": ({"pair": ""}, PAIRS_MSG, "pair"),
    "pair_long_s": ({"pair": "rtc/u\u017fdc"}, PAIRS_MSG, "pair"),  # "ſ".upper() is "S": ASCII only
    "wallet_missing": ({"wallet": DROP}, "wallet required (RTC wallet ID)", "wallet"),
    "wallet_blank": ({"wallet": "   "}, "wallet required (RTC wallet ID)", "wallet"),
    "wallet_number": ({"wallet": 12345}, "wallet must be a string", "wallet"),
    "wallet_too_long": ({"wallet": "RTC" + "a" * 300}, "wallet is longer than 200 characters", "wallet"),
    # shorter than 3 characters is "no wallet" in the reference (400), not a bad signature (401)
    "wallet_two_chars": ({"wallet": "ab"}, "wallet required (RTC wallet ID)", "wallet"),
    "wallet_one_char_padded": ({"wallet": " a "}, "wallet required (RTC wallet ID)", "wallet"),
    # eth_address: required for a sell, shaped for the pair whenever given
    "eth_missing_for_sell": ({"eth_address": DROP}, SELLER_ADDRESS_REQUIRED, "eth_address"),
    "eth_empty_for_sell": ({"eth_address": ""}, SELLER_ADDRESS_REQUIRED, "eth_address"),
    "eth_short": ({"eth_address": "0x1234"}, ETH_SHAPE.format("RTC/USDC"), "eth_address"),
    "eth_not_hex": ({"eth_address": "0x" + "g" * 40}, ETH_SHAPE.format("RTC/USDC"), "eth_address"),
    "eth_no_prefix": ({"pair": "RTC/ETH", "eth_address": "11" * 21}, ETH_SHAPE.format("RTC/ETH"), "eth_address"),
    "eth_number": ({"eth_address": 12}, "eth_address must be a string", "eth_address"),
    "eth_malformed_on_buy": ({"side": "buy", "eth_address": "0xnope"}, ETH_SHAPE.format("RTC/USDC"),
                             "eth_address"),
    "erg_given_eth_address": ({"pair": "RTC/ERG"}, "eth_address must be a base58 Ergo address for RTC/ERG",
                              "eth_address"),
    "erg_not_base58": ({"pair": "RTC/ERG", "eth_address": "9" + "0OIl" * 12},
                       "eth_address must be a base58 Ergo address for RTC/ERG", "eth_address"),
    "erg_too_short": ({"pair": "RTC/ERG", "eth_address": "9abc"},
                      "eth_address must be a base58 Ergo address for RTC/ERG", "eth_address"),
    # unknown fields, including money-looking ones
    "unknown_field": ({"memo": "hi"}, "unknown field: memo", "memo"),
    "unknown_money_field": ({"amount_btc": "1"}, "unknown field: amount_btc", "amount_btc"),
    "total_quote_not_accepted": ({"total_quote": "0.5"}, "unknown field: total_quote", "total_quote"),
    "unknown_nano_field": ({"total_quote_nano": 500_000_000}, "unknown field: total_quote_nano",
                           "total_quote_nano"),
}


@pytest.fixture
def untouched(bridge, dev_node, seller):
    """Assert after the test that nothing was written and no escrow moved."""
    before = snapshot(bridge, dev_node)
    assert before["jobs"] == {}
    yield
    after = snapshot(bridge, dev_node)
    assert after == before
    assert after["jobs"] == {}
    assert dev_node.balance(seller.address) == FUNDED_MICRO_RTC


@pytest.mark.parametrize("overrides, error, field", list(FIELD_CASES.values()), ids=list(FIELD_CASES))
def test_create_field_refused(http_client, seller, untouched, overrides, error, field):
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), overrides))
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    if error.startswith("ttl_seconds must be between"):
        assert body["error"].startswith(error) and "30-day" in body["error"]
    else:
        assert body["error"] == error
    assert body["field"] == field


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_create_non_finite_literal_refused(http_client, seller, untouched, literal):
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), {"amount_rtc": Raw(literal)}))
    assert response.status_code == 400
    assert "error" in response.get_json()


@pytest.mark.parametrize("data", [b'{"amount_rtc": NaN}', b'{"amount_rtc": Infinity}', b'{"ttl_seconds": -Infinity}'])
def test_create_bare_non_finite_body_refused(http_client, untouched, data):
    response = post_raw(http_client, "/api/orders", data)
    assert response.status_code == 400
    assert "error" in response.get_json()


@pytest.mark.parametrize("overrides, field", [
    ({"amount_rtc": DROP, "amount_micro_rtc": 10**10 + 1}, "amount_micro_rtc"),
    ({"amount_rtc": DROP, "amount_micro_rtc": 99_999}, "amount_micro_rtc"),
    ({"price_per_rtc": DROP, "price_per_rtc_nano_quote": 10**12 + 1}, "price_per_rtc_nano_quote"),
])
def test_create_exact_integer_out_of_range_names_that_field(http_client, seller, untouched, overrides, field):
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), overrides))
    assert response.status_code == 400
    assert response.get_json()["field"] == field


def test_create_nan_literal_names_the_field(http_client, seller, untouched):
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), {"amount_rtc": Raw("NaN")}))
    assert response.status_code == 400
    assert response.get_json().get("field") == "amount_rtc"


@pytest.mark.parametrize("field", ["amount_rtc", "price_per_rtc"])
def test_create_huge_exponent_refused(http_client, seller, untouched, field):
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), {field: Raw("1e1000000")}))
    assert response.status_code == 400
    assert response.get_json()["field"] == field


def test_valid_unsigned_body_reaches_the_signature_check(http_client, seller, untouched):
    # The control for the table above: with every field valid, only the signature is missing.
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address)))
    assert (response.status_code, response.get_json()) == (401, {"error": "wallet_auth_required"})


def test_field_error_wins_over_missing_signature(http_client, seller, untouched):
    body = encode(sell_body(seller.address), {"amount_rtc": "-1", "wallet": "not-a-wallet"})
    response = post_raw(http_client, "/api/orders", body)
    assert response.status_code == 400 and response.get_json()["field"] == "amount_rtc"


# (wallet as sent, wallet_auth) -> 401 code; the body is otherwise valid.
AUTH_CASES = {
    "no_wallet_auth": ("self", DROP, "wallet_auth_required"),
    "wallet_auth_string": ("self", "signed", "wallet_auth_required"),
    "wallet_auth_list": ("self", ["a", "b"], "wallet_auth_required"),
    "wallet_auth_empty": ("self", {}, "wallet_auth_public_key_signature_timestamp_required"),
    "not_native_name": ("alice", DROP, "wallet_must_be_native_rtc_address"),
    "not_native_eth": (SELLER_ETH, DROP, "wallet_must_be_native_rtc_address"),
    "not_native_short": ("RTC" + "a" * 39, DROP, "wallet_must_be_native_rtc_address"),
    "not_native_non_hex": ("RTC" + "z" * 40, DROP, "wallet_must_be_native_rtc_address"),
}


@pytest.mark.parametrize("wallet, wallet_auth, code", list(AUTH_CASES.values()), ids=list(AUTH_CASES))
def test_create_auth_refused(http_client, seller, untouched, wallet, wallet_auth, code):
    overrides = {"wallet": seller.address if wallet == "self" else wallet, "wallet_auth": wallet_auth}
    response = post_raw(http_client, "/api/orders", encode(sell_body(seller.address), overrides))
    assert (response.status_code, response.get_json()) == (401, {"error": code})


def _signed(wallet: Wallet, **changes) -> dict:
    """A correctly signed sell body for 10 RTC at 0.05; ``changes`` edit the signed fields or the auth."""
    bound = {"side": "sell", "pair": "RTC/USDC", "amount_micro_rtc": 10_000_000,
             "price_per_rtc_nano_quote": 50_000_000, "ttl_seconds": 86400, "eth_address": SELLER_ETH}
    auth = wallet.auth("create_order", "create_order", bound, timestamp=changes.pop("timestamp", None))
    auth.update(changes.pop("auth", {}))
    body = {"wallet": wallet.address, **bound, "wallet_auth": auth}
    body.update(changes)
    return body


SIGNED_CASES = {
    "amount_changed": ({"amount_micro_rtc": 20_000_000}, "wallet_auth_invalid_signature"),
    "price_changed": ({"price_per_rtc_nano_quote": 40_000_000}, "wallet_auth_invalid_signature"),
    "ttl_changed": ({"ttl_seconds": 7200}, "wallet_auth_invalid_signature"),
    "address_changed": ({"eth_address": "0x" + "33" * 20}, "wallet_auth_invalid_signature"),
    "side_changed": ({"side": "buy"}, "wallet_auth_invalid_signature"),
    "pair_changed": ({"pair": "RTC/ETH"}, "wallet_auth_invalid_signature"),
    "timestamp_old": ({"timestamp": int(time.time()) - 301}, "wallet_auth_timestamp_expired"),
    "timestamp_string": ({"auth": {"timestamp": "1700000000"}}, "wallet_auth_invalid_timestamp"),
    "timestamp_bool": ({"auth": {"timestamp": True}}, "wallet_auth_invalid_timestamp"),
    "signature_not_hex": ({"auth": {"signature": "zz" * 64}}, "wallet_auth_invalid_encoding"),
    "public_key_short": ({"auth": {"public_key": "ab" * 31}}, "wallet_auth_invalid_encoding"),
    "other_key": ({"auth": {"public_key": Wallet.generate().public_key_hex}},
                  "wallet_auth_public_key_does_not_match_wallet"),
}


@pytest.mark.parametrize("changes, code", list(SIGNED_CASES.values()), ids=list(SIGNED_CASES))
def test_create_signed_but_tampered_refused(http_client, seller, untouched, changes, code):
    response = http_client.post("/api/orders", json=_signed(seller, **changes))
    assert (response.status_code, response.get_json()) == (401, {"error": code})


def test_create_replayed_signature_locks_one_escrow(http_client, bridge, dev_node, seller):
    body = _signed(seller)
    first = http_client.post("/api/orders", json=body)
    assert first.status_code == 201, first.get_json()
    before = snapshot(bridge, dev_node)
    again = http_client.post("/api/orders", json=body)
    assert (again.status_code, again.get_json()) == (401, {"error": "wallet_auth_replayed"})
    assert snapshot(bridge, dev_node) == before
    assert before["jobs"] == {"claimed": 1}
    assert dev_node.balance(seller.address) == FUNDED_MICRO_RTC - 10_500_000


def test_valid_erg_address_is_accepted(api, seller):
    status, body = api.create_order(seller, side="sell", pair="RTC/ERG", amount_micro_rtc=1_000_000,
                                    price_nano_quote=2_000_000_000, eth_address=erg_address())
    assert status == 201, body
    assert body["pair"] == "RTC/ERG" and body["quote_currency"] == "ERG"
