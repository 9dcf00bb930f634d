"""The operator's ``otc-bridge`` commands (docs/protocol.md §7): ``attention``, ``audit``,
``redrive-payout`` and ``resolve``, each one call of :mod:`otc_bridge.operator` against the
database and the node the environment (or ``--db``, ``--node``) names.
"""

from __future__ import annotations

import json
import sys

import click

from otc_bridge.cli.common import load_config


def _node_options(command):
    command = click.option("--node", "node_url", help="escrow node URL (RUSTCHAIN_NODE)")(command)
    return click.option("--db", "db_path", help="SQLite file (OTC_DB_PATH)")(command)


def _operator_option(command):
    return click.option("--operator", "--by", "operator_name", required=True, envvar="OTC_OPERATOR",
                        help="who acts, recorded as operator:<name> (or OTC_OPERATOR)")(command)


def _operator_bridge(db_path, node_url):
    from otc_bridge.app import build_bridge

    return build_bridge(load_config(OTC_DB_PATH=db_path, RUSTCHAIN_NODE=node_url))


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


@click.command()
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


@click.command()
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


@click.command("redrive-payout")
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


@click.command()
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
