"""The embedded developer setup (``otc-bridge dev``) and the scripted demo (``otc-bridge demo``).

``dev`` runs the dev escrow node and the bridge in one process on 127.0.0.1, funds two
demo wallets, runs the bridge's background reconciler every few seconds and its outbox
worker (webhooks and alerts, if configured) and, like a node operator's cron, confirms the
node's pending pool, so a person can finish a swap from the page. It writes ``dev.json``
with the URLs and keys the demo needs. The data directory is 0700 and its files 0600
(:mod:`otc_bridge.storage.files`), whatever the umask.
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
from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.storage import files

if TYPE_CHECKING:
    from otc_bridge.dev.chain import DevChain

log = logging.getLogger(__name__)

SELLER_SEED = "otc-bridge demo seller"
BUYER_SEED = "otc-bridge demo buyer"
# The demo traders' quote-chain addresses: anvil's accounts 1 and 2, the dev chain's "seller"
# and "buyer" (otc_bridge/dev/chain.py ROLES; tests/chain checks they agree). Literal here so
# the demo does not import web3.
SELLER_QUOTE_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BUYER_QUOTE_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

Echo = Callable[[str], None]


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


def fund(node_url: str, wallet: str, amount_rtc: str) -> int:
    """Mint ``amount_rtc`` into ``wallet`` on the dev node; returns the new balance (micro-RTC)."""
    response = requests.post(f"{node_url}/dev/fund", json={"wallet": wallet, "amount_rtc": amount_rtc}, timeout=10)
    response.raise_for_status()
    return response.json()["amount_i64"]


def balance(node_url: str, wallet: str) -> int:
    """Confirmed balance of ``wallet`` on the node, in micro-RTC."""
    response = requests.get(f"{node_url}/wallet/balance", params={"miner_id": wallet}, timeout=10)
    response.raise_for_status()
    return response.json()["amount_i64"]


class DemoFailed(RuntimeError):
    """A demo step did not end as it must."""


def run_demo(info: dict, echo: Echo) -> bool:
    """Run both swaps against ``info['bridge_url']``; print every step; True on success."""
    if "node_url" not in info:
        echo("no dev.json found: start the bridge with `otc-bridge dev` first")
        return False
    demo = _Demo(info, echo)
    try:
        demo.run()
    except DemoFailed as exc:
        echo(f"DEMO FAILED: {exc}")
        return False
    return True


class _Demo:
    def __init__(self, info: dict, echo: Echo) -> None:
        self.info, self.echo = info, echo
        self.api = BridgeClient(info["bridge_url"])
        self.node_url = info["node_url"]
        self.seller, self.buyer = Wallet.from_seed(SELLER_SEED), Wallet.from_seed(BUYER_SEED)

    def expect(self, what: str, status: int, body: dict, want: int) -> dict:
        self.echo(f"  {what}: HTTP {status} status={body.get('status')!s}")
        if status != want:
            raise DemoFailed(f"{what}: expected HTTP {want}, got {status}: {body.get('error')}")
        return body

    def run(self) -> None:
        before = {w: balance(self.node_url, w.address) for w in (self.seller, self.buyer)}
        for wallet, need in ((self.seller, 20_000_000),):
            if before[wallet] < need:
                fund(self.node_url, wallet.address, "100")
                before[wallet] = balance(self.node_url, wallet.address)
        self.echo(f"seller {self.seller.address}: {before[self.seller] / 1e6:.6f} RTC")
        self.echo(f"buyer  {self.buyer.address}: {before[self.buyer] / 1e6:.6f} RTC")
        self.echo("\n1) sell order: seller sells 10 RTC at 0.05 USDC")
        status, body = self.api.create_order(self.seller, side="sell", pair="RTC/USDC", amount_micro_rtc=10_000_000,
                                             price_nano_quote=50_000_000, eth_address=SELLER_QUOTE_ADDRESS)
        order_a = self.expect("create sell", status, body, 201)
        self.echo(f"  escrow job {order_a['escrow_job_id']}; seller keeps the preimage (shown once)")
        status, body = self.api.match(self.buyer, order_a["order_id"], BUYER_QUOTE_ADDRESS)
        matched = self.expect("buyer matches", status, body, 200)
        ins = matched["settlement_instructions"]
        self.echo(f"  buyer locks {ins['total_quote_base_units']} base units of {ins['currency']} in an HTLC "
                  f"(hash {ins['htlc_hash'][:16]}..., timelock {ins['htlc_timelock_min']}..{ins['htlc_timelock_max']}) "
                  "[quote chain simulated]")
        self.settle(order_a["order_id"], order_a["htlc_secret"], "demo-quote-tx-a", wallet=None)
        self.echo("\n2) buy order: buyer bids for 5 RTC at 0.06 USDC")
        status, body = self.api.create_order(self.buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                             price_nano_quote=60_000_000, eth_address=BUYER_QUOTE_ADDRESS)
        order_b = self.expect("create buy", status, body, 201)
        status, body = self.api.match(self.seller, order_b["order_id"], SELLER_QUOTE_ADDRESS)
        matched = self.expect("seller matches (locks escrow)", status, body, 200)
        self.settle(order_b["order_id"], matched["htlc_secret"], "demo-quote-tx-b", wallet=self.seller.address)
        self.check_balances(before)

    def settle(self, order_id: str, secret: str, quote_tx: str, wallet: str | None) -> None:
        _, body = self.api.order(order_id)
        self.secret_hidden(body["order"], "after match")
        status, body = self.api.confirm(order_id, secret=secret, quote_tx=quote_tx, wallet=wallet)
        confirmed = self.expect("confirm with preimage", status, body, 200)
        if confirmed["status"] not in ("payout_pending", "completed"):
            raise DemoFailed(f"confirm ended {confirmed['status']}: {confirmed.get('message')}")
        _, body = self.api.order(order_id)
        self.secret_hidden(body["order"], "while the payout is pending")
        response = requests.post(f"{self.node_url}/pending/confirm", json={},
                                 headers={"X-Admin-Key": self.info["node_admin_key"]}, timeout=10)
        self.echo(f"  node operator confirms the pending pool: confirmed {response.json().get('confirmed_count')}")
        status, body = self.api.reconcile(self.info["admin_token"])
        self.echo(f"  reconcile pass: HTTP {status} {body.get('summary')}")
        _, body = self.api.order(order_id)
        order = body["order"]
        self.echo(f"  order {order_id}: {order['status']}, preimage readable: {'htlc_secret' in order}")
        if order["status"] != "completed" or order.get("htlc_secret") != secret:
            raise DemoFailed(f"order {order_id} ended {order['status']}, expected completed with the preimage")

    def secret_hidden(self, order: dict, when: str) -> None:
        if "htlc_secret" in order:
            raise DemoFailed(f"preimage readable {when} (status {order['status']})")
        self.echo(f"  preimage hidden {when} (status {order['status']})")

    def check_balances(self, before: dict) -> None:
        after = {w: balance(self.node_url, w.address) for w in (self.seller, self.buyer)}
        # Seller pays each escrow: reward + the node's 5 % fee; the buyer receives the rewards.
        want_seller = -(10_000_000 + 500_000 + 5_000_000 + 250_000)
        want_buyer = 15_000_000
        got_seller, got_buyer = after[self.seller] - before[self.seller], after[self.buyer] - before[self.buyer]
        self.echo("\nbalances (micro-RTC):")
        self.echo(f"  seller {before[self.seller]} -> {after[self.seller]} ({got_seller:+}, expected {want_seller:+})")
        self.echo(f"  buyer  {before[self.buyer]} -> {after[self.buyer]} ({got_buyer:+}, expected {want_buyer:+})")
        if (got_seller, got_buyer) != (want_seller, want_buyer):
            raise DemoFailed("balances differ from the expected deltas")
        self.echo("demo OK: both trades completed, balances exact (including the node's 5 % fee)")
