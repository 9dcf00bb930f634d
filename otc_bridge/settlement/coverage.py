"""The worker wallet's exposure: coverage of what is queued from it, and jobs posted in its name.

The node lets anyone create a job that debits any wallet, the bridge's worker included, and
its balance check ignores queued debits (docs/escrow-node.md §0, §1.2). Payouts and custody
refunds are queued from the worker and only debited when the node operator confirms the
pending pool, so a drained worker would see them voided at confirmation. Every reconcile pass:

* **coverage**: the worker's confirmed balance must be at least what is queued from it (its
  pending outgoing transfers as the node lists them: payouts and custody refunds) plus the
  escrow it holds in custody for matches. A breach sets the ``releases`` pause (no confirm can claim a settlement: the
  claim's compare-and-swap checks it), raises a critical ``worker_coverage_breach`` alert, and
  shows in ``/metrics`` (``otc_worker_*``); it clears by itself once covered again;
* **foreign jobs**: an ``open`` job whose poster is the worker was not made by the bridge (it
  never posts as its worker): it is cancelled as its poster, which refunds the worker.

The window in between is the node's own: a job posted in the worker's name, claimed, delivered
and accepted by an attacker in one burst drains the worker before any pass runs, and payouts
queued from it stay exposed until the node operator confirms the pending pool. Keep the node's
confirmation delay short and the worker's balance low (see docs/protocol.md §11).
"""

from __future__ import annotations

import logging
from collections import Counter

from otc_bridge.context import Bridge
from otc_bridge.storage import heartbeats, orders, outbox, pauses

log = logging.getLogger(__name__)

#: Pages of the node's open-job list read per pass when looking for jobs in the worker's name.
MAX_JOB_PAGES = 20
_PAGE = 100  # the node's maximum page (docs/escrow-node.md §1.8)


#: Attempts at one consistent (queue, balance) reading before the check waits for the next pass.
_READS = 3


def check_coverage(bridge: Bridge, counts: Counter) -> None:
    """Compare the worker's confirmed balance with what is queued from it (micro-RTC); set or
    clear the ``releases`` pause and alert on a new breach. An unreadable balance changes
    nothing (logged; the next pass checks again)."""
    worker, conn = bridge.config.worker_wallet, bridge.db.connection()
    for _ in range(_READS):
        listed, queued, cut = bridge.node.pending_debits_micro_rtc(worker)
        result, balance = bridge.node.balance_micro_rtc(worker)
        if queued is None or balance is None:
            log.warning("worker balance or queue unreadable (%s); coverage not checked this pass",
                        (listed if queued is None else result).error)
            return
        if cut:  # the node lists only its newest 500 rows: never count less than the bridge knows
            queued = max(queued, orders.queued_from_worker_micro_rtc(conn))
        owed = queued + orders.held_for_matches_micro_rtc(conn)
        covered = balance >= owed
        # The queue and the balance are two reads: a transfer the node confirmed between them
        # is counted twice (still queued, already debited). A breach counts only if the queue
        # reads the same again right after the balance.
        if covered or bridge.node.pending_debits_micro_rtc(worker)[1] == queued:
            break
    else:
        log.warning("worker queue kept moving during %d coverage reads; checked again next pass", _READS)
        return
    now = bridge.now()
    heartbeats.record_pass(bridge.db, "coverage", {"balance_micro_rtc": balance, "owed_micro_rtc": owed,
                                                   "covered": int(covered)}, now)
    with bridge.db.transaction() as tx:
        if covered:
            if pauses.clear_pause(tx, pauses.RELEASES):
                log.warning("worker %s covers its queue again (%d >= %d micro-RTC): releases resume",
                            worker, balance, owed)
            return
        reason = (f"worker wallet {worker} holds {balance} micro-RTC but {owed} micro-RTC is queued from it "
                  "or held for matches; releases are paused")
        if pauses.set_pause(tx, pauses.RELEASES, reason=reason, now=now):
            log.critical("%s", reason)
            outbox.alert_once(tx, code="worker_coverage_breach", message=reason, key=str(now), now=now)
    counts["coverage_breach"] += 1


def cancel_foreign_jobs(bridge: Bridge, counts: Counter) -> None:
    """Cancel every ``open`` job posted in the worker's name (the bridge never posts as its
    worker), refunding the worker; each one is alerted once. Reads at most
    :data:`MAX_JOB_PAGES` pages of the node's open-job list."""
    worker = bridge.config.worker_wallet
    for page in range(MAX_JOB_PAGES):
        listed = bridge.node.list_jobs(status="open", limit=_PAGE, offset=page * _PAGE)
        if not listed.ok:  # the node's answer, not a bridge error: the next pass looks again
            log.warning("open job list unreadable (%s); foreign jobs not checked this pass", listed.error)
            return
        jobs = listed.body.get("jobs") or []
        for job in jobs:
            if job.get("poster_wallet") == worker:
                _cancel_foreign(bridge, str(job.get("job_id")), counts)
        if len(jobs) < _PAGE:
            return


def _cancel_foreign(bridge: Bridge, job_id: str, counts: Counter) -> None:
    worker, now = bridge.config.worker_wallet, bridge.now()
    result = bridge.node.cancel_job(job_id, poster_wallet=worker)
    message = (f"job {job_id} posted in the worker wallet's name was not made by the bridge; "
               f"cancel {'refunded the worker' if result.ok else 'failed: ' + str(result.error)}")
    log.warning("%s", message)
    counts["foreign_jobs"] += 1
    with bridge.db.transaction() as tx:
        outbox.alert_once(tx, code="foreign_worker_job", message=message, key=f"{job_id}:{int(result.ok)}", now=now)
