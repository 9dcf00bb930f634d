"""Helpers for the operator-tool tests: orders driven into each state through the real API
and the dev node, a third party on the node's open routes, and snapshots that prove a
refused or read-only action changed nothing."""

from __future__ import annotations

from typing import Any

from bridge_support import ADMIN_TOKEN, WORKER, matched_sell

from otc_bridge.domain.order import Order
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.settlement import reconcile
from otc_bridge.storage import orders

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MALLORY = "mallory"
PAYOUT = 10_000_000  # matched_sell's default amount, paid to the buyer


def row(bridge, order_id: str):
    return bridge.db.read_one("SELECT * FROM orders WHERE order_id = ?", (order_id,))


def order_of(bridge, order_id: str) -> Order:
    """The typed order, as the bridge's services take it."""
    return orders.get_order(bridge.db.connection(), order_id)


def events(bridge, order_id: str) -> list:
    return bridge.db.read("SELECT * FROM order_events WHERE order_id = ? ORDER BY event_id", (order_id,))


def db_snapshot(bridge) -> dict[str, list[tuple]]:
    """Every row of the tables an operator action could touch."""
    conn = bridge.db.connection()
    return {table: [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608
            for table in ("orders", "order_events", "outbox", "trades")}


def node_snapshot(dev_node) -> dict[str, Any]:
    """The dev node's balances, pending pool and jobs (its clock aside)."""
    state = dev_node.state()
    state.pop("now")
    return state


def pending_count(dev_node, status: str = "pending") -> int:
    return dev_node.state()["pending"].get(status, {}).get("count", 0)


def third_party(dev_node, job_id: str, action: str, **body: str):
    """Act on ``/agent/jobs/<id>/<action>`` as anyone may (docs/escrow-node.md §2)."""
    return dev_node.post(f"/agent/jobs/{job_id}/{action}", body)


def payout_pending_sell(api, seller, buyer, bridge, **order: Any) -> str:
    """A sell order confirmed by its buyer: escrow released, payout queued (not confirmed).
    ``order`` goes to ``open_sell`` (vary the amount for a second order in the same second:
    identical signed bodies are refused as replays)."""
    order_id, secret = matched_sell(api, seller, buyer, **order)
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")
    assert (status, body["status"]) == (200, "payout_pending"), body
    return order_id


def completed_sell(api, dev_node, seller, buyer, bridge) -> str:
    order_id = payout_pending_sell(api, seller, buyer, bridge)
    dev_node.confirm_pending()
    reconcile.run_once(bridge)
    assert row(bridge, order_id)["status"] == "completed"
    return order_id


def recovery_after_void(api, dev_node, seller, buyer, bridge) -> str:
    """The realistic path into ``settlement_recovery``: the node operator voids the queued
    payout, the reconciler sees it."""
    order_id = payout_pending_sell(api, seller, buyer, bridge)
    voided = dev_node.post("/pending/void", {"tx_hash": row(bridge, order_id)["payout_tx_hash"]}, admin=True)
    assert voided.status_code == 200, voided.text
    reconcile.run_once(bridge)
    assert row(bridge, order_id)["status"] == "settlement_recovery"
    return order_id


def recovery_after_lost_answers(api, dev_node, seller, buyer, bridge) -> str:
    """The payout transfer lands on the node but its answer is lost, and so is the status
    lookup: the bridge cannot tell, so the order waits in ``settlement_recovery`` while the
    node holds one pending payout."""
    order_id, secret = matched_sell(api, seller, buyer)
    dev_node.add_fault(endpoint="POST /wallet/transfer", kind="timeout_after", latency_ms=2500, count=1)
    dev_node.add_fault(endpoint="GET /wallet/tx/<tx_hash>", kind="error_5xx", status=503, count=1)
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xquote")
    assert (status, body["status"]) == (200, "settlement_recovery"), body
    assert pending_count(dev_node) == 1
    return order_id


def payout_status(dev_node, key: str) -> str:
    return dev_node.get(f"/wallet/tx/{payout_tx_hash(key)}").json()["status"]


def admin_post(http_client, path: str, body: dict, operator: str | None = "alice"):
    headers = dict(ADMIN, **({"X-Operator": operator} if operator else {}))
    response = http_client.post(path, json=body, headers=headers)
    return response.status_code, response.get_json()


__all__ = ["ADMIN", "MALLORY", "PAYOUT", "WORKER", "admin_post", "completed_sell", "db_snapshot", "events",
           "node_snapshot", "payout_pending_sell", "payout_status", "pending_count", "recovery_after_lost_answers",
           "recovery_after_void", "row", "third_party"]


def to_recovery_while_matched(bridge, order_id: str, *, with_payout_key: bool = False) -> Order:
    """Put a matched order in ``settlement_recovery`` as an operator would find one whose
    escrow moved while matched (the table's ``matched -> settlement_recovery`` edge);
    ``with_payout_key`` also records the payout key a claimed settlement would have fixed."""
    from otc_bridge.domain.status import Status
    from otc_bridge.node.amounts import payout_tx_hash
    from otc_bridge.settlement import record

    order = order_of(bridge, order_id)
    key = f"otc_payout:{order_id}"
    changes = {"payout_key": key, "payout_tx_hash": payout_tx_hash(key),
               "payout_micro_rtc": order.escrow_reward_micro_rtc} if with_payout_key else None
    return record.move(bridge, order, Status.SETTLEMENT_RECOVERY, changes=changes,
                       reason="escrow job moved by someone else while matched (test set-up)")
