"""The transition table (docs/protocol.md §4): every (from, to) pair of statuses is walked.

An edge passes ``check_transition`` exactly when it is a key of ``TRANSITIONS``; every
other pair (self-loops included) raises ``IllegalTransition``. The graph itself is checked
too: terminal statuses are dead ends and every other status can still reach one.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from otc_bridge.domain.status import HOLDS_ESCROW, TERMINAL, TRANSITIONS, IllegalTransition, Status, check_transition

ALL_PAIRS = list(itertools.product(Status, Status))


def _successors(status: Status) -> set[Status]:
    return {to for (frm, to) in TRANSITIONS if frm == status}


@pytest.mark.parametrize(("frm", "to"), ALL_PAIRS, ids=[f"{f}->{t}" for f, t in ALL_PAIRS])
def test_every_pair_is_allowed_exactly_when_listed(frm, to):
    if (frm, to) in TRANSITIONS:
        check_transition(frm, to)
        check_transition(str(frm), str(to))  # stored text works the same
        return
    with pytest.raises(IllegalTransition, match=f"{frm} -> {to} is not an allowed order transition"):
        check_transition(frm, to)
    with pytest.raises(IllegalTransition):
        check_transition(str(frm), str(to))


def test_the_walk_covers_the_whole_product():
    assert len(ALL_PAIRS) == len(Status) ** 2 == 100
    allowed = [pair for pair in ALL_PAIRS if pair in TRANSITIONS]
    assert sorted(allowed) == sorted(TRANSITIONS)


@pytest.mark.parametrize("status", list(Status))
def test_no_self_loops(status):
    assert (status, status) not in TRANSITIONS
    with pytest.raises(IllegalTransition):
        check_transition(status, status)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_statuses_have_no_outgoing_edges(status):
    assert _successors(status) == set()
    for to in Status:
        with pytest.raises(IllegalTransition):
            check_transition(status, to)


def test_terminal_set():
    assert {Status.COMPLETED, Status.CANCELLED, Status.EXPIRED} == TERMINAL


@pytest.mark.parametrize("status", sorted(set(Status) - TERMINAL))
def test_every_non_terminal_status_can_reach_a_terminal_one(status):
    seen = {status}
    queue = deque([status])
    while queue:
        for nxt in _successors(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert seen & TERMINAL, f"{status} cannot end"
    assert _successors(status), f"{status} is a dead end but not terminal"


def test_every_edge_names_its_reason_and_uses_real_statuses():
    for (frm, to), reason in TRANSITIONS.items():
        assert isinstance(frm, Status) and isinstance(to, Status)
        assert isinstance(reason, str) and reason.strip()


def test_every_status_is_reachable_from_a_creation_status():
    # Orders are created as ``locking`` (sell) or ``open`` (buy).
    seen = {Status.LOCKING, Status.OPEN}
    queue = deque(seen)
    while queue:
        for nxt in _successors(queue.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert seen == set(Status)


@pytest.mark.parametrize(("frm", "to"), [("bogus", "open"), ("open", "bogus"), ("", "open")])
def test_unknown_status_text_is_refused(frm, to):
    with pytest.raises(ValueError, match="is not a valid Status"):
        check_transition(frm, to)


def test_statuses_holding_funds_are_never_terminal():
    assert not (HOLDS_ESCROW & TERMINAL)


def test_status_values_are_their_wire_text():
    assert [str(s) for s in Status] == [
        "locking", "open", "matched", "settling", "payout_pending", "settlement_recovery",
        "refund_pending", "completed", "cancelled", "expired",
    ]
