"""Reading and judging an order's escrow job on the node.

The node's ``/agent/*`` routes are unauthenticated (docs/escrow-node.md §2): anyone may have
moved a job, so progress is always decided from an authoritative read of the job, never
from a guess about a failed call, and a 409 never means "probably mine".
"""

from __future__ import annotations

from otc_bridge.context import Bridge
from otc_bridge.domain.errors import NodeUnavailable
from otc_bridge.domain.order import Order
from otc_bridge.node.results import Job, parse_tags
from otc_bridge.settlement.record import Step, bridge_stepped


def job_problem(order: Order, job: Job) -> str | None:
    """Why ``job`` is not the escrow ``order`` relies on (poster, amounts), or ``None``.

    Status and worker are judged by the callers, which know what they expect next.
    """
    if job.poster_wallet != order.escrow_wallet:
        return f"job poster is {job.poster_wallet!r}, expected the order's seller"
    if job.reward_i64 != order.escrow_reward_micro_rtc:
        return f"job reward is {job.reward_i64} micro-RTC, order needs {order.escrow_reward_micro_rtc}"
    if job.escrow_i64 != order.escrow_total_micro_rtc:
        return f"job escrow is {job.escrow_i64} micro-RTC, expected {order.escrow_total_micro_rtc}"
    return None


def held_by_bridge(bridge: Bridge, order: Order, job: Job) -> bool:
    """True if ``job`` is the order's escrow, claimed by the bridge's worker and untouched."""
    return (job_problem(order, job) is None and job.status == "claimed"
            and job.worker_wallet == bridge.config.worker_wallet)


def read_job(step: Step, reason: str) -> Job | None:
    """Authoritative read of the step's escrow job (recorded with the step's next write);
    ``None`` if the node did not answer usably (the caller leaves the order as it is for
    the reconciler)."""
    read = step.bridge.node.get_job(step.order.escrow_job_id)
    step.call(read.result, ref=step.order.escrow_job_id, reason=reason)
    return read.job


def alert_if_moved_first(step: Step, job: Job, kind: str) -> None:
    """Alert ``escrow_job_moved`` if the job is past ``claimed`` although the bridge never
    attempted a ``kind`` step ("refund step", "release step") for this order: someone else
    moved it (docs/protocol.md §11)."""
    if not bridge_stepped(step.bridge, step.order.order_id, kind):
        step.alert("escrow_job_moved",
                   f"escrow job was {job.status} (worker {job.worker_wallet!r}) before the bridge's first {kind}")


def find_job_by_ref(step: Step, max_pages: int = 50) -> str | None:
    """The id of the escrow job carrying the order's ``escrow_ref`` tag, or ``None``.

    Used when a create's answer was lost (docs/escrow-node.md §4: job creation is not
    idempotent; recover with ``GET /agent/jobs?status=...``, which has no poster filter, pages
    of at most 100, ``offset`` honoured). Open jobs are searched, then claimed ones (a third
    party may have claimed it first: it must still be found, refunded when possible,
    alerted). Only the order's poster counts: anyone can tag a job. Raises
    :class:`~otc_bridge.domain.errors.NodeUnavailable` if a list cannot be read, since "not
    found" must be an answer, not a silence.
    """
    for status in ("open", "claimed"):
        found = _find_in_list(step, status, max_pages)
        if found:
            return found
    return None


def _find_in_list(step: Step, status: str, max_pages: int) -> str | None:
    order = step.order
    for page in range(max_pages):
        result = step.bridge.node.list_jobs(status=status, limit=100, offset=page * 100)
        if not result.ok:
            step.call(result, ref=order.escrow_ref, reason="find escrow job by ref")
            raise NodeUnavailable("Escrow node job list unavailable; the escrow intent stays open")
        jobs = result.body.get("jobs") or []
        for job in jobs:
            if order.escrow_ref in parse_tags(job.get("tags")) and job.get("poster_wallet") == order.escrow_wallet:
                return str(job["job_id"])
        if len(jobs) < 100:
            return None
    raise NodeUnavailable("Escrow node job list too long to search; the escrow intent stays open")

