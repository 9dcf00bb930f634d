"""The web page, its settings document and the liveness probe.

The page is static (``otc_bridge/web/static``: ``index.html``, ``page.css``, standard
JavaScript modules under ``js/``, vendored libraries under ``vendor/``), served from this
origin under the app's strict Content-Security-Policy: no inline script or style, no
third-party origin, no build step. ``/page-config.json`` tells it the bridge's settings
(pairs, limits, TTL range, settlement windows, the EVM quote chain) so it can check input
before signing.

Chain access for the page (docs/protocol.md §12.5): in production the page locks, refunds
and claims through the trader's own injected EIP-1193 wallet (``window.ethereum``) and is
told only the chain id and contract addresses, never an RPC endpoint. Under ``otc-bridge
dev`` (the dev node's public admin key on a loopback node, and a loopback chain) no wallet
extension exists, so ``POST /dev/evm-rpc`` relays a fixed set of JSON-RPC methods to the dev
chain, where anvil's demo accounts are unlocked: the buyer's lock and refund are sent from
the demo buyer account, the seller's claim (a bridge without a claimer key, or too close to
the timelock for the bridge's own claim) from the demo seller account. The relay is
same-origin because the page's CSP allows ``connect-src 'self'`` only; it is 404 everywhere
else and carries no key.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Blueprint, abort, current_app, jsonify, request

from otc_bridge.config import Config
from otc_bridge.domain import money
from otc_bridge.domain.quote_lock import verified_on_chain

log = logging.getLogger(__name__)

bp = Blueprint("web", __name__)

# The dev node's well-known admin key (devnode.server.DEFAULT_DEV_ADMIN_KEY); repeated here
# so serving the page never imports the dev node.
_DEV_NODE_ADMIN_KEY = "dev-node-admin-key-not-for-production-use"
# anvil's well-known accounts 1 and 2, the dev chain's demo "seller" and "buyer"
# (otc_bridge/dev/chain.py ROLES; literal so serving the page never imports web3;
# tests/browser/test_quote_page.py checks they agree). Their keys are public knowledge.
_DEV_CHAIN_ACCOUNTS = {"seller": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                       "buyer": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"}
#: What the dev relay forwards: reads, gas estimation, and sending from a demo account.
_DEV_RPC_METHODS = frozenset({
    "eth_chainId", "eth_blockNumber", "eth_getBlockByNumber", "eth_getTransactionReceipt",
    "eth_getTransactionByHash", "eth_call", "eth_estimateGas", "eth_getBalance", "eth_gasPrice",
    "eth_maxPriorityFeePerGas", "eth_feeHistory", "eth_getTransactionCount", "eth_sendTransaction"})
_DEV_RPC_TIMEOUT_SECONDS = 15


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
        quote_chain=_quote_chain(cfg),
        dev_chain=({"rpc_path": "/dev/evm-rpc", "accounts": _DEV_CHAIN_ACCOUNTS} if _dev_chain_enabled(cfg)
                   else None),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _quote_chain(cfg: Config) -> dict[str, Any] | None:
    """What the page needs to lock in our HTLC: the chain id, the contracts (0x hex; USDC
    ``None`` when not configured), the pairs whose lock the bridge verifies on chain (the
    page takes those in the buyer-held mode), the buyer-held timelock range and reveal
    margin (seconds after the lock's block / before its timelock) and ``bridge_claims``:
    whether the bridge claims buyer-held locks for their sellers (``OTC_EVM_CLAIMER_KEY`` is
    set; the key itself never leaves the server). Without it the RTC seller claims from the
    page once the payout is committed. ``None``: no chain."""
    q = cfg.quote_chain
    if q is None:
        return None
    return {"chain_id": q.chain_id, "htlc_contract": q.htlc_address, "usdc_contract": q.usdc_address,
            "evm_pairs": [pair for pair in money.PAIRS if verified_on_chain(pair, q.usdc_address)],
            "buyer_timelock_min_seconds": q.buyer_timelock_min_seconds,
            "buyer_timelock_max_seconds": q.buyer_timelock_max_seconds,
            "buyer_margin_seconds": q.buyer_margin_seconds, "lock_window_seconds": q.lock_window_seconds,
            "bridge_claims": q.claimer_key is not None}


def _dev_chain_enabled(cfg: Config) -> bool:
    """True when the page may use the dev chain through :func:`dev_evm_rpc`: the local dev
    setup (:func:`_is_local_dev`) with a quote chain on a loopback address."""
    return cfg.quote_chain is not None and _is_local_dev(cfg) and _is_loopback_url(cfg.quote_chain.rpc_url)


@bp.post("/dev/evm-rpc")
def dev_evm_rpc():
    """Dev only (404 otherwise): relay one JSON-RPC request ``{"jsonrpc", "id", "method",
    "params"}`` to the dev chain and return its answer as is. Only the methods in
    ``_DEV_RPC_METHODS``; ``eth_sendTransaction`` only from the demo seller or buyer account
    (anvil signs for them: their keys are public). A refusal is a JSON-RPC error object with
    HTTP 200, as a node answers; a chain that does not answer is HTTP 502."""
    cfg: Config = current_app.extensions["otc_bridge"].config
    if not _dev_chain_enabled(cfg):
        abort(404)
    # JSON only: a cross-site form post cannot send this content type without a preflight,
    # which this origin never answers.
    call = request.get_json(silent=True) if request.is_json else None
    if not isinstance(call, dict) or not isinstance(call.get("method"), str):
        return jsonify(jsonrpc="2.0", id=None, error={"code": -32600, "message": "one JSON-RPC request object"}), 400
    call_id, method, params = call.get("id"), call["method"], call.get("params", [])
    if method not in _DEV_RPC_METHODS or not isinstance(params, list):
        return jsonify(jsonrpc="2.0", id=call_id, error={"code": -32601, "message": f"{method} is not relayed"})
    if method == "eth_sendTransaction":
        sender = params[0].get("from", "") if params and isinstance(params[0], dict) else ""
        if str(sender).lower() not in {a.lower() for a in _DEV_CHAIN_ACCOUNTS.values()}:
            return jsonify(jsonrpc="2.0", id=call_id,
                           error={"code": -32000, "message": "the dev relay sends only from the demo accounts"})
    try:
        answer = requests.post(cfg.quote_chain.rpc_url, json={"jsonrpc": "2.0", "id": call_id, "method": method,
                                                              "params": params}, timeout=_DEV_RPC_TIMEOUT_SECONDS)
        return jsonify(answer.json())
    except (requests.RequestException, ValueError) as exc:
        log.warning("dev chain relay: %s failed: %s", method, exc)
        failure = {"code": -32603, "message": "the dev chain did not answer"}
        return jsonify(jsonrpc="2.0", id=call_id, error=failure), 502


def _is_local_dev(cfg: Config) -> bool:
    """True for the embedded dev setup: the dev node's public admin key on a loopback node."""
    if cfg.node_admin_key != _DEV_NODE_ADMIN_KEY or not cfg.node_url:
        return False
    return _is_loopback_url(cfg.node_url)


def _is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback IP literal."""
    host = urlsplit(url).hostname or ""
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
