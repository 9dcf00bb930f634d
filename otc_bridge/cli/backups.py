"""``otc-bridge`` commands that keep copies of the database (docs/backups.md): ``backup``,
``restore`` (from a backup or from the Litestream replica) and ``replication`` (``install``
the pinned Litestream, print the ``config`` that ``serve --replicate`` renders), all with
:mod:`otc_bridge.storage.backup` and :mod:`otc_bridge.serving.litestream`.
"""

from __future__ import annotations

import json
import os

import click

from otc_bridge.cli.common import load_config
from otc_bridge.config import ConfigError


def _progress(label: str):
    """A ``report(copied, total)`` printing whole-ten percent steps on stderr."""
    shown = [-1]

    def report(copied: int, total: int) -> None:
        tenth = copied * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            click.echo(f"{label}: {tenth * 10}% of {total} pages", err=True)
    return report


@click.command()
@click.argument("destination", type=click.Path(dir_okay=True, file_okay=True))
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--force", is_flag=True, help="replace DESTINATION if it exists")
def backup(destination, db_path, force) -> None:
    """Copy the live database to DESTINATION (a file, or a directory to name one in), verified."""
    from otc_bridge.storage import backup as backups

    cfg = load_config(OTC_DB_PATH=db_path)
    try:
        done = backups.backup(cfg.db_path, destination, overwrite=force, report=_progress("backup"))
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"ok": True, **done.as_dict()}, sort_keys=True))


@click.command()
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option("--db", "db_path", help="the database to restore (OTC_DB_PATH)")
@click.option("--force", is_flag=True, help="replace an existing database (kept aside as <db>.pre-restore-<time>)")
@click.option("--from-replica", is_flag=True, help="restore from the Litestream replica instead of SOURCE")
@click.option("--replica-url", help="with --from-replica: file:///dir or s3://bucket/path (default: the "
                                    "configured replica, OTC_LITESTREAM_CONFIG or OTC_REPLICA_DIR)")
@click.option("--timestamp", help="with --from-replica: the state at this RFC 3339 time (default: the newest)")
def restore(source, db_path, force, from_replica, replica_url, timestamp) -> None:
    """Make SOURCE (a backup) or the replica the bridge's database, verified; never while in use."""
    from otc_bridge.serving import litestream
    from otc_bridge.storage import backup as backups

    if bool(source) == from_replica:
        raise click.UsageError("give either SOURCE or --from-replica")
    if (replica_url or timestamp) and not from_replica:
        raise click.UsageError("--replica-url and --timestamp go with --from-replica")
    cfg = load_config(OTC_DB_PATH=db_path)
    try:
        if from_replica:
            done = litestream.restore_from_replica(cfg.db_path, os.environ, force=force, replica_url=replica_url,
                                                   timestamp=timestamp)
        else:
            done = backups.restore(source, cfg.db_path, force=force, report=_progress("restore")).as_dict()
    except ConfigError as exc:
        raise click.UsageError(f"configuration error: {exc}") from None
    except (backups.BackupError, litestream.ReplicationError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"ok": True, **done}, sort_keys=True))
    click.echo("restored; before serving, run `otc-bridge audit` (docs/backups.md, after a restore)", err=True)


@click.group()
def replication() -> None:
    """Litestream, the replication side-car of `serve --replicate` (docs/backups.md)."""


@replication.command("install")
def replication_install() -> None:
    """Install the pinned Litestream into the tool cache (npm) and print its path."""
    from otc_bridge.serving import litestream

    try:
        click.echo(litestream.install(os.environ))
    except litestream.ReplicationError as exc:
        raise click.ClickException(str(exc)) from None


@replication.command("config")
@click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")
@click.option("--replica-dir", help="replica directory (OTC_REPLICA_DIR, default <db>-replica)")
def replication_config(db_path, replica_dir) -> None:
    """Print the file-replica Litestream configuration `serve --replicate` renders."""
    from otc_bridge.serving import litestream

    cfg = load_config(OTC_DB_PATH=db_path)
    replica = replica_dir or os.environ.get("OTC_REPLICA_DIR") or litestream.default_replica_dir(cfg.db_path)
    click.echo(litestream.render_file_config(cfg.db_path, replica), nl=False)
