"""A read-only cross-check of the order book against the escrow node (docs/protocol.md §7 "dry-run audit").

For each order the bridge's status implies a state of its escrow job and of its payout on
the node; :func:`audit` reads both and reports every difference as a :class:`Mismatch` with a
stable code. It never writes to the database and calls only the node's GET routes
(``GET /agent/jobs/<id>``, ``GET /wallet/tx/<hash>``, ``GET /agent/jobs?status=``); note that
the node itself lazily expires (and refunds) a job past its TTL when any of those touch it
(docs/escrow-node.md §1.8), exactly as the reconciler's reads would.

Codes:

* ``job_moved_by_third_party``: the job's worker is not the bridge's worker, or the job is
  in a state the bridge's own steps never put it in for the order's status (docs/escrow-node.md §2:
  anyone can move a job with the public wallet strings);
* ``amount_mismatch`` / ``poster_mismatch``: the job does not hold what the order recorded;
* ``stranded_escrow``: the order ended but its job still holds the escrow;
* ``escrow_job_missing``: the node has no job with the recorded id;
* ``payout_missing``: ``completed`` without a confirmed payout, or ``payout_pending``
  without a pending or confirmed one;
* ``payout_doubled``: more than one confirmed payout for the order, or more than one that
  is pending or confirmed (the second would pay the buyer twice);
* ``payout_unexpected``: a pending or confirmed payout for an order that never settled;
* ``orphan_escrow_job``: an open or claimed job tagged ``otc_bridge`` and ``<order_id>:v<n>``
  for one of our orders, referenced by no order (e.g. a create whose answer was lost);
* ``custody_refund_missing``: a third party's accept paid the escrow into the worker wallet
  (the escrow watch kept it in custody), the order ended, and the refund transfer to the
  seller is not confirmed on the node;
* ``node_unreadable``: the node gave no usable answer, so nothing could be verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

from otc_bridge.context import Bridge
from otc_bridge.domain.order import Order
from otc_bridge.domain.parsing import ascii_int
from otc_bridge.domain.status import TERMINAL, Status
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import NodeResult, parse_tags
from otc_bridge.operator import common
from otc_bridge.storage import orders

S = Status
_ANY_JOB = frozenset({"open", "claimed", "delivered", "disputed", "completed", "cancelled", "expired"})
#: Job states holding escrow (docs/escrow-node.md §1.9).
LIVE_JOB = frozenset({"open", "claimed", "delivered", "disputed"})
_REFUNDED = frozenset({"cancelled", "expired"})
#: The job states the bridge's own steps can leave for each order status.
EXPECTED_JOB: dict[Status, frozenset[str]] = {
    S.LOCKING: frozenset({"open", "claimed"}),
    S.OPEN: frozenset({"claimed"}),
    S.MATCHED: frozenset({"claimed"}),
    S.SETTLING: frozenset({"claimed", "delivered", "completed"}),
    S.PAYOUT_PENDING: frozenset({"completed"}),
    S.COMPLETED: frozenset({"completed"}),
    S.REFUND_PENDING: LIVE_JOB | _REFUNDED,
    S.SETTLEMENT_RECOVERY: _ANY_JOB,
    S.CANCELLED: _REFUNDED,
    S.EXPIRED: _REFUNDED,
}
#: Statuses in which an order's escrow may sit in the worker's custody after tampering.
_CUSTODY_STATUSES = frozenset({S.MATCHED, S.REFUND_PENDING, S.CANCELLED, S.EXPIRED, S.SETTLEMENT_RECOVERY})
#: Statuses in which no payout may exist yet (a confirm never won, or was undone).
_NO_PAYOUT = frozenset({S.LOCKING, S.OPEN, S.MATCHED, S.REFUND_PENDING, S.CANCELLED, S.EXPIRED})
PAGE_SIZE = 100  # the node's maximum (docs/escrow-node.md §1.8)
MAX_PAGES = 1000


@dataclass(frozen=True)
class Mismatch:
    """One difference between an order and the node. ``order_id`` is ``None`` only for a
    node-wide problem (a job list that could not be read)."""

    code: str
    order_id: str | None
    detail: str

    def as_dict(self) -> dict[str, str | None]:
        """``{"code", "order_id", "detail"}``."""
        return asdict(self)

    def line(self) -> str:
        """``<code> <order_id> <detail>`` on one line."""
        return f"{self.code} {self.order_id or '-'} {self.detail}"


def audit(bridge: Bridge, *, include_terminal: bool = False) -> list[Mismatch]:
    """Cross-check every non-terminal order (and the terminal ones with ``include_terminal``)
    against its escrow job and payouts, then look for orphan escrow jobs; returns every
    mismatch, in order of the orders' creation (empty when the book and the node agree).

    Read-only: no database write, node GET routes only. Node answers that cannot be used
    become ``node_unreadable`` mismatches rather than exceptions.
    """
    where, params = ("1", ()) if include_terminal else (
        "status NOT IN (?, ?, ?)", tuple(str(s) for s in sorted(TERMINAL)))
    found: list[Mismatch] = []
    for order in orders.find(bridge.db.connection(), where, params, order_by="created_at, order_id"):
        found += check_order(bridge, order)
    return found + orphan_jobs(bridge)


def check_order(bridge: Bridge, order: Order) -> list[Mismatch]:
    """The mismatches of one order: its escrow job (if it has one) and its payouts (if a
    confirm ever fixed a payout key)."""
    found = _check_job(bridge, order) if order.escrow_job_id else []
    return found + (_check_payouts(bridge, order) if order.payout_key else [])


def _check_job(bridge: Bridge, order: Order) -> list[Mismatch]:
    order_id, job_id, status = order.order_id, order.escrow_job_id, Status(order.status)
    read = bridge.node.get_job(job_id)
    if read.not_found:
        return [Mismatch("escrow_job_missing", order_id, f"order is {status}; the node has no job {job_id}")]
    if read.job is None:
        return [Mismatch("node_unreadable", order_id, f"GET /agent/jobs/{job_id}: {read.result.error}")]
    job, worker = read.job, bridge.config.worker_wallet
    found = []
    if job.poster_wallet != order.escrow_wallet:
        found.append(Mismatch("poster_mismatch", order_id, f"job {job_id} poster is {job.poster_wallet!r}, "
                                                           f"the order's escrow wallet {order.escrow_wallet!r}"))
    if (job.reward_i64, job.escrow_i64) != (order.escrow_reward_micro_rtc, order.escrow_total_micro_rtc):
        found.append(Mismatch("amount_mismatch", order_id,
                              f"job {job_id} holds reward {job.reward_i64} / escrow {job.escrow_i64} micro-RTC, "
                              f"the order recorded {order.escrow_reward_micro_rtc} / "
                              f"{order.escrow_total_micro_rtc}"))
    refunded_as_due = status in (S.CANCELLED, S.EXPIRED, S.REFUND_PENDING) and job.status in _REFUNDED
    moved = job.worker_wallet not in (None, worker) and not refunded_as_due
    if _in_custody(order, job, worker):
        # A third party's accept paid the escrow into the worker wallet and the escrow watch
        # handled it (docs/protocol.md §11.1): what is left to check is the custody refund.
        return found + _check_custody_refund(bridge, order)
    if job.status not in EXPECTED_JOB[status]:
        if status in TERMINAL and job.status in LIVE_JOB:
            found.append(Mismatch("stranded_escrow", order_id, f"order is {status} but job {job_id} is {job.status}, "
                                                               f"still holding {job.escrow_i64} micro-RTC"))
        else:
            moved = True
    if moved:
        found.append(Mismatch("job_moved_by_third_party", order_id,
                              f"order is {status}; job {job_id} is {job.status} with worker {job.worker_wallet!r} "
                              f"(bridge worker {worker!r})"))
    return found


def _in_custody(order: Order, job, worker: str) -> bool:
    """True for a job completed into the bridge's worker wallet that the bridge holds for the
    order: a third party's accept the escrow watch marked (kept for the match, or being
    returned), or a buyer-held release whose payout was voided because the seller's quote
    claim could no longer land (being returned)."""
    handled = order.escrow_tampered_at is not None or order.end_cause == "quote_unclaimable"
    return (handled and job.status == "completed" and job.worker_wallet == worker
            and Status(order.status) in _CUSTODY_STATUSES)


def _check_custody_refund(bridge: Bridge, order: Order) -> list[Mismatch]:
    """An ended order whose escrow was in custody must show its refund transfer (worker to
    seller, key ``otc_refund:<order>:v<n>``) confirmed on the node."""
    if Status(order.status) not in TERMINAL:
        return []
    if order.refund_tx_hash is None:
        return [Mismatch("custody_refund_missing", order.order_id,
                         f"order is {order.status}, its escrow is in the worker wallet, and no refund was recorded")]
    read = bridge.node.tx_status(order.refund_tx_hash)
    if read.status is None:
        return [Mismatch("node_unreadable", order.order_id,
                         f"GET /wallet/tx/{order.refund_tx_hash}: {read.result.error}")]
    if read.status != "confirmed":
        return [Mismatch("custody_refund_missing", order.order_id,
                         f"order is {order.status} but its custody refund {order.refund_tx_hash} is {read.status}")]
    return []


def _check_payouts(bridge: Bridge, order: Order) -> list[Mismatch]:
    order_id, status = order.order_id, Status(order.status)
    states = {}
    for key in common.payout_keys(bridge, order):
        read = bridge.node.tx_status(payout_tx_hash(key))
        if read.status is None:
            return [Mismatch("node_unreadable", order_id, f"GET /wallet/tx/{payout_tx_hash(key)}: {read.result.error}")]
        states[payout_tx_hash(key)] = read.status
    confirmed = [h for h, s in states.items() if s == "confirmed"]
    live = [h for h, s in states.items() if s in common.LIVE_PAYOUT]
    found = []
    if len(live) > 1:
        what = "confirmed" if len(confirmed) > 1 else "pending or confirmed"
        found.append(Mismatch("payout_doubled", order_id, f"{len(live)} payouts {what}: "
                              + ", ".join(f"{h} {states[h]}" for h in live)))
    current = states.get(order.payout_tx_hash, "unknown")
    if (status == S.COMPLETED and current != "confirmed") or (
            status == S.PAYOUT_PENDING and current not in common.LIVE_PAYOUT):
        found.append(Mismatch("payout_missing", order_id,
                              f"order is {status} but payout {order.payout_tx_hash} is {current} on the node"))
    elif status in _NO_PAYOUT and live:
        found.append(Mismatch("payout_unexpected", order_id,
                              f"order is {status} but payout {live[0]} is {states[live[0]]} on the node"))
    return found


# --- orphan jobs ------------------------------------------------------------------------------

def _jobs_page(bridge: Bridge, status: str, offset: int) -> NodeResult:
    return bridge.node.list_jobs(status=status, limit=PAGE_SIZE, offset=offset)


def node_jobs(bridge: Bridge, status: str) -> Iterator[dict | str]:
    """Every job summary of ``GET /agent/jobs?status=<status>``, paged by ``limit``/``offset``
    (which work on this route, docs/escrow-node.md §1.8); yields the error string instead if a page
    cannot be read. Jobs created while paging may be missed (the node sorts by reward)."""
    offset = 0
    for _ in range(MAX_PAGES):
        result = _jobs_page(bridge, status, offset)
        if not result.ok:
            yield result.error or "unusable answer"
            return
        jobs = [job for job in result.body["jobs"] if isinstance(job, dict)]
        yield from jobs
        offset += len(result.body["jobs"])
        total = result.body.get("total")
        if len(result.body["jobs"]) < PAGE_SIZE or (isinstance(total, int) and offset >= total):
            return


def _our_order(bridge: Bridge, tags: list[str]) -> str | None:
    """The order id of an ``otc_bridge`` job's ``<order_id>:v<n>`` tag, if that order is ours
    (the node is shared: other bridges tag their jobs the same way)."""
    if "otc_bridge" not in tags:
        return None
    for tag in tags:
        order_id, sep, version = tag.rpartition(":v")
        if (sep and ascii_int(version) is not None
                and bridge.db.read_one("SELECT 1 FROM orders WHERE order_id = ?", (order_id,))):
            return order_id
    return None


def orphan_jobs(bridge: Bridge) -> list[Mismatch]:
    """Open and claimed jobs tagged for one of our orders that no order references
    (``orphan_escrow_job``), plus ``node_unreadable`` for a list that could not be read."""
    referenced = {r[0] for r in bridge.db.read("SELECT escrow_job_id FROM orders WHERE escrow_job_id IS NOT NULL")}
    found = []
    for status in ("open", "claimed"):
        for job in node_jobs(bridge, status):
            if isinstance(job, str):
                found.append(Mismatch("node_unreadable", None, f"GET /agent/jobs?status={status}: {job}"))
                continue
            order_id = _our_order(bridge, parse_tags(job.get("tags")))
            if order_id is None or job.get("job_id") in referenced:
                continue
            found.append(Mismatch("orphan_escrow_job", order_id,
                                  f"job {job.get('job_id')} is {job.get('status')} (poster "
                                  f"{job.get('poster_wallet')!r}, worker {job.get('worker_wallet')!r}) "
                                  "and no order references it"))
    return found
