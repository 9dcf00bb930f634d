"""``otc-bridge``: the operator's and developer's command line.

``serve`` runs the bridge under gunicorn against a real node; ``dev`` runs the embedded
default (dev escrow node, dev chain (anvil) and bridge on 127.0.0.1, SQLite files under
``./data``); ``demo`` drives two scripted traders through four swaps against a running ``dev``
(two ERG swaps settled on evidence, a seller-held ETH and a buyer-held USDC swap on chain);
``devnode``, ``init-db``, ``reconcile`` and ``worker`` (the outbox: webhooks and operator
alerts) do one thing each. ``attention``, ``audit``, ``redrive-payout`` and
``resolve`` are the operator's tools (docs/protocol.md §7). ``backup``, ``restore`` and
``replication`` keep copies of the database (docs/backups.md).

This package is the command table: :func:`main`, the root group, and the commands of
:mod:`.run`, :mod:`.development`, :mod:`.operator_tools` and :mod:`.backups`, which do each
command's work by calling one service of the layers below. ``python -m otc_bridge.cli`` runs
:func:`main` (:mod:`.__main__`), as the ``otc-bridge`` entry point does.
"""

from __future__ import annotations

import logging

import click

from otc_bridge.cli.backups import backup, replication, restore
from otc_bridge.cli.development import demo, dev, devnode
from otc_bridge.cli.operator_tools import attention, audit, redrive_payout, resolve
from otc_bridge.cli.run import init_db, reconcile, serve, worker

log = logging.getLogger("otc_bridge")


@click.group()
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.option("--log-format", default="json", show_default=True, type=click.Choice(["json", "text"]),
              help="json: one object per line with the request id; text: for a terminal")
def main(log_level: str, log_format: str) -> None:
    """OTC bridge: swap RTC against ETH, USDC or ERG with node escrow and HTLCs."""
    from otc_bridge.notify.logs import configure_logging

    configure_logging(log_level, json_lines=log_format == "json")


for _command in (serve, devnode, init_db, reconcile, worker, attention, audit, redrive_payout, resolve, backup,
                 restore, replication, dev, demo):
    main.add_command(_command)
