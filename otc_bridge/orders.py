"""Order services: create, match, confirm, cancel (the API's four POST routes).

Each service verifies the wallet signature, then writes the intent row and consumes the
signature in one transaction (so a refused request leaves nothing behind and a replay
finds the signature used), then talks to the node outside any transaction through
:mod:`otc_bridge.settlement`. Errors are :mod:`otc_bridge.errors` with the reference's
wording; every escrow outcome is recorded before the caller hears about it.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

from otc_bridge import auth, leases, money, settlement, store
from otc_bridge.context import Bridge
from otc_bridge.crashpoints import crash_point
from otc_bridge.errors import BridgeError, Conflict, Forbidden, Gone, Invalid, NodeUnavailable, NotFound
from otc_bridge.escrow import expected_escrow_micro_rtc, payout_tx_hash
from otc_bridge.htlc import is_preimage_format, new_preimage, preimage_matches
from otc_bridge.invariants import check_after_commit
from otc_bridge.model import Status
from otc_bridge.store import ConcurrentUpdate

ESCROW_HINT = "Ensure your wallet has sufficient RTC balance (reward + 5% platform fee)"


@dataclass(frozen=True)
class CreateRequest:
    """A validated create: amounts in micro-RTC / nano-quote, TTL in seconds."""

    side: str
    pair: str
    wallet: str  # as sent (the signature covers it); canonicalised after verification
    quote_address: str
    amount_micro_rtc: int
    price_nano_quote: int
    ttl_seconds: int
    wallet_auth: object


@dataclass(frozen=True)
class Created:
    """Outcome of a create: the order row, and the preimage for a sell order (shown once)."""

    order: sqlite3.Row
    htlc_secret: str | None


def _verify(bridge: Bridge, wallet: str, wallet_auth: object, action: str, order_id: str,
            bound: dict) -> auth.VerifiedWallet:
    """Verify the signature and burn it at once, in its own committed transaction.

    Single use means single use: a signed request refused later for any reason (order
    not open, lost race, node refusal) must not stay replayable for the rest of its 300 s
    window. A captured buy-order match could otherwise be replayed once the order reopens,
    locking the victim's RTC and handing the preimage to the replayer.
    """
    now = bridge.now()
    try:
        verified = auth.verify(wallet, wallet_auth, action=action, order_id=order_id, bound=bound, now=now)
        with bridge.db.transaction() as tx:
            auth.consume(tx, verified, action, now)
    except auth.AuthError as exc:
        raise BridgeError(exc.code, http_status=401) from None
    return verified


def new_order_id() -> str:
    """``otc_`` + 16 hex characters, as the reference's ids look."""
    return "otc_" + secrets.token_hex(8)


def _escrow_intent(bridge: Bridge, order_id: str, version: int, wallet: str, amount: int,
                   ttl_seconds: int) -> dict:
    """Columns that say, before any node call, which escrow job is about to be created."""
    return {
        "escrow_wallet": wallet,
        "escrow_ref": f"{order_id}:v{version}",
        "escrow_reward_micro_rtc": amount,
        "escrow_total_micro_rtc": expected_escrow_micro_rtc(amount),
        "escrow_ttl_seconds": ttl_seconds,
    }


def create_order(bridge: Bridge, req: CreateRequest) -> Created:
    """Create an order. Sell: lock the seller's escrow first, then open it (201).

    Raises 401 on a bad or replayed signature; 400 ``Failed to lock RTC in escrow`` when
    the node refuses the job (order ends ``cancelled``, nothing held); 502 when the node's
    answer is unusable (the order stays ``locking`` for the reconciler, which refunds it:
    without the preimage, which only this response carries, it could never settle).
    """
    bound = {"side": req.side, "pair": req.pair, "amount_micro_rtc": req.amount_micro_rtc,
             "price_per_rtc_nano_quote": req.price_nano_quote, "ttl_seconds": req.ttl_seconds,
             "eth_address": req.quote_address}
    verified = _verify(bridge, req.wallet, req.wallet_auth, "create_order", "create_order", bound)
    now = bridge.now()
    order_id = new_order_id()
    secret, htlc_hash = new_preimage() if req.side == "sell" else (None, None)
    status = Status.LOCKING if req.side == "sell" else Status.OPEN
    columns = {
        "order_id": order_id, "side": req.side, "pair": req.pair, "status": str(status),
        "maker_wallet": verified.wallet, "maker_quote_address": req.quote_address,
        "amount_micro_rtc": req.amount_micro_rtc, "price_nano_quote": req.price_nano_quote,
        "total_quote_nano": money.total_quote_nano(req.amount_micro_rtc, req.price_nano_quote),
        "ttl_seconds": req.ttl_seconds, "created_at": now, "expires_at": now + req.ttl_seconds,
        "updated_at": now, "htlc_hash": htlc_hash,
    }
    if req.side == "sell":
        job_ttl = req.ttl_seconds + bridge.config.settle_window_seconds + bridge.config.escrow_margin_seconds
        columns.update(_escrow_intent(bridge, order_id, 1, verified.wallet, req.amount_micro_rtc, job_ttl))
    with bridge.db.transaction() as tx:
        names = ", ".join(columns)
        marks = ", ".join(f":{k}" for k in columns)
        tx.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", columns)  # noqa: S608
        store.record_event(tx, order_id, 1, "transition", actor=verified.wallet, reason="order created",
                           now=now, to=status)
        store.enqueue_order_event(tx, order_id, None, status, "order created", now)
        tx.after_commit(lambda: check_after_commit(bridge.db, order_id))
        tx.after_commit(lambda: crash_point(f"after_commit:{status}"))
    order = store.get_order(bridge.db.connection(), order_id)
    if req.side == "buy":
        return Created(order, None)
    order = lock_escrow(bridge, order, title=f"OTC Bridge Escrow: {order_id}",
                        description=f"Escrowed {money.format_units(req.amount_micro_rtc, 6)} RTC for "
                                    f"OTC sell order {order_id} ({req.pair}).")
    order = settlement.move(bridge, order, Status.OPEN, actor="bridge",
                            reason="escrow verified and held by the bridge; order on the book")
    return Created(order, secret)


def lock_escrow(bridge: Bridge, order: sqlite3.Row, *, title: str, description: str) -> sqlite3.Row:
    """Create, claim and verify the escrow job described by a ``locking`` order's intent.

    Returns the fresh row (still ``locking``, ``escrow_job_id`` set) once the node reports
    the job claimed by the bridge's worker with exactly the intended amounts. Job creation
    is serialised per poster wallet (NODE_API §4: concurrent creation over-locks). Raises
    :class:`BridgeError` after recording the outcome: node refusal -> the lock is abandoned
    (sell: ``cancelled``; buy match: back to ``open``); unusable answer -> 502, order left
    ``locking``; a job that is not what we asked for -> ``refund_pending``, refund started.
    """
    cfg = bridge.config
    wallet = order["escrow_wallet"]
    lock_ttl = cfg.escrow_lock_wait_seconds + 2 * (cfg.node_connect_timeout_seconds + cfg.node_read_timeout_seconds)
    try:
        with leases.held(bridge.db, f"escrow-create:{wallet}", ttl_seconds=lock_ttl,
                         wait_seconds=cfg.escrow_lock_wait_seconds):
            result = bridge.node.create_job(
                poster_wallet=wallet, amount_micro_rtc=order["escrow_reward_micro_rtc"],
                ttl_seconds=order["escrow_ttl_seconds"], title=title, description=description,
                tags=["otc_bridge", "escrow", order["escrow_ref"]])
    except leases.LeaseBusy:
        settlement.abandon_lock(bridge, order, "another escrow for this wallet is being created")
        raise BridgeError("Another escrow for this wallet is being created; retry shortly",
                          http_status=409) from None
    settlement.record_call(bridge, order["order_id"], result, ref=order["escrow_ref"], reason="create escrow job")
    if result.failed:
        settlement.abandon_lock(bridge, order, f"node refused the escrow job: {result.error}")
        raise BridgeError("Failed to lock RTC in escrow", details=result.error or "escrow node refused",
                          hint=ESCROW_HINT)
    if result.unknown:
        raise NodeUnavailable("Escrow node did not answer; the escrow outcome is being reconciled",
                              order_id=order["order_id"], status="locking")
    job_id = result.body["job_id"]
    order = settlement.annotate(bridge, order, {"escrow_job_id": job_id}, reason="escrow job created",
                                node=settlement.node_ref(result, job_id))
    return claim_and_verify(bridge, order)


def claim_and_verify(bridge: Bridge, order: sqlite3.Row) -> sqlite3.Row:
    """Claim the new job with the bridge's worker, then read it back and check it (SPEC §5)."""
    worker, job_id = bridge.config.worker_wallet, order["escrow_job_id"]
    for _ in range(2):  # one retry of the claim if the job is still plainly open
        claim = bridge.node.claim_job(job_id, worker_wallet=worker)
        settlement.record_call(bridge, order["order_id"], claim, ref=job_id, reason="claim escrow job")
        job = settlement.read_job(bridge, order, "verify escrow job after claim")
        if job is None:
            raise NodeUnavailable("Escrow node did not answer; the escrow outcome is being reconciled",
                                  order_id=order["order_id"], status="locking")
        if job.status != "open":
            break
    if settlement.held_by_bridge(bridge, order, job):
        return order
    problem = settlement.job_problem(bridge, order, job) or (
        f"escrow job is {job.status} with worker {job.worker_wallet!r} right after creation")
    cause = "escrow_rejected" if order["side"] == "sell" else "taker_escrow_rejected"
    order = settlement.move(bridge, order, Status.REFUND_PENDING, actor="bridge", reason=problem,
                            changes={"end_cause": cause}, alert=("escrow_rejected", problem))
    settlement.advance_refund(bridge, order)
    raise BridgeError("Escrow job on the node does not hold what the order needs; it is being refunded",
                      http_status=502, details=problem, order_id=order["order_id"])


def _get(bridge: Bridge, order_id: str) -> sqlite3.Row:
    order = store.get_order(bridge.db.connection(), order_id)
    if order is None:
        raise NotFound("Order not found")
    return order


def match_order(bridge: Bridge, order_id: str, wallet: str, quote_address: str,
                wallet_auth: object) -> tuple[sqlite3.Row, str | None]:
    """Take an open order; returns ``(order, htlc_secret)`` (secret only for a buy order,
    whose taker is the RTC seller and locks escrow now).

    Raises 401 (signature), 404, 409 ``Order is not open``, 400 ``Cannot match your own
    order`` (compared canonically), 410 ``Order has expired``, 409 when another match won,
    409 when a sell order's escrow is no longer held on the node (recorded, alerted).
    """
    verified = _verify(bridge, wallet, wallet_auth, "match_order", order_id, {"eth_address": quote_address})
    order = _get(bridge, order_id)
    _check_matchable(bridge, order, verified.wallet)
    if order["side"] == "sell":
        _check_escrow_still_held(bridge, order)
    now = bridge.now()
    secret = None
    changes = {"taker_wallet": verified.wallet, "taker_quote_address": quote_address}
    if order["side"] == "sell":
        to = Status.MATCHED
        changes |= {"payout_wallet": verified.wallet, **_deadlines(bridge, now)}
    else:
        to = Status.LOCKING
        secret, htlc_hash = new_preimage()
        ttl = bridge.config.settle_window_seconds + bridge.config.escrow_margin_seconds
        changes |= {"htlc_hash": htlc_hash, "payout_wallet": order["maker_wallet"],
                    **_escrow_intent(bridge, order_id, order["order_version"] + 1, verified.wallet,
                                     order["amount_micro_rtc"], ttl)}
    try:
        with bridge.db.transaction() as tx:
            store.transition(tx, order, to, actor=verified.wallet, reason="taker matched the order",
                             now=now, changes=changes)
            tx.after_commit(lambda: check_after_commit(bridge.db, order_id))
    except ConcurrentUpdate:
        raise Conflict("Order was matched by someone else") from None
    order = _get(bridge, order_id)
    if order["side"] == "buy":
        order = lock_escrow(bridge, order, title=f"OTC Bridge Escrow: {order_id} (taker)",
                            description=f"Escrowed RTC for OTC buy order match {order_id}. "
                                        f"Buyer: {order['maker_wallet']}.")
        order = settlement.move(bridge, order, Status.MATCHED, actor="bridge",
                                reason="taker escrow verified and held; waiting for the preimage",
                                changes=_deadlines(bridge, bridge.now()))
    return order, secret


def _deadlines(bridge: Bridge, matched_at: int) -> dict:
    return {"matched_at": matched_at, "settle_by": matched_at + bridge.config.settle_window_seconds}


def _check_matchable(bridge: Bridge, order: sqlite3.Row, taker: str) -> None:
    if order["status"] != Status.OPEN:
        raise Conflict(f"Order is not open (status: {order['status']})")
    if order["maker_wallet"] == taker:
        raise Invalid("Cannot match your own order")
    if bridge.now() >= order["expires_at"]:
        raise Gone("Order has expired")


def _check_escrow_still_held(bridge: Bridge, order: sqlite3.Row) -> None:
    """Read the sell order's job before matching: a buyer must never pay into a swap whose
    escrow someone else already moved (NODE_API §2)."""
    job = settlement.read_job(bridge, order, "check escrow before match")
    if job is None:
        raise NodeUnavailable("Escrow node did not answer; nothing was changed, retry the match")
    if settlement.held_by_bridge(bridge, order, job):
        return
    problem = settlement.job_problem(bridge, order, job) or (
        f"escrow job is {job.status} with worker {job.worker_wallet!r} while the order is open")
    try:
        moved = settlement.move(bridge, order, Status.REFUND_PENDING, actor="bridge", reason=problem,
                                changes={"end_cause": "escrow_moved"}, alert=("escrow_job_moved", problem))
    except ConcurrentUpdate:
        raise Conflict("Order is no longer open") from None
    settlement.advance_refund(bridge, moved)
    raise Conflict("Order escrow is no longer held on the node; the order was withdrawn", details=problem)


def confirm_order(bridge: Bridge, order_id: str, *, secret: str, quote_tx: str,
                  wallet: str | None) -> sqlite3.Row:
    """Settle a matched order with the HTLC preimage; returns the order after the attempt.

    Authorised by the preimage (SPEC §3); ``wallet``, if given, must be the RTC seller or
    buyer (403). Raises 404, 409 ``Order must be matched to confirm``, 400 ``Invalid HTLC
    secret format`` / ``Invalid HTLC secret``, 409 when another confirm (or the unwind)
    won the claim. The returned status is ``completed``, ``payout_pending``,
    ``settlement_recovery``, ``matched`` (nothing left escrow) or ``settling``.
    """
    order = _get(bridge, order_id)
    if order["status"] != Status.MATCHED:
        raise Conflict(f"Order must be matched to confirm (current: {order['status']})")
    if wallet is not None:
        canonical = auth.canonical_wallet(wallet) if auth.is_native_wallet(wallet) else None
        if canonical not in (order["maker_wallet"], order["taker_wallet"]):
            raise Forbidden("Only the RTC seller or buyer can confirm settlement")
    if not is_preimage_format(secret):
        raise Invalid("Invalid HTLC secret format", field="secret")
    if not preimage_matches(secret, order["htlc_hash"]):
        raise Invalid("Invalid HTLC secret", field="secret")
    now = bridge.now()
    key = f"otc_payout:{order_id}"
    changes = {"htlc_secret": secret.lower(), "quote_tx": quote_tx, "settling_at": now, "payout_key": key,
               "payout_tx_hash": payout_tx_hash(key), "payout_micro_rtc": order["escrow_reward_micro_rtc"]}
    try:
        order = settlement.move(bridge, order, Status.SETTLING, actor=wallet or "preimage holder",
                                reason="preimage verified; settlement claimed", changes=changes)
    except ConcurrentUpdate:
        raise Conflict("Order is no longer matched (already settling or settled)") from None
    try:
        return settlement.advance_release(bridge, order)
    except ConcurrentUpdate:
        # The reconciler finished this settlement meanwhile: report where it stands.
        return _get(bridge, order_id)


def cancel_order(bridge: Bridge, order_id: str, wallet: str, wallet_auth: object) -> sqlite3.Row:
    """The maker withdraws an open order; escrow (sell) is refunded through ``refund_pending``.

    Raises 401, 404, 403 ``Only the order creator can cancel`` (before the status check,
    as the reference), 409 ``Can only cancel open orders``, 409 when a match won the race.
    """
    verified = _verify(bridge, wallet, wallet_auth, "cancel_order", order_id, {})
    now = bridge.now()
    try:
        with bridge.db.transaction() as tx:
            order = store.get_order(tx.conn, order_id)
            if order is None:
                raise NotFound("Order not found")
            if order["maker_wallet"] != verified.wallet:
                raise Forbidden("Only the order creator can cancel")
            if order["status"] != Status.OPEN:
                raise Conflict(f"Can only cancel open orders (current: {order['status']})")
            to = Status.REFUND_PENDING if order["side"] == "sell" else Status.CANCELLED
            changes = {"end_cause": "cancelled"} | ({} if order["side"] == "sell" else {"ended_at": now})
            store.transition(tx, order, to, actor=verified.wallet, reason="maker cancelled", now=now,
                             changes=changes)
            tx.after_commit(lambda: check_after_commit(bridge.db, order_id))
    except ConcurrentUpdate:
        raise Conflict("Order is no longer open (matched or cancelled concurrently)") from None
    order = _get(bridge, order_id)
    if order["status"] == Status.REFUND_PENDING:
        try:
            order = settlement.advance_refund(bridge, order)
        except ConcurrentUpdate:
            # The reconciler drove the same refund to its end meanwhile (the node's guards made
            # every step happen once): report the order as it now stands.
            order = _get(bridge, order_id)
    return order
