"""``otc-bridge`` commands that run the bridge against a real node: ``serve`` (gunicorn,
docs/serving.md; ``--replicate`` adds the Litestream side-car, docs/backups.md), ``init-db``,
``reconcile`` (one pass) and ``worker`` (the outbox: webhooks and operator alerts).
"""

from __future__ import annotations

import json
import os
import sys

import click

from otc_bridge.cli.common import load_config
from otc_bridge.config import Config, ConfigError


@click.command()
@click.option("--host", help="listen address (OTC_HOST, default 127.0.0.1)")
@click.option("--port", type=int, help="listen port (OTC_PORT, default 5580)")
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")
@click.option("--workers", type=int, default=2, show_default=True, help="gunicorn worker processes")
@click.option("--threads", type=int, default=4, show_default=True,
              help="API threads per worker; each worker also gets one per stream slot (OTC_STREAM_MAX_CLIENTS)")
@click.option("--replicate", is_flag=True,
              help="run Litestream beside the bridge, replicating the database (docs/backups.md)")
def serve(host, port, db_path, node_url, workers, threads, replicate) -> None:
    """Run the bridge under gunicorn (production WSGI server; bounds in docs/serving.md)."""
    cfg = load_config(OTC_HOST=host, OTC_PORT=port, OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url)
    if not cfg.node_url:
        raise click.UsageError("no escrow node: set RUSTCHAIN_NODE or --node "
                               "(for a local dev node and bridge, run `otc-bridge dev`)")
    from otc_bridge.serving import serve_forever

    side_car = _start_replication(cfg) if replicate else None
    try:
        serve_forever(cfg, workers=workers, threads=threads)
    finally:
        if side_car is not None:
            side_car.stop()  # a no-op in the gunicorn workers, forks that unwind through here too


def _start_replication(cfg: Config):
    """``serve --replicate``: the Litestream side-car started (:mod:`otc_bridge.serving.replication`)."""
    from otc_bridge.serving import replication

    try:
        return replication.start(cfg, os.environ)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
    except replication.ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("init-db")
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
def init_db(db_path) -> None:
    """Create or migrate the bridge database, then exit."""
    from otc_bridge.storage.db import Database

    cfg = load_config(OTC_DB_PATH=db_path)
    version = Database(cfg.db_path, synchronous=cfg.sqlite_synchronous).migrate()
    click.echo(f"{cfg.db_path}: schema version {version}")


@click.command()
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")
def reconcile(db_path, node_url) -> None:
    """Run one reconcile pass and print its counts as JSON."""
    from otc_bridge.app import build_bridge
    from otc_bridge.settlement import reconcile as reconciler

    bridge = build_bridge(load_config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url))
    summary = reconciler.run_once(bridge)
    click.echo(json.dumps(summary, sort_keys=True))
    sys.exit(1 if summary.get("errors") else 0)


@click.command()
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")
@click.option("--webhooks", "webhooks_json",
              help="webhooks as a JSON list, as OTC_WEBHOOKS (replaces it; the environment keeps secrets "
                   "out of the process list)")
@click.option("--interval", type=float, help="seconds between passes (OTC_OUTBOX_INTERVAL_SECONDS, default 2)")
@click.option("--once", is_flag=True, help="run one pass, print its counts as JSON and exit")
def worker(db_path, node_url, webhooks_json, interval, once) -> None:
    """Deliver the outbox (webhooks, operator alerts) until interrupted; --once for one pass."""
    import threading

    from otc_bridge.app import build_bridge
    from otc_bridge.background import deliver_forever
    from otc_bridge.notify import outbox_worker
    from otc_bridge.notify.webhooks import destinations

    cfg = load_config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url, OTC_WEBHOOKS=webhooks_json,
                  OTC_OUTBOX_INTERVAL_SECONDS=interval)
    try:
        bridge = build_bridge(cfg)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
    if once:
        summary = outbox_worker.run_once(bridge)
        click.echo(json.dumps(summary, sort_keys=True))
        sys.exit(1 if summary["errors"] else 0)
    names = ", ".join(destinations(cfg)) or "none configured"
    click.echo(f"outbox worker: destinations {names}; a pass every {cfg.outbox_interval_seconds} s (Ctrl-C stops)")
    try:
        deliver_forever(bridge, threading.Event())
    except KeyboardInterrupt:
        click.echo("stopping")
