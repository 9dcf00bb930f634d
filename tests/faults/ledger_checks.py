"""Money-path checks shared by the fault matrix and the seeded simulation.

The node side is read straight from the dev node's SQLite file, read-only: ``GET
/agent/jobs/<id>`` would lazily expire (and refund) a job as a side effect, and ``GET
/pending/list`` ignores ``offset``, so neither is fit for an observer. The bridge side is
read from its database. Every check returns a list of human-readable problems (empty when
all is well) so a caller can print them all at once, with a seed and a step if it has them.

Amounts are integer micro-RTC throughout.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from otc_bridge.domain.status import TERMINAL, Status
from otc_bridge.settlement import reconcile

WORKER = "otc_bridge_worker"  # Config.worker_wallet's default, which the test bridges keep
FEE_WALLET = "founder_community"
GRACE_SECONDS = 301  # just past the default OTC_SETTLEMENT_STUCK_SECONDS
TRANSIENT = frozenset({Status.LOCKING, Status.SETTLING, Status.PAYOUT_PENDING, Status.REFUND_PENDING})
LIVE_JOB_STATUSES = frozenset({"open", "claimed", "delivered", "disputed"})
_REF = re.compile(r"^(otc_[0-9a-f]{16}):v[0-9]+$")


@dataclass
class NodeBook:
    """One consistent read of the dev node's ledger: jobs, their logs, transfers, balances."""

    jobs: dict[str, dict]
    job_log: dict[str, list[str]]
    transfers: list[dict]
    balances: dict[str, int]
    jobs_by_order: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, node_db_path: Path | str) -> NodeBook:
        conn = sqlite3.connect(f"file:{node_db_path}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN")  # one snapshot for every table
            jobs = {row["job_id"]: dict(row) for row in conn.execute("SELECT * FROM agent_jobs")}
            log: dict[str, list[str]] = defaultdict(list)
            for row in conn.execute("SELECT job_id, action FROM agent_job_log ORDER BY id"):
                log[row["job_id"]].append(row["action"])
            transfers = [dict(row) for row in conn.execute("SELECT * FROM pending_ledger ORDER BY id")]
            balances = {row["miner_id"]: row["amount_i64"]
                        for row in conn.execute("SELECT miner_id, amount_i64 FROM balances")}
            conn.execute("COMMIT")
        finally:
            conn.close()
        by_order: dict[str, list[str]] = defaultdict(list)
        for job_id, job in jobs.items():
            for tag in json.loads(job["tags"] or "[]"):
                match = _REF.match(str(tag))
                if match:
                    by_order[match.group(1)].append(job_id)
        return cls(jobs, dict(log), transfers, balances, dict(by_order))

    def balance(self, wallet: str) -> int:
        return self.balances.get(wallet, 0)


def orders(bridge) -> list:
    """Every order row of the bridge, oldest first."""
    return bridge.db.read("SELECT * FROM orders ORDER BY created_at, rowid")


def escrow_held(order, book: NodeBook) -> str | None:
    """Why ``order``'s escrow is not held by the bridge on the node (``None`` if it is)."""
    job = book.jobs.get(order["escrow_job_id"] or "")
    if job is None:
        return f"{order['order_id']} ({order['status']}): escrow job {order['escrow_job_id']!r} not on the node"
    wrong = [name for name, got, want in (
        ("status", job["status"], "claimed"), ("worker", job["worker_wallet"], WORKER),
        ("poster", job["poster_wallet"], order["escrow_wallet"]),
        ("reward", job["reward_i64"], order["escrow_reward_micro_rtc"]),
        ("escrow", job["escrow_i64"], order["escrow_total_micro_rtc"])) if got != want]
    if wrong:
        return f"{order['order_id']} ({order['status']}): escrow job {job['job_id']} wrong {wrong}: {job}"
    return None


def holds_escrow_at_rest(order) -> bool:
    """An order at rest that must hold escrow on the node: open sell, or any matched order."""
    return order["status"] == Status.MATCHED or (order["status"] == Status.OPEN and order["side"] == "sell")


def ledger_problems(rows: Iterable, book: NodeBook) -> list[str]:
    """Invariants that hold after every step, whatever is in flight.

    * no node job was claimed, delivered, accepted, disputed, cancelled or refunded twice,
      and none was both released (accepted) and refunded;
    * no job is the current escrow of two orders, and at most one job per order was released;
    * every transfer out of the bridge's worker is an order's keyed payout, never voided
      (a void at confirm means the worker was short: something was paid twice), with at
      most one pending/confirmed transfer per order;
    * a completed order has exactly one confirmed payout of its escrow reward to its buyer,
      from the job the bridge released for it;
    * a confirmed payout belongs to an order whose escrow was released (never a refunded one).
    """
    rows = list(rows)
    problems: list[str] = []
    for job_id, actions in book.job_log.items():
        twice = sorted(action for action, n in Counter(actions).items() if n > 1)
        if twice:
            problems.append(f"job {job_id}: {twice} happened more than once: {actions}")
        if "completed" in actions and "escrow_refunded" in actions:
            problems.append(f"job {job_id}: both released and refunded: {actions}")
    holders: dict[str, list[str]] = defaultdict(list)
    for order in rows:
        if order["escrow_job_id"]:
            holders[order["escrow_job_id"]].append(order["order_id"])
    problems += [f"job {job}: current escrow of several orders {ids}" for job, ids in holders.items() if len(ids) > 1]
    by_id = {order["order_id"]: order for order in rows}
    for order_id, job_ids in book.jobs_by_order.items():
        released = [j for j in job_ids if book.jobs[j]["status"] == "completed"]
        if len(released) > 1:
            problems.append(f"{order_id}: several escrow jobs released {released}")
        if order_id not in by_id:
            problems.append(f"jobs {job_ids} tagged for {order_id}, an order the bridge does not have")
    payouts: dict[str, list[dict]] = defaultdict(list)
    by_hash = {order["payout_tx_hash"]: order for order in rows if order["payout_tx_hash"]}
    refunds = {order["refund_tx_hash"]: order for order in rows if order["refund_tx_hash"]}
    for transfer in book.transfers:
        if transfer["from_miner"] != WORKER:
            continue
        if transfer["tx_hash"] in refunds:
            problems += _custody_refund_problems(refunds[transfer["tx_hash"]], transfer, book)
            continue
        order = by_hash.get(transfer["tx_hash"])
        if order is None:
            problems.append(f"transfer {transfer['tx_hash']} from the worker belongs to no order: {transfer}")
            continue
        payouts[order["order_id"]].append(transfer)
        if transfer["status"] == "voided":
            problems.append(f"{order['order_id']}: payout voided ({transfer['voided_by']}: "
                            f"{transfer['voided_reason']})")
    for order in rows:
        mine = payouts.get(order["order_id"], [])
        live = [t for t in mine if t["status"] in ("pending", "confirmed")]
        confirmed = [t for t in mine if t["status"] == "confirmed"]
        if len(live) > 1:
            problems.append(f"{order['order_id']}: {len(live)} pending/confirmed payouts")
        job = book.jobs.get(order["escrow_job_id"] or "")
        if confirmed:
            if job is None or job["status"] != "completed" or job["worker_wallet"] != WORKER:
                problems.append(f"{order['order_id']}: buyer paid but its escrow job was not released "
                                f"to the bridge: {job}")
            elif job["reward_i64"] != confirmed[0]["amount_i64"]:
                problems.append(f"{order['order_id']}: paid {confirmed[0]['amount_i64']}, "
                                f"escrow released {job['reward_i64']}")
        if order["status"] == Status.COMPLETED:
            good = [t for t in confirmed if t["to_miner"] == order["payout_wallet"]
                    and t["amount_i64"] == order["payout_micro_rtc"] and t["tx_hash"] == order["payout_tx_hash"]]
            if len(good) != 1 or len(confirmed) != 1:
                problems.append(f"{order['order_id']}: completed with {len(confirmed)} confirmed payouts "
                                f"({len(good)} to its buyer for its amount)")
        elif confirmed and order["status"] not in (Status.PAYOUT_PENDING, Status.SETTLEMENT_RECOVERY,
                                                   Status.SETTLING):
            problems.append(f"{order['order_id']}: payout confirmed while the order is {order['status']}")
    return problems


def in_custody(order, book: NodeBook) -> bool:
    """True if a third party's accept completed ``order``'s escrow job into the bridge's
    worker wallet and the escrow watch marked the order (docs/protocol.md §11.1)."""
    job = book.jobs.get(order["escrow_job_id"] or "")
    return (order["escrow_tampered_at"] is not None and job is not None and job["status"] == "completed"
            and job["worker_wallet"] == WORKER)


def _custody_refund_problems(order, transfer: dict, book: NodeBook) -> list[str]:
    """A worker transfer keyed as ``order``'s custody refund must pay its seller the reward
    of a job completed into the worker, and never be voided."""
    problems = []
    if not in_custody(order, book):
        problems.append(f"{order['order_id']}: custody refund {transfer['tx_hash']} without escrow in custody")
    if (transfer["to_miner"], transfer["amount_i64"]) != (order["escrow_wallet"], order["escrow_reward_micro_rtc"]):
        problems.append(f"{order['order_id']}: custody refund pays {transfer['amount_i64']} to "
                        f"{transfer['to_miner']}, not the reward to the seller")
    if transfer["status"] == "voided":
        problems.append(f"{order['order_id']}: custody refund voided ({transfer['voided_reason']})")
    return problems


def released_unpaid(rows: Iterable, book: NodeBook) -> set[str]:
    """Orders in ``settlement_recovery`` whose escrow the bridge released to its worker and
    whose keyed payout the node never queued (no transfer with its ``tx_hash``): the shape of
    the known bug ``UNSENT_PAYOUT_BUG`` in ``test_fault_matrix.py``. The buyer is owed
    exactly the escrow reward, which the worker wallet still holds."""
    sent = {t["tx_hash"] for t in book.transfers}
    found = set()
    for order in rows:
        job = book.jobs.get(order["escrow_job_id"] or "")
        if (order["status"] == Status.SETTLEMENT_RECOVERY and order["payout_tx_hash"]
                and order["payout_tx_hash"] not in sent and job is not None and job["status"] == "completed"
                and job["worker_wallet"] == WORKER and job["reward_i64"] == order["payout_micro_rtc"]):
            found.add(order["order_id"])
    return found


def book_confirmed(book: NodeBook, tx_hash: str | None) -> bool:
    """True if the node confirmed the transfer ``tx_hash``."""
    return any(t["tx_hash"] == tx_hash and t["status"] == "confirmed" for t in book.transfers)


def rest_problems(rows: Iterable, book: NodeBook, funded: dict[str, int], *,
                  allow_held: bool = True, unpaid: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Invariants of a quiet book (no fault armed, reconciled until nothing moves).

    Every order is terminal, or (``allow_held``) open/matched with its escrow held by the
    bridge; no other job still locks funds; the worker wallet is empty; the fee wallet holds
    exactly the fees of released escrows; and every funded wallet's balance is exactly
    funded - escrow its held orders lock - escrow (reward + fee) of what it sold
    + rewards of what it bought.

    ``unpaid``: orders tolerated in ``settlement_recovery`` with their escrow released and
    the buyer not paid (see :func:`released_unpaid`): the seller paid the escrow, the
    worker wallet still holds the reward.
    """
    rows = list(rows)
    problems: list[str] = []
    expected = dict(funded)
    fees = 0
    worker = 0
    held_jobs: set[str] = set()
    for order in rows:
        status = Status(order["status"])
        if order["order_id"] in unpaid:
            seller = order["maker_wallet"] if order["side"] == "sell" else order["taker_wallet"]
            expected[seller] = expected.get(seller, 0) - order["escrow_total_micro_rtc"]
            worker += order["escrow_reward_micro_rtc"]
            fees += order["escrow_total_micro_rtc"] - order["escrow_reward_micro_rtc"]
        elif status != Status.COMPLETED and in_custody(order, book):
            # The seller lost the escrow to a third party's accept; the worker holds the reward
            # for the match, or has paid it back once the order ended (the node kept its fee).
            expected[order["escrow_wallet"]] = expected.get(order["escrow_wallet"], 0) - order["escrow_total_micro_rtc"]
            fees += order["escrow_total_micro_rtc"] - order["escrow_reward_micro_rtc"]
            if status in TERMINAL and book_confirmed(book, order["refund_tx_hash"]):
                expected[order["escrow_wallet"]] += order["escrow_reward_micro_rtc"]
            else:
                worker += order["escrow_reward_micro_rtc"]
                if not (status == Status.MATCHED and allow_held):
                    problems.append(f"{order['order_id']}: {status} with its escrow in the worker's custody, "
                                    "not refunded")
        elif status == Status.COMPLETED:
            seller = order["maker_wallet"] if order["side"] == "sell" else order["taker_wallet"]
            expected[seller] = expected.get(seller, 0) - order["escrow_total_micro_rtc"]
            expected[order["payout_wallet"]] = expected.get(order["payout_wallet"], 0) + order["payout_micro_rtc"]
            fees += order["escrow_total_micro_rtc"] - order["escrow_reward_micro_rtc"]
        elif holds_escrow_at_rest(order) and allow_held:
            why = escrow_held(order, book)
            if why:
                problems.append(why)
            expected[order["escrow_wallet"]] = expected.get(order["escrow_wallet"], 0) - order["escrow_total_micro_rtc"]
            held_jobs.add(order["escrow_job_id"])
        elif status == Status.OPEN and allow_held:
            pass  # a buy order on the book holds nothing
        elif status not in TERMINAL:
            problems.append(f"{order['order_id']}: left in {status} (side {order['side']}, "
                            f"cause {order['end_cause']})")
    stranded = {job_id: job["status"] for job_id, job in book.jobs.items()
                if job["status"] in LIVE_JOB_STATUSES and job_id not in held_jobs}
    if stranded:
        problems.append(f"escrow locked on the node by no held order: {stranded}")
    if book.balance(WORKER) != worker:
        problems.append(f"worker wallet holds {book.balance(WORKER)} micro-RTC at rest, owes {worker}")
    if book.balance(FEE_WALLET) != fees:
        problems.append(f"fee wallet holds {book.balance(FEE_WALLET)}, released escrows paid {fees}")
    for wallet, want in sorted(expected.items()):
        got = book.balance(wallet)
        if got != want:
            problems.append(f"wallet {wallet}: balance {got}, books say {want} (diff {got - want})")
    return problems


def settle(bridge, dev_node, *, move_node_clock: bool = False, rounds: int = 12,
           seconds: int = GRACE_SECONDS) -> int:
    """Reconcile until quiet: each round moves time past the grace period (the bridge's
    clock, and the node's when asked), confirms the node's pending pool and runs one pass.
    Quiet = no order in a transient status and a pass that changed no order. Returns the
    rounds used; raises AssertionError if still busy after ``rounds``."""
    def snapshot() -> dict[str, tuple[str, int]]:
        return {r["order_id"]: (r["status"], r["order_version"])
                for r in bridge.db.read("SELECT order_id, status, order_version FROM orders")}

    for done in range(1, rounds + 1):
        before = snapshot()
        advance(bridge, dev_node if move_node_clock else None, seconds)
        dev_node.confirm_pending()
        result = reconcile.run_once(bridge)
        assert result["skipped_locked"] == 0, result
        after = snapshot()
        if after == before and not any(Status(s) in TRANSIENT for s, _ in after.values()):
            return done
    busy = {k: v for k, v in snapshot().items() if Status(v[0]) in TRANSIENT}
    raise AssertionError(f"reconciler not quiet after {rounds} rounds: {busy or snapshot()}")


class ShiftedClock:
    """The bridge's clock plus an offset that only :func:`advance` moves."""

    def __init__(self, base) -> None:
        self.base = base
        self.offset = 0

    def __call__(self) -> int:
        return self.base() + self.offset


def advance(bridge, dev_node, seconds: int) -> None:
    """Move the bridge's clock (and the dev node's, if given) forward by ``seconds``."""
    if not isinstance(bridge.clock, ShiftedClock):
        bridge.clock = ShiftedClock(bridge.clock)
    bridge.clock.offset += seconds
    if dev_node is not None:
        response = dev_node.post("/dev/clock", {"advance_seconds": seconds})
        assert response.status_code == 200, response.text


def preimage_problems(api, order_ids: Iterable[str]) -> list[str]:
    """Orders whose ``GET /api/orders/<id>`` shows the preimage while not completed, or hides
    it once completed."""
    problems = []
    for order_id in order_ids:
        code, body = api.order(order_id)
        if code != 200:
            problems.append(f"GET order {order_id}: {code} {body}")
            continue
        view = body["order"]
        shown = view.get("htlc_secret") is not None
        if shown != (view["status"] == Status.COMPLETED):
            problems.append(f"{order_id}: preimage {'shown' if shown else 'hidden'} in status {view['status']}")
    return problems
