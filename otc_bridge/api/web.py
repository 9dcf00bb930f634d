"""The web page, its settings document and the liveness probe.

The page is static (``otc_bridge/web/static``: ``index.html``, ``page.css``, standard
JavaScript modules under ``js/``, vendored libraries under ``vendor/``), served from this
origin under the app's strict Content-Security-Policy: no inline script or style, no
third-party origin, no build step. ``/page-config.json`` tells it the bridge's settings
(pairs, limits, TTL range, settlement windows) so it can check input before signing.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify

from otc_bridge.config import Config
from otc_bridge.domain import money

bp = Blueprint("web", __name__)

# The dev node's well-known admin key (devnode.server.DEFAULT_DEV_ADMIN_KEY); repeated here
# so serving the page never imports the dev node.
_DEV_NODE_ADMIN_KEY = "dev-node-admin-key-not-for-production-use"


@bp.get("/")
def index():
    """The trading page (served from our own origin under a strict CSP)."""
    response = current_app.send_static_file("index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/page-config.json")
def page_config():
    """Public settings the page needs: pairs with their quote decimals, order limits, the
    TTL range (seconds), the settlement windows and whether this is a local dev setup
    (``otc-bridge dev``, whose two funded demo wallets the page then offers)."""
    cfg: Config = current_app.extensions["otc_bridge"].config
    response = jsonify(
        ok=True,
        pairs={name: {"symbol": a.symbol, "decimals": a.decimals} for name, a in money.PAIRS.items()},
        rtc_decimals=money.RTC_DECIMALS, price_decimals=money.PRICE_DECIMALS,
        min_order_micro_rtc=money.MIN_ORDER_MICRO_RTC, max_order_micro_rtc=money.MAX_ORDER_MICRO_RTC,
        max_price_nano_quote=money.MAX_PRICE_NANO_QUOTE, node_fee_percent=5,
        ttl_min_seconds=3600, ttl_max_seconds=cfg.max_order_ttl_seconds,
        ttl_default_seconds=cfg.default_order_ttl_seconds,
        settle_window_seconds=cfg.settle_window_seconds, htlc_min_seconds=cfg.htlc_min_seconds,
        claim_margin_seconds=cfg.claim_margin_seconds,
        dev=_is_local_dev(cfg),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _is_local_dev(cfg: Config) -> bool:
    """True for the embedded dev setup: the dev node's public admin key on a loopback node."""
    if cfg.node_admin_key != _DEV_NODE_ADMIN_KEY or not cfg.node_url:
        return False
    host = urlsplit(cfg.node_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, not an IP literal: only "localhost" counts as local
        return False


@bp.get("/healthz")
def healthz():
    """Liveness: the process is up and serving."""
    return jsonify(ok=True)
