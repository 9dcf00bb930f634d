"""The embedded developer setup (``otc-bridge dev``).

``dev`` runs the dev escrow node and the bridge in one process on 127.0.0.1, funds two
demo wallets, runs the bridge's background reconciler every few seconds and its outbox
worker (webhooks and alerts, if configured) and, like a node operator's cron, confirms the
node's pending pool, so a person can finish a swap from the page. It writes ``dev.json``
with the URLs and keys the demo needs. The data directory is 0700 and its files 0600
(:mod:`otc_bridge.storage.files`), whatever the umask. The scripted demo that runs against it
(``otc-bridge demo``) is :mod:`otc_bridge.dev.demo`; its entry points are importable from here
too.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from werkzeug.serving import make_server

from otc_bridge.background import start_outbox_worker, start_reconciler
from otc_bridge.client import Wallet
from otc_bridge.dev.demo import BUYER_SEED, SELLER_SEED, DemoFailed, Echo, balance, fund, run_demo
from otc_bridge.storage import files

if TYPE_CHECKING:
    from otc_bridge.dev.chain import DevChain

__all__ = ["BUYER_QUOTE_ADDRESS", "SELLER_QUOTE_ADDRESS", "DevSettings", "load_dev_info", "run_dev",
           # otc_bridge.dev.demo
           "BUYER_SEED", "SELLER_SEED", "DemoFailed", "Echo", "balance", "fund", "run_demo"]

log = logging.getLogger(__name__)

# The demo traders' quote-chain addresses: anvil's accounts 1 and 2, the dev chain's "seller"
# and "buyer" (otc_bridge/dev/chain.py ROLES; tests/chain checks they agree). Literal here so
# the demo does not import web3.
SELLER_QUOTE_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER_QUOTE_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@dataclass(frozen=True)
class DevSettings:
    """Where and how ``otc-bridge dev`` runs (ports on 127.0.0.1, files under ``data_dir``)."""

    data_dir: Path
    port: int
    node_port: int
    admin_token: str
    fund_rtc: str = "1000"
    auto_settle_seconds: float = 5.0


def load_dev_info(data_dir: Path) -> dict:
    """What ``dev`` wrote to ``dev.json`` (empty defaults if it was never run there)."""
    path = data_dir / "dev.json"
    if not path.exists():
        return {"bridge_url": "http://127.0.0.1:5580"}
    return json.loads(path.read_text())


def run_dev(settings: DevSettings, echo: Echo) -> None:
    """Start the EVM dev chain, node + bridge, and serve until interrupted (Ctrl-C or SIGTERM).

    The chain (anvil, :mod:`otc_bridge.dev.chain`) starts first, so its settings
    (``OTC_EVM_*``, ``OTC_HTLC_ADDRESS``, ``OTC_USDC_ADDRESS``) are in the bridge's environment
    and its addresses and demo keys in ``dev.json``; it stops last. Raises
    :class:`otc_bridge.dev.chain.DevChainError` when anvil cannot be installed or started.
    """
    from otc_bridge.dev.chain import DevChain

    # 0700 even if it existed: it holds dev.json (the admin token) and both databases.
    files.private_dir(settings.data_dir, tighten_existing=True)
    # SIGTERM (a supervisor, `kill`) ends the command as Ctrl-C does, so the chain and the
    # servers below are stopped instead of left behind.
    restore_sigterm = _sigterm_as_interrupt()
    chain = DevChain(log_path=settings.data_dir / "anvil.log")
    try:
        chain.start()
        _serve_dev(settings, echo, chain)
    finally:
        chain.stop()
        restore_sigterm()


def _serve_dev(settings: DevSettings, echo: Echo, chain: DevChain) -> None:
    """Node + bridge against the started ``chain``, served until interrupted."""
    from otc_bridge.app import create_app
    from otc_bridge.config import Config
    from otc_bridge.dev.node import create_app as create_devnode
    from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY as dev_admin_key
    from otc_bridge.dev.node.server import start_in_thread

    node_app = create_devnode(str(settings.data_dir / "devnode.db"), dev_admin_key)
    node = start_in_thread(node_app, "127.0.0.1", settings.node_port)
    env = dict(os.environ)
    env.update({"RUSTCHAIN_NODE": node.url, "RC_ADMIN_KEY": dev_admin_key,
                "OTC_DB_PATH": str(settings.data_dir / "bridge.db"), "OTC_ADMIN_TOKEN": settings.admin_token})
    env.update(chain.env())  # OTC_EVM_RPC_URL, OTC_HTLC_ADDRESS, ..., OTC_EVM_CONFIRMATIONS=0 (automine)
    env.setdefault("OTC_RATE_LIMIT", "120/minute")
    config = Config.from_env(env)
    app = create_app(config)
    bridge_url = f"http://127.0.0.1:{settings.port}"
    wallets = {"seller": Wallet.from_seed(SELLER_SEED), "buyer": Wallet.from_seed(BUYER_SEED)}
    for wallet in wallets.values():
        fund(node.url, wallet.address, settings.fund_rtc)
    evm = chain.info()
    info = {"bridge_url": bridge_url, "node_url": node.url, "node_admin_key": dev_admin_key,
            "admin_token": settings.admin_token,
            "wallets": {name: w.address for name, w in wallets.items()}, **evm}
    files.write_private(settings.data_dir / "dev.json", json.dumps(info, indent=2))  # 0600: the admin token, keys
    stop = threading.Event()
    reconciler_stop = start_reconciler(app.extensions["otc_bridge"], settings.auto_settle_seconds)
    outbox_stop = start_outbox_worker(app.extensions["otc_bridge"])
    if settings.auto_settle_seconds > 0:
        threading.Thread(target=_confirm_pool, args=(node.url, settings.auto_settle_seconds, stop),
                         daemon=True, name="dev-confirm-pool").start()
    server = make_server("127.0.0.1", settings.port, app, threaded=True)
    echo(f"bridge      {bridge_url}   (page: {bridge_url}/)")
    echo(f"dev node    {node.url}   (admin key: {dev_admin_key})")
    echo(f"admin token {settings.admin_token}   (Authorization: Bearer ...)")
    echo(f"demo wallets funded with {settings.fund_rtc} RTC each: "
         + ", ".join(f"{n}={a}" for n, a in info["wallets"].items()))
    echo(f"evm chain   {evm['evm_rpc_url']}   (anvil, chain id {evm['evm_chain_id']}, automine; "
         f"HTLC {evm['htlc_address']}, USDC {evm['usdc_address']})")
    echo("evm wallets " + ", ".join(f"{role}={account['address']}" for role, account in evm["evm_accounts"].items()
                                    if role != "deployer")
         + f"   (keys in {settings.data_dir}/dev.json)")
    echo(f"data        {settings.data_dir}/bridge.db, {settings.data_dir}/devnode.db, {settings.data_dir}/anvil.log")
    echo("next        in another terminal: otc-bridge demo      (Ctrl-C here stops all)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        echo("stopping")
    finally:
        stop.set()
        for loop in (reconciler_stop, outbox_stop):
            if loop:
                loop.set()
        server.shutdown()
        node.shutdown()


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise ``KeyboardInterrupt`` in the main thread; returns the undo. Does
    nothing off the main thread (where Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _confirm_pool(node_url: str, interval: float, stop: threading.Event) -> None:
    """Dev only: confirm the node's due pending transfers every ``interval`` s, as a node
    operator's cron does in production (the bridge's own reconciler then completes trades)."""
    while not stop.wait(interval):
        try:
            requests.post(f"{node_url}/dev/confirm", json={}, timeout=10)
        except requests.RequestException:
            log.exception("dev pending-pool confirm failed")
