"""The commands a newcomer and an operator run, as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

CLI = [sys.executable, "-m", "otc_bridge.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_"))}
    env.update(extra)
    return env


@contextmanager
def running(args: list[str], ready: str, env: dict[str, str], cwd) -> Iterator[list[str]]:
    """Start a process and wait (on its output, not a timer) until a line contains ``ready``."""
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd)
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=60)
            assert line is not None, "process exited early:\n" + "".join(seen)
            seen.append(line)
            if ready in line:
                break
        yield seen
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dev_then_demo_completes_both_trades(tmp_path):
    """``dev`` then ``demo``: two ERG swaps settled on evidence, then one swap in each mode
    on the dev chain (seller-held ETH: the seller's claim settles it; buyer-held USDC: the
    buyer's reveal, then the bridge's claim), with every transaction hash printed."""
    port, node_port = free_port(), free_port()
    data = tmp_path / "data"
    args = ["dev", "--data-dir", str(data), "--port", str(port), "--node-port", str(node_port)]
    with running(args, "next", clean_env(), tmp_path):
        demo = subprocess.run(CLI + ["demo", "--data-dir", str(data)], capture_output=True, text=True,
                              env=clean_env(), cwd=tmp_path, timeout=180)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    assert out.count(": completed, preimage readable: True") == 4
    assert "preimage hidden while the payout is pending" in out
    assert out.count("[quote chain simulated: quote_verification=evidence]") == 1
    # The on-chain swaps: each lock, each claim, and who sent the bridge's claim.
    tx = r"0x[0-9a-f]{64}"
    assert len(re.findall(rf"  buyer's lock tx {tx} ", out)) == 2
    assert re.search(rf"  seller's claim tx {tx} \(reveals the preimage on chain\)", out)
    claimer = r"0x[0-9a-fA-F]{40}"
    assert re.search(rf"  bridge's claim tx {tx} \(sent by its claimer {claimer}: the seller paid no gas\)", out)
    assert out.count("quote leg: locked (verified on chain by the bridge)") == 2
    assert "quote leg: claimed; the watcher settled the order without a confirm" in out
    assert "buyer reveals (signed confirm): HTTP 200 status=payout_pending" in out
    assert "seller 1000000000 -> 977950000 (-22050000, expected -22050000)" in out
    assert "buyer  1000000000 -> 1021000000 (+21000000, expected +21000000)" in out
    assert "seller usdc +120000 (expected +120000)" in out and "buyer  usdc -120000 (expected -120000)" in out
    assert "seller wei " in out and "demo OK" in out


def test_serve_runs_gunicorn_against_a_node(tmp_path):
    node_port, port = free_port(), free_port()
    node_args = ["devnode", "--port", str(node_port), "--db", str(tmp_path / "node.db")]
    with running(node_args, "dev escrow node on", clean_env(), tmp_path):
        env = clean_env(RUSTCHAIN_NODE=f"http://127.0.0.1:{node_port}", OTC_DB_PATH=str(tmp_path / "b.db"))
        with running(["serve", "--port", str(port), "--workers", "1"], "Booting worker", env, tmp_path):
            response = requests.get(f"http://127.0.0.1:{port}/api/orderbook", timeout=30)
            assert response.status_code == 200 and response.json()["pair"] == "RTC/USDC"
            assert requests.get(f"http://127.0.0.1:{port}/api/orders?pair=BAD", timeout=30).status_code == 400


def test_serve_refuses_to_start_without_a_node(tmp_path):
    result = subprocess.run(CLI + ["serve"], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 2
    assert "RUSTCHAIN_NODE" in result.stderr and "otc-bridge dev" in result.stderr


@pytest.mark.parametrize(("variable", "value"), [("OTC_PORT", "eighty"), ("OTC_CORS_ORIGINS", "*"),
                                                 ("OTC_RATE_LIMIT", "lots"), ("OTC_HEADER_TIMEOUT_SECONDS", "soon"),
                                                 ("OTC_BODY_TIMEOUT_SECONDS", "0"), ("OTC_WORKER_CONNECTIONS", "8")])
def test_bad_setting_is_a_startup_error_naming_the_variable(tmp_path, variable, value):
    env = clean_env(RUSTCHAIN_NODE="http://127.0.0.1:9", **{variable: value})
    result = subprocess.run(CLI + ["serve"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert variable in result.stderr


def test_init_db_creates_the_schema(tmp_path):
    db = tmp_path / "x" / "bridge.db"
    result = subprocess.run(CLI + ["init-db", "--db", str(db)], capture_output=True, text=True,
                            env=clean_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and "schema version 7" in result.stdout
    assert db.exists()
