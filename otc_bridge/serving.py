"""How ``otc-bridge serve`` serves the bridge in production: gunicorn, its workers and threads.

Every gunicorn worker runs the app with ``threads`` API threads plus one per live-stream
slot (so open ``/api/stream`` connections cannot starve the API), and its own reconciler
and outbox threads; the SQLite leases let one process drive each pass. ``/metrics`` sums
every worker through prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from otc_bridge.config import Config


def _prepare_metrics_dir() -> None:
    """prometheus_client's multiprocess mode, so /metrics sums every gunicorn worker: the
    library reads PROMETHEUS_MULTIPROC_DIR when first imported (otc_bridge.app imports it),
    so this runs before that. The directory must start empty on every start."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="otc-bridge-metrics-")
        return
    for stale in Path(path).glob("*.db"):
        stale.unlink()


def _worker_gone(server, worker) -> None:
    """gunicorn ``child_exit`` (in the master): drop the dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve_forever(cfg: Config, *, workers: int, threads: int) -> None:
    """Run gunicorn on ``cfg.host:cfg.port`` with ``workers`` processes until stopped.

    Migrates the database once in the master (and fails fast on a bad setting) before any
    worker starts.
    """
    _prepare_metrics_dir()
    from gunicorn.app.base import BaseApplication

    from otc_bridge.api import stream
    from otc_bridge.app import build_bridge, create_app
    from otc_bridge.background import start_outbox_worker, start_reconciler

    build_bridge(cfg)

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{cfg.host}:{cfg.port}")
            self.cfg.set("workers", workers)
            # An open /api/stream holds a thread; the stream cap keeps `threads` free for the API.
            total = threads + cfg.stream_max_clients
            self.cfg.set("threads", total)
            self.cfg.set("worker_connections", max(1000, 2 * total))
            self.cfg.set("timeout", 120)
            # Open streams end at once when a worker stops (their clients resume elsewhere).
            self.cfg.set("worker_int", lambda worker: stream.close_all())
            self.cfg.set("worker_exit", lambda server, worker: stream.close_all())
            self.cfg.set("child_exit", _worker_gone)

        def load(self):
            # Runs in each worker after the fork: every worker gets a reconciler and an outbox
            # thread, and the SQLite leases let one of them drive each pass.
            app = create_app(cfg)
            start_reconciler(app.extensions["otc_bridge"])
            start_outbox_worker(app.extensions["otc_bridge"])
            return app

    _Gunicorn().run()
