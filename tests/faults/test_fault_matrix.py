"""Fault matrix: every node call the bridge makes x every fault kind, without a crash.

For each row of :data:`TABLE` (an operation and one node call it makes) and each fault of
:data:`FAULTS`, the test sets the operation up with no fault, arms the fault on that call
for one hit (``count=1``), runs the operation, and checks what the caller was told and the
status it left. Then the fault is gone: the caller retries where the bridge told it to
(a confirm refused before any funds moved, a match the node could not check), and the
reconciler runs (clock past the grace period, node pending pool confirmed) until quiet.

Whatever the fault, the same assertions close every case:

* the final status is the one the table allows for that row and fault class;
* the buyer was paid exactly once or not at all, the seller's escrow was refunded exactly
  once or not at all, and every wallet's balance is exactly what the books say;
* no escrow job was delivered, accepted, cancelled or refunded twice (its activity log),
  none is both released and refunded, none is left locking funds for nothing;
* at most one pending/confirmed transfer per payout key, none voided, none unexplained;
* funds are conserved on the node;
* no preimage visible before ``completed`` (responses and ``GET /api/orders/<id>``);
* (fixture teardown) every written transition is in the transition table, versions rise
  without gaps and every order row passes the post-commit invariants.

Fault classes (how the node reacts, see ``otc_bridge.dev.node.faults``):

* ``applied``: ``timeout_after``, the effect is committed, the answer is lost (the bridge
  times out after 1 s): only an authoritative read may decide what happened;
* ``lost``: ``drop_before`` and ``error_5xx`` (JSON or HTML): no effect, no usable answer;
* ``refused``: ``rate_limit``, a 429 with ``Retry-After``: no effect, an explicit refusal;
* ``normal``: ``latency`` below the bridge's timeout: everything as without a fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH, matched_buy, matched_sell, open_sell, third_party
from ledger_checks import (
    GRACE_SECONDS,
    NodeBook,
    advance,
    in_custody,
    ledger_problems,
    orders,
    preimage_problems,
    rest_problems,
    settle,
)

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.operator import audit
from otc_bridge.settlement import reconcile

CREATE = "POST /agent/jobs"
GET_JOB = "GET /agent/jobs/<job_id>"
CLAIM = "POST /agent/jobs/<job_id>/claim"
DELIVER = "POST /agent/jobs/<job_id>/deliver"
ACCEPT = "POST /agent/jobs/<job_id>/accept"
DISPUTE = "POST /agent/jobs/<job_id>/dispute"
CANCEL = "POST /agent/jobs/<job_id>/cancel"
TRANSFER = "POST /wallet/transfer"
TX = "GET /wallet/tx/<tx_hash>"
LIST = "GET /agent/jobs"  # the reconciler's search for a job whose create answer was lost
BALANCE = "GET /wallet/balance"  # the reconciler's coverage check of the worker wallet

#: A ``timeout_after`` fault holds the node's answer this long: past the bridge's 1 s timeout
#: (tests/faults/conftest.py), after the effect is committed.
TIMEOUT_AFTER_MS = 1500
#: A ``latency`` fault stays well below that timeout: the call must succeed as usual.
LATENCY_MS = 300
FUNDED = 1_000_000_000  # the seller and buyer fixtures' 1000 RTC
SETTLE_WINDOW = 48 * 3600

FAULTS: dict[str, dict] = {
    "timeout_after": {"kind": "timeout_after", "latency_ms": TIMEOUT_AFTER_MS},
    "drop_before": {"kind": "drop_before"},
    "error_5xx_json": {"kind": "error_5xx", "status": 500},
    "error_5xx_html": {"kind": "error_5xx", "status": 502, "html": True},
    "rate_limit": {"kind": "rate_limit"},
    "latency": {"kind": "latency", "latency_ms": LATENCY_MS},
}
FAULT_CLASS = {"timeout_after": "applied", "drop_before": "lost", "error_5xx_json": "lost",
               "error_5xx_html": "lost", "rate_limit": "refused", "latency": "normal"}


@dataclass(frozen=True)
class Expect:
    """``http``: the status code the caller got (None: a reconcile pass, no HTTP); ``now``:
    the order's status right after the faulted operation; ``final``: once quiet."""

    http: int | None
    now: str
    final: str


def same(http: int | None, now: str, final: str) -> dict[str, Expect]:
    """One expectation for every fault class but ``normal``."""
    return dict.fromkeys(("applied", "lost", "refused"), Expect(http, now, final))


#: What each operation does without any fault (and with a ``latency`` fault).
NORMAL: dict[str, Expect] = {
    "create_sell": Expect(201, "open", "open"),
    "match_buy": Expect(200, "matched", "matched"),
    "match_sell": Expect(200, "matched", "matched"),
    "confirm_sell": Expect(200, "payout_pending", "completed"),
    "confirm_buy": Expect(200, "payout_pending", "completed"),
    "cancel_sell": Expect(200, "cancelled", "cancelled"),
    "unwind_buy": Expect(None, "open", "open"),
    "promote": Expect(None, "completed", "completed"),
    "confirm_lost_transfer": Expect(200, "payout_pending", "completed"),
    "resume_settling": Expect(None, "payout_pending", "completed"),
    "expire_sell": Expect(None, "expired", "expired"),
    "adopt_lost_create": Expect(None, "cancelled", "cancelled"),
    "confirm_unsent_transfer": Expect(200, "payout_pending", "completed"),
    "confirm_transfer_lost_twice": Expect(200, "payout_pending", "completed"),
    "tamper_disputed": Expect(None, "cancelled", "cancelled"),
    "tamper_stolen_open": Expect(None, "refund_pending", "cancelled"),
    "tamper_custody": Expect(None, "matched", "matched"),
}


def _release_row(http: int | None, http_refused_transfer: int | None,
                 first_read: dict[str, Expect] | None) -> dict[str, dict[str, Expect]]:
    """The release path of a confirm (no first read: its deliver proves the job held,
    docs/protocol.md §5), or of the reconciler resuming a ``settling`` order (reads first)."""
    return {
        **({GET_JOB: first_read} if first_read is not None else {}),
        DELIVER: {"applied": Expect(http, "payout_pending", "completed"),  # read back: delivered, go on
                  "lost": Expect(http, "settling", "completed"),  # read back: still claimed, unknown
                  # An explicit refusal while the job is held untouched: nothing left escrow,
                  # the order goes back to matched and the caller retries the confirm.
                  "refused": Expect(http, "matched", "completed")},
        ACCEPT: {"applied": Expect(http, "payout_pending", "completed"),  # read back: completed, pay
                 "lost": Expect(http, "settling", "completed"),
                 "refused": Expect(http, "settling", "completed")},
        TRANSFER: {"applied": Expect(http, "payout_pending", "completed"),  # /wallet/tx: pending
                   "lost": Expect(http, "payout_pending", "completed"),  # /wallet/tx: not_found, re-sent
                   # 429: nothing applied; the confirm answers 503, a reconcile pass backs off.
                   "refused": Expect(http_refused_transfer, "settling", "completed")},
    }


def _refund_row(http: int | None, end: str) -> dict[str, dict[str, Expect]]:
    """The refund path (read, deliver, dispute, cancel) of a cancel."""
    step = {"applied": Expect(http, end, end),  # read back after the lost answer: go on at once
            "lost": Expect(http, "refund_pending", end), "refused": Expect(http, "refund_pending", end)}
    return {GET_JOB: same(http, "refund_pending", end), DELIVER: step, DISPUTE: step, CANCEL: step}


#: (operation, node call) -> fault class -> expectation. ``normal`` comes from NORMAL.
TABLE: dict[tuple[str, str], dict[str, Expect]] = {
    # Sell create: create job, claim it (their answers prove the lock: no read-back).
    ("create_sell", CREATE): {
        # The job exists but its id (and the preimage, in the lost response) never reached
        # anyone: the reconciler finds it by reference and refunds it.
        "applied": Expect(502, "locking", "cancelled"),
        # No job: the reconciler finds none and abandons the intent.
        "lost": Expect(502, "locking", "cancelled"),
        "refused": Expect(400, "cancelled", "cancelled"),  # nothing locked
    },
    ("create_sell", CLAIM): same(201, "open", "open"),  # read back claimed, or claimed again
    # Buy match: the taker's escrow. Any failure puts the buy order back on the book.
    ("match_buy", CREATE): {"applied": Expect(502, "locking", "open"), "lost": Expect(502, "locking", "open"),
                            "refused": Expect(400, "open", "open")},
    ("match_buy", CLAIM): same(200, "matched", "matched"),
    # Sell match reads the escrow before recording the taker: nothing changes, retry.
    ("match_sell", GET_JOB): same(502, "open", "matched"),
    # A confirm claims, then delivers: its deliver is its read of the job.
    **{("confirm_sell", call): row for call, row in _release_row(200, 503, None).items()},
    **{("confirm_buy", call): row for call, row in _release_row(200, 503, None).items()},
    # A settling order left by a dead confirm, resumed by the reconciler after the grace period
    # (its first read of the job fails: nothing moved; settling waits for the next pass).
    **{("resume_settling", call): row
       for call, row in _release_row(None, None, same(None, "settling", "completed")).items()},
    # The pass's coverage check of the worker wallet, after the promotion: a fault leaves the
    # check for the next pass and changes no order.
    ("promote", BALANCE): same(None, "completed", "completed"),
    **{("cancel_sell", call): row for call, row in _refund_row(200, "cancelled").items()},
    # A buy order past settle_by: the reconciler refunds the taker and relists the order. A
    # refund step that got no usable answer is retried by the same pass (its refund_pending
    # sweep runs after the unwind), so the order is back on the book at once.
    **{("unwind_buy", call): same(None, "open", "open") for call in (GET_JOB, DELIVER, DISPUTE, CANCEL)},
    # An open sell order past its TTL: the reconciler refunds the escrow (same-pass retry).
    **{("expire_sell", call): same(None, "expired", "expired") for call in (GET_JOB, DELIVER, DISPUTE, CANCEL)},
    # A create whose answer was lost: the reconciler searches the node's open jobs for it.
    # Without a usable list it must not guess (no job found != no job): it waits.
    ("adopt_lost_create", LIST): same(None, "locking", "cancelled"),
    # payout_pending promoted by the reconciler's /wallet/tx read once the pool confirmed.
    ("promote", TX): same(None, "payout_pending", "completed"),
    # The transfer's answer was lost (timeout_after on it) and so is the status lookup:
    # ambiguity is a state; the reconciler's /wallet/tx read then proves the payout queued.
    ("confirm_lost_transfer", TX): same(200, "settlement_recovery", "completed"),
    # The transfer never reached the node (drop_before on it) and the status lookup fails:
    # recovery; the reconciler's /wallet/tx read then says not_found: never queued, so the
    # keyed transfer can be sent (again) safely.
    ("confirm_unsent_transfer", TX): same(200, "settlement_recovery", "completed"),
    # Two transfers in a row without effect (error_5xx, then this fault); the lookups between
    # them answer not_found.
    ("confirm_transfer_lost_twice", TRANSFER): {
        "applied": Expect(200, "payout_pending", "completed"),  # the second send was queued
        "lost": Expect(200, "settlement_recovery", "completed"),
        "refused": Expect(503, "settling", "completed"),  # 429: nothing applied, back off
    },
    # The escrow watch's own recovery steps, after a third party acted on the node
    # (docs/protocol.md §11.1). Its first read of the job failing changes nothing: the next
    # pass reads again.
    ("tamper_disputed", GET_JOB): same(None, "open", "cancelled"),
    # A cancel without a usable answer is retried by the same pass's refund_pending sweep.
    ("tamper_disputed", CANCEL): same(None, "cancelled", "cancelled"),
    ("tamper_stolen_open", GET_JOB): same(None, "open", "cancelled"),
    ("tamper_stolen_open", TRANSFER): same(None, "refund_pending", "cancelled"),
    # The first /wallet/tx read is the watch's lookup of the order's own payout (a restore may
    # have lost the bridge's settlement): without an answer the watch decides nothing.
    ("tamper_stolen_open", TX): same(None, "open", "cancelled"),
    ("tamper_custody", GET_JOB): same(None, "matched", "matched"),
    ("tamper_custody", ACCEPT): same(None, "matched", "matched"),
}


def expected(operation: str, call: str, fault: str) -> Expect:
    cls = FAULT_CLASS[fault]
    return NORMAL[operation] if cls == "normal" else TABLE[(operation, call)][cls]


# --- operations ------------------------------------------------------------------------


@dataclass
class Ctx:
    api: BridgeClient
    bridge: object
    dev_node: object
    seller: Wallet  # always the party that locks RTC in escrow
    buyer: Wallet  # always the party that receives the RTC
    order_id: str | None = None
    secret: str | None = None
    extra_faults: list[dict] = field(default_factory=list)


def _signed_match(ctx: Ctx, wallet: Wallet, eth: str) -> tuple[int, dict]:
    """A match signed with a timestamp other than the first attempt's (a signature is
    single-use, and Ed25519 signs the same message identically)."""
    ts = int(time.time()) - 2
    body = {"wallet": wallet.address, "eth_address": eth,
            "wallet_auth": wallet.auth("match_order", ctx.order_id, {"eth_address": eth}, timestamp=ts)}
    response = ctx.api.session.post(f"{ctx.api.base_url}/api/orders/{ctx.order_id}/match", json=body, timeout=30)
    return response.status_code, response.json()


def setup_none(ctx: Ctx) -> None:
    return None


def setup_buy_order(ctx: Ctx) -> None:
    status, body = ctx.api.create_order(ctx.buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=5_000_000,
                                        price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, body
    ctx.order_id = body["order_id"]


def setup_open_sell(ctx: Ctx) -> None:
    ctx.order_id, ctx.secret = open_sell(ctx.api, ctx.seller)


def setup_matched_sell(ctx: Ctx) -> None:
    ctx.order_id, ctx.secret = matched_sell(ctx.api, ctx.seller, ctx.buyer)


def setup_matched_buy(ctx: Ctx) -> None:
    ctx.order_id, ctx.secret = matched_buy(ctx.api, ctx.buyer, ctx.seller)


def setup_unwind(ctx: Ctx) -> None:
    setup_matched_buy(ctx)
    advance(ctx.bridge, None, SETTLE_WINDOW + 1)


def setup_payout_pending(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    status, body = ctx.api.confirm(ctx.order_id, secret=ctx.secret, quote_tx="0xquote")
    assert (status, body["status"]) == (200, "payout_pending"), body


def setup_lost_transfer(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    ctx.extra_faults.append({"endpoint": TRANSFER, "kind": "timeout_after", "latency_ms": TIMEOUT_AFTER_MS,
                             "count": 1})


def setup_unsent_transfer(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    ctx.extra_faults.append({"endpoint": TRANSFER, "kind": "drop_before", "count": 1})


def setup_transfer_lost_once(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    ctx.extra_faults.append({"endpoint": TRANSFER, "kind": "error_5xx", "status": 502, "count": 1})


def setup_settling(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    ctx.dev_node.add_fault(endpoint=DELIVER, kind="error_5xx", count=1)  # the claim stands, no answer
    status, body = ctx.api.confirm(ctx.order_id, secret=ctx.secret, quote_tx="0xquote")
    assert (status, body["status"]) == (200, "settling"), body
    advance(ctx.bridge, None, GRACE_SECONDS)


def setup_expired_sell(ctx: Ctx) -> None:
    ctx.order_id, ctx.secret = open_sell(ctx.api, ctx.seller, ttl_seconds=3600)
    advance(ctx.bridge, None, 3600)


def setup_lost_create(ctx: Ctx) -> None:
    ctx.dev_node.add_fault(endpoint=CREATE, kind="timeout_after", latency_ms=TIMEOUT_AFTER_MS, count=1)
    status, body = act_create_sell(ctx)
    assert (status, body["status"]) == (502, "locking"), body
    advance(ctx.bridge, None, GRACE_SECONDS)


def _third_party(ctx: Ctx, *steps: str) -> None:
    """Act on the order's job as the bridge's worker (deliver) or as its poster (accept,
    dispute): the node's ``/agent/*`` routes authenticate nobody (docs/escrow-node.md §2)."""
    row = ctx.bridge.db.read_one("SELECT escrow_job_id, escrow_wallet FROM orders WHERE order_id = ?",
                                 (ctx.order_id,))
    third_party(ctx.dev_node, row["escrow_job_id"], row["escrow_wallet"], *steps)


def setup_disputed(ctx: Ctx) -> None:
    setup_open_sell(ctx)
    _third_party(ctx, "deliver", "dispute")


def setup_stolen_open(ctx: Ctx) -> None:
    setup_open_sell(ctx)
    _third_party(ctx, "deliver", "accept")


def setup_delivered_matched(ctx: Ctx) -> None:
    setup_matched_sell(ctx)
    _third_party(ctx, "deliver")


def act_create_sell(ctx: Ctx) -> tuple[int | None, dict]:
    status, body = ctx.api.create_order(ctx.seller, side="sell", pair="RTC/USDC", amount_micro_rtc=10_000_000,
                                        price_nano_quote=50_000_000, eth_address=SELLER_ETH)
    only = ctx.bridge.db.read("SELECT order_id FROM orders")
    assert len(only) == 1, only
    ctx.order_id = only[0]["order_id"]
    if status == 201:
        ctx.secret = body["htlc_secret"]
    return status, body


def act_match_buy(ctx: Ctx) -> tuple[int | None, dict]:
    status, body = ctx.api.match(ctx.seller, ctx.order_id, SELLER_ETH)
    if status == 200:
        ctx.secret = body["htlc_secret"]
    return status, body


def act_match_sell(ctx: Ctx) -> tuple[int | None, dict]:
    return ctx.api.match(ctx.buyer, ctx.order_id, BUYER_ETH)


def act_confirm(ctx: Ctx) -> tuple[int | None, dict]:
    return ctx.api.confirm(ctx.order_id, secret=ctx.secret, quote_tx="0xquote")


def act_cancel(ctx: Ctx) -> tuple[int | None, dict]:
    return ctx.api.cancel(ctx.seller, ctx.order_id)


def act_reconcile(ctx: Ctx) -> tuple[int | None, dict]:
    return None, reconcile.run_once(ctx.bridge)


def act_promote(ctx: Ctx) -> tuple[int | None, dict]:
    assert ctx.dev_node.confirm_pending() == 1
    return act_reconcile(ctx)


def retry_none(ctx: Ctx, code: int | None, status: str) -> None:
    return None


def retry_confirm(ctx: Ctx, code: int | None, status: str) -> None:
    """The API says "Order is 'matched': retry confirm" when nothing left escrow."""
    if status == "matched":
        code, body = act_confirm(ctx)
        assert (code, body["status"]) == (200, "payout_pending"), body


def retry_match(ctx: Ctx, code: int | None, status: str) -> None:
    """A 502 on a sell match says "nothing was changed, retry the match"."""
    if code == 502:
        code, body = _signed_match(ctx, ctx.buyer, BUYER_ETH)
        assert (code, body["status"]) == (200, "matched"), body


@dataclass(frozen=True)
class Operation:
    setup: Callable[[Ctx], None]
    act: Callable[[Ctx], tuple[int | None, dict]]
    retry: Callable[[Ctx, int | None, str], None] = retry_none
    issues_secret: bool = False  # a 2xx answer legitimately carries the new preimage (once)
    alerts: frozenset[str] = frozenset()  # the operator alerts every case raises (a third party acted)


OPERATIONS: dict[str, Operation] = {
    "create_sell": Operation(setup_none, act_create_sell, issues_secret=True),
    "match_buy": Operation(setup_buy_order, act_match_buy, issues_secret=True),
    "match_sell": Operation(setup_open_sell, act_match_sell, retry_match),
    "confirm_sell": Operation(setup_matched_sell, act_confirm, retry_confirm),
    "confirm_buy": Operation(setup_matched_buy, act_confirm, retry_confirm),
    "cancel_sell": Operation(setup_open_sell, act_cancel),
    "unwind_buy": Operation(setup_unwind, act_reconcile),
    "promote": Operation(setup_payout_pending, act_promote),
    "confirm_lost_transfer": Operation(setup_lost_transfer, act_confirm, retry_confirm),
    "resume_settling": Operation(setup_settling, act_reconcile, retry_confirm),
    "expire_sell": Operation(setup_expired_sell, act_reconcile),
    "adopt_lost_create": Operation(setup_lost_create, act_reconcile),
    "confirm_unsent_transfer": Operation(setup_unsent_transfer, act_confirm),
    "confirm_transfer_lost_twice": Operation(setup_transfer_lost_once, act_confirm),
    "tamper_disputed": Operation(setup_disputed, act_reconcile, alerts=frozenset({"escrow_tampered"})),
    "tamper_stolen_open": Operation(setup_stolen_open, act_reconcile, alerts=frozenset({"escrow_tampered"})),
    "tamper_custody": Operation(setup_delivered_matched, act_reconcile, alerts=frozenset({"escrow_tampered"})),
}

UNSENT_PAYOUT_BUG = (
    "BUG: escrow released, payout never queued (GET /wallet/tx answers not_found) -> left in "
    "settlement_recovery for good: pay_buyer re-sends the keyed transfer only once, and the "
    "reconciler's recheck of recovery ignores not_found, although re-sending with the same "
    "idempotency key is safe (docs/escrow-node.md §4) and docs/protocol.md §7 wants every "
    "interrupted settlement finished")
#: (operation, node call, fault class) -> why the case fails today (a product bug).
BUGS: dict[tuple[str, str, str], str] = {}


FALSE_MOVED_ALERT_BUG = (
    "BUG: a sell create whose node answer was lost leaves an unclaimed ('open') job; when the "
    "reconciler adopts and refunds it, advance_refund raises escrow_job_moved ('escrow job was open "
    "(worker None) before the bridge's first refund step') although nobody but the bridge touched "
    "it: a false third-party alert to operators (docs/protocol.md §5 asks to alert on jobs moved without the bridge)")
_FAILED = ("applied", "lost", "refused")
#: (operation, node call, fault class) -> the operator alert codes the case must raise,
#: exactly (none elsewhere: a fault of the node is not a third party moving escrow).
ALERTS: dict[tuple[str, str, str], set[str]] = {
    **{("confirm_lost_transfer", TX, cls): {"payout_unknown"} for cls in _FAILED},
    **{("confirm_unsent_transfer", TX, cls): {"payout_unknown"} for cls in _FAILED},
    ("confirm_transfer_lost_twice", TRANSFER, "lost"): {"payout_unknown"},
}


def alert_codes(bridge) -> set[str]:
    rows = bridge.db.read("SELECT reason FROM order_events WHERE kind = 'alert'")
    return {row["reason"].split(":", 1)[0] for row in rows}


def _case(operation: str, call: str, fault: str):
    bug = BUGS.get((operation, call, FAULT_CLASS[fault]))
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(operation, call, fault, marks=marks,
                        id=f"{operation}-{call.split()[0]} {call.split()[1]}-{fault}")


CASES = [_case(operation, call, fault) for (operation, call) in TABLE for fault in FAULTS]


def test_every_node_call_is_covered():
    """Each node call the bridge makes appears in the matrix, with every fault kind."""
    calls = {call for _, call in TABLE}
    assert calls == {CREATE, GET_JOB, CLAIM, DELIVER, ACCEPT, DISPUTE, CANCEL, TRANSFER, TX, LIST, BALANCE}
    assert {spec["kind"] for spec in FAULTS.values()} == {"timeout_after", "drop_before", "error_5xx",
                                                         "latency", "rate_limit"}


@pytest.mark.parametrize(("operation", "call", "fault"), CASES)
def test_one_fault(operation, call, fault, api, bridge, dev_node, node_db_path, seller, buyer):
    op, want = OPERATIONS[operation], expected(operation, call, fault)
    ctx = Ctx(api, bridge, dev_node, seller, buyer)
    op.setup(ctx)
    for rule in ctx.extra_faults:
        dev_node.add_fault(**rule)
    dev_node.add_fault(endpoint=call, count=1, **FAULTS[fault])

    code, body = op.act(ctx)

    armed = dev_node.get("/dev/faults").json()["faults"]
    assert armed == [], f"the fault never fired: the operation did not make that call ({armed})"
    order = bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (ctx.order_id,))
    assert (code, order["status"]) == (want.http, want.now), body
    if "htlc_secret" in body and not (op.issues_secret and code in (200, 201)):
        assert body.get("status") == "completed", f"preimage in a {code} answer: {body}"
    assert preimage_problems(api, [ctx.order_id]) == []

    dev_node.clear_faults()
    op.retry(ctx, code, order["status"])
    settle(bridge, dev_node)

    rows = orders(bridge)
    final = bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (ctx.order_id,))
    assert final["status"] == want.final, dict(final)
    book = NodeBook.read(node_db_path)
    # The buyer paid once or not at all; the seller's escrow gone once (sold or held) or not at all.
    paid = book.balance(buyer.address) - FUNDED
    spent = FUNDED - book.balance(seller.address)
    assert paid == (final["payout_micro_rtc"] if final["status"] == "completed" else 0), paid
    held = final["status"] == "completed" or (final["status"] == "matched"
                                              or (final["status"] == "open" and final["side"] == "sell"))
    if final["status"] in ("cancelled", "expired") and in_custody(final, book):
        # A third party's accept took the escrow; the worker paid the reward back, the node's fee is gone.
        held_for_nothing = final["escrow_total_micro_rtc"] - final["escrow_reward_micro_rtc"]
        assert spent == held_for_nothing, spent
    else:
        assert spent == (final["escrow_total_micro_rtc"] if held else 0), spent
    assert ledger_problems(rows, book) == []
    assert rest_problems(rows, book, {seller.address: FUNDED, buyer.address: FUNDED}) == []
    pool = dev_node.assert_conserved()["pending"]
    assert sum(pool.get(s, {}).get("count", 0) for s in ("pending", "confirmed")) <= 1, pool
    assert "voided" not in pool, pool
    assert preimage_problems(api, [ctx.order_id]) == []
    assert alert_codes(bridge) == ALERTS.get((operation, call, FAULT_CLASS[fault]), op.alerts)
    # The operator's read-only audit agrees: nothing stranded, moved, missing or doubled.
    assert audit.audit(bridge, include_terminal=True) == []


def test_lost_create_is_not_reported_as_moved_escrow(api, bridge, dev_node, seller, buyer):
    """The create's answer is lost after the node made the job: the reconciler finds the job
    by reference and refunds it, which is right; nobody moved it, so no escrow_job_moved."""
    ctx = Ctx(api, bridge, dev_node, seller, buyer)
    setup_lost_create(ctx)
    reconcile.run_once(bridge)
    order = bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (ctx.order_id,))
    assert (order["status"], order["end_cause"]) == ("cancelled", "escrow_outcome_lost")
    assert "escrow_job_moved" not in alert_codes(bridge)
