"""How ``otc-bridge serve`` serves the bridge in production: gunicorn, its workers and threads.

Every gunicorn worker runs the app with ``threads`` API threads plus one per live-stream
slot (so open ``/api/stream`` connections cannot starve the API), and its own reconciler
and outbox threads; the leases (file locks) let one process drive each pass. ``/metrics`` sums
every worker through prometheus_client's multiprocess mode.

The workers are gunicorn's gthread with each request buffered in the event loop before a
thread takes it (:mod:`otc_bridge.serving.worker`), under the bounds of :func:`bounds_from_env`;
docs/serving.md has the measurements behind that choice.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
from collections.abc import Mapping
from pathlib import Path

from otc_bridge.config import Config, ConfigError
from otc_bridge.domain.parsing import ascii_decimal, ascii_int
from otc_bridge.serving.framing import Limits
from otc_bridge.serving.worker import Bounds

log = logging.getLogger(__name__)

#: Settings of the serving bounds: variable -> (Bounds field, default). Seconds, except the
#: connections (per worker: open sockets, waiting or being served).
BOUND_SETTINGS = {
    "OTC_HEADER_TIMEOUT_SECONDS": ("header_seconds", 10.0),
    "OTC_BODY_TIMEOUT_SECONDS": ("body_seconds", 10.0),
    "OTC_KEEPALIVE_SECONDS": ("keepalive_seconds", 5.0),
    "OTC_WRITE_TIMEOUT_SECONDS": ("write_seconds", 30.0),
    "OTC_HANDLER_TIMEOUT_SECONDS": ("handler_seconds", 120.0),
}
WORKER_CONNECTIONS = ("OTC_WORKER_CONNECTIONS", 4096)
#: File descriptors a worker needs beside its connections (SQLite, pipes, logs, node sessions).
_SPARE_FDS = 256


def bounds_from_env(env: Mapping[str, str], cfg: Config) -> Bounds:
    """The serving bounds from the environment (see :data:`BOUND_SETTINGS`); a bad value is a
    :class:`ConfigError` naming its variable. The body limit is ``OTC_MAX_BODY_BYTES``."""
    values: dict[str, float] = {}
    for variable, (name, default) in BOUND_SETTINGS.items():
        raw = env.get(variable, "").strip()
        parsed = ascii_decimal(raw) if raw else None
        if raw and parsed is None:
            raise ConfigError(variable, f"must be a number of seconds, got {raw!r}")
        value = float(parsed) if parsed is not None else default  # a time bound, never money
        if not 0 < value <= 3600:
            raise ConfigError(variable, f"must be > 0 and <= 3600 seconds, got {raw!r}")
        values[name] = value
    return Bounds(**values, limits=Limits(body=cfg.max_body_bytes))


def worker_connections_from_env(env: Mapping[str, str]) -> int:
    variable, default = WORKER_CONNECTIONS
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    value = ascii_int(raw)
    if value is None or not 64 <= value <= 100_000:
        raise ConfigError(variable, f"must be an integer from 64 to 100000, got {raw!r}")
    return value


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

    Reads the serving bounds and migrates the database once in the master (failing fast on
    a bad setting) before any worker starts.
    """
    bounds = bounds_from_env(os.environ, cfg)
    connections = worker_connections_from_env(os.environ)
    _prepare_metrics_dir()
    from gunicorn.app.base import BaseApplication

    from otc_bridge.api import stream
    from otc_bridge.app import build_bridge, create_app
    from otc_bridge.background import start_outbox_worker, start_reconciler
    from otc_bridge.serving.worker import worker_class

    build_bridge(cfg)
    # An open /api/stream holds a thread; the stream cap keeps `threads` free for the API.
    total_threads = threads + cfg.stream_max_clients
    connections = _fit_file_limit(max(connections, 2 * total_threads))

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
