"""The crash matrix of the quote leg's new steps (docs/protocol.md §12, docs/crash-matrix.md):
the buyer-held reveal, the watcher settling a seller-held order from the seller's on-chain
claim, and the bridge's claim of a buyer-held lock for its seller, first sent or, stuck in
the mempool, replaced with raised fees at the same nonce (docs/protocol.md §12.8).

Each scenario runs like those of ``test_crash_matrix.py`` (real ``serve`` or ``reconcile``
processes armed with a crash point, a restart, passes until quiet, the same books checks),
against a dev chain of this module's own (anvil, started fresh so its clock is the wall
clock the bridge processes use), and adds the chain's side: the lock was claimed for the
seller exactly when the escrow was released, and the seller got exactly the locked amount.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from chain_support import start_dev_chain
from crash_checks import check_alerts, check_jobs, check_money, check_records, db_rows, history, the_order
from crash_scenarios import Ctx, new_ctx, service_bridge
from test_crash_matrix import (
    _RELEASE_STEPS,
    _WATCH_READ,
    RELEASED,
    End,
    Operation,
    _reconcile,
    crash,
    discover,
    restart_and_reconcile,
)

from otc_bridge.chain import tx
from otc_bridge.domain import money
from otc_bridge.settlement import reconcile
from otc_bridge.trading import confirm, create, match

PAIR = "RTC/ETH"
AMOUNT_MICRO_RTC = 10_000_000
PRICE_NANO_QUOTE = 2_000_000
DUE_WEI = money.total_quote_base_units(AMOUNT_MICRO_RTC, PRICE_NANO_QUOTE, 18)
GWEI = 10**9


@pytest.fixture(scope="module")
def chain() -> Iterator:
    dev = start_dev_chain()
    try:
        yield dev
    finally:
        dev.stop()


@pytest.fixture(autouse=True)
def mining_restored(chain) -> Iterator:
    """Automine and the next block's base fee as they were, whatever a scenario did to them."""
    base_fee_wei = tx.next_base_fee_wei(chain.w3)
    yield
    chain.rpc("anvil_dropAllTransactions")
    chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(base_fee_wei))
    chain.rpc("evm_setAutomine", True)


@dataclass
class ChainCtx(Ctx):
    """A crash scenario whose bridge watches the module's dev chain (``evm``)."""

    evm: object = None

    @property
    def env(self) -> dict[str, str]:
        # A stuck claim is replaced on the next pass (the bump scenario crashes that pass); a
        # claim on an automining chain is never stuck, so the other scenarios are unchanged.
        return {**super().env, **self.evm.env(), "OTC_EVM_CLAIM_BUMP_SECONDS": "0"}

    @property
    def seller_eth(self) -> str:
        return self.evm.accounts["seller"].address


def chain_ctx(tmp_path, node, evm) -> ChainCtx:
    base = new_ctx(tmp_path, node, "sell")
    return ChainCtx(base.workdir, base.node, "sell", base.seller, base.buyer, evm=evm)


def _matched(ctx: ChainCtx, bridge, *, buyer_held: bool) -> str:
    """A sell order on RTC/ETH matched by the buyer; returns the preimage the lock uses."""
    bound = {"side": "sell", "pair": PAIR, "amount_micro_rtc": AMOUNT_MICRO_RTC,
             "price_per_rtc_nano_quote": PRICE_NANO_QUOTE, "ttl_seconds": 86_400, "eth_address": ctx.seller_eth}
    created = create.create_order(bridge, create.CreateRequest(
        side="sell", pair=PAIR, wallet=ctx.seller.address, quote_address=ctx.seller_eth,
        amount_micro_rtc=AMOUNT_MICRO_RTC, price_nano_quote=PRICE_NANO_QUOTE, ttl_seconds=86_400,
        wallet_auth=ctx.seller.auth("create_order", "create_order", bound, timestamp=bridge.now())))
    ctx.order_id, secret = created.order.order_id, created.htlc_secret
    buyer_eth = ctx.evm.accounts["buyer"].address
    htlc_hash = None
    if buyer_held:
        raw = secrets.token_bytes(32)
        secret, htlc_hash = raw.hex(), hashlib.sha256(raw).hexdigest()
    bound = {"eth_address": buyer_eth} | ({"htlc_hash": htlc_hash} if htlc_hash else {})
    auth = ctx.buyer.auth("match_order", ctx.order_id, bound, timestamp=bridge.now())
    match.match_order(bridge, ctx.order_id, ctx.buyer.address, buyer_eth, auth, htlc_hash=htlc_hash)
    ctx.secret = secret
    return secret


def _lock(ctx: ChainCtx, bridge) -> bytes:
    """The buyer locks the due ETH under the order's hashlock, with a timelock inside its
    mode's range; one pass counts it (``locked``)."""
    order = db_rows(ctx.db_path, "SELECT htlc_hash, matched_at, preimage_holder FROM orders WHERE order_id = ?",
                    (ctx.order_id,))[0]
    if order["preimage_holder"] == "buyer":  # [lock block + 4 h, + 24 h]
        timelock = ctx.evm.latest_timestamp() + 5 * 3600
    else:  # [matched_at + 12 h, settle_by - 24 h]
        timelock = order["matched_at"] + 13 * 3600
    created, _ = ctx.evm.htlc.create_swap_eth(ctx.evm.accounts["buyer"].signer, seller=ctx.seller_eth,
                                              hashlock=bytes.fromhex(order["htlc_hash"]), timelock=timelock,
                                              rtc_order_id=ctx.order_id, amount_wei=DUE_WEI)
    reconcile.run_once(bridge)
    state = db_rows(ctx.db_path, "SELECT quote_leg_state FROM orders WHERE order_id = ?", (ctx.order_id,))[0][0]
    assert state == "locked", state
    return created.swap_id


def buyer_held_locked(ctx: ChainCtx) -> None:
    """Buyer-held, the buyer's lock verified: waiting for the reveal."""
    with service_bridge(ctx) as bridge:
        _matched(ctx, bridge, buyer_held=True)
        _lock(ctx, bridge)


def seller_held_claimed(ctx: ChainCtx) -> None:
    """Seller-held, the lock verified, then claimed on chain by the seller: nobody confirms."""
    with service_bridge(ctx) as bridge:
        secret = _matched(ctx, bridge, buyer_held=False)
        swap_id = _lock(ctx, bridge)
    ctx.evm.htlc.claim(ctx.evm.accounts["seller"].signer, swap_id, bytes.fromhex(secret))


def buyer_held_paid(ctx: ChainCtx) -> None:
    """Buyer-held, revealed: ``payout_pending``, the lock not yet claimed for the seller."""
    with service_bridge(ctx) as bridge:
        secret = _matched(ctx, bridge, buyer_held=True)
        _lock(ctx, bridge)
        auth = ctx.buyer.auth("confirm_order", ctx.order_id, {}, timestamp=bridge.now())
        done = confirm.confirm_order(bridge, ctx.order_id, secret=secret, quote_tx=None,
                                     wallet=ctx.buyer.address, wallet_auth=auth)
        assert done.status == "payout_pending", done


def buyer_held_claim_stuck(ctx: ChainCtx) -> None:
    """Buyer-held, the payout committed and the bridge's claim sent (3 gwei max fee, blocks
    mined by hand), then stuck: the next block's base fee is 10 gwei. The crashed pass
    replaces it."""
    buyer_held_paid(ctx)
    ctx.evm.rpc("evm_setAutomine", False)
    ctx.evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(GWEI))
    with service_bridge(ctx) as bridge:
        assert reconcile.run_once(bridge)["quote_claims_sent"] == 1
    ctx.evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(10 * GWEI))


def mine_again(ctx: ChainCtx) -> None:
    """Before the restart: blocks are mined again, and one now (the replacement, if it went
    out; the stuck original is dropped, as anvil drops what cannot pay the base fee)."""
    ctx.evm.rpc("evm_setAutomine", True)
    ctx.evm.rpc("evm_mine")


def drive_reveal(ctx: ChainCtx, api):
    return api.reveal(ctx.buyer, ctx.order_id, secret=ctx.secret)


CLAIMED_FOR_SELLER = End("completed", "released", "finishes the release, pays the buyer, claims the lock for the "
                                                  "seller once the payout is committed")

MATRIX: dict[str, Operation] = {
    "buyer_reveal": Operation("sell", buyer_held_locked, drive_reveal, {
        "after_commit:settling": CLAIMED_FOR_SELLER,
        **dict.fromkeys(_RELEASE_STEPS[2:], CLAIMED_FOR_SELLER), "after_commit:payout_pending": CLAIMED_FOR_SELLER}),
    "reconcile_settle_from_chain": Operation("sell", seller_held_claimed, None, _reconcile({
        **dict.fromkeys(_WATCH_READ, RELEASED), "after_commit:settling": RELEASED,
        **dict.fromkeys(_RELEASE_STEPS[2:], RELEASED), "after_commit:payout_pending": RELEASED,
        # the same pass's promotion step reads the payout the watcher's settlement just queued
        "before:tx_status": RELEASED, "after:tx_status": RELEASED})),
    "reconcile_claim_for_seller": Operation("sell", buyer_held_paid, None, _reconcile({
        "before:tx_status": CLAIMED_FOR_SELLER, "after:tx_status": CLAIMED_FOR_SELLER,
        "before:claim_tx": CLAIMED_FOR_SELLER, "after:claim_tx": CLAIMED_FOR_SELLER})),
    # The claim's replacement is recorded, then broadcast between the claim_tx points.
    "reconcile_bump_claim": Operation("sell", buyer_held_claim_stuck, None, _reconcile({
        "before:tx_status": CLAIMED_FOR_SELLER, "after:tx_status": CLAIMED_FOR_SELLER,
        "before:claim_tx": CLAIMED_FOR_SELLER, "after:claim_tx": CLAIMED_FOR_SELLER})),
}
#: What the chain needs between the crash and the restart, per operation.
BEFORE_RESTART = {"reconcile_bump_claim": mine_again}
CASES = [pytest.param(name, point, id=f"{name}-{point}") for name, op in MATRIX.items() for point in op.ends]


def check_quote_leg(ctx: ChainCtx, escrow: str, seller_eth_before: int) -> None:
    """The lock was claimed for the seller exactly when the escrow was released."""
    order = the_order(ctx)
    paid = ctx.evm.w3.eth.get_balance(ctx.seller_eth) - seller_eth_before
    if escrow == "released":
        assert (order["quote_leg_state"], paid) == ("claimed", DUE_WEI), (dict(order), paid)
    else:
        assert (order["quote_leg_state"], paid) == ("locked", 0), (dict(order), paid)


@pytest.mark.parametrize(("name", "point"), CASES)
def test_crash_on_the_quote_leg_then_restart_ends_as_the_matrix_says(name, point, crash_node, chain, tmp_path):
    op, end = MATRIX[name], MATRIX[name].ends[point]
    ctx = chain_ctx(tmp_path, crash_node, chain)
    before = crash_node.state()["balances"]
    seller_eth_before = chain.w3.eth.get_balance(ctx.seller_eth)
    op.setup(ctx)
    if name == "reconcile_settle_from_chain":  # the seller claimed in the set-up (and paid its gas)
        seller_eth_before = chain.w3.eth.get_balance(ctx.seller_eth) - DUE_WEI
    crash(ctx, op, point)
    BEFORE_RESTART.get(name, lambda ctx: None)(ctx)
    passes = restart_and_reconcile(ctx)
    order = the_order(ctx)
    assert order["status"] == end.status, (passes, history(ctx))
    check_jobs(ctx, order, end.escrow)
    check_money(ctx, order, end.escrow, before)
    check_quote_leg(ctx, end.escrow, seller_eth_before)
    if name == "reconcile_bump_claim":
        check_one_nonce(ctx)
    check_records(ctx)
    check_alerts(ctx)


def check_one_nonce(ctx: ChainCtx) -> None:
    """The claimer used one nonce for the order: the original and its replacement share it,
    and the replacement is the transaction that landed."""
    rows = db_rows(ctx.db_path, "SELECT node_ref, detail FROM order_events WHERE order_id = ? AND node_endpoint = "
                   "'eth_sendRawTransaction claim' AND node_outcome = 'intent' ORDER BY event_id", (ctx.order_id,))
    assert len(rows) == 2 and len({json.loads(row["detail"])["nonce"] for row in rows}) == 1, [dict(r) for r in rows]
    assert the_order(ctx)["quote_claim_tx"] == rows[1]["node_ref"]


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_quote_leg_matrix_lists_every_point(name, crash_node, chain, tmp_path):
    op = MATRIX[name]
    ctx = chain_ctx(tmp_path, crash_node, chain)
    op.setup(ctx)
    passed = discover(ctx, op)
    assert list(dict.fromkeys(passed)) == list(op.ends), passed
