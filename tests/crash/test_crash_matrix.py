"""The crash matrix (docs/protocol.md §4, §7, §10): kill the real server at every crash point of every
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
7. the operator audit (``otc_bridge.operator.audit``, when present) finds no mismatch;
8. no operator alert blames a third party: no one but the bridge acted.

``test_matrix_lists_every_point_the_operation_passes`` runs each operation once in-process
with :func:`otc_bridge.crashpoints.set_hook` recording the points it passes, so the matrix
cannot silently miss one (a point reached twice is crashed at its first occurrence).
The table is mirrored in ``docs/crash-matrix.md``, checked by ``test_docs_mirror_the_matrix``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import requests
from bridge_support import serve
from crash_checks import (
    check_alerts,
    check_jobs,
    check_money,
    check_preimage_hidden,
    check_records,
    db_rows,
    history,
    the_order,
    wait_for_status,
)
from crash_scenarios import (
    WEEK,
    Ctx,
    Drive,
    confirmed_payout,
    delivered_matched,
    disputed_open,
    drive_cancel,
    drive_confirm,
    drive_create,
    drive_match,
    expired_open,
    lost_create_answer,
    matched_order,
    new_ctx,
    no_job_created,
    nothing,
    open_order,
    overdue_match,
    service_bridge,
    stalled_refund,
    stalled_settling,
    stolen_open,
)
from crash_support import (
    CRASH_LINE,
    REPO_ROOT,
    bridge_process,
    crash_env,
    reconcile_until_quiet,
    run_cli_reconcile,
    wait_out_grace,
)

from otc_bridge import crashpoints
from otc_bridge.app import create_app
from otc_bridge.client import BridgeClient
from otc_bridge.settlement import reconcile

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
DISPUTE_CANCELLED = End("cancelled", "refunded", "cancels the disputed job (the node refunds the poster), "
                                                 "ends the order with cause escrow_tampered")
CUSTODY_REFUNDED = End("cancelled", "custody_refunded", "pays the reward back to the seller from the worker "
                                                         "wallet (key otc_refund:<order>:v<n>), ends the order "
                                                         "once the node confirms the transfer")
CUSTODY_HELD = End("matched", "custody", "accepts the delivered job into the worker wallet: the match stays, "
                                         "the buyer's preimage pays the buyer")

_REFUND_STEPS = ("before:get_job", "after:get_job", "before:deliver", "after:deliver", "before:dispute",
                 "after:dispute", "before:cancel", "after:cancel")
_RELEASE_STEPS = ("before:get_job", "after:get_job", "before:deliver", "after:deliver", "before:accept",
                  "after:accept", "before:transfer", "after:transfer")
#: create + claim: their answers prove the lock, no read-back (docs/protocol.md §5).
_LOCK_STEPS = ("before:create_job", "after:create_job", "before:claim", "after:claim")


def _locking(abandon: End, adopt: End, lost: End, done_point: str, done: End) -> dict[str, End]:
    ends = {"after_commit:locking": abandon, "before:create_job": abandon, "after:create_job": adopt}
    ends |= dict.fromkeys(_LOCK_STEPS[2:], lost)
    return ends | {done_point: done}


#: The escrow watch's read of an open sell or matched order, first in every reconcile pass.
_WATCH_READ = ("before:get_job", "after:get_job")
#: The end of every reconcile pass: foreign jobs in the worker's name, then its coverage.
_PASS_END = ("before:list_jobs", "after:list_jobs", "before:pending_list", "after:pending_list",
             "before:balance", "after:balance")


def _reconcile(*parts: dict[str, End]) -> dict[str, End]:
    """A reconcile operation's points, then the end of its pass (same end as its last point:
    the restarted reconciler finishes the same order)."""
    ends: dict[str, End] = {}
    for part in parts:
        ends |= {point: end for point, end in part.items() if point not in ends}
    return ends | dict.fromkeys(_PASS_END, list(ends.values())[-1])


MATRIX: dict[str, Operation] = {
    "sell_create": Operation("sell", nothing, drive_create,
                             _locking(ABANDON_SELL, ADOPT_SELL, LOST_SELL, "after_commit:open", OPEN_HELD)),
    "buy_create": Operation("buy", nothing, drive_create, {
        "after_commit:open": End("open", "none", "nothing: a buy order holds nothing")}),
    "sell_match": Operation("sell", open_order, drive_match, {
        "before:get_job": STILL_OPEN, "after:get_job": STILL_OPEN, "after_commit:matched": MATCHED_HELD}),
    "buy_match": Operation("buy", open_order, drive_match,
                           _locking(ABANDON_BUY, ADOPT_BUY, LOST_BUY, "after_commit:matched", MATCHED_HELD)),
    # A confirm claims first; its deliver is its read of the job (docs/protocol.md §5).
    "sell_confirm": Operation("sell", matched_order, drive_confirm, {
        "after_commit:settling": RELEASED,
        **dict.fromkeys(_RELEASE_STEPS[2:], RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")}),
    "buy_confirm": Operation("buy", matched_order, drive_confirm, {
        "after_commit:settling": RELEASED,
        **dict.fromkeys(_RELEASE_STEPS[2:], RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")}),
    "sell_cancel": Operation("sell", open_order, drive_cancel, {
        "after_commit:refund_pending": REFUNDED, **dict.fromkeys(_REFUND_STEPS, REFUNDED),
        "after_commit:cancelled": End("cancelled", "refunded", "nothing: refund already done")}),
    "buy_cancel": Operation("buy", open_order, drive_cancel, {"after_commit:cancelled": NOTHING_HELD}),
    "reconcile_promote": Operation("sell", confirmed_payout, None, _reconcile({
        "before:tx_status": PROMOTED, "after:tx_status": PROMOTED,
        "after_commit:completed": End("completed", "released", "nothing: already completed")})),
    "reconcile_expire_sell": Operation("sell", expired_open, None, _reconcile(
        dict.fromkeys(_WATCH_READ, EXPIRED_REFUNDED),
        {"after_commit:refund_pending": EXPIRED_REFUNDED, **dict.fromkeys(_REFUND_STEPS, EXPIRED_REFUNDED),
         "after_commit:expired": End("expired", "refunded", "nothing: refund already done")})),
    "reconcile_expire_buy": Operation("buy", expired_open, None, _reconcile({
        "after_commit:expired": End("expired", "none", "nothing: a buy order holds nothing")})),
    "reconcile_unwind_relist": Operation("sell", overdue_match(WEEK), None, _reconcile(
        dict.fromkeys(_WATCH_READ, End("open", "held", "back on the book, escrow held")),
        {"after_commit:open": End("open", "held", "nothing: back on the book, escrow held")})),
    "reconcile_unwind_refund": Operation("sell", overdue_match(3600), None, _reconcile(
        dict.fromkeys(_WATCH_READ, EXPIRED_REFUNDED),
        {"after_commit:refund_pending": EXPIRED_REFUNDED, **dict.fromkeys(_REFUND_STEPS, EXPIRED_REFUNDED),
         "after_commit:expired": End("expired", "refunded", "nothing: refund already done")})),
    "reconcile_unwind_buy": Operation("buy", overdue_match(WEEK), None, _reconcile(
        dict.fromkeys(_WATCH_READ, RELISTED_BUY),
        {"after_commit:refund_pending": RELISTED_BUY, **dict.fromkeys(_REFUND_STEPS, RELISTED_BUY),
         "after_commit:open": End("open", "refunded", "nothing: taker refunded, order relisted")})),
    "reconcile_adopt": Operation("sell", lost_create_answer, None, _reconcile({
        "before:list_jobs": ADOPT_SELL, "after:list_jobs": ADOPT_SELL, "after_commit:refund_pending": LOST_SELL,
        "before:get_job": LOST_SELL, "after:get_job": LOST_SELL, "before:cancel": LOST_SELL,
        "after:cancel": LOST_SELL, "after_commit:cancelled": End("cancelled", "refunded", "nothing: refunded")})),
    "reconcile_abandon": Operation("sell", no_job_created, None, _reconcile({
        "before:list_jobs": ABANDON_SELL, "after:list_jobs": ABANDON_SELL,
        "after_commit:cancelled": End("cancelled", "none", "nothing: intent abandoned")})),
    "reconcile_resume_release": Operation("sell", stalled_settling, None, _reconcile({
        **dict.fromkeys(_RELEASE_STEPS, RELEASED),
        "after_commit:payout_pending": End("completed", "released", "promotes once the node confirms")})),
    # The escrow watch's own recovery steps (docs/protocol.md §11.1), after a third party
    # acted on the node: every point of each, from the first read of the job to the pass's end.
    "reconcile_tamper_disputed": Operation("sell", disputed_open, None, _reconcile(dict.fromkeys(
        ("before:get_job", "after:get_job", "after_commit:refund_pending", "before:cancel", "after:cancel",
         "after_commit:cancelled"), DISPUTE_CANCELLED))),
    "reconcile_tamper_stolen_open": Operation("sell", stolen_open, None, _reconcile(dict.fromkeys(
        ("before:get_job", "after:get_job", "before:tx_status", "after:tx_status", "after_commit:refund_pending",
         "before:transfer", "after:transfer"), CUSTODY_REFUNDED))),
    "reconcile_tamper_custody": Operation("sell", delivered_matched, None, _reconcile(dict.fromkeys(
        ("before:get_job", "after:get_job", "before:accept", "after:accept"), CUSTODY_HELD))),
    "reconcile_resume_refund": Operation("sell", stalled_refund, None, _reconcile({
        **dict.fromkeys(_REFUND_STEPS, REFUNDED),
        "after_commit:cancelled": End("cancelled", "refunded", "nothing: refund already done")})),
}


#: Known product bugs, by (operation, point): the scenario is kept, and must fail with
#: exactly the exception named (any other failure still fails the test).
BUGS: dict[tuple[str, str], tuple[type[BaseException], str]] = {}


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


def restart_and_reconcile(ctx: Ctx) -> list[dict]:
    """A fresh ``serve`` without crash variables; reconcile passes until quiet."""
    with bridge_process(ctx.env, ctx.workdir) as (proc, api):
        check_preimage_hidden(ctx, api)
        # A reconcile pass that died left its lease to the kernel, which freed it with the
        # process: the first pass here takes it over (reconcile_until_quiet fails on a skip).
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
    passes = restart_and_reconcile(ctx)
    if end.status == "none":  # the crash came before the intent row: nothing written, nothing moved
        assert db_rows(ctx.db_path, "SELECT order_id FROM orders") == [], passes
        assert crash_node.state()["balances"] == before
        check_records(ctx)
        check_alerts(ctx)
        return
    order = the_order(ctx)
    assert order["status"] == end.status, (passes, history(ctx))
    check_jobs(ctx, order, end.escrow)
    check_money(ctx, order, end.escrow, before)
    check_records(ctx)
    check_alerts(ctx)



def test_a_restart_alone_finishes_a_crashed_confirm(crash_node, tmp_path):
    """docs/protocol.md §7: the serving process reconciles at startup and on a timer, so a restart with
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
    check_jobs(ctx, order, op.ends[point].escrow)
    check_money(ctx, order, op.ends[point].escrow, before)
    check_records(ctx)
    check_alerts(ctx)



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
_READ_TWICE = ["after:get_job", "before:get_job"]  # the watch's read, then the refund's own
_LIST_AGAIN = ["after:list_jobs", "before:list_jobs"]  # the search for the job, then foreign jobs
REPEATED = {"reconcile_abandon": _LIST_AGAIN, "reconcile_adopt": _LIST_AGAIN, "reconcile_expire_sell": _READ_TWICE,
            "reconcile_unwind_refund": _READ_TWICE, "reconcile_unwind_buy": _READ_TWICE,
            "reconcile_tamper_disputed": _READ_TWICE,
            # the watch's payout lookup (a restore may have lost the bridge's own settlement),
            # then the custody refund's own lookup of its transfer
            "reconcile_tamper_stolen_open": ["after:get_job", "after:tx_status", "before:get_job", "before:tx_status"]}


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
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z_:]+)` \| `([a-z_]+)` \| ([a-z_]+) \|", text, re.MULTILINE)
    return set(rows)


def test_docs_mirror_the_matrix():
    expected = {(name, point, end.status, end.escrow) for name, op in MATRIX.items() for point, end in op.ends.items()}
    assert doc_rows() == expected
