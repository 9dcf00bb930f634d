"""One crash scenario: its wallets, database and environment; the order's starting states
(made in-process through the services); the operations, driven over HTTP.

A module with a unique name (not conftest) so the crash test files can import it directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bridge_support import BUYER_ETH, SELLER_ETH, NodeHandle, SimulatedCrash, dies_at, third_party  # noqa: F401
from crash_support import bridge_env

from otc_bridge.app import build_bridge
from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.config import Config
from otc_bridge.context import Bridge
from otc_bridge.trading import cancel, confirm, create, match

PAIR = "RTC/USDC"
PRICE_NANO_QUOTE = 50_000_000
SELL_MICRO_RTC = 10_000_000
BUY_MICRO_RTC = 5_000_000
WEEK = 7 * 86400
QUOTE_TX = "0x" + "ab" * 32
SETTLE_WINDOW = Config.settle_window_seconds


# --- one scenario ----------------------------------------------------------------------------

@dataclass
class Ctx:
    """One scenario: its directory (bridge database, logs), node, environment and traders.

    ``seller`` posts the escrow (maker of a sell order, taker of a buy order); ``buyer``
    receives the payout. ``order_id`` and ``secret`` are known when the set-up made them.
    """

    workdir: Path
    node: NodeHandle
    side: str
    seller: Wallet = field(default_factory=Wallet.generate)
    buyer: Wallet = field(default_factory=Wallet.generate)
    order_id: str | None = None
    secret: str | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.workdir / "bridge.db"

    @property
    def env(self) -> dict[str, str]:
        return bridge_env(self.node.url, self.db_path)

    @property
    def maker(self) -> Wallet:
        return self.seller if self.side == "sell" else self.buyer

    @property
    def taker(self) -> Wallet:
        return self.buyer if self.side == "sell" else self.seller

    @property
    def maker_quote(self) -> str:
        return SELLER_ETH if self.side == "sell" else BUYER_ETH

    @property
    def taker_quote(self) -> str:
        return BUYER_ETH if self.side == "sell" else SELLER_ETH

    @property
    def amount(self) -> int:
        return SELL_MICRO_RTC if self.side == "sell" else BUY_MICRO_RTC


def new_ctx(workdir: Path, node: NodeHandle, side: str) -> Ctx:
    ctx = Ctx(workdir, node, side)
    for wallet in (ctx.seller, ctx.buyer):
        node.fund(wallet.address, "100")
    return ctx


@contextmanager
def service_bridge(ctx: Ctx, shift_seconds: int = 0) -> Iterator[Bridge]:
    """The bridge's services on the scenario's database, in this process; the clock
    ``shift_seconds`` in the past (to make orders that are already due)."""
    bridge = build_bridge(Config.from_env(ctx.env))
    if shift_seconds:
        bridge.clock = lambda: int(time.time()) - shift_seconds
    try:
        yield bridge
    finally:
        bridge.db.close()


# --- set-ups: the order's state before the crashed operation (in-process services) -----------

def _create(ctx: Ctx, bridge: Bridge, ttl: int = WEEK) -> None:
    bound = {"side": ctx.side, "pair": PAIR, "amount_micro_rtc": ctx.amount, "price_per_rtc_nano_quote":
             PRICE_NANO_QUOTE, "ttl_seconds": ttl, "eth_address": ctx.maker_quote}
    auth = ctx.maker.auth("create_order", "create_order", bound, timestamp=bridge.now())
    created = create.create_order(bridge, create.CreateRequest(
        side=ctx.side, pair=PAIR, wallet=ctx.maker.address, quote_address=ctx.maker_quote,
        amount_micro_rtc=ctx.amount, price_nano_quote=PRICE_NANO_QUOTE, ttl_seconds=ttl, wallet_auth=auth))
    ctx.order_id, ctx.secret = created.order.order_id, created.htlc_secret


def _match(ctx: Ctx, bridge: Bridge) -> None:
    auth = ctx.taker.auth("match_order", ctx.order_id, {"eth_address": ctx.taker_quote}, timestamp=bridge.now())
    _, secret = match.match_order(bridge, ctx.order_id, ctx.taker.address, ctx.taker_quote, auth)
    ctx.secret = secret or ctx.secret


def _confirm(ctx: Ctx, bridge: Bridge) -> None:
    confirm.confirm_order(bridge, ctx.order_id, secret=ctx.secret, quote_tx=QUOTE_TX, wallet=None)


def _cancel(ctx: Ctx, bridge: Bridge) -> None:
    cancel.cancel_order(bridge, ctx.order_id, ctx.maker.address, ctx.maker.auth("cancel_order", ctx.order_id, {}))


def nothing(ctx: Ctx) -> None:
    """No order yet."""


def open_order(ctx: Ctx) -> None:
    """An open order (a sell order's escrow held)."""
    with service_bridge(ctx) as bridge:
        _create(ctx, bridge)


def matched_order(ctx: Ctx) -> None:
    """A matched order, escrow held, the preimage known to the RTC seller."""
    with service_bridge(ctx) as bridge:
        _create(ctx, bridge)
        _match(ctx, bridge)


def confirmed_payout(ctx: Ctx) -> None:
    """``payout_pending`` whose payout the node has since confirmed."""
    with service_bridge(ctx) as bridge:
        _create(ctx, bridge)
        _match(ctx, bridge)
        _confirm(ctx, bridge)
    assert ctx.node.post("/dev/confirm").json()["confirmed_count"] >= 1


def expired_open(ctx: Ctx) -> None:
    """An open order created 3700 s ago with a one-hour TTL."""
    with service_bridge(ctx, shift_seconds=3700) as bridge:
        _create(ctx, bridge, ttl=3600)


def overdue_match(ttl: int) -> Callable[[Ctx], None]:
    """An order of TTL ``ttl`` created and matched just over a settle window ago."""
    def setup(ctx: Ctx) -> None:
        with service_bridge(ctx, shift_seconds=SETTLE_WINDOW + 100) as bridge:
            _create(ctx, bridge, ttl=ttl)
            _match(ctx, bridge)
    setup.__doc__ = f"A match past settle_by; order TTL {ttl} s."
    return setup


def lost_create_answer(ctx: Ctx) -> None:
    """A sell create that died right after the node made its job: ``locking``, no job id."""
    with service_bridge(ctx) as bridge, dies_at("after:create_job"):
        _create(ctx, bridge)


def no_job_created(ctx: Ctx) -> None:
    """A sell create that died before calling the node: ``locking``, nothing on the node."""
    with service_bridge(ctx) as bridge, dies_at("before:create_job"):
        _create(ctx, bridge)


def stalled_settling(ctx: Ctx) -> None:
    """A confirm that died once it won the claim: ``settling``, job still claimed."""
    with service_bridge(ctx) as bridge:
        _create(ctx, bridge)
        _match(ctx, bridge)
        with dies_at("after_commit:settling"):
            _confirm(ctx, bridge)


def stalled_refund(ctx: Ctx) -> None:
    """A cancel that died once committed: ``refund_pending``, job still claimed."""
    with service_bridge(ctx) as bridge:
        _create(ctx, bridge)
        with dies_at("after_commit:refund_pending"):
            _cancel(ctx, bridge)


def _attack(ctx: Ctx, *steps: str) -> None:
    """A third party acts on the order's job through the node's open ``/agent/*`` routes, as
    the bridge's worker (deliver) or as the public poster (accept, dispute), in that order
    (docs/escrow-node.md §2: the node authenticates nobody)."""
    with service_bridge(ctx) as bridge:
        row = bridge.db.read_one("SELECT escrow_job_id, escrow_wallet FROM orders WHERE order_id = ?",
                                 (ctx.order_id,))
    third_party(ctx.node, row["escrow_job_id"], row["escrow_wallet"], *steps)


def disputed_open(ctx: Ctx) -> None:
    """An open sell order whose job a third party delivered as the worker, then disputed as
    the poster: release can never succeed."""
    open_order(ctx)
    _attack(ctx, "deliver", "dispute")


def stolen_open(ctx: Ctx) -> None:
    """An open sell order whose job a third party delivered and accepted: the escrow was paid
    into the bridge's worker wallet (custody) while the order sat on the book."""
    open_order(ctx)
    _attack(ctx, "deliver", "accept")


def delivered_matched(ctx: Ctx) -> None:
    """A matched order whose job a third party delivered as the worker: the first step of a
    clawback (dispute and cancel as the poster would follow)."""
    matched_order(ctx)
    _attack(ctx, "deliver")


# --- drives: the operation itself, over HTTP -------------------------------------------------

Drive = Callable[[Ctx, BridgeClient], tuple[int, dict]]


def drive_create(ctx: Ctx, api: BridgeClient) -> tuple[int, dict]:
    return api.create_order(ctx.maker, side=ctx.side, pair=PAIR, amount_micro_rtc=ctx.amount,
                            price_nano_quote=PRICE_NANO_QUOTE, eth_address=ctx.maker_quote)


def drive_match(ctx: Ctx, api: BridgeClient) -> tuple[int, dict]:
    return api.match(ctx.taker, ctx.order_id, ctx.taker_quote)


def drive_confirm(ctx: Ctx, api: BridgeClient) -> tuple[int, dict]:
    return api.confirm(ctx.order_id, secret=ctx.secret, quote_tx=QUOTE_TX)


def drive_cancel(ctx: Ctx, api: BridgeClient) -> tuple[int, dict]:
    return api.cancel(ctx.maker, ctx.order_id)
