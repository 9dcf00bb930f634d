"""The serving process's background reconciler: a startup pass, then one every interval.

Each serving process (every gunicorn worker) may run one; the lease in
:func:`otc_bridge.reconcile.run_once` lets only one of them drive a pass at a time. A pass
that hit the node's rate limit asks for a back-off, which the loop honours.
``OTC_RECONCILE_DISABLED=1`` turns it off (operators then run ``otc-bridge reconcile``).
"""

from __future__ import annotations

import logging
import threading

from otc_bridge import reconcile
from otc_bridge.context import Bridge

log = logging.getLogger(__name__)


def reconcile_forever(bridge: Bridge, stop: threading.Event, interval_seconds: float | None = None) -> None:
    """Run passes until ``stop`` is set; never raises (every failure is logged and retried)."""
    interval = interval_seconds or bridge.config.reconcile_interval_seconds
    wait = 0.0  # the startup pass runs at once
    while not stop.wait(wait):
        try:
            result = reconcile.run_once(bridge)
            wait = max(interval, result.get("backoff_seconds", 0))
        except Exception:
            log.exception("reconcile pass crashed; retrying in %ss", interval)
            wait = interval


def start_reconciler(bridge: Bridge, interval_seconds: float | None = None) -> threading.Event | None:
    """Start the daemon thread unless disabled; returns the event that stops it."""
    if bridge.config.reconcile_disabled:
        log.info("background reconciler disabled (OTC_RECONCILE_DISABLED)")
        return None
    stop = threading.Event()
    threading.Thread(target=reconcile_forever, args=(bridge, stop, interval_seconds), daemon=True,
                     name="otc-reconciler").start()
    return stop
