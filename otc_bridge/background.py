"""The serving process's background loops: the reconciler and the outbox worker.

Each starts with a pass at once, then runs one every interval. Each serving process (every
gunicorn worker) may run them; the leases in :func:`otc_bridge.settlement.reconcile.run_once` and
:func:`otc_bridge.notify.outbox_worker.run_once` let only one process drive a pass at a time. A reconcile
pass that hit the node's rate limit asks for a back-off, which the loop honours; an outbox
pass with a full batch is followed by another at once. ``OTC_RECONCILE_DISABLED=1`` and
``OTC_OUTBOX_DISABLED=1`` turn them off (operators then run ``otc-bridge reconcile`` and
``otc-bridge worker``).

Both loops also watch the reconciler (:func:`watch_reconciler`): when no reconcile pass has
completed for ``STALE_AFTER_INTERVALS`` intervals (a hung pass holding the lease, a dead
thread, passes that all crash), an operator alert ``reconciler_stalled`` goes out through the
outbox, once per stall. The outbox loop catches a reconciler hung in its own process; the
reconcile loops of other processes, skipped by the held lease, catch it too.
"""

from __future__ import annotations

import logging
import threading
import time

import requests

from otc_bridge.context import Bridge
from otc_bridge.notify import outbox_worker
from otc_bridge.settlement import reconcile
from otc_bridge.storage import heartbeats, outbox

log = logging.getLogger(__name__)

#: The fewest seconds between two :func:`watch_reconciler` checks of one loop.
WATCH_EVERY_SECONDS = 5.0


def watch_reconciler(bridge: Bridge, waiting_since: int) -> bool:
    """Raise the ``reconciler_stalled`` alert if no reconcile pass completed for
    ``STALE_AFTER_INTERVALS x OTC_RECONCILE_INTERVAL_SECONDS`` (deduplicated per stall, see
    :func:`otc_bridge.storage.heartbeats.alert_if_stalled`); ``waiting_since`` is when this
    loop started. Nothing when the reconciler is disabled. Never raises; True if it alerted."""
    cfg = bridge.config
    if cfg.reconcile_disabled:
        return False
    try:
        return heartbeats.alert_if_stalled(bridge.db, reconcile.LEASE_NAME, now=bridge.now(),
                                           max_age=heartbeats.STALE_AFTER_INTERVALS * cfg.reconcile_interval_seconds,
                                           waiting_since=waiting_since)
    except Exception:
        log.exception("could not check the reconciler's heartbeat")
        return False


def reconcile_forever(bridge: Bridge, stop: threading.Event, interval_seconds: float | None = None) -> None:
    """Run passes until ``stop`` is set; never raises (every failure is logged and retried)."""
    interval = interval_seconds or bridge.config.reconcile_interval_seconds
    wait = 0.0  # the startup pass runs at once
    started = bridge.now()
    while not stop.wait(wait):
        try:
            result = reconcile.run_once(bridge)
            wait = max(interval, result.get("backoff_seconds", 0))
            if result.get("skipped_locked"):  # another process's pass: is it progressing?
                watch_reconciler(bridge, started)
        except Exception:
            log.exception("reconcile pass crashed; retrying in %ss", interval)
            wait = interval


def _start(loop, bridge: Bridge, interval_seconds: float | None, name: str, disabled_by: str | None
           ) -> threading.Event | None:
    """Run ``loop(bridge, stop, interval)`` in a daemon thread unless ``disabled_by`` names the
    setting that turned it off; returns the event that stops it."""
    if disabled_by:
        log.info("background %s disabled (%s)", name, disabled_by)
        return None
    stop = threading.Event()
    threading.Thread(target=loop, args=(bridge, stop, interval_seconds), daemon=True, name=f"otc-{name}").start()
    return stop


def start_reconciler(bridge: Bridge, interval_seconds: float | None = None) -> threading.Event | None:
    """Start the reconciler's daemon thread unless disabled; returns the event that stops it."""
    disabled = "OTC_RECONCILE_DISABLED" if bridge.config.reconcile_disabled else None
    return _start(reconcile_forever, bridge, interval_seconds, "reconciler", disabled)


#: How long the outbox loop lets further commits gather after a wake-up before its pass: a
#: webhook or stream event is at most this much later, and a burst of transitions is one pass.
OUTBOX_COALESCE_SECONDS = 0.1


def deliver_forever(bridge: Bridge, stop: threading.Event, interval_seconds: float | None = None) -> None:
    """Run outbox passes until ``stop`` is set (seen within one interval); never raises
    (failures are logged and retried). A pass starts every interval, at once after a pass
    with a full batch, and :data:`OUTBOX_COALESCE_SECONDS` after
    :func:`otc_bridge.storage.outbox.notify` is called. One HTTP
    session for the loop's life keeps connections to the receivers alive.
    """
    interval = interval_seconds or bridge.config.outbox_interval_seconds
    wait = 0.0
    started, watched = bridge.now(), time.monotonic() - WATCH_EVERY_SECONDS
    with requests.Session() as session:
        while not stop.is_set():
            if wait:
                # Woken by a commit: let the commits of the next moment join this pass. One
                # pass per transition cost a lease, a heartbeat write and a log line each, a
                # tenth of the bridge's CPU under load (docs/performance.md).
                if outbox.wait_for_work(wait) and not stop.is_set():
                    stop.wait(OUTBOX_COALESCE_SECONDS)
                if stop.is_set():
                    break
            try:
                result = outbox_worker.run_once(bridge, session=session)
                wait = 0.0 if result["more"] else interval
            except Exception:
                log.exception("outbox pass crashed; retrying in %ss", interval)
                wait = interval
            if time.monotonic() - watched >= WATCH_EVERY_SECONDS:
                watched = time.monotonic()
                watch_reconciler(bridge, started)


def start_outbox_worker(bridge: Bridge, interval_seconds: float | None = None) -> threading.Event | None:
    """Start the outbox worker's daemon thread unless disabled; returns the event that stops it."""
    disabled = "OTC_OUTBOX_DISABLED" if bridge.config.outbox_disabled else None
    return _start(deliver_forever, bridge, interval_seconds, "outbox", disabled)
