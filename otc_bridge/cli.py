"""``otc-bridge``: the operator's and developer's command line.

``serve`` runs the bridge under gunicorn against a real node; ``dev`` runs the embedded
default (dev escrow node, dev chain (anvil) and bridge on 127.0.0.1, SQLite files under
``./data``); ``demo`` drives two scripted traders through four swaps against a running ``dev``
(two ERG swaps settled on evidence, a seller-held ETH and a buyer-held USDC swap on chain);
``devnode``, ``init-db``, ``reconcile`` and ``worker`` (the outbox: webhooks and operator
alerts) do one thing each. ``attention``, ``audit``, ``redrive-payout`` and
``resolve`` are the operator's tools (docs/protocol.md §7). ``backup``, ``restore`` and
``replication`` keep copies of the database (docs/backups.md).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path

import click

from otc_bridge.config import Config, ConfigError

log = logging.getLogger("otc_bridge")


def _config(**overrides: object) -> Config:
    env = dict(os.environ)
    for key, value in overrides.items():
        if value is not None:
            env[key] = str(value)
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None


@click.group()
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.option("--log-format", default="json", show_default=True, type=click.Choice(["json", "text"]),
              help="json: one object per line with the request id; text: for a terminal")
def main(log_level: str, log_format: str) -> None:
    """OTC bridge: swap RTC against ETH, USDC or ERG with node escrow and HTLCs."""
    from otc_bridge.notify.logs import configure_logging

    configure_logging(log_level, json_lines=log_format == "json")


@main.command()
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
    cfg = _config(OTC_HOST=host, OTC_PORT=port, OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url)
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5581, show_default=True)
@click.option("--db", "db_path", default="data/devnode.db", show_default=True)
@click.option("--admin-key", default=None, help="node admin key (>= 32 chars); default: the dev key")
@click.option("--confirm-delay", type=int, default=0, show_default=True,
              help="seconds before a queued transfer can be confirmed")
@click.option("--faults", default=None, help='fault rules, e.g. "POST /wallet/transfer=timeout_after:count=1"')
def devnode(host, port, db_path, admin_key, confirm_delay, faults) -> None:
    """Run the local dev escrow node (a simulator of the RustChain node)."""
    from otc_bridge.dev.node import create_app as create_devnode
    from otc_bridge.dev.node.faults import parse_fault_spec
    from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY, serve_forever

    rules = [parse_fault_spec(part) for part in faults.split(";")] if faults else None
    app = create_devnode(db_path, admin_key or DEFAULT_DEV_ADMIN_KEY, confirm_delay_seconds=confirm_delay,
                         faults=rules)
    # serve_forever logs "dev escrow node on http://..." once the port is bound: wait on that.
    serve_forever(app, host, port)


@main.command("init-db")
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
def init_db(db_path) -> None:
    """Create or migrate the bridge database, then exit."""
    from otc_bridge.storage.db import Database

    cfg = _config(OTC_DB_PATH=db_path)
    version = Database(cfg.db_path, synchronous=cfg.sqlite_synchronous).migrate()
    click.echo(f"{cfg.db_path}: schema version {version}")


@main.command()
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")
def reconcile(db_path, node_url) -> None:
    """Run one reconcile pass and print its counts as JSON."""
    from otc_bridge.app import build_bridge
    from otc_bridge.settlement import reconcile as reconciler

    bridge = build_bridge(_config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url))
    summary = reconciler.run_once(bridge)
    click.echo(json.dumps(summary, sort_keys=True))
    sys.exit(1 if summary.get("errors") else 0)


@main.command()
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

    cfg = _config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url, OTC_WEBHOOKS=webhooks_json,
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


# --- operator tools (docs/protocol.md §7) ---------------------------------------------------------------

def _node_options(command):
    command = click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")(command)
    return click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")(command)


def _operator_option(command):
    return click.option("--operator", "--by", "operator_name", required=True, envvar="OTC_OPERATOR",
                        help="who acts, recorded as operator:<name> (or OTC_OPERATOR)")(command)


def _operator_bridge(db_path, node_url):
    from otc_bridge.app import build_bridge

    return build_bridge(_config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url))


def _refused(exc) -> click.ClickException:
    """A domain refusal as a one-line error (exit 1), with the node's detail if any."""
    detail = exc.extra.get("details")
    return click.ClickException(f"{exc.error}" + (f" ({detail})" if detail else ""))


def _echo_attention(item: dict) -> None:
    click.echo(f"{item['order_id']} {item['status']} v{item['order_version']} "
               f"unchanged for {item['age_seconds']} s (updated_at {item['updated_at']})")
    for event in item["events"]:
        move = f" {event['from_status']} -> {event['to_status']}" if event["to_status"] else ""
        node = (f" [{event['node_endpoint']} {event['node_outcome']}]" if event["node_endpoint"] else "")
        click.echo(f"  #{event['event_id']} v{event['order_version']} {event['kind']}{move} "
                   f"by {event['actor']}: {event['reason']}{node}")


@main.command()
@_node_options
@click.option("--older-than", "older_than", type=click.IntRange(min=0), default=3600, show_default=True,
              help="list payout_pending orders unchanged for this many seconds")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def attention(db_path, node_url, older_than, as_json) -> None:
    """Orders needing an operator (recovery, refunds, old payouts, stuck settlements) with events."""
    from otc_bridge.operator.attention import attention as find_attention

    items = find_attention(_operator_bridge(db_path, node_url), older_than_seconds=older_than)
    if as_json:
        click.echo(json.dumps(items, sort_keys=True, indent=2))
        return
    for item in items:
        _echo_attention(item)
    click.echo(f"{len(items)} order(s) need attention")


@main.command()
@_node_options
@click.option("--all", "include_terminal", is_flag=True, help="audit terminal orders too")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def audit(db_path, node_url, include_terminal, as_json) -> None:
    """Read-only cross-check of orders against the node; exit 1 if any mismatch."""
    from otc_bridge.operator import audit

    found = audit.audit(_operator_bridge(db_path, node_url), include_terminal=include_terminal)
    if as_json:
        click.echo(json.dumps({"ok": not found, "mismatches": [m.as_dict() for m in found]}, sort_keys=True))
    else:
        for mismatch in found:
            click.echo(mismatch.line())
        click.echo(f"{len(found)} mismatch(es)", err=True)
    sys.exit(1 if found else 0)


@main.command("redrive-payout")
@_node_options
@click.argument("order_id")
@click.option("--reason", required=True, help="why (recorded in the order's events)")
@click.option("--new-key", is_flag=True, help="after a node void: pay with a new, recorded idempotency key")
@_operator_option
def redrive_payout(db_path, node_url, order_id, reason, new_key, operator_name) -> None:
    """Re-send ORDER_ID's payout (same key; --new-key only after the node voided it)."""
    from otc_bridge.domain.errors import BridgeError
    from otc_bridge.operator import redrive

    try:
        done = redrive.redrive_payout(_operator_bridge(db_path, node_url), order_id,
                                              operator_name=operator_name, reason=reason, new_key=new_key)
    except BridgeError as exc:
        raise _refused(exc) from None
    click.echo(json.dumps({"ok": True, "order_id": order_id, "status": done.order.status,
                           "payout_tx_hash": done.order.payout_tx_hash, "phase": done.phase,
                           "message": done.message}, sort_keys=True))


@main.command()
@_node_options
@click.argument("order_id")
@click.option("--to", "to", required=True, help="completed, payout_pending, cancelled or expired")
@click.option("--reason", required=True, help="why (recorded in the order's events)")
@_operator_option
def resolve(db_path, node_url, order_id, to, reason, operator_name) -> None:
    """Move a settlement_recovery ORDER_ID forward once the node's state proves --to."""
    from otc_bridge.domain.errors import BridgeError
    from otc_bridge.operator.resolve import resolve as resolve_order

    try:
        order = resolve_order(_operator_bridge(db_path, node_url), order_id, to,
                                 operator_name=operator_name, reason=reason)
    except BridgeError as exc:
        raise _refused(exc) from None
    click.echo(json.dumps({"ok": True, "order_id": order_id, "status": order.status}, sort_keys=True))


# --- backups and replication (docs/backups.md) -----------------------------------------------------

def _start_replication(cfg: Config):
    from otc_bridge.serving import replication

    try:
        return replication.start(cfg, os.environ)
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
    except replication.ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


def _progress(label: str):
    """A ``report(copied, total)`` printing whole-ten percent steps on stderr."""
    shown = [-1]

    def report(copied: int, total: int) -> None:
        tenth = copied * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            click.echo(f"{label}: {tenth * 10}% of {total} pages", err=True)
    return report


@main.command()
@click.argument("destination", type=click.Path(dir_okay=True, file_okay=True))
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--force", is_flag=True, help="replace DESTINATION if it exists")
def backup(destination, db_path, force) -> None:
    """Copy the live database to DESTINATION (a file, or a directory to name one in), verified."""
    from otc_bridge.storage import backup as backups

    cfg = _config(OTC_DB_PATH=db_path)
    try:
        done = backups.backup(cfg.db_path, destination, overwrite=force, report=_progress("backup"))
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"ok": True, **done.as_dict()}, sort_keys=True))


@main.command()
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option("--db", "db_path", help="the database to restore (OTC_DB_PATH)")
@click.option("--force", is_flag=True, help="replace an existing database (kept aside as <db>.pre-restore-<time>)")
@click.option("--from-replica", is_flag=True, help="restore from the Litestream replica instead of SOURCE")
@click.option("--replica-url", help="with --from-replica: file:///dir or s3://bucket/path (default: the "
                                    "configured replica, OTC_LITESTREAM_CONFIG or OTC_REPLICA_DIR)")
@click.option("--timestamp", help="with --from-replica: the state at this RFC 3339 time (default: the newest)")
def restore(source, db_path, force, from_replica, replica_url, timestamp) -> None:
    """Make SOURCE (a backup) or the replica the bridge's database, verified; never while in use."""
    from otc_bridge.serving import replication
    from otc_bridge.storage import backup as backups

    if bool(source) == from_replica:
        raise click.UsageError("give either SOURCE or --from-replica")
    if (replica_url or timestamp) and not from_replica:
        raise click.UsageError("--replica-url and --timestamp go with --from-replica")
    cfg = _config(OTC_DB_PATH=db_path)
    try:
        if from_replica:
            done = replication.restore_from_replica(cfg.db_path, os.environ, force=force, replica_url=replica_url,
                                                    timestamp=timestamp)
        else:
            done = backups.restore(source, cfg.db_path, force=force, report=_progress("restore")).as_dict()
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
    except (backups.BackupError, replication.ReplicationError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"ok": True, **done}, sort_keys=True))
    click.echo("restored; before serving, run `otc-bridge audit` (docs/backups.md, after a restore)", err=True)


@main.group()
def replication() -> None:
    """Litestream, the replication side-car of `serve --replicate` (docs/backups.md)."""


@replication.command("install")
def replication_install() -> None:
    """Install the pinned Litestream into the tool cache (npm) and print its path."""
    from otc_bridge.serving import replication as side_car

    try:
        click.echo(side_car.install(os.environ))
    except side_car.ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


@replication.command("config")
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--replica-dir", help="replica directory (OTC_REPLICA_DIR, default <db>-replica)")
def replication_config(db_path, replica_dir) -> None:
    """Print the file-replica Litestream configuration `serve --replicate` renders."""
    from otc_bridge.serving import replication as side_car

    cfg = _config(OTC_DB_PATH=db_path)
    replica = replica_dir or os.environ.get("OTC_REPLICA_DIR") or side_car.default_replica_dir(cfg.db_path)
    click.echo(side_car.render_file_config(cfg.db_path, replica), nl=False)


@main.command()
@click.option("--data-dir", default="data", show_default=True, help="where the SQLite files live")
@click.option("--port", type=int, default=5580, show_default=True, help="bridge port")
@click.option("--node-port", type=int, default=5581, show_default=True, help="dev node port")
@click.option("--fund-rtc", default="1000", show_default=True, help="RTC given to each demo wallet")
def dev(data_dir, port, node_port, fund_rtc) -> None:
    """Run the embedded default: dev escrow node + bridge on 127.0.0.1, demo wallets funded."""
    from otc_bridge.dev import tools

    settings = tools.DevSettings(data_dir=Path(data_dir), port=port, node_port=node_port,
                                    admin_token=secrets.token_urlsafe(24), fund_rtc=fund_rtc)
    tools.run_dev(settings, echo=click.echo)


@main.command()
@click.option("--bridge", "bridge_url", default=None, help="bridge URL (default: from data/dev.json)")
@click.option("--data-dir", default="data", show_default=True, help="where `dev` wrote dev.json")
def demo(bridge_url, data_dir) -> None:
    """Two scripted traders run four swaps against a running `dev`: two on evidence (ERG), then a
    seller-held ETH and a buyer-held USDC swap on the dev chain, printing every transaction."""
    from otc_bridge.dev import tools

    info = tools.load_dev_info(Path(data_dir))
    if bridge_url:
        info["bridge_url"] = bridge_url
    ok = tools.run_demo(info, echo=click.echo)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
