"""Property test of the request parsers (hypothesis): no generated body, content type or query
string makes the API answer 500, every refusal is a JSON 4xx, and a refused request writes
nothing (no order, event, used signature, outbox row or trade; no job on the node).

A valid signature cannot be generated, so no generated POST is accepted: every one of them is
a refusal. The examples are derandomized and bounded, so the run is the same every time and
takes seconds."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from api_checks import WATCHED_TABLES
from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otc_bridge.client import Wallet
from otc_bridge.domain import money

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Characters that broke parsers before: other scripts' digits, Unicode case and space oddities.
TRICKY = "0123456789-+.eE \t\u00b2\u0663\uff11\u0967\u017f\u0131\u00a0\u2003\x00/RTCabcdef"

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12) | st.text(TRICKY, max_size=12)
numbers = (st.integers(min_value=-10**25, max_value=10**25).map(str)
           | st.decimals(allow_nan=False, allow_infinity=False, places=12).map(str)
           | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "1e-7", "3600.0", "-1", "1E5", "0"]))
scalars = (st.just("null") | st.sampled_from(["true", "false"]) | numbers
           | text.map(json.dumps) | numbers.map(json.dumps))


def _object(items: dict[str, str]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in items.items()) + "}"


values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
                      | st.dictionaries(text, inner, max_size=3).map(_object), max_leaves=8)
# A real key and a fresh timestamp, so an intact body gets as far as the signature itself.
_SIGNER = Wallet.generate()
AUTH = _object({"public_key": json.dumps(_SIGNER.public_key_hex), "signature": json.dumps("cd" * 64),
                "timestamp": str(int(time.time()))})
WALLET = json.dumps(_SIGNER.address)
# Per route, a body valid in every field but its signature; examples drop or replace a few
# fields, so refusals come from every check down to the signature's 401.
TEMPLATES = {
    "/api/orders": {"side": '"sell"', "pair": '"RTC/USDC"', "wallet": WALLET, "amount_rtc": '"10"',
                    "amount_micro_rtc": "10000000", "price_per_rtc": "0.05", "price_per_rtc_nano_quote": "50000000",
                    "eth_address": json.dumps(SELLER_ETH), "ttl_seconds": "86400", "wallet_auth": AUTH},
    "/api/orders/{id}/match": {"wallet": WALLET, "eth_address": json.dumps(BUYER_ETH), "wallet_auth": AUTH},
    "/api/orders/{id}/confirm": {"secret": json.dumps("ef" * 32), "quote_tx": '"0xabc"', "wallet": WALLET},
    "/api/orders/{id}/cancel": {"wallet": WALLET, "wallet_auth": AUTH},
    "/admin/orders/{id}/resolve": {"to": '"completed"', "reason": '"operator checked"'},
    "/admin/orders/{id}/redrive-payout": {"reason": '"operator checked"', "new_key": "false"},
}
DROP = "<drop>"
field_values = st.one_of(
    values,
    st.sampled_from(["buy", "sell", "RTC/USDC", "rtc/erg", "RTC/ETH", SELLER_ETH, BUYER_ETH, "completed", "ab",
                     "RTC" + "AB" * 20, "9" + "x" * 40, "-0.05", "0.0000000001", "1e5"]).map(json.dumps),
    st.fixed_dictionaries({}, optional={"public_key": st.text("0123456789abcdef", max_size=64).map(json.dumps),
                                        "signature": st.text("0123456789abcdef", max_size=128).map(json.dumps),
                                        "timestamp": numbers}).map(_object))


def _mutated(template: dict[str, str]):
    """``template`` with up to three fields dropped or replaced, and perhaps one unknown field."""
    changes = st.dictionaries(st.sampled_from(sorted(template)), st.just(DROP) | field_values, max_size=3)
    extra = st.dictionaries(text, field_values, max_size=1)
    return st.tuples(changes, extra).map(lambda pair: _object(
        {k: v for k, v in {**template, **pair[0]}.items() if v != DROP} | pair[1]).encode())


def bodies_for(route: str):
    return st.one_of(_mutated(TEMPLATES[route]), _mutated(TEMPLATES[route]), _mutated(TEMPLATES[route]),
                     values.map(str.encode), st.binary(max_size=64))


content_types = st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain",
                                                             "application/x-www-form-urlencoded", None])


@pytest.fixture
def orders(api, seller, buyer) -> dict[str, str]:
    """Real orders, so ids exist: an open sell (escrow held), an open buy, a matched sell."""
    made = {}
    for name, who, side, amount in (("sell", seller, "sell", 1_000_000), ("buy", buyer, "buy", 2_000_000),
                                    ("matched", seller, "sell", 3_000_000)):
        status, body = api.create_order(who, side=side, pair="RTC/USDC", amount_micro_rtc=amount,
                                        price_nano_quote=50_000_000, eth_address=SELLER_ETH)
        assert status == 201, body
        made[name] = body["order_id"]
    status, body = api.match(buyer, made["matched"], BUYER_ETH)
    assert status == 200, body
    return {**made, "missing": "otc_00000000deadbeef"}


def _tables(bridge) -> dict[str, list[tuple]]:
    return {t: [tuple(r) for r in bridge.db.read(f"SELECT * FROM {t} ORDER BY rowid")]  # noqa: S608
            for t in WATCHED_TABLES}


def _assert_json_refusal(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    assert isinstance(response.get_json()["error"], str)


POSTS = sorted(TEMPLATES)


def test_no_post_body_is_a_500_or_a_write(http_client, bridge, dev_node, orders):
    before, jobs = _tables(bridge), dev_node.state()["jobs_by_status"]

    @PROPERTY
    @given(route_body=st.sampled_from(POSTS).flatmap(lambda r: st.tuples(st.just(r), bodies_for(r))),
           which=st.sampled_from(sorted(orders)), content_type=content_types)
    def check(route_body, which, content_type):
        route, body = route_body
        headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
        response = http_client.post(route.format(id=orders[which]), data=body, headers=headers)
        _assert_json_refusal(response)
        assert _tables(bridge) == before

    check()
    assert dev_node.state()["jobs_by_status"] == jobs


query_values = st.one_of(text, numbers, st.sampled_from(list(money.PAIRS) + ["buy", "sell", "open", "1", "200"]))


def _queries(*names: str):
    return st.dictionaries(st.sampled_from(names), query_values, max_size=len(names))


GETS = [("/api/orders", _queries("pair", "side", "limit", "offset")),
        ("/api/trades", _queries("pair", "limit")),
        ("/api/orderbook", _queries("pair")),
        ("/api/stats", _queries("pair")),
        ("/api/orders/{id}/events", _queries("after", "limit")),
        ("/api/wallets/{wallet}/orders", _queries("status", "limit", "offset")),
        ("/api/orders/{text}", st.just({})),
        ("/admin/attention", _queries("older_than")),
        ("/api/stream", _queries("last_event_id", "pair", "wallet", "order_id"))]


def test_no_query_string_is_a_500_or_a_write(http_client, bridge, orders):
    before = _tables(bridge)
    wallets = st.sampled_from(["RTC" + "ab" * 20, "RTC" + "AB" * 20]) | text

    @PROPERTY
    @given(get=st.sampled_from(GETS).flatmap(lambda g: st.tuples(st.just(g[0]), g[1])),
           which=st.sampled_from(sorted(orders)), wallet=wallets, path_text=text)
    def check(get, which, wallet, path_text):
        route, query = get
        path = route.format(id=orders[which], wallet=quote(wallet, safe=""), text=quote(path_text, safe=""))
        response = http_client.get(path, query_string=query, headers=ADMIN, buffered=False)
        try:
            if response.status_code >= 400:
                _assert_json_refusal(response)
            else:  # a valid query: a read, a live stream (closed at once), or the router's
                # redirect of a path whose decoded %2F made a double slash
                assert response.status_code in (200, 308)
        finally:
            response.close()
        assert _tables(bridge) == before

    check()
