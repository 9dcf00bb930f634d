#!/usr/bin/env python3
"""Webhook delivery latency in the normal case: commit of an outbox row -> receiver has it.

Runs the real background worker loop (``background.deliver_forever``) against a receiver on
127.0.0.1 and a fresh SQLite file (``synchronous=FULL``, the production default), commits
events at random moments (so they land at every phase of the polling interval), and prints
latency percentiles per polling interval, polling only and with ``outbox.notify()`` after
each commit (what a transition does once the store calls it). Not a test: a figure for the
operator's notes.

    python scripts/bench_webhook.py                       # intervals 2 (default) and 0.1 s
    python scripts/bench_webhook.py --interval 0.5 --events 200
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

from werkzeug.serving import make_server

from otc_bridge import background
from otc_bridge.config import Config
from otc_bridge.context import Bridge
from otc_bridge.domain.destinations import Webhook
from otc_bridge.storage import outbox
from otc_bridge.storage.db import Database

SECRET = secrets.token_hex(16)


class Arrivals:
    """A WSGI receiver recording when each event id arrived (wall clock, s)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with self.lock:
            self.at.setdefault(environ["HTTP_X_OTC_EVENT_ID"], time.time())
        start_response("204 No Content", [])
        return [b""]


def measure(interval: float, events: int, workdir: Path, notify: bool) -> list[float]:
    """Latencies (s) of ``events`` deliveries with the loop polling every ``interval`` s
    (and woken by ``outbox.notify()`` after each commit if ``notify``)."""
    arrivals = Arrivals()
    server = make_server("127.0.0.1", 0, arrivals, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db = Database(str(workdir / f"bench-{interval}-{notify}.db"))
    db.migrate()
    hook = Webhook(name="bench", url=f"http://127.0.0.1:{server.port}/hook", secret=SECRET, events=("*",))
    bridge = Bridge(config=Config(db_path=db.path, webhooks=(hook,)), db=db, node=None)  # type: ignore[arg-type]
    stop = threading.Event()
    threading.Thread(target=background.deliver_forever, args=(bridge, stop, interval), daemon=True).start()
    committed: dict[str, float] = {}
    try:
        for i in range(events):
            time.sleep(random.uniform(0, interval))
            key = f"order.open:bench_{i}:1"
            with db.transaction() as tx:
                outbox.enqueue(tx, topic="order.open", order_id=f"bench_{i}", order_version=1, event_key=key,
                              now=int(time.time()) - 1, payload={"order_id": f"bench_{i}", "to": "open"})
            committed[key] = time.time()
            if notify:
                outbox.notify()
        deadline = time.time() + interval + 10
        while len(arrivals.at) < events and time.time() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        server.shutdown()
    missing = set(committed) - set(arrivals.at)
    if missing:
        raise SystemExit(f"{len(missing)} event(s) not delivered")
    return [arrivals.at[key] - committed[key] for key in committed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, action="append", help="polling interval(s), s")
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as workdir:
        for interval in args.interval or [2.0, 0.1]:
            for notify in (False, True):
                ms = sorted(1000 * s for s in measure(interval, args.events, Path(workdir), notify))
                pct = statistics.quantiles(ms, n=20)
                mode = "poll + notify" if notify else "poll only"
                print(f"interval {interval:>4} s, {mode:<13}, {len(ms)} events: latency p50 {pct[9]:7.1f} ms, "
                      f"p95 {pct[18]:7.1f} ms, min {ms[0]:6.1f} ms, max {ms[-1]:7.1f} ms", flush=True)


if __name__ == "__main__":
    main()
