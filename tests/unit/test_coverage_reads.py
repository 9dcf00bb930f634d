"""The worker-coverage check reads the queue and the balance in two calls; a transfer the
node confirms between them must not pass for a breach (found by scripts/bench: releases
paused, confirms answered 503, for nothing)."""

from __future__ import annotations

from collections import Counter

from otc_bridge.node.results import NodeResult, Outcome
from otc_bridge.settlement.coverage import check_coverage
from otc_bridge.storage import pauses

OK = NodeResult(outcome=Outcome.OK, endpoint="GET /wallet/balance", status_code=200, body={}, error=None, latency_ms=1)


def _node(monkeypatch, bridge, queue_reads: list[int], balance: int) -> None:
    reads = iter(queue_reads)
    monkeypatch.setattr(bridge.node, "pending_debits_micro_rtc", lambda worker: (OK, next(reads), False))
    monkeypatch.setattr(bridge.node, "balance_micro_rtc", lambda worker: (OK, balance))


def test_a_transfer_confirmed_between_the_two_reads_is_not_a_breach(bridge, monkeypatch):
    # queue 1 RTC, then the node confirms it (balance already debited), then the queue is empty
    _node(monkeypatch, bridge, [1_000_000, 0, 0, 0], balance=0)
    counts = Counter()
    check_coverage(bridge, counts)
    assert counts["coverage_breach"] == 0
    assert pauses.current(bridge.db.connection(), pauses.RELEASES) is None


def test_a_stable_shortfall_is_a_breach(bridge, monkeypatch):
    _node(monkeypatch, bridge, [1_000_000, 1_000_000], balance=0)
    counts = Counter()
    check_coverage(bridge, counts)
    assert counts["coverage_breach"] == 1
    assert pauses.current(bridge.db.connection(), pauses.RELEASES) is not None
