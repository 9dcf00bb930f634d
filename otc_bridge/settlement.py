"""The money path: lock escrow, release it to the buyer, refund it to the seller.

Every function here follows one pattern (SPEC §4 rules 1-3): the order row already says
what is being attempted (``locking``, ``settling``, ``refund_pending`` with the job id,
amounts and idempotency key), then the node is called with no transaction open, then the
outcome is recorded. Progress is always decided from an authoritative read of the escrow
job (``GET /agent/jobs/<id>``) or of the payout (``GET /wallet/tx/<tx_hash>``), never
from a guess about a failed call: the node's ``/agent/*`` routes are unauthenticated, so
anyone may have moved the job (NODE_API §2), and a 409 never means "probably mine".

Escrow custody: right after creation the bridge claims the job with its own worker wallet
(``Config.worker_wallet``). A claimed job can be neither claimed by anyone else nor
cancelled by the poster until its TTL (NODE_API §1.3, §1.7), so only the bridge can advance
it: release = deliver + accept (pays the reward to the worker wallet) + a keyed transfer
to the buyer; refund = deliver + dispute + cancel (returns reward and fee to the poster).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from decimal import Decimal, InvalidOperation

from otc_bridge import store
from otc_bridge.context import Bridge
from otc_bridge.errors import NodeBusy, NodeUnavailable
from otc_bridge.escrow import Job, NodeResult
from otc_bridge.invariants import check_after_commit
from otc_bridge.model import Status
from otc_bridge.store import NodeRef

log = logging.getLogger(__name__)

#: ``GET /wallet/tx`` status -> the payout phase ``/wallet/transfer`` reports for the same row
#: (NODE_API §1.12: a voided transfer reads ``failed``).
PHASE_OF_TX_STATUS = {"pending": "pending", "confirmed": "confirmed", "failed": "voided"}

#: Refund causes that end an order as ``expired`` rather than ``cancelled``.
EXPIRY_CAUSES = frozenset({"expired", "settle_deadline_passed"})


def node_ref(result: NodeResult, ref: str | None = None) -> NodeRef:
    """An audit-log reference for one node call (status code and error, never a secret)."""
    detail = {"status_code": result.status_code, "latency_ms": result.latency_ms}
    if result.error:
        detail["error"] = result.error
    return NodeRef(result.endpoint, str(result.outcome), ref, detail)


def record_call(bridge: Bridge, order_id: str, result: NodeResult, *, ref: str | None,
                reason: str) -> None:
    """Append a ``node_call`` event for ``result`` in its own short transaction."""
    with bridge.db.transaction() as tx:
        row = store.get_order(tx.conn, order_id)
        store.record_event(tx, order_id, row["order_version"], "node_call", actor="bridge",
                           reason=reason, now=bridge.now(), node=node_ref(result, ref))


def move(bridge: Bridge, order: sqlite3.Row, to: Status, *, actor: str, reason: str,
         changes: dict | None = None, node: NodeRef | None = None,
         alert: tuple[str, str] | None = None) -> sqlite3.Row:
    """CAS ``order`` (as last read) to ``to``; returns the fresh row.

    ``alert`` = ``(code, message)`` raises an operator alert in the same transaction.
    Raises ``store.ConcurrentUpdate`` if the row moved since ``order`` was read.
    """
    with bridge.db.transaction() as tx:
        store.transition(tx, order, to, actor=actor, reason=reason, now=bridge.now(),
                         changes=changes, node=node)
        fresh = store.get_order(tx.conn, order["order_id"])
        if alert:
            store.alert(tx, fresh, code=alert[0], message=alert[1], now=bridge.now(), node=node)
        tx.after_commit(lambda: check_after_commit(bridge.db, order["order_id"]))
    return store.get_order(bridge.db.connection(), order["order_id"])


def annotate(bridge: Bridge, order: sqlite3.Row, changes: dict, *, reason: str,
             node: NodeRef | None = None) -> sqlite3.Row:
    """Set columns without a status change (CAS + version bump + note event); fresh row."""
    with bridge.db.transaction() as tx:
        store.annotate(tx, order, changes, actor="bridge", reason=reason, now=bridge.now(), node=node)
    return store.get_order(bridge.db.connection(), order["order_id"])


def raise_alert(bridge: Bridge, order: sqlite3.Row, code: str, message: str) -> None:
    """An operator alert about ``order`` without a status change (deduplicated per version)."""
    log.warning("alert %s on order %s: %s", code, order["order_id"], message)
    with bridge.db.transaction() as tx:
        fresh = store.get_order(tx.conn, order["order_id"])
        store.alert(tx, fresh, code=code, message=message, now=bridge.now())


def job_problem(bridge: Bridge, order: sqlite3.Row, job: Job) -> str | None:
    """Why ``job`` is not the escrow ``order`` relies on (poster, amounts), or ``None``.

    Status and worker are judged by the callers, which know what they expect next.
    """
    if job.poster_wallet != order["escrow_wallet"]:
        return f"job poster is {job.poster_wallet!r}, expected the order's seller"
    if job.reward_i64 != order["escrow_reward_micro_rtc"]:
        return f"job reward is {job.reward_i64} micro-RTC, order needs {order['escrow_reward_micro_rtc']}"
    if job.escrow_i64 != order["escrow_total_micro_rtc"]:
        return f"job escrow is {job.escrow_i64} micro-RTC, expected {order['escrow_total_micro_rtc']}"
    return None


def held_by_bridge(bridge: Bridge, order: sqlite3.Row, job: Job) -> bool:
    """True if ``job`` is the order's escrow, claimed by the bridge's worker and untouched."""
    return (job_problem(bridge, order, job) is None and job.status == "claimed"
            and job.worker_wallet == bridge.config.worker_wallet)


def read_job(bridge: Bridge, order: sqlite3.Row, reason: str) -> Job | None:
    """Authoritative read of the order's escrow job (recorded); ``None`` if the node did not
    answer usably (the caller leaves the order as it is for the reconciler)."""
    read = bridge.node.get_job(order["escrow_job_id"])
    record_call(bridge, order["order_id"], read.result, ref=order["escrow_job_id"], reason=reason)
    return read.job


# --- locking -----------------------------------------------------------------------------

def abandon_lock(bridge: Bridge, order: sqlite3.Row, reason: str) -> sqlite3.Row:
    """Undo a ``locking`` intent when nothing was locked: a sell order ends ``cancelled``
    (cause ``escrow_refused``), a buy order goes back to ``open`` without its taker."""
    if order["side"] == "sell":
        return move(bridge, order, Status.CANCELLED, actor="bridge", reason=reason,
                    changes={"end_cause": "escrow_refused", "ended_at": bridge.now()})
    return move(bridge, order, Status.OPEN, actor="bridge", reason=reason, changes=CLEAR_TAKER)


def find_job_by_ref(bridge: Bridge, order: sqlite3.Row, max_pages: int = 50) -> str | None:
    """The id of the escrow job carrying the order's ``escrow_ref`` tag, or ``None``.

    Used when a create's answer was lost (NODE_API §4: job creation is not idempotent;
    recover with ``GET /agent/jobs?status=...``, which has no poster filter, pages of at
    most 100, ``offset`` honoured). Open jobs are searched, then claimed ones (a third party
    may have claimed it first: it must still be found, refunded when possible, alerted).
    Only the order's poster counts: anyone can tag a job. Raises
    :class:`~otc_bridge.errors.NodeUnavailable` if a list cannot be read, since "not found"
    must be an answer, not a silence.
    """
    for status in ("open", "claimed"):
        found = _find_in_list(bridge, order, status, max_pages)
        if found:
            return found
    return None


def _find_in_list(bridge: Bridge, order: sqlite3.Row, status: str, max_pages: int) -> str | None:
    for page in range(max_pages):
        result = bridge.node.list_jobs(status=status, limit=100, offset=page * 100)
        if not result.ok:
            record_call(bridge, order["order_id"], result, ref=order["escrow_ref"], reason="find escrow job by ref")
            raise NodeUnavailable("Escrow node job list unavailable; the escrow intent stays open")
        jobs = result.body.get("jobs") or []
        for job in jobs:
            tags = job.get("tags")
            if isinstance(tags, str):
                try:
                    tags = json.loads(tags)
                except ValueError:
                    tags = []
            if (isinstance(tags, list) and order["escrow_ref"] in tags
                    and job.get("poster_wallet") == order["escrow_wallet"]):
                return str(job["job_id"])
        if len(jobs) < 100:
            return None
    raise NodeUnavailable("Escrow node job list too long to search; the escrow intent stays open")


# --- refund -------------------------------------------------------------------------------

#: Refund causes of a buy-order *taker's* escrow: the maker's order goes back on the book,
#: so a third party front-running the taker's escrow cannot kill buy orders.
TAKER_CAUSES = frozenset({"taker_escrow_rejected"})
_TAKER_COLUMNS = ("taker_wallet", "taker_quote_address", "htlc_hash", "escrow_wallet", "escrow_ref",
                  "escrow_job_id", "escrow_reward_micro_rtc", "escrow_total_micro_rtc", "escrow_ttl_seconds",
                  "payout_wallet", "matched_at", "settle_by")
CLEAR_TAKER = dict.fromkeys(_TAKER_COLUMNS)


def refund_end_status(order: sqlite3.Row, now: int) -> Status:
    """Where a confirmed refund leaves the order: ``open`` again for a buy order whose
    taker's escrow was refused (unless it expired meanwhile), ``expired`` for time-based
    endings, else ``cancelled`` (the stored cause decides, never a guess)."""
    if order["end_cause"] in TAKER_CAUSES:
        return Status.OPEN if now < order["expires_at"] else Status.EXPIRED
    return Status.EXPIRED if order["end_cause"] in EXPIRY_CAUSES else Status.CANCELLED


def _refund_done(bridge: Bridge, order: sqlite3.Row, reason: str) -> sqlite3.Row:
    now = bridge.now()
    to = refund_end_status(order, now)
    if to == Status.OPEN:
        changes = CLEAR_TAKER | {"end_cause": None}
        reason += "; buy order back on the book"
    else:
        # A buy order whose re-listing came too late ends as plainly expired; others keep their cause.
        expired_relist = to == Status.EXPIRED and order["end_cause"] in TAKER_CAUSES
        changes = {"ended_at": now, "end_cause": "expired" if expired_relist else order["end_cause"]}
    return move(bridge, order, to, actor="bridge", reason=reason, changes=changes)


def bridge_stepped(bridge: Bridge, order_id: str, step: str) -> bool:
    """True if the bridge already attempted a ``step`` call ("refund step", "release step")
    for this order (its intent note is written before the call, so a crash right after the
    call still counts): otherwise a job found past ``claimed`` was moved by someone else."""
    return bridge.db.read_one(
        "SELECT 1 FROM order_events WHERE order_id = ? AND reason LIKE ? LIMIT 1",
        (order_id, step + "%")) is not None


def bridge_claimed(bridge: Bridge, order_id: str, job_id: str) -> bool:
    """True if the node answered one of the bridge's claims of ``job_id`` with OK."""
    return bridge.db.read_one(
        "SELECT 1 FROM order_events WHERE order_id = ? AND kind = 'node_call' AND node_ref = ? "
        "AND node_endpoint = 'POST /agent/jobs/<job_id>/claim' AND node_outcome = 'ok' LIMIT 1",
        (order_id, job_id)) is not None


def _alert_if_moved_first(bridge: Bridge, order: sqlite3.Row, job: Job, step: str) -> sqlite3.Row:
    """Alert ``escrow_job_moved`` if the job is past ``claimed`` although the bridge never
    attempted a ``step`` for this order (SPEC §5: detect jobs moved without the bridge)."""
    if bridge_stepped(bridge, order["order_id"], step):
        return order
    raise_alert(bridge, order, "escrow_job_moved",
                f"escrow job was {job.status} (worker {job.worker_wallet!r}) before the bridge's first {step}")
    return store.get_order(bridge.db.connection(), order["order_id"])


def note_step(bridge: Bridge, order: sqlite3.Row, endpoint: str, reason: str) -> None:
    """Record, before a node call that moves the job, which call the bridge is making
    (a ``node_call`` event with outcome ``intent``; SPEC §4 rule 1)."""
    with bridge.db.transaction() as tx:
        fresh = store.get_order(tx.conn, order["order_id"])
        store.record_event(tx, order["order_id"], fresh["order_version"], "node_call", actor="bridge",
                           reason=reason, now=bridge.now(),
                           node=NodeRef(endpoint, "intent", order["escrow_job_id"]))


def advance_refund(bridge: Bridge, order: sqlite3.Row) -> sqlite3.Row:
    """Drive a ``refund_pending`` order's escrow back to its poster; returns the fresh row.

    Reads the job once, then runs the remaining steps back to back (claimed -> deliver,
    delivered -> dispute, open/disputed -> cancel), so a third party has no time to act
    between them; only a non-OK answer triggers another read. The node's ``cancelled`` or
    ``expired`` (both refund reward + fee to the poster, NODE_API §1.7, §1.9) ends the
    order. A job completed by anyone, or not the order's escrow at all, goes to
    ``settlement_recovery`` with an alert: it is never taken for a refund. A job claimed by
    a third party cannot be refunded before its TTL: the order waits, alerted. An unusable
    node answer leaves ``refund_pending`` for the reconciler.
    """
    if order["escrow_job_id"] is None:
        return _refund_done(bridge, order, "no escrow job was ever created; nothing to refund")
    worker, poster, job_id = bridge.config.worker_wallet, order["escrow_wallet"], order["escrow_job_id"]
    job = read_job(bridge, order, "refund: read escrow job")
    status = job.status if job else None
    # SPEC §5: a job that left `claimed` before the bridge's first refund step was moved by
    # someone else (the node's own lazy expiry aside). Refund it all the same, but say so.
    already_alerted = order["end_cause"] in ("escrow_rejected", "escrow_moved", *TAKER_CAUSES)
    # Only where the refund would otherwise finish quietly: the other cases alert on their own.
    # An `open` job is untouched unless the bridge had claimed it (a create whose answer was
    # lost leaves the job unclaimed: that is the bridge's own history, not a third party).
    if (job is not None and not already_alerted and status in ("open", "delivered", "disputed", "cancelled")
            and (status != "open" or bridge_claimed(bridge, order["order_id"], job.job_id))):
        order = _alert_if_moved_first(bridge, order, job, "refund step")
    for _ in range(6):  # at most three steps, each possibly followed by one re-read
        if job is None:
            return order
        # Only the poster matters for a refund: whatever amount the job holds goes back to
        # the seller, which is exactly the fix for a job with the wrong amount.
        if job.poster_wallet != poster:
            problem = f"job poster is {job.poster_wallet!r}, not the order's seller; not ours to refund"
            return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=problem,
                        alert=("escrow_job_mismatch", problem))
        if status in ("cancelled", "expired"):
            return _refund_done(bridge, order,
                                f"node reports the escrow job {status}: reward and fee refunded to the poster")
        if status == "completed":
            message = f"escrow job was accepted (paid to {job.worker_wallet}) while a refund was due"
            return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=message,
                        alert=("escrow_released_during_refund", message))
        if status == "claimed" and job.worker_wallet != worker:
            raise_alert(bridge, order, "escrow_claimed_by_third_party",
                        f"job claimed by {job.worker_wallet!r}; refund possible only after its TTL")
            return store.get_order(bridge.db.connection(), order["order_id"])
        action = {"claimed": "deliver", "delivered": "dispute"}.get(status, "cancel")
        note_step(bridge, order, f"POST /agent/jobs/<job_id>/{action}", f"refund step from {status}: intent")
        if status == "claimed":
            result = bridge.node.deliver_job(job_id, worker_wallet=worker,
                                             result_summary=f"OTC order {order['order_id']} ended; refunding")
        elif status == "delivered":
            result = bridge.node.dispute_job(job_id, poster_wallet=poster,
                                             reason=f"OTC order {order['order_id']} ended; refund to poster")
        else:  # open or disputed: the poster may cancel
            result = bridge.node.cancel_job(job_id, poster_wallet=poster)
        record_call(bridge, order["order_id"], result, ref=job_id, reason=f"refund step from {status}")
        if result.ok:
            status = str(result.body["status"])
            continue
        job = read_job(bridge, order, "refund: re-read after a non-OK answer")
        if job is None or job.status == status:
            return order  # no progress: the reconciler retries from the node's state
        status = job.status
    return order


# --- release and payout -------------------------------------------------------------------

def _credited_micro_rtc(result: NodeResult) -> int | None:
    """``reward_paid_rtc`` of an accept response in micro-RTC (exact), or ``None``.

    The node computes it as ``reward_i64 / 1e6`` (NODE_API §1.5); its shortest decimal
    repr scales back to the integer exactly.
    """
    value = (result.body or {}).get("reward_paid_rtc")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        scaled = Decimal(repr(value)).scaleb(6)
    except InvalidOperation:  # unparseable credit: the caller then relies on the job's reward_i64
        return None
    return int(scaled) if scaled == int(scaled) else None


def advance_release(bridge: Bridge, order: sqlite3.Row) -> sqlite3.Row:
    """Release a ``settling`` order's escrow to the bridge worker, then pay the buyer.

    Resumable from any point (the reconciler calls it too): one read of the job says which
    step is next (claimed -> deliver, delivered -> accept, completed -> pay); the rest run
    back to back on OK answers, leaving a third party no time between deliver and accept
    (SPEC §5). A deliver refused while the job is still held untouched returns the order
    to ``matched`` (nothing left escrow; the confirm may be retried). A job moved by anyone
    else goes to ``settlement_recovery`` with an alert. An unusable node answer leaves
    ``settling`` for the reconciler (after its grace period).
    """
    worker, job_id = bridge.config.worker_wallet, order["escrow_job_id"]
    job = read_job(bridge, order, "release: read escrow job")
    status = job.status if job else None
    # While matched the bridge never touches the job: finding it past `claimed` before our
    # first release step means someone else moved it (SPEC §5). A release to our own worker
    # still lets the buyer be paid against the valid preimage, but an operator must know.
    # Only where the release proceeds (job ours, amounts right): other cases alert on their own.
    if (job is not None and status in ("delivered", "completed") and job.worker_wallet == worker
            and job_problem(bridge, order, job) is None):
        order = _alert_if_moved_first(bridge, order, job, "release step")
    for _ in range(4):  # at most two steps, each possibly followed by one re-read
        if job is None:
            return order
        problem = job_problem(bridge, order, job)
        if problem is None and job.worker_wallet != worker:
            problem = f"escrow job is {job.status} with worker {job.worker_wallet!r}, not the bridge"
        if problem is None and status not in ("claimed", "delivered", "completed"):
            problem = f"escrow job is {status} on the node; it cannot be released"
        if problem:
            return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=problem,
                        alert=("escrow_job_moved", problem))
        if status == "completed":
            return pay_buyer(bridge, order)
        action = "deliver" if status == "claimed" else "accept"
        note_step(bridge, order, f"POST /agent/jobs/<job_id>/{action}", f"release step from {status}: intent")
        if status == "claimed":
            summary = f"OTC trade confirmed. Order: {order['order_id']}. Quote TX: {order['quote_tx']}"
            result = bridge.node.deliver_job(job_id, worker_wallet=worker, result_summary=summary[:500])
        else:
            result = bridge.node.accept_job(job_id, poster_wallet=order["escrow_wallet"], rating=5)
        record_call(bridge, order["order_id"], result, ref=job_id, reason=f"release step from {status}")
        if result.ok:
            credited = _credited_micro_rtc(result) if status == "delivered" else None
            if credited is not None and credited != order["escrow_reward_micro_rtc"]:
                message = (f"accept credited {credited} micro-RTC, the order's escrow reward is "
                           f"{order['escrow_reward_micro_rtc']}")
                return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=message,
                            alert=("escrow_credit_mismatch", message), node=node_ref(result, job_id))
            status = str(result.body["status"])
            continue
        job = read_job(bridge, order, "release: re-read after a non-OK answer")
        if job is not None and job.status == status:
            if result.failed and status == "claimed" and held_by_bridge(bridge, order, job):
                return move(bridge, order, Status.MATCHED, actor="bridge",
                            reason=f"node refused deliver ({result.error}); no funds left escrow",
                            node=node_ref(result, job_id),
                            changes={"htlc_secret": None, "quote_tx": None, "settling_at": None})
            return order  # no progress: the reconciler resumes from the node's state
        status = job.status if job else None
    return order


def pay_buyer(bridge: Bridge, order: sqlite3.Row) -> sqlite3.Row:
    """Queue the keyed payout from the worker wallet to the buyer; returns the fresh row.

    The key ``otc_payout:<order_id>`` was fixed when the confirm won the claim, so a
    repeat of this call can never pay twice (NODE_API §1.11: same key + same fields ->
    the existing row). The outcome decides the status: queued -> ``payout_pending``,
    confirmed -> ``completed``, voided or refused -> ``settlement_recovery`` (alert).
    A lost answer is resolved by ``GET /wallet/tx/<tx_hash>``; if the node has no such
    transfer, one re-send with the same key is safe; anything else is recovery. A 429 (the
    node's admin rate limit) applied nothing: raises :class:`~otc_bridge.errors.NodeBusy`
    and leaves the order as it is.
    """
    key = order["payout_key"]
    for attempt in range(2):
        result = bridge.node.transfer(from_wallet=bridge.config.worker_wallet, to_wallet=order["payout_wallet"],
                                      amount_micro_rtc=order["payout_micro_rtc"], reason=key,
                                      idempotency_key=key)
        record_call(bridge, order["order_id"], result, ref=order["payout_tx_hash"], reason="payout transfer")
        if result.ok:
            return apply_payout_phase(bridge, order, str(result.body["phase"]), node_ref(result, key))
        if result.failed and result.retry_after_seconds is not None:
            # Rate limited: the node applied nothing. Not a refusal; retry after Retry-After.
            raise NodeBusy(result.retry_after_seconds, order_id=order["order_id"], status=order["status"])
        if result.failed:
            message = f"payout refused by the node after the escrow was released: {result.error}"
            return to_recovery(bridge, order, message, "payout_refused", node_ref(result, key))
        status = bridge.node.tx_status(order["payout_tx_hash"])
        record_call(bridge, order["order_id"], status.result, ref=order["payout_tx_hash"],
                    reason="payout status after an unanswered transfer")
        if status.status == "not_found" and attempt == 0:
            continue
        phase = PHASE_OF_TX_STATUS.get(status.status or "")
        if phase:
            return apply_payout_phase(bridge, order, phase, node_ref(status.result, order["payout_tx_hash"]))
        break
    return to_recovery(bridge, order, "payout outcome unknown after the escrow was released", "payout_unknown")


def to_recovery(bridge: Bridge, order: sqlite3.Row, reason: str, code: str,
                node: NodeRef | None = None) -> sqlite3.Row:
    """``settlement_recovery`` with an alert; an order already there only gets the alert
    (the reconciler re-drives payouts from recovery, and recovery -> recovery is no edge)."""
    if order["status"] == Status.SETTLEMENT_RECOVERY:
        raise_alert(bridge, order, code, reason)
        return store.get_order(bridge.db.connection(), order["order_id"])
    return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=reason, node=node,
                alert=(code, reason))


def apply_payout_phase(bridge: Bridge, order: sqlite3.Row, phase: str, ref: NodeRef) -> sqlite3.Row:
    """Map the node's payout phase onto the order (from ``settling``, ``payout_pending`` or
    ``settlement_recovery``); a phase the order already reflects changes nothing."""
    status = Status(order["status"])
    if phase == "confirmed":
        return complete(bridge, order, ref)
    if phase == "pending":
        if status == Status.PAYOUT_PENDING:
            return order
        return move(bridge, order, Status.PAYOUT_PENDING, actor="bridge",
                    reason="payout queued on the node; preimage withheld until it confirms", node=ref)
    message = f"payout {order['payout_tx_hash']} was voided on the node"
    if status == Status.SETTLEMENT_RECOVERY:
        return order
    return move(bridge, order, Status.SETTLEMENT_RECOVERY, actor="bridge", reason=message, node=ref,
                alert=("payout_voided", message))


def complete(bridge: Bridge, order: sqlite3.Row, ref: NodeRef, *, actor: str = "bridge",
             reason: str = "payout confirmed by the node; trade recorded, preimage readable") -> sqlite3.Row:
    """``completed``: the node confirmed the payout. Writes the trade row in the same
    transaction, so completed <=> trade exists (checked after commit). ``actor``/``reason``
    name who decided (an operator resolving an order passes theirs)."""
    now = bridge.now()
    with bridge.db.transaction() as tx:
        store.transition(tx, order, Status.COMPLETED, actor=actor, reason=reason,
                         now=now, changes={"confirmed_at": now, "ended_at": now}, node=ref)
        seller = order["maker_wallet"] if order["side"] == "sell" else order["taker_wallet"]
        tx.execute(
            "INSERT INTO trades (trade_id, order_id, pair, side, seller_wallet, buyer_wallet,"
            " amount_micro_rtc, price_nano_quote, total_quote_nano, payout_micro_rtc, quote_tx,"
            " escrow_job_id, payout_tx_hash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("trade_" + order["order_id"].removeprefix("otc_"), order["order_id"], order["pair"],
             order["side"], seller, order["payout_wallet"], order["amount_micro_rtc"],
             order["price_nano_quote"], order["total_quote_nano"], order["payout_micro_rtc"],
             order["quote_tx"], order["escrow_job_id"], order["payout_tx_hash"], now),
        )
        tx.after_commit(lambda: check_after_commit(bridge.db, order["order_id"]))
    return store.get_order(bridge.db.connection(), order["order_id"])
