"""The crash matrix (SPEC §4, §7, §10): kill the real server at every crash point of every
operation, restart it, reconcile until quiet, and check the books.

For each ``(operation, point)`` in :data:`MATRIX` a scenario gets fresh funded wallets and
a fresh bridge database against a shared ``otc-bridge devnode`` process, brings the order to
the operation's starting state in-process, then runs the operation in a real
``otc-bridge serve`` (gunicorn) started with ``OTC_CRASH_POINT=<point>`` until its worker
dies there (exit 86), or, for reconciler actions, in an ``otc-bridge reconcile`` process that
dies there. A fresh ``serve`` without the crash variables then runs reconcile passes
(``POST /admin/reconcile``, the node's pending pool confirmed before each) until one changes
nothing, and the test asserts:

1. the order ends in the matrix's status;
2. every escrow job the scenario's wallets posted is referenced by exactly that order (no
   orphan holding money) and is in the matrix's state (held = claimed by the bridge's worker
   with the order's amounts, released = completed, refunded = cancelled/expired);
3. the buyer was paid exactly once (released) or not at all, and nothing is left pending;
4. conservation: every wallet moved by exactly what the end state implies (escrow pool and
   fee wallet included, everyone else unchanged) and the node's own totals hold;
5. the preimage is readable only once ``completed`` (and never in a log line);
6. the history holds only edges of ``model.TRANSITIONS`` with gap-free versions, and every
   row passes the post-commit invariants;
7. the operator audit (``otc_bridge.operator_audit``, when present) finds no mismatch;
8. no operator alert blames a third party: no one but the bridge acted.

``test_matrix_lists_every_point_the_operation_passes`` runs each operation once in-process
with :func:`otc_bridge.crashpoints.set_hook` recording the points it passes, so the matrix
cannot silently miss one (a point reached twice is crashed at its first occurrence).
The table is mirrored in ``docs/crash-matrix.md``, checked by ``test_docs_mirror_the_matrix``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
from bridge_support import ADMIN_TOKEN, BUYER_ETH, SELLER_ETH, WORKER, NodeHandle, check_history, serve
from crash_support import (
    CRASH_LINE,
    REPO_ROOT,
    bridge_env,
    bridge_process,
    crash_env,
    db_rows,
    expire_reconciler_lease,
    node_jobs,
    reconcile_until_quiet,
    run_cli_reconcile,
    wait_out_grace,
)

from otc_bridge import crashpoints, orders, reconcile
from otc_bridge.app import build_bridge, create_app
from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.config import Config
from otc_bridge.context import Bridge
from otc_bridge.db import Database
from otc_bridge.devnode.store import ESCROW_WALLET, FEE_WALLET
from otc_bridge.escrow import expected_escrow_micro_rtc
from otc_bridge.invariants import violations

PAIR = "RTC/USDC"
PRICE_NANO_QUOTE = 50_000_000
SELL_MICRO_RTC = 10_000_000
BUY_MICRO_RTC = 5_000_000
WEEK = 7 * 86400
QUOTE_TX = "0x" + "ab" * 32
SETTLE_WINDOW = Config.settle_window_seconds
#: Statuses whose job kinds :func:`_job_kind` reports.
JOB_KINDS = {"claimed": "held", "completed": "released", "cancelled": "refunded", "expired": "refunded"}
#: Alerts that say someone other than the bridge moved escrow; no scenario here has one.
THIRD_PARTY_ALERTS = ("escrow_job_moved", "escrow_claimed_by_third_party", "escrow_released_during_refund",
                      "escrow_job_mismatch", "escrow_rejected")


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


class SimulatedCrash(BaseException):
    """Raised by the in-process crash hook (a BaseException: nothing on the path catches it)."""


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


@contextmanager
def dies_at(point: str) -> Iterator[None]:
    """Stop the in-process operation at ``point`` as a crash would (nothing after it runs)."""
    def hook(name: str) -> None:
        if name == point:
            raise SimulatedCrash(point)

    crashpoints.set_hook(hook)
    try:
        with pytest.raises(SimulatedCrash):
            yield
    finally:
        crashpoints.set_hook(None)


# --- set-ups: the order's state before the crashed operation (in-process services) -----------

def _create(ctx: Ctx, bridge: Bridge, ttl: int = WEEK) -> None:
    bound = {"side": ctx.side, "pair": PAIR, "amount_micro_rtc": ctx.amount, "price_per_rtc_nano_quote":
             PRICE_NANO_QUOTE, "ttl_seconds": ttl, "eth_address": ctx.maker_quote}
    auth = ctx.maker.auth("create_order", "create_order", bound, timestamp=bridge.now())
    created = orders.create_order(bridge, orders.CreateRequest(
        side=ctx.side, pair=PAIR, wallet=ctx.maker.address, quote_address=ctx.maker_quote,
        amount_micro_rtc=ctx.amount, price_nano_quote=PRICE_NANO_QUOTE, ttl_seconds=ttl, wallet_auth=auth))
    ctx.order_id, ctx.secret = created.order["order_id"], created.htlc_secret


def _match(ctx: Ctx, bridge: Bridge) -> None:
    auth = ctx.taker.auth("match_order", ctx.order_id, {"eth_address": ctx.taker_quote}, timestamp=bridge.now())
    _, secret = orders.match_order(bridge, ctx.order_id, ctx.taker.address, ctx.taker_quote, auth)
    ctx.secret = secret or ctx.secret


def _confirm(ctx: Ctx, bridge: Bridge) -> None:
    orders.confirm_order(bridge, ctx.order_id, secret=ctx.secret, quote_tx=QUOTE_TX, wallet=None)


def _cancel(ctx: Ctx, bridge: Bridge) -> None:
    orders.cancel_order(bridge, ctx.order_id, ctx.maker.address, ctx.maker.auth("cancel_order", ctx.order_id, {}))


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


# --- the matrix ------------------------------------------------------------------------------

class End(NamedTuple):
    """Where a crashed scenario ends once the reconciler is quiet.

    ``escrow``: ``none`` (no job ever), ``held`` (claimed by the bridge's worker),
    ``released`` (completed; the buyer paid once) or ``refunded`` (cancelled/expired; the
    seller whole). ``recovery``: what the reconciler does after the restart.
    """

    status: str
    escrow: str
    recovery: str


@dataclass(frozen=True)
class Operation:
    """An operation to crash: its side, starting state, HTTP drive (``None``: a reconcile
    pass, run by ``otc-bridge reconcile``) and the end of a crash at each point it passes,
    in the order it passes them."""

    side: str
    setup: Callable[[Ctx], None]
    drive: Drive | None
    ends: dict[str, End]


ABANDON_SELL = End("cancelled", "none", "no job carries the intent's reference: intent abandoned")
ADOPT_SELL = End("cancelled", "refunded", "finds the job by its reference tag, refunds it (cancel)")
LOST_SELL = End("cancelled", "refunded", "job id recorded, preimage lost with the answer: refunds the job")
OPEN_HELD = End("open", "held", "nothing: on the book, escrow held (the lost answer carried the preimage)")
STILL_OPEN = End("open", "held", "nothing: the match never committed")
MATCHED_HELD = End("matched", "held", "nothing until settle_by (then the unwind)")
ABANDON_BUY = End("open", "none", "no job for the taker's intent: back to open, taker cleared")
ADOPT_BUY = End("open", "refunded", "finds the taker's job by its reference, refunds it, relists the order")
LOST_BUY = End("open", "refunded", "taker's job recorded: refunds it and relists the order")
RELEASED = End("completed", "released", "resumes the release from the job's state, pays with the same key, "
                                        "promotes once the node confirms")
PROMOTED = End("completed", "released", "re-reads the payout and completes the order")
REFUNDED = End("cancelled", "refunded", "resumes the refund from the job's state (deliver, dispute, cancel)")
EXPIRED_REFUNDED = End("expired", "refunded", "resumes the refund from the job's state (deliver, dispute, cancel)")
RELISTED_BUY = End("open", "refunded", "resumes the taker's refund, relists the order")
NOTHING_HELD = End("cancelled", "none", "nothing: nothing was held")

_REFUND_STEPS = ("before:get_job", "after:get_job", "before:deliver", "after:deliver", "before:dispute",
                 "after:dispute", "before:cancel", "after:cancel")
_RELEASE_STEPS = ("before:get_job", "after:get_job", "before:deliver", "after:deliver", "before:accept",
                  "after:accept", "before:transfer", "after:transfer")
_LOCK_STEPS = ("before:create_job", "after:create_job", "before:claim", "after:claim", "before:get_job",
               "after:get_job")


def _locking(abandon: End, adopt: End, lost: End, done_point: str, done: End) -> dict[str, End]:
    ends = {"after_commit:locking": abandon, "before:create_job": abandon, "after:create_job": adopt}
    ends |= dict.fromkeys(_LOCK_STEPS[2:], lost)
    return ends | {done_point: done}


MATRIX: dict[str, Operation] = {
    "sell_create": Operation("sell", nothing, drive_create,
                             _locking(ABANDON_SELL, ADOPT_SELL, LOST_SELL, "after_commit:open", OPEN_HELD)),
    "buy_create": Operation("buy", nothing, drive_create, {
        "after_commit:open": End("open", "none", "nothing: a buy order holds nothing")}),
    "sell_match": Operation("sell", open_order, drive_match, {
        "before:get_job": STILL_OPEN, "after:get_job": STILL_OPEN, "after_commit:matched": MATCHED_HELD}),
    "buy_match": Operation("buy", open_order, drive_match,
                           _locking(ABANDON_BUY, ADOPT_BUY, LOST_BUY, "after_commit:matched", MATCHED_HELD)),
    "sell_confirm": Operation("sell", matched_order, drive_confirm, {
        "after_commit:settling": RELEASED, **dict.fromkeys(_RELEASE_STEPS, RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")}),
    "buy_confirm": Operation("buy", matched_order, drive_confirm, {
        "after_commit:settling": RELEASED, **dict.fromkeys(_RELEASE_STEPS, RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")}),
    "sell_cancel": Operation("sell", open_order, drive_cancel, {
        "after_commit:refund_pending": REFUNDED, **dict.fromkeys(_REFUND_STEPS, REFUNDED),
        "after_commit:cancelled": End("cancelled", "refunded", "nothing: refund already done")}),
    "buy_cancel": Operation("buy", open_order, drive_cancel, {"after_commit:cancelled": NOTHING_HELD}),
    "reconcile_promote": Operation("sell", confirmed_payout, None, {
        "before:tx_status": PROMOTED, "after:tx_status": PROMOTED,
        "after_commit:completed": End("completed", "released", "nothing: already completed")}),
    "reconcile_expire_sell": Operation("sell", expired_open, None, {
        "after_commit:refund_pending": EXPIRED_REFUNDED, **dict.fromkeys(_REFUND_STEPS, EXPIRED_REFUNDED),
        "after_commit:expired": End("expired", "refunded", "nothing: refund already done")}),
    "reconcile_expire_buy": Operation("buy", expired_open, None, {
        "after_commit:expired": End("expired", "none", "nothing: a buy order holds nothing")}),
    "reconcile_unwind_relist": Operation("sell", overdue_match(WEEK), None, {
        "after_commit:open": End("open", "held", "nothing: back on the book, escrow held")}),
    "reconcile_unwind_refund": Operation("sell", overdue_match(3600), None, {
        "after_commit:refund_pending": EXPIRED_REFUNDED, **dict.fromkeys(_REFUND_STEPS, EXPIRED_REFUNDED),
        "after_commit:expired": End("expired", "refunded", "nothing: refund already done")}),
    "reconcile_unwind_buy": Operation("buy", overdue_match(WEEK), None, {
        "after_commit:refund_pending": RELISTED_BUY, **dict.fromkeys(_REFUND_STEPS, RELISTED_BUY),
        "after_commit:open": End("open", "refunded", "nothing: taker refunded, order relisted")}),
    "reconcile_adopt": Operation("sell", lost_create_answer, None, {
        "before:list_jobs": ADOPT_SELL, "after:list_jobs": ADOPT_SELL, "after_commit:refund_pending": LOST_SELL,
        "before:get_job": LOST_SELL, "after:get_job": LOST_SELL, "before:cancel": LOST_SELL,
        "after:cancel": LOST_SELL, "after_commit:cancelled": End("cancelled", "refunded", "nothing: refunded")}),
    "reconcile_abandon": Operation("sell", no_job_created, None, {
        "before:list_jobs": ABANDON_SELL, "after:list_jobs": ABANDON_SELL,
        "after_commit:cancelled": End("cancelled", "none", "nothing: intent abandoned")}),
    "reconcile_resume_release": Operation("sell", stalled_settling, None, {
        **dict.fromkeys(_RELEASE_STEPS, RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")}),
    "reconcile_resume_refund": Operation("sell", stalled_refund, None, {
        **dict.fromkeys(_REFUND_STEPS, REFUNDED),
        "after_commit:cancelled": End("cancelled", "refunded", "nothing: refund already done")}),
}


class FalseAlarm(AssertionError):
    """An operator alert blamed a third party in a scenario where only the bridge acted."""


#: Known product bugs, by (operation, point): the scenario is kept, and must fail with
#: exactly the exception named (any other failure still fails the test).
BUGS: dict[tuple[str, str], tuple[type[BaseException], str]] = {
    **dict.fromkeys(
        [("sell_create", "after:create_job"), ("sell_create", "before:claim"),
         *(("reconcile_adopt", point) for point in MATRIX["reconcile_adopt"].ends)],
        (FalseAlarm, "BUG: refunding a sell escrow whose create answer was lost (end_cause escrow_outcome_lost) "
                     "raises 'escrow_job_moved: escrow job was open (worker None) before the bridge's first refund "
                     "step', blaming a third party: the job is open only because the bridge died before claiming "
                     "it (settlement.advance_refund: already_alerted omits escrow_outcome_lost)")),
}


def _marks(name: str, point: str) -> list:
    if (name, point) not in BUGS:
        return []
    raises, reason = BUGS[name, point]
    return [pytest.mark.xfail(strict=True, raises=raises, reason=reason)]


CASES = [pytest.param(name, point, id=f"{name}-{point}", marks=_marks(name, point))
         for name, op in MATRIX.items() for point in op.ends]


# --- running a scenario ----------------------------------------------------------------------

def crash(ctx: Ctx, op: Operation, point: str) -> None:
    """Run the operation in a process armed with ``point`` and see it die there."""
    env = crash_env(ctx.env, point)
    if op.drive is None:
        wait_out_grace(ctx.db_path)
        done = run_cli_reconcile(env, ctx.workdir)
        ctx.logs.append(done.stdout + done.stderr)
        assert done.returncode == crashpoints.EXIT_CODE, f"{point} not reached:\n{done.stdout}{done.stderr}"
        return
    with bridge_process(env, ctx.workdir) as (proc, api):
        try:
            status, body = op.drive(ctx, api)
        except requests.ConnectionError:
            pass  # the worker died with the request
        else:
            assert status == 502, f"{point} not reached: the request answered {status} {body}"
        proc.wait_for(CRASH_LINE)
        proc.kill()  # the master respawned a worker armed the same way: end them all
        ctx.logs.append(proc.output)


def restart_and_reconcile(ctx: Ctx, by_reconciler: bool) -> list[dict]:
    """A fresh ``serve`` without crash variables; reconcile passes until quiet."""
    with bridge_process(ctx.env, ctx.workdir) as (proc, api):
        check_preimage_hidden(ctx, api)
        if by_reconciler:
            # The dead pass still holds the reconciler lease (TTL 300 s): passes are skipped.
            status, body = api.reconcile(ADMIN_TOKEN)
            assert status == 200 and body["summary"]["skipped_locked"] == 1, body
            assert expire_reconciler_lease(ctx.db_path) == 1
        passes = reconcile_until_quiet(api, ctx.node, ctx.db_path)
        check_preimage_hidden(ctx, api)
    ctx.logs.append(proc.output)
    return passes


@pytest.mark.parametrize(("name", "point"), CASES)
def test_crash_then_restart_and_reconcile_ends_as_the_matrix_says(name, point, crash_node, tmp_path):
    op, end = MATRIX[name], MATRIX[name].ends[point]
    ctx = new_ctx(tmp_path, crash_node, op.side)
    before = crash_node.state()["balances"]
    op.setup(ctx)
    crash(ctx, op, point)
    passes = restart_and_reconcile(ctx, by_reconciler=op.drive is None)
    order = the_order(ctx)
    assert order["status"] == end.status, (passes, history(ctx))
    check_jobs(ctx, order, end)
    check_money(ctx, order, end, before)
    check_records(ctx)
    check_alerts(ctx)


def wait_for_status(api: BridgeClient, order_id: str, status: str, timeout: float = 20.0) -> None:
    """Poll the order until it shows ``status``: the background reconciler runs on a
    wall-clock timer (1 s here), so this is a bounded wait on a real-time condition."""
    deadline = time.monotonic() + timeout
    while (seen := api.order(order_id)[1]["order"]["status"]) != status:
        assert time.monotonic() < deadline, f"still {seen}, waited {timeout} s for {status}"
        time.sleep(0.2)


def test_a_restart_alone_finishes_a_crashed_confirm(crash_node, tmp_path):
    """SPEC §7: the serving process reconciles at startup and on a timer, so a restart with
    its background reconciler on finishes a confirm that died mid-release, no operator needed."""
    op, point = MATRIX["sell_confirm"], "after:deliver"
    ctx = new_ctx(tmp_path, crash_node, op.side)
    before = crash_node.state()["balances"]
    op.setup(ctx)
    crash(ctx, op, point)
    env = {k: v for k, v in ctx.env.items() if k != "OTC_RECONCILE_DISABLED"} | {"OTC_RECONCILE_INTERVAL_SECONDS": "1"}
    with bridge_process(env, ctx.workdir) as (proc, api):
        wait_for_status(api, ctx.order_id, "payout_pending")
        assert crash_node.post("/dev/confirm").json()["confirmed_count"] >= 1
        wait_for_status(api, ctx.order_id, "completed")
        check_preimage_hidden(ctx, api)
    ctx.logs.append(proc.output)
    order = the_order(ctx)
    check_jobs(ctx, order, op.ends[point])
    check_money(ctx, order, op.ends[point], before)
    check_records(ctx)
    check_alerts(ctx)


# --- the checks ------------------------------------------------------------------------------

def the_order(ctx: Ctx):
    rows = db_rows(ctx.db_path, "SELECT * FROM orders")
    assert len(rows) == 1, [dict(r) for r in rows]
    return rows[0]


def history(ctx: Ctx) -> list[str]:
    rows = db_rows(ctx.db_path, "SELECT kind, from_status, to_status, reason, node_outcome FROM order_events "
                                "ORDER BY event_id")
    return [" ".join(str(v) for v in tuple(r) if v is not None) for r in rows]


def check_preimage_hidden(ctx: Ctx, api: BridgeClient) -> None:
    """The preimage is readable (``GET /api/orders/<id>``) only once completed, and appears
    nowhere else: not in the book, not in any process's output."""
    order_id = the_order(ctx)["order_id"]
    status, body = api.order(order_id)
    assert status == 200, body
    view = body["order"]
    book = json.dumps(api.get("/api/orders")[1])
    if view["status"] == "completed":
        assert view["htlc_secret"] == ctx.secret
    else:
        assert "htlc_secret" not in view, view
        if ctx.secret:
            assert ctx.secret not in json.dumps(body)
    if ctx.secret:
        assert ctx.secret not in book
        assert not [log for log in ctx.logs if ctx.secret in log], "the preimage was logged"


def check_jobs(ctx: Ctx, order, end: End) -> None:
    """Every job the scenario's wallets posted belongs to exactly this order, in the end's state."""
    jobs = node_jobs(ctx.node, {ctx.seller.address, ctx.buyer.address})
    kinds = [JOB_KINDS.get(job["status"], f"stranded:{job['status']}") for job in jobs]
    assert kinds == ([] if end.escrow == "none" else [end.escrow]), jobs
    for job in jobs:
        owners = {r[0] for r in db_rows(
            ctx.db_path, "SELECT order_id FROM orders WHERE escrow_job_id = ? "
                         "UNION SELECT order_id FROM order_events WHERE node_ref = ?", (job["job_id"],) * 2)}
        assert owners == {order["order_id"]}, (job, owners)
        assert any(tag.startswith(order["order_id"] + ":v") for tag in json.loads(job["tags"])), job
    if end.escrow in ("held", "released"):
        job = ctx.node.job(jobs[0]["job_id"])
        assert order["escrow_job_id"] == job["job_id"] and job["worker_wallet"] == WORKER, job
        assert (job["reward_i64"], job["escrow_i64"]) == (ctx.amount, expected_escrow_micro_rtc(ctx.amount)), job
        assert (order["escrow_reward_micro_rtc"], order["escrow_wallet"]) == (ctx.amount, ctx.seller.address)


def check_money(ctx: Ctx, order, end: End, before: dict[str, int]) -> None:
    """Each wallet moved by exactly what the end implies; the buyer was paid once or never."""
    reward, total = ctx.amount, expected_escrow_micro_rtc(ctx.amount)
    expected = {ctx.seller.address: 0, ctx.buyer.address: 0, ESCROW_WALLET: 0, FEE_WALLET: 0, WORKER: 0}
    if end.escrow in ("held", "released"):
        expected[ctx.seller.address] -= total
    if end.escrow == "held":
        expected[ESCROW_WALLET] += total
    if end.escrow == "released":
        expected[ctx.buyer.address] += reward
        expected[FEE_WALLET] += total - reward
    state = ctx.node.state()
    after = state["balances"]
    moved = {w: after.get(w, 0) - before.get(w, 0) for w in set(before) | set(after)}
    assert {w: d for w, d in moved.items() if d} == {w: d for w, d in expected.items() if d}
    assert state["total_balance_i64"] == state["minted_i64"], state
    assert state["agent_escrow_i64"] == state["escrow_locked_i64"], state
    assert state["pending"].get("pending", {"count": 0})["count"] == 0, state["pending"]
    if order["payout_tx_hash"]:
        tx = ctx.node.get(f"/wallet/tx/{order['payout_tx_hash']}").json()
        assert (tx["status"] == "confirmed") == (end.escrow == "released"), tx
    else:
        assert end.escrow != "released"


def check_records(ctx: Ctx) -> None:
    """Transition table, version gaps, post-commit invariants, and the operator audit."""
    db = Database(str(ctx.db_path))
    try:
        check_history(db)
        conn = db.connection()
        for order in conn.execute("SELECT * FROM orders").fetchall():
            assert violations(conn, order) == [], order["order_id"]
    finally:
        db.close()
    if importlib.util.find_spec("otc_bridge.operator_audit") is not None:
        operator_audit = importlib.import_module("otc_bridge.operator_audit")
        with service_bridge(ctx) as bridge:
            assert [m.as_dict() for m in operator_audit.audit(bridge, include_terminal=True)] == []


def check_alerts(ctx: Ctx) -> None:
    """No alert says a third party moved the escrow: only the bridge acted in these scenarios."""
    alerts = [r[0] for r in db_rows(ctx.db_path, "SELECT reason FROM order_events WHERE kind = 'alert'")]
    if [a for a in alerts if a.split(":")[0] in THIRD_PARTY_ALERTS]:
        raise FalseAlarm(f"alerts blame a third party, yet only the bridge acted: {alerts}")


# --- the matrix is complete and mirrored ------------------------------------------------------

def discover(ctx: Ctx, op: Operation) -> list[str]:
    """Run ``op`` once in-process, uncrashed; every crash point it passes, in order."""
    passed: list[str] = []
    with service_bridge(ctx) as bridge:
        if op.drive is None:
            wait_out_grace(ctx.db_path)
        crashpoints.set_hook(passed.append)
        try:
            if op.drive is None:
                summary = reconcile.run_once(bridge)
                assert summary["errors"] == 0 and summary["skipped_locked"] == 0, summary
            else:
                server = serve(create_app(bridge=bridge))
                try:
                    status, body = op.drive(ctx, BridgeClient(server.url))
                finally:
                    server.shutdown()
                assert status in (200, 201), body
        finally:
            crashpoints.set_hook(None)
    return passed


#: Points an operation passes more than once; a crash point fires at its first occurrence.
#: The lost-create search lists open jobs, then claimed ones: both are reads with nothing
#: recorded in between, so dying at the second leaves what dying at the first does.
REPEATED = {"reconcile_abandon": ["after:list_jobs", "before:list_jobs"]}


@pytest.mark.parametrize("name", list(MATRIX))
def test_matrix_lists_every_point_the_operation_passes(name, crash_node, tmp_path):
    op = MATRIX[name]
    ctx = new_ctx(tmp_path, crash_node, op.side)
    op.setup(ctx)
    passed = discover(ctx, op)
    assert list(dict.fromkeys(passed)) == list(op.ends)
    assert sorted({p for p in passed if passed.count(p) > 1}) == REPEATED.get(name, [])


def doc_rows() -> set[tuple[str, str, str, str]]:
    text = (REPO_ROOT / "docs" / "crash-matrix.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z_:]+)` \| `([a-z_]+)` \| ([a-z]+) \|", text, re.MULTILINE)
    return set(rows)


def test_docs_mirror_the_matrix():
    expected = {(name, point, end.status, end.escrow) for name, op in MATRIX.items() for point, end in op.ends.items()}
    assert doc_rows() == expected
