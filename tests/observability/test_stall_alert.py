"""The ``reconciler_stalled`` operator alert: raised through the outbox when no reconcile pass
completed for 3 intervals, once per stall, naming a lease holder whose pass hangs."""

from __future__ import annotations

import dataclasses
import json
import os
import time

from otc_bridge import background
from otc_bridge.storage import heartbeats, leases


def stall_alerts(bridge) -> list[dict]:
    rows = bridge.db.read("SELECT event_key, payload FROM outbox WHERE topic = 'alert' ORDER BY outbox_id")
    return [{"key": r["event_key"], **json.loads(r["payload"])} for r in rows if "_stalled:" in r["event_key"]]


def max_age(bridge) -> int:
    return heartbeats.STALE_AFTER_INTERVALS * bridge.config.reconcile_interval_seconds


def test_no_alert_while_passes_are_fresh_or_the_process_is_young(bridge):
    now = bridge.now()
    assert not background.watch_reconciler(bridge, waiting_since=now)  # nothing recorded yet, just started
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=now - max_age(bridge))
    assert not background.watch_reconciler(bridge, waiting_since=now - 10 * max_age(bridge))
    assert stall_alerts(bridge) == []


def test_a_stale_reconciler_alerts_once_per_stall(bridge):
    now = bridge.now()
    last = now - max_age(bridge) - 1
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=last)
    assert background.watch_reconciler(bridge, waiting_since=now)
    assert not background.watch_reconciler(bridge, waiting_since=now)  # every process may ask: one alert
    assert not heartbeats.alert_if_stalled(bridge.db, "reconciler", now=now + 600, max_age=max_age(bridge),
                                           waiting_since=now)
    [alert] = stall_alerts(bridge)
    assert alert["key"] == f"alert:reconciler_stalled:{last}"
    assert alert["code"] == "reconciler_stalled" and alert["order_id"] is None
    assert f"completed {max_age(bridge) + 1} s ago" in alert["message"]
    # A pass completes, then the reconciler stalls again: a new stall, a new alert.
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=now)
    assert not background.watch_reconciler(bridge, waiting_since=now)
    later = now + max_age(bridge) + 5
    bridge.clock = lambda: later
    assert background.watch_reconciler(bridge, waiting_since=now)
    assert [a["key"] for a in stall_alerts(bridge)] == [f"alert:reconciler_stalled:{last}",
                                                        f"alert:reconciler_stalled:{now}"]


def test_no_pass_ever_recorded_alerts_once(bridge):
    now = bridge.now()
    assert background.watch_reconciler(bridge, waiting_since=now - max_age(bridge) - 1)
    assert not background.watch_reconciler(bridge, waiting_since=now - max_age(bridge) - 1)
    assert [a["key"] for a in stall_alerts(bridge)] == ["alert:reconciler_stalled:never"]


def test_the_alert_names_the_process_whose_pass_hangs_holding_the_lease(bridge):
    now = bridge.now()
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=now - 5 * max_age(bridge))
    lease = leases.try_hold(bridge.db, "reconciler", now=now - 4 * max_age(bridge))
    try:
        assert background.watch_reconciler(bridge, waiting_since=now)
    finally:
        lease.release()
    [alert] = stall_alerts(bridge)
    assert f"its lease is held by process {os.getpid()} for {4 * max_age(bridge)} s" in alert["message"]


def test_nothing_is_watched_when_the_reconciler_is_disabled(bridge):
    off = dataclasses.replace(bridge, config=bridge.config.replace(reconcile_disabled=True))
    assert not background.watch_reconciler(off, waiting_since=bridge.now() - 10**6)
    assert stall_alerts(bridge) == []


def test_the_outbox_loop_raises_the_alert(bridge):
    """The outbox loop watches the reconciler of its own process and every other."""
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=bridge.now() - max_age(bridge) - 1)
    stop = background.start_outbox_worker(bridge, interval_seconds=0.05)
    try:
        deadline = time.monotonic() + 10
        while not stall_alerts(bridge):
            assert time.monotonic() < deadline, "no reconciler_stalled alert from the outbox loop"
            time.sleep(0.05)
    finally:
        stop.set()
    assert len(stall_alerts(bridge)) == 1


def test_a_reconcile_loop_kept_out_by_a_hung_pass_raises_the_alert(bridge):
    """Another driver holds the lease and completes nothing: this loop's passes are skipped,
    and it reports the stall instead of waiting silently."""
    heartbeats.record_pass(bridge.db, "reconciler", {}, now=bridge.now() - max_age(bridge) - 1)
    lease = leases.try_hold(bridge.db, "reconciler")
    stop = background.start_reconciler(bridge, interval_seconds=0.05)
    try:
        deadline = time.monotonic() + 10
        while not stall_alerts(bridge):
            assert time.monotonic() < deadline, "no reconciler_stalled alert from the skipped reconcile loop"
            time.sleep(0.05)
    finally:
        stop.set()
        lease.release()
    [alert] = stall_alerts(bridge)
    assert f"held by process {os.getpid()}" in alert["message"]
