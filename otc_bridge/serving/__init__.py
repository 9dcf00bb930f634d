"""How ``otc-bridge serve`` serves the bridge in production: gunicorn, its workers and threads.

Every gunicorn worker runs the app with ``threads`` API threads plus one per live-stream
slot (so open ``/api/stream`` connections cannot starve the API), and its own reconciler
and outbox threads; the leases (file locks) let one process drive each pass. ``/metrics`` sums
every worker through prometheus_client's multiprocess mode.

The workers are gunicorn's gthread with each request buffered in the event loop before a
thread takes it (:mod:`otc_bridge.serving.worker`), under the bounds of :func:`bounds_of`;
docs/serving.md has the measurements behind that choice.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
from pathlib import Path

from otc_bridge.config import Config
from otc_bridge.serving.bounds import Bounds
from otc_bridge.serving.framing import Limits

log = logging.getLogger(__name__)

#: File descriptors a worker needs beside its connections (SQLite, pipes, logs, node sessions).
_SPARE_FDS = 256


def bounds_of(cfg: Config) -> Bounds:
    """The serving bounds of ``cfg`` (``OTC_*_TIMEOUT_SECONDS``, ``OTC_KEEPALIVE_SECONDS``,
    ``OTC_MAX_BODY_BYTES``: docs/serving.md), in the worker's shape."""
    return Bounds(header_seconds=cfg.header_timeout_seconds, body_seconds=cfg.body_timeout_seconds,
                  keepalive_seconds=cfg.keepalive_seconds, write_seconds=cfg.write_timeout_seconds,
                  handler_seconds=cfg.handler_timeout_seconds, limits=Limits(body=cfg.max_body_bytes))


def _fit_file_limit(connections: int) -> int:
    """Raise this process's open-file limit (inherited by the workers) towards what
    ``connections`` per worker need; returns the connections that fit under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError):  # not allowed to raise it: the check below names the limit
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(64, soft - _SPARE_FDS)
        log.warning("open-file limit %d: %d connections per worker instead of %d", soft, fitted, connections)
        return fitted
    return connections


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

    Migrates the database once in the master, before any worker starts.
    """
    bounds = bounds_of(cfg)
    _prepare_metrics_dir()
    from gunicorn.app.base import BaseApplication

    from otc_bridge.api import stream
    from otc_bridge.app import build_bridge, create_app
    from otc_bridge.background import start_outbox_worker, start_reconciler
    from otc_bridge.serving.worker import worker_class

    build_bridge(cfg)
    # An open /api/stream holds a thread; the stream cap keeps `threads` free for the API.
    total_threads = threads + cfg.stream_max_clients
    connections = _fit_file_limit(max(cfg.worker_connections, 2 * total_threads))

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{cfg.host}:{cfg.port}")
            self.cfg.set("workers", workers)
            # Open streams end at once when a worker stops (their clients resume elsewhere).
            self.cfg.set("worker_class", worker_class(bounds, on_stop=stream.close_all))
            self.cfg.set("threads", total_threads)
            self.cfg.set("worker_connections", connections)
            self.cfg.set("keepalive", max(1, round(bounds.keepalive_seconds)))
            self.cfg.set("limit_request_line", bounds.limits.request_line)
            self.cfg.set("http_protocols", "h1")
            self.cfg.set("timeout", 120)  # the master's check that a worker's event loop runs
            self.cfg.set("worker_int", lambda worker: stream.close_all())
            self.cfg.set("worker_exit", lambda server, worker: stream.close_all())
            self.cfg.set("child_exit", _worker_gone)

        def load(self):
            # Runs in each worker after the fork: every worker gets a reconciler and an outbox
            # thread, and the leases (file locks) let one of them drive each pass.
            app = create_app(cfg)
            start_reconciler(app.extensions["otc_bridge"])
            start_outbox_worker(app.extensions["otc_bridge"])
            return app

    _Gunicorn().run()
