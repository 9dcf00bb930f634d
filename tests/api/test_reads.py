"""Reads: the open-order list, order detail with settlement instructions, order book,
stats and trades. Exact integers beside display numbers, no internal field anywhere, and
an unknown pair is an error on every read (never "all pairs")."""

from __future__ import annotations

import pytest
from api_checks import assert_money_fields, assert_public, complete_sell, create, quote_address
from bridge_support import BUYER_ETH, SELLER_ETH

HOUR, DAY = 3600, 86400
PAIRS_MSG = "Unsupported pair. Supported: ['RTC/ETH', 'RTC/USDC', 'RTC/ERG']"
READS = ["/api/orders", "/api/trades", "/api/orderbook", "/api/stats"]


@pytest.fixture
def book(api, clock, seller, buyer):
    """A USDC book made one second apart (so "oldest first" is observable), plus orders that
    must never be listed: another pair, a matched one, a cancelled one, an expired one.
    Returns the ids in the order the list must show them, and the others by name."""
    def at(offset, side, price, **kw):
        clock.now = start + offset
        return create(api, seller if side == "sell" else buyer, side, price=price, **kw)["order_id"]

    start = clock.now
    buy_04 = at(0, "buy", 40_000_000)
    buy_05a = at(1, "buy", 50_000_000, amount=1_000_000)
    buy_05b = at(2, "buy", 50_000_000, amount=2_000_000)
    sell_07 = at(3, "sell", 70_000_000)
    sell_06a = at(4, "sell", 60_000_000, amount=1_000_000)
    sell_06b = at(5, "sell", 60_000_000, amount=3_000_000)
    eth = at(6, "sell", 300_000, pair="RTC/ETH")
    short = at(7, "sell", 55_000_000, ttl_seconds=HOUR)
    matched = at(8, "sell", 58_000_000)
    assert api.match(buyer, matched, BUYER_ETH)[0] == 200
    cancelled = at(9, "buy", 45_000_000)
    assert api.cancel(buyer, cancelled)[0] == 200
    clock.now = start + HOUR + 60  # `short` is past its expiry but still `open` in the table
    return {"listed": [buy_05a, buy_05b, buy_04, sell_06a, sell_06b, sell_07], "eth": eth, "short": short,
            "matched": matched, "cancelled": cancelled}


def _get(client, path, **params):
    response = client.get(path, query_string=params)
    body = response.get_json()
    assert response.status_code == 200, body
    assert_public(body)
    return body


def test_list_shows_open_unexpired_orders_sorted(http_client, book):
    body = _get(http_client, "/api/orders", pair="RTC/USDC")
    assert [o["order_id"] for o in body["orders"]] == book["listed"]
    assert (body["total"], body["limit"], body["offset"]) == (6, 50, 0)
    for order in body["orders"]:
        assert order["status"] == "open" and order["pair"] == "RTC/USDC"
        assert "htlc_secret" not in order
        assert_money_fields(order)
    everything = _get(http_client, "/api/orders")
    assert {o["order_id"] for o in everything["orders"]} == set(book["listed"]) | {book["eth"]}
    assert everything["total"] == 7


@pytest.mark.parametrize("params, expected", [
    ({"pair": "RTC/USDC", "side": "buy"}, slice(0, 3)),
    ({"pair": "rtc/usdc", "side": "SELL"}, slice(3, 6)),
    ({"pair": "RTC/USDC", "limit": "2", "offset": "1"}, slice(1, 3)),
    ({"pair": "RTC/USDC", "offset": "5"}, slice(5, 6)),
    ({"pair": "RTC/USDC", "offset": "6"}, slice(6, 6)),
])
def test_list_filters_and_pages(http_client, book, params, expected):
    body = _get(http_client, "/api/orders", **params)
    assert [o["order_id"] for o in body["orders"]] == book["listed"][expected]
    side = params.get("side", "").lower()
    assert body["total"] == (3 if side else 6)


def test_list_limit_is_capped_at_200(http_client):
    assert _get(http_client, "/api/orders", limit="500")["limit"] == 200
    assert _get(http_client, "/api/orders", limit="200")["limit"] == 200


LIST_ERRORS = {
    "limit_text": ({"limit": "abc"}, "limit_must_be_integer", "limit"),
    "limit_decimal": ({"limit": "1.5"}, "limit_must_be_integer", "limit"),
    "limit_zero": ({"limit": "0"}, "limit_must_be_positive", "limit"),
    "limit_negative": ({"limit": "-3"}, "limit_must_be_positive", "limit"),
    "offset_text": ({"offset": "x"}, "offset_must_be_integer", "offset"),
    "offset_decimal": ({"offset": "1.0"}, "offset_must_be_integer", "offset"),
    "offset_negative": ({"offset": "-1"}, "offset_must_be_non_negative", "offset"),
    "side_unknown": ({"side": "short"}, "side must be 'buy' or 'sell'", "side"),
    "pair_unknown": ({"pair": "RTC/BTC"}, PAIRS_MSG, "pair"),
}


@pytest.mark.parametrize("params, error, field", list(LIST_ERRORS.values()), ids=list(LIST_ERRORS))
def test_list_query_errors(http_client, params, error, field):
    response = http_client.get("/api/orders", query_string=params)
    assert (response.status_code, response.get_json()) == (400, {"error": error, "field": field})


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("pair", ["RTC/BTC", "BTC", " ", "RTC-USDC", "all"])
def test_unknown_pair_is_refused_on_every_read(http_client, path, pair):
    response = http_client.get(path, query_string={"pair": pair})
    error = "unsupported pair" if path == "/api/trades" else PAIRS_MSG  # /api/trades: the reference's words
    assert (response.status_code, response.get_json()) == (400, {"error": error, "field": "pair"})


@pytest.mark.parametrize("params, error, field", [
    ({"limit": "many"}, "limit_must_be_integer", "limit"),
    ({"limit": "0"}, "limit_must_be_positive", "limit"),
    ({"offset": "-1"}, "offset_must_be_non_negative", "offset"),
])
def test_trades_limit_errors(http_client, params, error, field):
    response = http_client.get("/api/trades", query_string=params)
    assert (response.status_code, response.get_json()) == (400, {"error": error, "field": field})


# pair -> (quote decimals, total_quote_base_units) for 1.000001 RTC at 0.050000001:
# exact total 0.050000051000001 quote, rounded up to the asset's smallest unit.
BASE_UNITS = {"RTC/USDC": (6, "50001"), "RTC/ETH": (18, "50000051000001000"), "RTC/ERG": (9, "50000052")}


@pytest.mark.parametrize("pair", list(BASE_UNITS))
def test_matched_sell_shows_settlement_instructions(api, http_client, clock, seller, buyer, pair):
    made = create(api, seller, "sell", pair=pair, amount=1_000_001, price=50_000_001)
    order_id = made["order_id"]
    assert "settlement_instructions" not in _get(http_client, f"/api/orders/{order_id}")
    clock.now += 10
    matched_at = clock.now
    taker_address = quote_address(pair, "buyer")
    status, match = api.match(buyer, order_id, taker_address)
    assert status == 200, match
    body = _get(http_client, f"/api/orders/{order_id}")
    order, steps = body["order"], body["settlement_instructions"]
    assert steps == match["settlement_instructions"]
    assert "htlc_secret" not in order and made["htlc_secret"] not in str(body)
    assert (order["matched_at"], order["settle_by"]) == (matched_at, matched_at + 48 * HOUR)
    assert steps["settle_by"] == matched_at + 48 * HOUR
    assert steps["htlc_timelock_min"] == matched_at + 12 * HOUR
    assert steps["htlc_timelock_max"] == steps["settle_by"] - 24 * HOUR
    decimals, base_units = BASE_UNITS[pair]
    assert (steps["quote_decimals"], steps["total_quote_base_units"]) == (decimals, base_units)
    assert steps["total_quote_nano"] == order["total_quote_nano"] == 50_000_052
    assert steps["currency"] == pair.split("/")[1] == order["quote_currency"]
    assert steps["htlc_hash"] == made["htlc_hash"] and steps["hash_algorithm"] == "sha256"
    assert (steps["pay_to_address"], steps["rtc_recipient"]) == (made["maker_eth_address"], buyer.address)
    assert order["taker_wallet"] == buyer.address and order["taker_eth_address"] == taker_address
    assert_money_fields(order)
    assert_money_fields(match)


def test_matched_buy_instructions_pay_the_taker(api, http_client, clock, seller, buyer):
    made = create(api, buyer, "buy", amount=3_000_000, price=60_000_000)
    status, match = api.match(seller, made["order_id"], SELLER_ETH)
    assert status == 200, match
    assert match["htlc_secret"] and match["order_version"] > made["order_version"]
    body = _get(http_client, f"/api/orders/{made['order_id']}")
    steps = body["settlement_instructions"]
    assert (steps["pay_to_address"], steps["rtc_recipient"]) == (SELLER_ETH, buyer.address)
    assert (steps["total_quote_base_units"], steps["total_quote_nano"]) == ("180000", 180_000_000)
    assert steps["htlc_timelock_min"] == body["order"]["matched_at"] + 12 * HOUR
    assert match["htlc_secret"] not in str(body) and "htlc_secret" not in body["order"]


def test_no_internal_fields_and_preimage_only_once_completed(api, http_client, bridge, dev_node, seller, buyer):
    made = create(api, seller, "sell", amount=2_000_000)
    order_id, secret = made["order_id"], made["htlc_secret"]
    assert_public(made)
    assert_money_fields(made)
    api.match(buyer, order_id, BUYER_ETH)
    reads = ["/api/orders", f"/api/orders/{order_id}", "/api/trades", "/api/orderbook", "/api/stats"]
    for path in reads:
        assert_public(_get(http_client, path), secret=secret)
    status, confirm = api.confirm(order_id, secret=secret, quote_tx="0xq")
    assert status == 200 and confirm["status"] == "payout_pending"
    assert_public(confirm, secret=secret)
    assert_money_fields(confirm)
    for path in reads:
        assert_public(_get(http_client, path), secret=secret)
    dev_node.confirm_pending()
    assert api.reconcile("test-admin-token-0123456789abcdef")[0] == 200
    detail = _get(http_client, f"/api/orders/{order_id}")
    assert detail["order"]["status"] == "completed" and detail["order"]["htlc_secret"] == secret
    assert_money_fields(detail["order"])
    for path in ("/api/trades", "/api/orderbook", "/api/stats"):
        assert secret not in str(_get(http_client, path))
    other = create(api, seller, "sell")
    status, cancelled = api.cancel(seller, other["order_id"])
    assert status == 200
    assert_public(cancelled, secret=other["htlc_secret"])
    assert_money_fields(cancelled)


def test_orderbook_aggregates_levels(api, http_client, bridge, dev_node, clock, book, seller, buyer):
    body = _get(http_client, "/api/orderbook")
    assert body["pair"] == "RTC/USDC"
    assert [(a["price_per_rtc_nano_quote"], a["total_micro_rtc"], a["order_count"]) for a in body["asks"]] == [
        (60_000_000, 4_000_000, 2), (70_000_000, 1_000_000, 1)]
    assert [(b["price_per_rtc_nano_quote"], b["total_micro_rtc"], b["order_count"]) for b in body["bids"]] == [
        (50_000_000, 3_000_000, 2), (40_000_000, 1_000_000, 1)]
    assert [(a["price"], a["total_rtc"]) for a in body["asks"]] == [(0.06, 4.0), (0.07, 1.0)]
    assert (body["spread_nano_quote"], body["spread"]) == (10_000_000, 0.01)
    assert (body["last_price"], body["last_price_nano_quote"], body["volume_24h_micro_rtc"]) == (None, None, 0)
    clock.now -= HOUR + 60  # back before `short` expired: its level is on the book then
    assert 55_000_000 in [a["price_per_rtc_nano_quote"] for a in _get(http_client, "/api/orderbook")["asks"]]
    complete_sell(api, bridge, dev_node, seller, buyer, amount=2_000_000, price=65_000_000)
    clock.now += HOUR + 60
    body = _get(http_client, "/api/orderbook", pair="RTC/USDC")
    assert (body["last_price"], body["last_price_nano_quote"]) == (0.065, 65_000_000)
    assert (body["volume_24h_rtc"], body["volume_24h_micro_rtc"], body["trades_24h"]) == (2.0, 2_000_000, 1)
    clock.now += DAY
    body = _get(http_client, "/api/orderbook")
    assert (body["volume_24h_micro_rtc"], body["trades_24h"], body["last_price"]) == (0, 0, 0.065)
    empty = _get(http_client, "/api/orderbook", pair="RTC/ERG")
    assert (empty["asks"], empty["bids"], empty["spread"], empty["last_price"]) == ([], [], None, None)


def test_stats_with_and_without_pair(api, http_client, bridge, dev_node, seller, buyer):
    complete_sell(api, bridge, dev_node, seller, buyer, amount=2_000_000, price=65_000_000)
    complete_sell(api, bridge, dev_node, seller, buyer, pair="RTC/ETH", amount=1_000_000, price=300_000)
    create(api, seller, "sell", amount=5_000_000)
    create(api, buyer, "buy", amount=4_000_000)
    whole = _get(http_client, "/api/stats")
    assert whole["pair"] is None
    stats = whole["stats"]
    assert (stats["total_trades"], stats["total_volume_micro_rtc"], stats["total_volume_rtc"]) == (2, 3_000_000, 3.0)
    assert (stats["volume_24h_rtc"], stats["volume_7d_rtc"], stats["open_orders"]) == (3.0, 3.0, 2)
    assert stats["open_sells"] == {"count": 1, "total_rtc": 5.0}
    assert stats["open_buys"] == {"count": 1, "total_rtc": 4.0}
    assert stats["supported_pairs"] == ["RTC/ETH", "RTC/USDC", "RTC/ERG"]
    usdc = _get(http_client, "/api/stats", pair="rtc/usdc")
    assert usdc["pair"] == "RTC/USDC"
    assert (usdc["stats"]["total_trades"], usdc["stats"]["total_volume_rtc"]) == (1, 2.0)
    assert (usdc["stats"]["last_price"], usdc["stats"]["high_24h"], usdc["stats"]["low_24h"]) == (0.065,) * 3
    assert usdc["stats"]["open_orders"] == 2
    eth = _get(http_client, "/api/stats", pair="RTC/ETH")["stats"]
    assert (eth["total_trades"], eth["last_price"], eth["open_orders"]) == (1, 0.0003, 0)
    erg = _get(http_client, "/api/stats", pair="RTC/ERG")["stats"]
    assert (erg["total_trades"], erg["last_price"], erg["high_24h"], erg["open_orders"]) == (0, None, None, 0)


def test_trades_newest_first(api, http_client, bridge, dev_node, clock, seller, buyer):
    first = complete_sell(api, bridge, dev_node, seller, buyer, amount=1_000_000, price=50_000_000)
    clock.now += 5
    second = complete_sell(api, bridge, dev_node, seller, buyer, amount=2_000_000, price=52_000_000)
    clock.now += 5
    third = complete_sell(api, bridge, dev_node, seller, buyer, pair="RTC/ETH", amount=1_000_000, price=300_000)
    trades = _get(http_client, "/api/trades")["trades"]
    assert [t["order_id"] for t in trades] == [third, second, first]
    assert [t["order_id"] for t in _get(http_client, "/api/trades", pair="RTC/USDC")["trades"]] == [second, first]
    assert [t["order_id"] for t in _get(http_client, "/api/trades", limit="1")["trades"]] == [third]
    trade = trades[1]
    assert (trade["seller_wallet"], trade["buyer_wallet"]) == (seller.address, buyer.address)
    assert (trade["amount_micro_rtc"], trade["price_per_rtc_nano_quote"], trade["total_quote_nano"]) == (
        2_000_000, 52_000_000, 104_000_000)
    assert (trade["amount_rtc"], trade["price_per_rtc"], trade["total_quote"]) == (2.0, 0.052, 0.104)
    assert trade["completed_at"] == trades[2]["completed_at"] + 5


def test_same_second_trades_newest_first_everywhere(api, http_client, bridge, dev_node, clock, seller, buyer):
    # Ids are random, so either /api/trades or last_price picks the older trade; never both right.
    first = complete_sell(api, bridge, dev_node, seller, buyer, amount=1_000_000, price=50_000_000)
    second = complete_sell(api, bridge, dev_node, seller, buyer, amount=1_000_000, price=52_000_000)
    assert [t["order_id"] for t in _get(http_client, "/api/trades")["trades"]] == [second, first]
    assert _get(http_client, "/api/orderbook")["last_price_nano_quote"] == 52_000_000
    assert _get(http_client, "/api/stats", pair="RTC/USDC")["stats"]["last_price"] == 0.052
