"""What every crash scenario checks once the reconciler is quiet (see ``test_crash_matrix``).

A module with a unique name (not conftest) so the crash test files can import it directly.
``escrow`` names the end state of the order's escrow: ``none``, ``held``, ``released``,
``refunded``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time

from bridge_support import WORKER, broken_orders, check_history
from crash_scenarios import Ctx, service_bridge
from crash_support import db_rows, node_jobs

from otc_bridge.client import BridgeClient
from otc_bridge.dev.node.store import ESCROW_WALLET, FEE_WALLET
from otc_bridge.node.amounts import expected_escrow_micro_rtc
from otc_bridge.storage.db import Database

#: The escrow state each job status stands for (any other status strands money).
JOB_KINDS = {"claimed": "held", "completed": "released", "cancelled": "refunded", "expired": "refunded"}
#: Alerts that say someone other than the bridge moved escrow; no scenario here has one.
THIRD_PARTY_ALERTS = ("escrow_job_moved", "escrow_claimed_by_third_party", "escrow_released_during_refund",
                      "escrow_job_mismatch", "escrow_rejected")



class FalseAlarm(AssertionError):
    """An operator alert blamed a third party in a scenario where only the bridge acted."""




def wait_for_status(api: BridgeClient, order_id: str, status: str, timeout: float = 20.0) -> None:
    """Poll the order until it shows ``status``: the background reconciler runs on a
    wall-clock timer (1 s here), so this is a bounded wait on a real-time condition."""
    deadline = time.monotonic() + timeout
    while (seen := api.order(order_id)[1]["order"]["status"]) != status:
        assert time.monotonic() < deadline, f"still {seen}, waited {timeout} s for {status}"
        time.sleep(0.2)



def the_order(ctx: Ctx):
    rows = db_rows(ctx.db_path, "SELECT * FROM orders")
    assert len(rows) == 1, [dict(r) for r in rows]
    return rows[0]


def history(ctx: Ctx) -> list[str]:
    rows = db_rows(ctx.db_path, "SELECT kind, from_status, to_status, reason, node_outcome FROM order_events "
                                "ORDER BY event_id")
    return [" ".join(str(v) for v in tuple(r) if v is not None) for r in rows]


def check_preimage_hidden(ctx: Ctx, api: BridgeClient) -> None:
    """The preimage is readable (``GET /api/orders/<id>``) only once completed (buyer-held:
    once the payout is committed, ``payout_pending``), and appears
    nowhere else: not in the book, not in any process's output. Nothing to check when the
    crash came before any order was written."""
    if not db_rows(ctx.db_path, "SELECT 1 FROM orders"):
        return
    order_id = the_order(ctx)["order_id"]
    status, body = api.order(order_id)
    assert status == 200, body
    view = body["order"]
    book = json.dumps(api.get("/api/orders")[1])
    if view["status"] == "completed" or (view.get("preimage_holder") == "buyer" and view["status"] == "payout_pending"):
        # buyer-held: the payout is committed, so the seller may read the preimage and claim
        assert view["htlc_secret"] == ctx.secret
    else:
        assert "htlc_secret" not in view, view
        if ctx.secret:
            assert ctx.secret not in json.dumps(body)
    if ctx.secret:
        assert ctx.secret not in book
        assert not [log for log in ctx.logs if ctx.secret in log], "the preimage was logged"


#: Escrow ends where a third party's accept completed the job into the worker wallet: the
#: job reads ``completed`` (released) whether the worker still holds the reward for the match
#: (``custody``) or has paid it back to the seller (``custody_refunded``).
CUSTODY = ("custody", "custody_refunded")


def check_jobs(ctx: Ctx, order, escrow: str) -> None:
    """Every job the scenario's wallets posted belongs to exactly this order, in state ``escrow``."""
    jobs = node_jobs(ctx.node, {ctx.seller.address, ctx.buyer.address})
    kinds = [JOB_KINDS.get(job["status"], f"stranded:{job['status']}") for job in jobs]
    job_kind = "released" if escrow in CUSTODY else escrow
    assert kinds == ([] if escrow == "none" else [job_kind]), jobs
    for job in jobs:
        owners = {r[0] for r in db_rows(
            ctx.db_path, "SELECT order_id FROM orders WHERE escrow_job_id = ? "
                         "UNION SELECT order_id FROM order_events WHERE node_ref = ?", (job["job_id"],) * 2)}
        assert owners == {order["order_id"]}, (job, owners)
        assert any(tag.startswith(order["order_id"] + ":v") for tag in json.loads(job["tags"])), job
    if escrow in ("held", "released", *CUSTODY):
        job = ctx.node.job(jobs[0]["job_id"])
        assert order["escrow_job_id"] == job["job_id"] and job["worker_wallet"] == WORKER, job
        assert (job["reward_i64"], job["escrow_i64"]) == (ctx.amount, expected_escrow_micro_rtc(ctx.amount)), job
        assert (order["escrow_reward_micro_rtc"], order["escrow_wallet"]) == (ctx.amount, ctx.seller.address)


def check_money(ctx: Ctx, order, escrow: str, before: dict[str, int]) -> None:
    """Each wallet moved by exactly what ``escrow`` implies; the buyer was paid once or never."""
    reward, total = ctx.amount, expected_escrow_micro_rtc(ctx.amount)
    expected = {ctx.seller.address: 0, ctx.buyer.address: 0, ESCROW_WALLET: 0, FEE_WALLET: 0, WORKER: 0}
    if escrow in ("held", "released", *CUSTODY):
        expected[ctx.seller.address] -= total
    if escrow == "held":
        expected[ESCROW_WALLET] += total
    if escrow in ("released", *CUSTODY):
        expected[FEE_WALLET] += total - reward  # the node keeps its fee on any completed job
    if escrow == "released":
        expected[ctx.buyer.address] += reward
    if escrow == "custody":
        expected[WORKER] += reward
    if escrow == "custody_refunded":
        expected[ctx.seller.address] += reward
    state = ctx.node.state()
    after = state["balances"]
    moved = {w: after.get(w, 0) - before.get(w, 0) for w in set(before) | set(after)}
    assert {w: d for w, d in moved.items() if d} == {w: d for w, d in expected.items() if d}
    assert state["total_balance_i64"] == state["minted_i64"], state
    assert state["agent_escrow_i64"] == state["escrow_locked_i64"], state
    assert state["pending"].get("pending", {"count": 0})["count"] == 0, state["pending"]
    if order["refund_tx_hash"]:
        tx = ctx.node.get(f"/wallet/tx/{order['refund_tx_hash']}").json()
        assert tx["status"] == "confirmed" and escrow == "custody_refunded", tx
    if order["payout_tx_hash"]:
        tx = ctx.node.get(f"/wallet/tx/{order['payout_tx_hash']}").json()
        assert (tx["status"] == "confirmed") == (escrow == "released"), tx
    else:
        assert escrow != "released"


def check_records(ctx: Ctx) -> None:
    """Transition table, version gaps, post-commit invariants, and the operator audit."""
    db = Database(str(ctx.db_path))
    try:
        check_history(db)
        assert broken_orders(db.connection()) == {}
    finally:
        db.close()
    if importlib.util.find_spec("otc_bridge.operator.audit") is not None:
        operator_audit = importlib.import_module("otc_bridge.operator.audit")
        with service_bridge(ctx) as bridge:
            assert [m.as_dict() for m in operator_audit.audit(bridge, include_terminal=True)] == []


def check_alerts(ctx: Ctx) -> None:
    """No alert says a third party moved the escrow: only the bridge acted in these scenarios."""
    alerts = [r[0] for r in db_rows(ctx.db_path, "SELECT reason FROM order_events WHERE kind = 'alert'")]
    if [a for a in alerts if a.split(":")[0] in THIRD_PARTY_ALERTS]:
        raise FalseAlarm(f"alerts blame a third party, yet only the bridge acted: {alerts}")
