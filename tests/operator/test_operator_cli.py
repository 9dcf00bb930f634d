"""The operator commands, run in-process with ``CliRunner`` against the test bridge's files."""

from __future__ import annotations

import json

import pytest
from bridge_support import open_sell
from click.testing import CliRunner
from operator_support import (
    WORKER,
    db_snapshot,
    events,
    recovery_after_lost_answers,
    recovery_after_void,
    row,
    third_party,
)

from otc_bridge.cli import main


@pytest.fixture
def run(bridge_env_vars, bridge):
    """Invoke ``otc-bridge <args>`` with the test bridge's database and node."""
    runner = CliRunner()
    env = {"OTC_OPERATOR": None, **bridge_env_vars}

    def invoke(*args: str, **extra_env: str):
        return runner.invoke(main, list(args), env={**env, **extra_env}, catch_exceptions=False)

    return invoke


def test_audit_exit_status_follows_the_mismatches(api, dev_node, seller, bridge, run):
    order_id, _ = open_sell(api, seller)
    result = run("audit")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""

    third_party(dev_node, row(bridge, order_id)["escrow_job_id"], "deliver", worker_wallet=WORKER,
                result_summary="not the bridge")
    result = run("audit", "--all")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"job_moved_by_third_party {order_id} ")
    assert "1 mismatch" in result.stderr

    result = run("audit", "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["mismatches"][0]["code"] == "job_moved_by_third_party"


def test_attention_lists_recovery_with_events(api, dev_node, seller, buyer, bridge, run):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    result = run("attention")
    assert result.exit_code == 0, result.output
    assert f"{order_id} settlement_recovery" in result.stdout
    assert "payout_pending -> settlement_recovery" in result.stdout and "1 order(s)" in result.stdout
    items = json.loads(run("attention", "--json", "--older-than", "0").stdout)
    assert [i["order_id"] for i in items] == [order_id] and items[0]["events"]


def test_redrive_refused_then_done_with_a_new_key(api, dev_node, seller, buyer, bridge, run):
    order_id = recovery_after_void(api, dev_node, seller, buyer, bridge)
    before = db_snapshot(bridge)
    result = run("redrive-payout", order_id, "--reason", "retry", "--operator", "carol")
    assert result.exit_code == 1 and "new key" in result.output
    assert db_snapshot(bridge) == before

    result = run("redrive-payout", order_id, "--reason", "voided by mistake", "--new-key", "--by", "carol")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["status"], out["phase"]) == ("payout_pending", "pending")
    assert row(bridge, order_id)["payout_key"] == f"otc_payout:{order_id}:1"
    assert any(e["actor"] == "operator:carol" and "voided by mistake" in e["reason"] for e in events(bridge, order_id))


def test_resolve_needs_an_operator_and_proof(api, dev_node, seller, buyer, bridge, run):
    order_id = recovery_after_lost_answers(api, dev_node, seller, buyer, bridge)
    before = db_snapshot(bridge)
    assert run("resolve", order_id, "--to", "completed", "--reason", "paid").exit_code == 2  # no operator
    result = run("resolve", order_id, "--to", "matched", "--reason", "undo", "--operator", "dave")
    assert result.exit_code == 1 and "to must be one of" in result.output
    result = run("resolve", order_id, "--to", "completed", "--reason", "paid", "--operator", "dave")
    assert result.exit_code == 1 and "pending" in result.output
    assert db_snapshot(bridge) == before

    dev_node.confirm_pending()
    result = run("resolve", order_id, "--to", "completed", "--reason", "node confirmed", OTC_OPERATOR="dave")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    assert any(e["actor"] == "operator:dave" for e in events(bridge, order_id))
