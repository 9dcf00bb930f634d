"""The scripted demo (``otc-bridge demo``): two traders run four swaps against a running
``otc-bridge dev`` (:mod:`otc_bridge.dev.tools`), printing every step.

Swaps 1 and 2 are RTC/ERG settled on evidence (the ERG chain is simulated); swap 3 is RTC/ETH
on the dev chain, seller-held; swap 4 is RTC/USDC on the dev chain, buyer-held (the protocol's
two modes: docs/protocol.md §12). The RTC side runs on the dev node with two Ed25519 wallets
(:data:`SELLER_SEED`, :data:`BUYER_SEED`, which ``dev`` funds with :func:`fund`); the quote
side with the dev chain's demo accounts (:class:`otc_bridge.dev.demo_chain.DemoChain`). The
demo ends by checking every balance to the unit, the node's 5 % fee and gas included.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

import requests

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.dev.demo_chain import DemoChain
from otc_bridge.domain import money

SELLER_SEED = "otc-bridge demo seller"
BUYER_SEED = "otc-bridge demo buyer"

Echo = Callable[[str], None]


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
    through web3, imported only by :class:`~otc_bridge.dev.demo_chain.DemoChain`."""

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
        chain = DemoChain(self.info)
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

    def seller_held_eth(self, chain: DemoChain) -> None:
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

    def buyer_held_usdc(self, chain: DemoChain) -> None:
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

    def check_balances(self, before: dict, chain: DemoChain, chain_before: dict) -> None:
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
