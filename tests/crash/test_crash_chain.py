"""The crash matrix of the quote leg's new steps (docs/protocol.md §12, docs/crash-matrix.md):
the buyer-held reveal, the watcher settling a seller-held order from the seller's on-chain
claim, and the bridge's claim of a buyer-held lock for its seller.

Each scenario runs like those of ``test_crash_matrix.py`` (real ``serve`` or ``reconcile``
processes armed with a crash point, a restart, passes until quiet, the same books checks),
against a dev chain of this module's own (anvil, started fresh so its clock is the wall
clock the bridge processes use), and adds the chain's side: the lock was claimed for the
seller exactly when the escrow was released, and the seller got exactly the locked amount.
"""

from __future__ import annotations

import hashlib
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

from otc_bridge.domain import money
from otc_bridge.settlement import reconcile
from otc_bridge.trading import confirm, create, match

PAIR = "RTC/ETH"
AMOUNT_MICRO_RTC = 10_000_000
PRICE_NANO_QUOTE = 2_000_000
DUE_WEI = money.total_quote_base_units(AMOUNT_MICRO_RTC, PRICE_NANO_QUOTE, 18)


@pytest.fixture(scope="module")
def chain() -> Iterator:
    dev = start_dev_chain()
    try:
        yield dev
    finally:
        dev.stop()


@dataclass
class ChainCtx(Ctx):
    """A crash scenario whose bridge watches the module's dev chain (``evm``)."""

    evm: object = None

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.evm.env()}

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
}
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
    passes = restart_and_reconcile(ctx)
    order = the_order(ctx)
    assert order["status"] == end.status, (passes, history(ctx))
    check_jobs(ctx, order, end.escrow)
    check_money(ctx, order, end.escrow, before)
    check_quote_leg(ctx, end.escrow, seller_eth_before)
    check_records(ctx)
    check_alerts(ctx)


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_quote_leg_matrix_lists_every_point(name, crash_node, chain, tmp_path):
    op = MATRIX[name]
    ctx = chain_ctx(tmp_path, crash_node, chain)
    op.setup(ctx)
    passed = discover(ctx, op)
    assert list(dict.fromkeys(passed)) == list(op.ends), passed
