"""``otc-bridge`` commands for a developer's machine: ``devnode`` (the dev escrow node alone),
``dev`` (dev node, dev chain and bridge on 127.0.0.1, :mod:`otc_bridge.dev.tools`) and
``demo`` (scripted traders against a running ``dev``, :mod:`otc_bridge.dev.demo`); README.md
walks through them.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import click


@click.command()
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


@click.command()
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


@click.command()
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
