"""The embedded developer setup (``otc-bridge dev``) and the scripted demo (``otc-bridge demo``).

``dev`` runs the dev escrow node and the bridge in one process on 127.0.0.1, funds two
demo wallets, runs the bridge's background reconciler every few seconds and its outbox
worker (webhooks and alerts, if configured) and, like a node operator's cron, confirms the
node's pending pool, so a person can finish a swap from the page. It writes ``dev.json``
with the URLs and keys the demo needs. The data directory is 0700 and its files 0600
(:mod:`otc_bridge.storage.files`), whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from werkzeug.serving import make_server

from otc_bridge.background import start_outbox_worker, start_reconciler
from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.domain import money
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
    """Run the four swaps against ``info['bridge_url']``; print every step; True on success."""
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


#: The demo seller's ERG address for the evidence-only swaps: base58 as the API wants, but no
#: real Ergo address (those swaps never touch a chain).
SELLER_ERG_ADDRESS = "9DemoSe11erErgoAddressNotRea1Dev"
#: Each swap the demo runs: (RTC amount in micro-RTC, price in nano-quote per RTC).
_ERG_SELL, _ERG_BUY = (10_000_000, 50_000_000), (5_000_000, 60_000_000)
_ETH_SELL, _USDC_BUY = (4_000_000, 2_000_000), (2_000_000, 60_000_000)
#: How long the demo waits for the bridge to reach a state (reconcile passes, node confirms).
WAIT_SECONDS = 60.0


def _escrow_cost(micro: int) -> int:
    """What the RTC seller's escrow costs, in micro-RTC: the reward plus the node's 5 % fee
    (``int(reward * 0.05)``, exact for these round amounts)."""
    return micro + micro // 20


class _Demo:
    """The scripted traders. RTC: two Ed25519 wallets on the dev node. Quote chain (swaps 3
    and 4): the dev chain's demo seller and buyer accounts (``dev.json`` ``evm_accounts``),
    through web3, imported only here."""

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
        if "evm_rpc_url" not in self.info:
            raise DemoFailed("dev.json names no dev chain: restart `otc-bridge dev`")
        chain = _DemoChain(self.info)
        need = sum(_escrow_cost(micro) for micro, _ in (_ERG_SELL, _ERG_BUY, _ETH_SELL, _USDC_BUY))
        before = {w: balance(self.node_url, w.address) for w in (self.seller, self.buyer)}
        if before[self.seller] < need:
            fund(self.node_url, self.seller.address, "100")
            before[self.seller] = balance(self.node_url, self.seller.address)
        chain_before = chain.balances()
        self.echo(f"seller {self.seller.address}: {before[self.seller] / 1e6:.6f} RTC")
        self.echo(f"buyer  {self.buyer.address}: {before[self.buyer] / 1e6:.6f} RTC")
        self.evidence_swaps()
        self.seller_held_eth(chain)
        self.buyer_held_usdc(chain)
        self.check_balances(before, chain, chain_before)

    # --- 1, 2: ERG, settled on evidence (the quote chain is simulated) ------------------------

    def evidence_swaps(self) -> None:
        micro, price = _ERG_SELL
        self.echo("\n1) sell order on RTC/ERG (evidence only: the ERG chain is simulated): seller sells 10 RTC "
                  "at 0.05 ERG")
        status, body = self.api.create_order(self.seller, side="sell", pair="RTC/ERG", amount_micro_rtc=micro,
                                             price_nano_quote=price, eth_address=SELLER_ERG_ADDRESS)
        order_a = self.expect("create sell", status, body, 201)
        self.echo(f"  escrow job {order_a['escrow_job_id']}; seller keeps the preimage (shown once)")
        status, body = self.api.match(self.buyer, order_a["order_id"])
        matched = self.expect("buyer matches", status, body, 200)
        ins = matched["settlement_instructions"]
        self.echo(f"  buyer locks {ins['total_quote_base_units']} base units of {ins['currency']} in an HTLC "
                  f"(hash {ins['htlc_hash'][:16]}..., timelock {ins['htlc_timelock_min']}..{ins['htlc_timelock_max']}) "
                  f"[quote chain simulated: quote_verification={ins['quote_verification']}]")
        self.settle(order_a["order_id"], order_a["htlc_secret"], "demo-quote-tx-a", wallet=None)
        micro, price = _ERG_BUY
        self.echo("\n2) buy order on RTC/ERG (evidence only): buyer bids for 5 RTC at 0.06 ERG")
        status, body = self.api.create_order(self.buyer, side="buy", pair="RTC/ERG", amount_micro_rtc=micro,
                                             price_nano_quote=price)
        order_b = self.expect("create buy", status, body, 201)
        status, body = self.api.match(self.seller, order_b["order_id"], SELLER_ERG_ADDRESS)
        matched = self.expect("seller matches (locks escrow)", status, body, 200)
        self.settle(order_b["order_id"], matched["htlc_secret"], "demo-quote-tx-b", wallet=self.seller.address)

    def settle(self, order_id: str, secret: str, quote_tx: str, wallet: str | None) -> None:
        _, body = self.api.order(order_id)
        self.secret_hidden(body["order"], "after match")
        status, body = self.api.confirm(order_id, secret=secret, quote_tx=quote_tx, wallet=wallet)
        confirmed = self.expect("confirm with preimage", status, body, 200)
        if confirmed["status"] not in ("payout_pending", "completed"):
            raise DemoFailed(f"confirm ended {confirmed['status']}: {confirmed.get('message')}")
        _, body = self.api.order(order_id)
        self.secret_hidden(body["order"], "while the payout is pending")
        self.complete(order_id, secret)

    def complete(self, order_id: str, secret: str) -> None:
        """The node operator confirms the pending pool; reconcile passes complete the order."""
        response = requests.post(f"{self.node_url}/pending/confirm", json={},
                                 headers={"X-Admin-Key": self.info["node_admin_key"]}, timeout=10)
        self.echo(f"  node operator confirms the pending pool: confirmed {response.json().get('confirmed_count')}")
        order = self.wait_for(order_id, lambda o: o["status"] == "completed", "the payout completes")
        self.echo(f"  order {order_id}: {order['status']}, preimage readable: {'htlc_secret' in order}")
        if order.get("htlc_secret") != secret:
            raise DemoFailed(f"order {order_id} completed without its preimage readable")

    def wait_for(self, order_id: str, done: Callable[[dict], bool], what: str) -> dict:
        """Reconcile passes (one every 0.5 s; `dev` runs its own every 5 s too, and a pass finds
        the lease taken then) until ``done(order view)``; raises :class:`DemoFailed` after
        :data:`WAIT_SECONDS`."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            self.api.reconcile(self.info["admin_token"])
            _, body = self.api.order(order_id)
            order = body["order"]
            if done(order):
                return order
            if time.monotonic() > deadline:
                raise DemoFailed(f"{what}: order {order_id} is still {order['status']}, "
                                 f"quote leg {order.get('quote_leg')}")
            time.sleep(0.5)

    def secret_hidden(self, order: dict, when: str) -> None:
        if "htlc_secret" in order:
            raise DemoFailed(f"preimage readable {when} (status {order['status']})")
        self.echo(f"  preimage hidden {when} (status {order['status']})")

    # --- 3: ETH on chain, seller-held -------------------------------------------------------------

    def seller_held_eth(self, chain: _DemoChain) -> None:
        micro, price = _ETH_SELL
        self.echo("\n3) on chain, seller-held: seller sells 4 RTC at 0.002 ETH; the buyer locks ETH in the HTLC, "
                  "the seller claims it with the bridge's preimage, the watcher settles")
        status, body = self.api.create_order(self.seller, side="sell", pair="RTC/ETH", amount_micro_rtc=micro,
                                             price_nano_quote=price, eth_address=chain.address("seller"))
        order_id, secret = self.expect("create sell", status, body, 201)["order_id"], body["htlc_secret"]
        status, body = self.api.match(self.buyer, order_id, chain.address("buyer"))
        ins = self.expect("buyer matches (no htlc_hash: seller-held)", status, body, 200)["settlement_instructions"]
        self._check_terms(ins, "seller")
        # The absolute range of the seller-held mode; an hour past its start leaves room both ways.
        timelock = ins["htlc_timelock_min"] + 3600
        lock_tx, swap_id = chain.lock(ins, order_id, timelock)
        self.echo(f"  buyer's lock tx {lock_tx} (swap {swap_id.hex()[:16]}..., {ins['total_quote_base_units']} wei)")
        self.wait_for(order_id, lambda o: o["quote_leg"]["state"] == "locked", "the watcher verifies the lock")
        self.echo("  quote leg: locked (verified on chain by the bridge)")
        claim_tx = chain.claim(swap_id, secret)
        self.echo(f"  seller's claim tx {claim_tx} (reveals the preimage on chain)")
        order = self.wait_for(order_id, lambda o: o["quote_leg"]["state"] == "claimed"
                              and o["status"] in ("payout_pending", "completed"), "the watcher settles from the claim")
        self.echo(f"  quote leg: claimed; the watcher settled the order without a confirm: {order['status']}")
        self.complete(order_id, secret)

    # --- 4: USDC on chain, buyer-held -------------------------------------------------------------

    def buyer_held_usdc(self, chain: _DemoChain) -> None:
        micro, price = _USDC_BUY
        self.echo("\n4) on chain, buyer-held: buyer bids for 2 RTC at 0.06 USDC with its own hashlock; it locks USDC, "
                  "reveals to the bridge, and the bridge claims the lock for the seller")
        raw = secrets.token_bytes(32)
        preimage, htlc_hash = raw.hex(), hashlib.sha256(raw).hexdigest()
        status, body = self.api.create_order(self.buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=micro,
                                             price_nano_quote=price, eth_address=chain.address("buyer"),
                                             htlc_hash=htlc_hash)
        order_id = self.expect("create buy with htlc_hash", status, body, 201)["order_id"]
        status, body = self.api.match(self.seller, order_id, chain.address("seller"))
        matched = self.expect("seller matches (locks escrow, gets no preimage)", status, body, 200)
        if "htlc_secret" in matched:
            raise DemoFailed("the seller was handed a preimage in the buyer-held mode")
        ins = matched["settlement_instructions"]
        self._check_terms(ins, "buyer")
        # Relative to the lock's block: now + the minimum + an hour, inside [min, max] after it.
        timelock = chain.now() + ins["htlc_timelock_min_after_lock"] + 3600
        lock_tx, _ = chain.lock(ins, order_id, timelock)
        self.echo(f"  buyer's lock tx {lock_tx} (approve, then createSwapERC20 of {ins['total_quote_base_units']} "
                  "USDC base units)")
        self.wait_for(order_id, lambda o: o["quote_leg"]["state"] == "locked", "the watcher verifies the lock")
        self.echo("  quote leg: locked (verified on chain by the bridge)")
        status, body = self.api.reveal(self.buyer, order_id, secret=preimage)
        revealed = self.expect("buyer reveals (signed confirm)", status, body, 200)
        if revealed["status"] not in ("payout_pending", "completed"):
            raise DemoFailed(f"the reveal ended {revealed['status']}: {revealed.get('message')}")
        order = self.wait_for(order_id, lambda o: o["quote_leg"]["state"] == "claimed", "the bridge claims the lock")
        claimer = chain.sender(order["quote_leg"]["claim_tx"])
        self.echo(f"  bridge's claim tx {order['quote_leg']['claim_tx']} (sent by its claimer {claimer}: the seller "
                  "paid no gas)")
        self.complete(order_id, preimage)

    @staticmethod
    def _check_terms(ins: dict, holder: str) -> None:
        if ins.get("quote_verification") != "evm" or ins.get("preimage_holder") != holder:
            raise DemoFailed(f"expected a {holder}-held lock verified on chain, got {ins.get('quote_verification')}/"
                             f"{ins.get('preimage_holder')}")

    # --- the end ------------------------------------------------------------------------------------

    def check_balances(self, before: dict, chain: _DemoChain, chain_before: dict) -> None:
        after = {w: balance(self.node_url, w.address) for w in (self.seller, self.buyer)}
        swaps = (_ERG_SELL, _ERG_BUY, _ETH_SELL, _USDC_BUY)
        # The seller pays each escrow: reward + the node's 5 % fee; the buyer receives the rewards.
        want_seller = -sum(_escrow_cost(micro) for micro, _ in swaps)
        want_buyer = sum(micro for micro, _ in swaps)
        got_seller, got_buyer = after[self.seller] - before[self.seller], after[self.buyer] - before[self.buyer]
        self.echo("\nbalances (micro-RTC):")
        self.echo(f"  seller {before[self.seller]} -> {after[self.seller]} ({got_seller:+}, expected {want_seller:+})")
        self.echo(f"  buyer  {before[self.buyer]} -> {after[self.buyer]} ({got_buyer:+}, expected {want_buyer:+})")
        if (got_seller, got_buyer) != (want_seller, want_buyer):
            raise DemoFailed("balances differ from the expected deltas")
        eth_due = money.total_quote_base_units(*_ETH_SELL, money.PAIRS["RTC/ETH"].decimals)
        usdc_due = money.total_quote_base_units(*_USDC_BUY, money.PAIRS["RTC/USDC"].decimals)
        chain_after = chain.balances()
        # ETH: the lock's and the claim's gas are paid by the buyer and the seller (seller-held).
        want = {("seller", "wei"): eth_due - chain.gas_paid["seller"],
                ("buyer", "wei"): -eth_due - chain.gas_paid["buyer"],
                ("seller", "usdc"): usdc_due, ("buyer", "usdc"): -usdc_due}
        self.echo("quote chain (ETH in wei, USDC in base units, gas included):")
        for key, delta in want.items():
            got = chain_after[key] - chain_before[key]
            self.echo(f"  {key[0]:<6} {key[1]:<4} {got:+} (expected {delta:+})")
            if got != delta:
                raise DemoFailed(f"the {key[0]}'s {key[1]} balance moved {got:+}, expected {delta:+}")
        self.echo("demo OK: all four trades completed, balances exact (including the node's 5 % fee and gas)")


class _DemoChain:
    """The demo traders on the dev chain: web3 clients of the HTLC and the test USDC, the
    seller's and buyer's keys from ``dev.json`` (anvil's public dev keys), and the gas each
    paid (wei) so the balance check can be exact."""

    def __init__(self, info: dict) -> None:
        from eth_account import Account

        from otc_bridge.chain import tx
        from otc_bridge.chain.erc20 import ERC20Client
        from otc_bridge.chain.htlc import HTLCClient

        self.w3 = tx.connect(info["evm_rpc_url"])
        self.htlc = HTLCClient(self.w3, info["htlc_address"])
        self.usdc = ERC20Client(self.w3, info["usdc_address"])
        keys = info["evm_accounts"]
        self.accounts = {role: Account.from_key(keys[role]["private_key"]) for role in ("seller", "buyer")}
        self.gas_paid = {"seller": 0, "buyer": 0}

    def address(self, role: str) -> str:
        return self.accounts[role].address

    def now(self) -> int:
        """The latest block's timestamp (unix seconds): the clock of every timelock."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def balances(self) -> dict[tuple[str, str], int]:
        """``{(role, "wei" | "usdc"): balance}`` of the seller and the buyer."""
        out = {}
        for role, account in self.accounts.items():
            out[(role, "wei")] = self.w3.eth.get_balance(account.address)
            out[(role, "usdc")] = self.usdc.balance_of(account.address)
        return out

    def _paid(self, role: str, receipt) -> None:
        self.gas_paid[role] += receipt["gasUsed"] * receipt["effectiveGasPrice"]

    def lock(self, ins: dict, order_id: str, timelock: int) -> tuple[str, bytes]:
        """The buyer locks the instructions' amount (ETH, or USDC after an approve) for
        ``pay_to_address`` under ``htlc_hash`` until ``timelock``; ``(lock tx hash, swap id)``."""
        buyer, amount = self.accounts["buyer"], int(ins["total_quote_base_units"])
        terms = {"seller": ins["pay_to_address"], "hashlock": bytes.fromhex(ins["htlc_hash"]), "timelock": timelock,
                 "rtc_order_id": order_id}
        if ins["token_contract"] is None:
            created, receipt = self.htlc.create_swap_eth(buyer, amount_wei=amount, **terms)
        else:
            self._paid("buyer", self.usdc.approve(buyer, self.htlc.address, amount))
            created, receipt = self.htlc.create_swap_erc20(buyer, token=ins["token_contract"], amount=amount, **terms)
        self._paid("buyer", receipt)
        return receipt["transactionHash"].to_0x_hex(), created.swap_id

    def claim(self, swap_id: bytes, preimage_hex: str) -> str:
        """The seller claims ``swap_id`` with the preimage (seller-held); the claim tx hash."""
        receipt = self.htlc.claim(self.accounts["seller"], swap_id, bytes.fromhex(preimage_hex))
        self._paid("seller", receipt)
        return receipt["transactionHash"].to_0x_hex()

    def sender(self, tx_hash: str) -> str:
        """Who sent ``tx_hash``."""
        return self.w3.eth.get_transaction(tx_hash)["from"]
