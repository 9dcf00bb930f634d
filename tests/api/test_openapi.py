"""The OpenAPI document (``/openapi.json``) against the app: the same routes, and real answers
of a whole trade (and of its refusals) valid against its schemas. ``/docs`` renders it."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from api_checks import complete_sell, create
from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH, matched_buy
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from otc_bridge.api.idempotency import HEADER

_METHODS = ("get", "post", "put", "patch", "delete")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def doc(live_bridge) -> dict:
    response = requests.get(f"{live_bridge}/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    return response.json()


def _template(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``<order_id>`` -> ``{order_id}``, ``<path:filename>`` -> ``{filename}``."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate_openapi(doc)
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name


def test_every_route_is_documented_and_every_documented_route_exists(doc, bridge_app):
    routes = {(method.lower(), _template(rule.rule)) for rule in bridge_app.url_map.iter_rules()
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(method, path) for path, item in doc["paths"].items() for method in _METHODS if method in item}
    assert routes == documented


def _operations(doc):
    for path, item in doc["paths"].items():
        for method in _METHODS:
            if method in item:
                yield path, method, item[method], item.get("parameters", [])


def test_every_post_takes_the_idempotency_key_and_every_error_is_the_error_shape(doc):
    for path, method, op, shared in _operations(doc):
        params = [p.get("$ref", p.get("name")) for p in (*shared, *op.get("parameters", ()))]
        if method == "post" and path != "/dev/evm-rpc":
            assert "#/components/parameters/IdempotencyKey" in params, path
            assert {"400", "415", "422", "500"} <= set(op["responses"]), path
            assert ("413" in op["responses"]) == ("requestBody" in op), path
        assert "500" in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if int(status) >= 400 and path != "/dev/evm-rpc" and (path, status) != ("/readyz", "503"):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_signed_operations_name_their_signature(doc):
    signed = {(path, method): op["x-wallet-signature"]["action"] for path, method, op, _ in _operations(doc)
              if "x-wallet-signature" in op}
    assert signed == {("/api/orders", "post"): "create_order", ("/api/orders/{order_id}/match", "post"): "match_order",
                      ("/api/orders/{order_id}/cancel", "post"): "cancel_order"}
    assert "wallet_auth" in doc["info"]["description"] and "300 s" in doc["info"]["description"]


def test_request_limits_come_from_the_code(doc, bridge):
    create_ = doc["components"]["schemas"]["CreateOrderRequest"]["properties"]
    assert create_["amount_micro_rtc"]["minimum"] == 100_000 and create_["amount_micro_rtc"]["maximum"] == 10**10
    assert create_["ttl_seconds"]["maximum"] == bridge.config.max_order_ttl_seconds
    assert create_["ttl_seconds"]["default"] == bridge.config.default_order_ttl_seconds
    key = doc["components"]["parameters"]["IdempotencyKey"]["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255)


# --- real answers against the schemas ------------------------------------------------------------------

class Checker:
    """Validates real answers against the document: the operation (method + path template) must
    document the status, and a JSON body must match that status's schema."""

    def __init__(self, doc: dict, base: str) -> None:
        self.doc, self.base, self.seen = doc, base, set()
        self.http = requests.Session()

    def call(self, method: str, template: str, path: str | None = None, **kwargs) -> requests.Response:
        response = self.http.request(method, self.base + (path or template), timeout=30, **kwargs)
        self.check(method, template, response)
        return response

    def check(self, method: str, template: str, response: requests.Response) -> None:
        op = self.doc["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in op["responses"], (method, template, status, response.text[:300])
        content = op["responses"][status].get("content", {})
        media = response.headers.get("Content-Type", "").split(";")[0].strip()
        if "*/*" in content:
            return
        assert media in content, (method, template, status, media)
        if media == "application/json":
            schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                      "components": self.doc["components"], **content[media]["schema"]}
            errors = sorted(Draft202012Validator(schema).iter_errors(response.json()), key=str)
            assert not errors, (method, template, status, [f"{list(e.path)}: {e.message}" for e in errors[:5]])
        self.seen.add((method.lower(), template, status))


@pytest.fixture
def check(doc, live_bridge) -> Checker:
    return Checker(doc, live_bridge)


def test_a_whole_trade_answers_as_documented(check, api, bridge, dev_node, seller, buyer):
    c = check
    sell = create(api, seller, "sell")
    c.check("post", "/api/orders", _replay_create(c, seller))
    order_id = sell["order_id"]
    c.call("get", "/api/orders", params={"pair": "RTC/USDC", "side": "sell", "limit": 5})
    c.call("get", "/api/orders/{order_id}", f"/api/orders/{order_id}")
    status, _ = api.match(buyer, order_id, BUYER_ETH)
    assert status == 200
    c.call("get", "/api/orders/{order_id}", f"/api/orders/{order_id}")  # with settlement instructions
    confirmed = c.call("post", "/api/orders/{order_id}/confirm", f"/api/orders/{order_id}/confirm",
                       json={"secret": sell["htlc_secret"], "quote_tx": "0xabc"}, headers={HEADER: str(uuid.uuid4())})
    assert confirmed.json()["status"] == "payout_pending"
    dev_node.confirm_pending()
    assert c.call("post", "/admin/reconcile", headers=ADMIN).status_code == 200
    done = c.call("get", "/api/orders/{order_id}", f"/api/orders/{order_id}").json()
    assert done["order"]["status"] == "completed" and done["order"]["htlc_secret"] == sell["htlc_secret"]
    complete_sell(api, bridge, dev_node, seller, buyer, pair="RTC/ERG")
    c.call("get", "/api/orders/{order_id}/events", f"/api/orders/{order_id}/events", params={"limit": 3})
    c.call("get", "/api/wallets/{wallet}/orders", f"/api/wallets/{seller.address}/orders")
    for pair in ("RTC/USDC", None):
        params = {"pair": pair} if pair else {}
        c.call("get", "/api/trades", params=params)
        c.call("get", "/api/orderbook", params=params)
        c.call("get", "/api/stats", params=params)

    buy_id, taker_secret = matched_buy(api, buyer, seller)  # the taker's match answer carries a secret
    assert taker_secret
    c.call("get", "/api/orders/{order_id}", f"/api/orders/{buy_id}")
    other = create(api, seller, "sell", amount=2_000_000)
    body = {"wallet": seller.address, "wallet_auth": seller.auth("cancel_order", other["order_id"], {})}
    c.call("post", "/api/orders/{order_id}/cancel", f"/api/orders/{other['order_id']}/cancel", json=body)
    listed = create(api, seller, "sell", amount=3_000_000)
    body = {"wallet": buyer.address, "eth_address": BUYER_ETH,
            "wallet_auth": buyer.auth("match_order", listed["order_id"], {"eth_address": BUYER_ETH})}
    c.call("post", "/api/orders/{order_id}/match", f"/api/orders/{listed['order_id']}/match", json=body)

    for route in ("/healthz", "/page-config.json", "/openapi.json", "/docs", "/", "/metrics"):
        c.call("get", route)
    c.call("get", "/static/{filename}", "/static/page.css")
    for headers in ({}, ADMIN):
        c.call("get", "/readyz", headers=headers)
    c.call("get", "/admin/attention", headers=ADMIN)
    c.call("get", "/admin/audit", params={"all": "1"}, headers=ADMIN)


def _replay_create(c: Checker, seller) -> requests.Response:
    """A keyed create and its replay (the replay carries the same documented body)."""
    key = str(uuid.uuid4())
    bound = {"side": "sell", "pair": "RTC/USDC", "amount_micro_rtc": 4_000_000, "price_per_rtc_nano_quote": 7,
             "ttl_seconds": 7200, "eth_address": SELLER_ETH}
    body = {**bound, "wallet": seller.address, "wallet_auth": seller.auth("create_order", "create_order", bound)}
    first = c.call("post", "/api/orders", json=body, headers={HEADER: key})
    assert first.status_code == 201
    again = c.http.post(c.base + "/api/orders", json=body, headers={HEADER: key}, timeout=30)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    return again


def test_refusals_answer_as_documented(check, api, seller, buyer):
    c = check
    made = create(api, seller, "sell")
    order_id = made["order_id"]
    refusals = [
        ("post", "/api/orders", None, {"json": {"side": "sideways"}}, 400),
        ("post", "/api/orders", None, {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("post", "/api/orders", None, {"json": {"side": "buy"}, "headers": {HEADER: ""}}, 400),
        ("post", "/api/orders", None, {"data": b"[" * 70000, "headers": {"Content-Type": "application/json"}}, 413),
        ("post", "/api/orders/{order_id}/match", f"/api/orders/{order_id}/match",
         {"json": {"wallet": buyer.address, "eth_address": BUYER_ETH, "wallet_auth": {"public_key": "00" * 32,
                                                                                     "signature": "00" * 64,
                                                                                     "timestamp": 1}}}, 401),
        ("post", "/api/orders/{order_id}/match", "/api/orders/otc_missing/match",
         {"json": {"wallet": buyer.address, "eth_address": BUYER_ETH,
                   "wallet_auth": buyer.auth("match_order", "otc_missing", {"eth_address": BUYER_ETH})}}, 404),
        ("post", "/api/orders/{order_id}/confirm", f"/api/orders/{order_id}/confirm",
         {"json": {"secret": made["htlc_secret"], "quote_tx": "0x1"}}, 409),
        ("post", "/api/orders/{order_id}/confirm", f"/api/orders/{order_id}/confirm",
         {"json": {"secret": made["htlc_secret"], "quote_tx": "0x1", "wallet": buyer.address}}, 409),
        ("post", "/api/orders/{order_id}/cancel", f"/api/orders/{order_id}/cancel",
         {"json": {"wallet": buyer.address, "wallet_auth": buyer.auth("cancel_order", order_id, {})}}, 403),
        ("get", "/api/orders/{order_id}", "/api/orders/otc_missing", {}, 404),
        ("get", "/api/orders", None, {"params": {"limit": "x"}}, 400),
        ("get", "/api/wallets/{wallet}/orders", "/api/wallets/nope/orders", {}, 400),
        ("get", "/admin/audit", None, {}, 401),
        ("post", "/admin/reconcile", None, {"headers": {"Authorization": "Bearer wrong-wrong-wrong-wrong"}}, 401),
        ("post", "/admin/orders/{order_id}/resolve", f"/admin/orders/{order_id}/resolve",
         {"json": {"to": "completed", "reason": "x"}, "headers": ADMIN}, 409),
        ("post", "/admin/orders/{order_id}/redrive-payout", "/admin/orders/otc_missing/redrive-payout",
         {"json": {"reason": "x"}, "headers": ADMIN}, 404),
        ("get", "/static/{filename}", "/static/missing.js", {}, 404),
        ("post", "/dev/evm-rpc", None, {"json": {"method": "eth_chainId"}}, 404),
    ]
    for method, template, path, kwargs, status in refusals:
        response = c.call(method, template, path, **kwargs)
        assert response.status_code == status, (template, response.status_code, response.text[:200])
    key = str(uuid.uuid4())
    body = {"wallet": seller.address, "wallet_auth": seller.auth("cancel_order", order_id, {})}
    c.call("post", "/api/orders/{order_id}/cancel", f"/api/orders/{order_id}/cancel", json=body,
           headers={HEADER: key})
    second = create(api, seller, "sell", amount=2_000_000)["order_id"]
    body = {"wallet": seller.address, "wallet_auth": seller.auth("cancel_order", second, {})}
    reused = c.call("post", "/api/orders/{order_id}/cancel", f"/api/orders/{second}/cancel", json=body,
                    headers={HEADER: key})  # the same key of the same wallet, for another request
    assert reused.status_code == 422


def test_the_docs_page_renders_the_document_without_scripts(doc, live_bridge):
    response = requests.get(f"{live_bridge}/docs", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert "<script" not in page and "http://" not in page.replace(live_bridge, "") and "https://" not in page
    for path, method, _op, _ in _operations(doc):
        assert f"{method.upper()} <code>{path}</code>" in page, (method, path)
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "Idempotency-Key" in page and "wallet_auth" in page and "default-src 'self'" in \
        response.headers["Content-Security-Policy"]
