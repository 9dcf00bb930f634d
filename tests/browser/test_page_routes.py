"""The routes that serve the page (no browser needed): the page, its assets and settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otc_bridge.app import create_app

STATIC = Path(__file__).resolve().parents[2] / "otc_bridge" / "web" / "static"


def test_page_and_assets_are_served_from_our_origin(http_client):
    page = http_client.get("/")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert "<script>" not in html and " style=" not in html and "http://" not in html and "https://" not in html
    for ref in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert http_client.get(ref).status_code == 200, ref
    for module in sorted((STATIC / "js").glob("*.js")):
        response = http_client.get(f"/static/js/{module.name}")
        assert response.status_code == 200
        assert response.mimetype in ("text/javascript", "application/javascript")
    vendored = http_client.get("/static/vendor/noble-ed25519/index.js")
    assert vendored.status_code == 200
    assert (STATIC / "vendor" / "noble-ed25519" / "LICENSE").read_text().startswith("The MIT License")


def test_no_html_sinks_in_the_page_code():
    """No innerHTML, outerHTML, insertAdjacentHTML, document.write, eval or Function():
    data reaches the DOM only as text (dom.js)."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
                       r"setAttribute\(['\"]on|\.style\.cssText")
    for module in sorted((STATIC / "js").glob("*.js")):
        lines = module.read_text().splitlines()
        code = "\n".join(line for line in lines if not line.strip().startswith(("//", "/*", "*")))
        assert not sinks.search(code), module.name
        assert len(lines) <= 300, f"{module.name} is over 300 lines"


def test_page_config(http_client, bridge_config):
    body = http_client.get("/page-config.json").get_json()
    assert body["pairs"]["RTC/USDC"] == {"symbol": "USDC", "decimals": 6}
    assert body["pairs"]["RTC/ETH"]["decimals"] == 18
    assert body["ttl_max_seconds"] == bridge_config.max_order_ttl_seconds
    assert body["ttl_min_seconds"] == 3600
    assert body["dev"] is True  # the test bridge uses the dev node's public key on loopback


@pytest.mark.parametrize("changes", [{"node_admin_key": "a-real-operator-key-0123456789"},
                                     {"node_url": "https://node.example:8099"}])
def test_page_config_is_not_dev_against_a_real_node(bridge, changes):
    bridge.config = bridge.config.replace(**changes)
    app = create_app(bridge=bridge)
    assert app.test_client().get("/page-config.json").get_json()["dev"] is False


def test_no_chain_no_relay(http_client):
    """Without a quote chain the page is told so, and the dev chain relay does not exist."""
    body = http_client.get("/page-config.json").get_json()
    assert body["quote_chain"] is None and body["dev_chain"] is None
    call = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    assert http_client.post("/dev/evm-rpc", json=call).status_code == 404
