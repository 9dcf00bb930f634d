"""``scripts/bench`` keeps working: its tiny configuration, run for real, ends clean.

The benchmark starts its own ``otc-bridge devnode`` and ``otc-bridge serve`` processes on free
loopback ports. No timing is asserted (the machine is shared); the JSON's shape is, and the
checks the benchmark makes: every order terminal, money conserved on the dev node, no 5xx,
no ``database is locked``. About 20 s.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from otc_bridge.dev.bench import checks, profile, stack, tally
from otc_bridge.dev.bench import main as bench_main

REPO = Path(__file__).resolve().parents[2]
ENDPOINT_FIELDS = {"count", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors", "errors_4xx", "errors_5xx",
                   "errors_transport", "statuses"}
LIFECYCLE_ROUTES = {"POST /agent/jobs", "POST /agent/jobs/<job_id>/claim", "POST /agent/jobs/<job_id>/deliver",
                    "POST /agent/jobs/<job_id>/accept", "POST /wallet/transfer", "GET /wallet/tx/<tx_hash>"}


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_"))}
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--tiny", "--json", str(out), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def check_endpoints(endpoints: dict, expected: set[str]) -> None:
    assert set(endpoints) == expected
    for figures in endpoints.values():
        assert set(figures) >= ENDPOINT_FIELDS
        assert figures["count"] > 0 and figures["errors"] == 0 and figures["errors_5xx"] == 0
        assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_tiny_benchmark_runs_every_workload_and_ends_clean(tmp_path):
    done, result = run_bench(tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert result["ok"] is True and result["error"] is None
    assert {"nproc", "cpu_model", "python"} <= set(result["machine"])
    runs = {run["name"]: run for run in result["runs"]}
    assert set(runs) == {"lifecycle-1", "reads-2", "ceiling", "mixed-baseline", "mixed-1+1", "watch-8"}

    lifecycle_labels = {"POST /api/orders", "POST /api/orders/<id>/match", "POST /api/orders/<id>/confirm"}
    read_labels = {"GET /api/orders?pair=RTC/USDC", "GET /api/orderbook?pair=RTC/USDC", "GET /api/stats",
                   "GET /api/orders/<id>"}
    for name in ("lifecycle-1", "mixed-baseline"):
        run = runs[name]
        check_endpoints(run["endpoints"], lifecycle_labels)
        per = run["per_lifecycle"]
        assert run["lifecycles"] > 0 and run["drain"]["ok"]
        assert per["completed"] >= run["lifecycles"]
        assert per["bridge_cpu_ms"] > 0 and per["node_calls"] > 0
        # Counted by the dev node, by route: every lifecycle creates, claims, delivers and
        # accepts a job, queues a payout and has it read back by the reconciler.
        assert set(per["node_calls_by_route"]) >= LIFECYCLE_ROUTES
        assert per["node_calls_by_route"]["POST /agent/jobs"] == 1.0
        assert run["cost"]["reconcile"]["passes"] >= 1
    check_endpoints(runs["reads-2"]["endpoints"], read_labels)
    check_endpoints(runs["ceiling"]["endpoints"], {"GET /healthz"})
    check_endpoints(runs["mixed-1+1"]["endpoints"], lifecycle_labels | read_labels)
    assert runs["reads-2"]["reads"]["rps"] > 0 and runs["mixed-1+1"]["lifecycles"] > 0
    assert result["seed"]["open_orders"] == 6 and result["seed"]["trades"] >= 3

    watch = runs["watch-8"]
    assert watch["open_orders"] == 8 and watch["summary"]["watched"] == 8
    assert watch["cost"]["node_calls_by_route"]["GET /agent/jobs/<job_id>"] == 8  # one read per watched escrow

    for name in ("lifecycle", "book", "watch"):
        check = result["checks"][name]
        assert check["ok"] and check["terminal"]["ok"] and check["conservation"]["ok"]
        assert set(check["terminal"]["by_status"]) <= {"completed", "cancelled", "expired"}
        assert check["errors_5xx"] == 0 and check["serve_log"]["database_locked"] == 0
        assert result["exit_codes"][name]["devnode"] is not None
    assert {t["target"] for t in result["targets"]} >= {"node calls per lifecycle", "bridge CPU per lifecycle (ms)"}
    assert "## targets" in done.stdout and "OK in" in done.stdout


def test_bad_options_are_refused(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench"), "--workloads", "lifecycle,nap"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and "workloads" in done.stderr


def test_percentiles_and_error_classes():
    records = tally.new()
    for ms in range(1, 101):
        tally.record(records, "GET /x", 200, float(ms))
    tally.record(records, "GET /x", 503, 5.0)
    tally.record(records, "GET /x", 404, 5.0)
    tally.record(records, "GET /x", tally.TRANSPORT, None)
    figures = tally.summarize(records, 2.0)["GET /x"]
    assert figures["count"] == 103 and figures["rps"] == 51.5
    # Nearest rank over the 102 answered requests (the two error answers took 5 ms each).
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (49.0, 99.0, 100.0)
    errors = (figures["errors_4xx"], figures["errors_5xx"], figures["errors_transport"], figures["errors"])
    assert errors == (1, 1, 1, 3)


def test_profile_ranks_own_and_total_samples():
    collapsed = ('process 1:"serve";a (m.py:1);b (m.py:2) 3\n'
                 'process 1:"serve";a (m.py:1);c (n.py:9) 1\n')
    ranked = profile.top(collapsed)
    assert ranked["samples"] == 4
    assert ranked["own"][0] == {"function": "b (m.py)", "samples": 3, "share": 75.0}
    assert ranked["total"][0] == {"function": "a (m.py)", "samples": 4, "share": 100.0}


def test_reconcile_passes_are_read_from_the_serve_log():
    log = "\n".join([
        json.dumps({"level": "INFO", "message": "reconcile pass: {'promoted': 3, 'watched': 2}"}),
        json.dumps({"level": "INFO", "message": "GET /api/stats 200 1.0ms"}),
        json.dumps({"level": "INFO", "message": "reconcile pass: {}"}),
    ])
    assert stack.reconcile_passes(log) == {"passes": 2, "counts": {"promoted": 3, "watched": 2}}


def test_conservation_compares_every_wallet_with_what_the_orders_imply(tmp_path):
    db = tmp_path / "bridge.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE orders (order_id TEXT, status TEXT, escrow_job_id TEXT, escrow_wallet TEXT, "
                 "escrow_total_micro_rtc INTEGER, escrow_reward_micro_rtc INTEGER, payout_wallet TEXT, "
                 "payout_micro_rtc INTEGER)")
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        ("a", "completed", "job_a", "seller", 1_050_000, 1_000_000, "buyer", 1_000_000),
        ("b", "open", "job_b", "seller", 1_050_000, 1_000_000, None, None),
        ("c", "cancelled", "job_c", "seller", 1_050_000, 1_000_000, None, None),
    ])
    conn.commit()
    conn.close()
    minted = {"seller": 10_000_000, "buyer": 0}
    balances = {"seller": 7_900_000, "buyer": 1_000_000, "agent_escrow": 1_050_000, "founder_community": 50_000,
                "otc_bridge_worker": 0}
    state = {"balances": balances, "total_balance_i64": 10_000_000, "minted_i64": 10_000_000,
             "agent_escrow_i64": 1_050_000, "escrow_locked_i64": 1_050_000, "founder_community_i64": 50_000,
             "pending": {}}
    assert checks.conservation(db, state, minted)["ok"] is True
    # One micro-RTC in the wrong wallet is caught, although the total still holds.
    moved = {**balances, "seller": 7_899_999, "buyer": 1_000_001}
    found = checks.conservation(db, {**state, "balances": moved}, minted)
    assert found["ok"] is False and found["total"] is True
    assert found["wrong_wallets"] == {"seller": {"expected": 7_900_000, "node": 7_899_999},
                                      "buyer": {"expected": 1_000_000, "node": 1_000_001}}
    pending = {**state, "pending": {"pending": {"count": 1, "amount_i64": 5}}}
    assert checks.conservation(db, pending, minted)["pool"] is False


def test_serve_log_check_finds_locks_and_errors():
    log = "\n".join(['{"level":"INFO","message":"ok"}',
                     '{"level":"ERROR","message":"sqlite3.OperationalError: database is locked"}',
                     "[2026-12-03 08:07:56 +0000] [1137] [ERROR] Worker (pid:1204) exited with code 3."])
    found = checks.serve_log(log)
    assert (found["database_locked"], found["error_lines"]) == (1, 2)


def test_a_failed_check_is_a_non_zero_exit(monkeypatch, tmp_path):
    def failing(opts, workdir, result):
        result["checks"]["lifecycle"] = {"ok": False, "terminal": {"ok": False, "by_status": {"settling": 1},
                                                                    "unsettled": {"settling": 1}},
                                         "conservation": {"ok": True}, "errors_5xx": 0, "errors_transport": 0,
                                         "serve_log": {"database_locked": 0, "error_lines": 0}}

    monkeypatch.setattr(bench_main, "lifecycle_stack", failing)
    out = tmp_path / "out.json"
    assert bench_main.main(["--tiny", "--workloads", "lifecycle", "--json", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["ok"] is False
    assert result["targets"][-1]["measured"] == "0 / 0 / 1" and result["targets"][-1]["met"] is False
