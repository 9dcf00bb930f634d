"""``serve --replicate`` killed mid-load, restored from its Litestream replica (docs/backups.md).

Real processes on 127.0.0.1: ``otc-bridge devnode``, ``otc-bridge serve --replicate`` (gunicorn,
two workers, background reconciler, Litestream side-car shipping to a file replica). The test

1. kills the side-car's Litestream with SIGKILL: ``serve`` raises ``replication_down`` and
   starts it again;
2. runs trader threads (create, match, confirm sell orders through :class:`BridgeClient`) while
   the node confirms payouts, and SIGKILLs the whole ``serve`` session mid-load (master, workers
   and Litestream at once: what a lost host looks like);
3. treats the database file as lost, and restores it with
   ``otc-bridge restore --from-replica`` into a new directory;
4. checks that only the trailing seconds were lost: every write acknowledged to a trader more
   than :data:`LOSS_BOUND_SECONDS` before the kill is in the restored file;
5. starts ``serve --replicate`` on the restored file, runs ``otc-bridge audit`` (mismatches
   only for orders whose latest writes were lost), ``otc-bridge reconcile`` until quiet, lets
   the traders re-send the confirms the restore lost, reconciles again, and then requires
   ``otc-bridge audit --all`` to pass, every order to be terminal or resting consistently
   (``open``/``matched``), and every buyer to have been paid exactly the payouts the node
   confirmed, once each.

It prints the measured figures (Litestream's sync cadence, the writes lost, the restore time)
that docs/backups.md quotes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
from bridge_support import BUYER_ETH, SELLER_ETH, NodeHandle
from crash_support import (
    CHANGE_KEYS,
    CLI,
    bridge_env,
    db_rows,
    devnode_process,
    run_cli_reconcile,
    start_on_free_port,
    wait_out_grace,
)

from otc_bridge.client import BridgeClient, Wallet
from otc_bridge.node.amounts import payout_tx_hash
from otc_bridge.node.results import parse_tags

TRADERS = 3
LOAD_SECONDS = 8.0
#: An acknowledged write older than this at the kill must have reached the replica
#: (Litestream ships every 1 s; the rest is slack for a loaded 2-core machine).
LOSS_BOUND_SECONDS = 3.0
MAX_PASSES = 12
RESTING = {"open", "matched"}
TERMINAL = {"completed", "cancelled", "expired"}


@dataclass
class Trade:
    """One trader's sell order: its id and preimage once created, and each acknowledged
    step as ``(step, wall time of the answer, order_version)``."""

    order_id: str | None = None
    secret: str | None = None
    acks: list[tuple[str, float, int]] = field(default_factory=list)
    confirm_sent: bool = False
    confirm_answer: str | None = None


def trader(base_url: str, seller: Wallet, buyer: Wallet, number: int, stop: threading.Event,
           trades: list[Trade], lock: threading.Lock) -> None:
    """Trade until ``stop`` or until the server is gone."""
    api = BridgeClient(base_url, timeout_seconds=30)
    for i in range(10_000):
        if stop.is_set():
            return
        trade = Trade()
        with lock:
            trades.append(trade)
        try:
            status, body = api.create_order(seller, side="sell", pair="RTC/USDC",
                                            amount_micro_rtc=1_000_000 * (1 + number) + 1000 * i,
                                            price_nano_quote=50_000_000, eth_address=SELLER_ETH)
            if status != 201:
                continue
            trade.order_id, trade.secret = body["order_id"], body["htlc_secret"]
            trade.acks.append(("create", time.time(), body["order_version"]))
            status, body = api.match(buyer, trade.order_id, BUYER_ETH)
            if status != 200:
                continue
            trade.acks.append(("match", time.time(), body["order_version"]))
            trade.confirm_sent = True
            status, body = api.confirm(trade.order_id, secret=trade.secret, quote_tx="0x" + "ab" * 32)
            trade.confirm_answer = f"{status} {body.get('status') or body.get('error', '')[:40]}"
            if status == 200 and "order_version" in body:
                trade.acks.append(("confirm", time.time(), body["order_version"]))
        except requests.RequestException:
            return  # the server was killed


def confirmer(node_url: str, stop: threading.Event) -> None:
    """The node operator confirming the pending pool every 0.3 s."""
    node = NodeHandle(node_url)
    while not stop.wait(0.3):
        try:
            node.post("/dev/confirm")
        except requests.RequestException:
            return


def sync_gaps(output: str) -> list[float]:
    """Seconds between Litestream's consecutive "wal segment written" log lines."""
    stamps = [datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
              for m in re.finditer(r'time=(\S+) level=INFO msg="wal segment written"', output)]
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


def serve_replicate(env: dict[str, str], workdir: Path):
    proc, port = start_on_free_port(
        lambda port: ["serve", "--replicate", "--port", str(port), "--workers", "2", "--threads", "4"],
        env, workdir, "Booting worker")
    proc.wait_for("litestream started")
    return proc, f"http://127.0.0.1:{port}"


def cli_json(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, dict]:
    done = subprocess.run(CLI + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.returncode, json.loads(lines[-1])


def versions(db_path: Path) -> dict[str, int]:
    return {r["order_id"]: r["order_version"] for r in db_rows(db_path, "SELECT order_id, order_version FROM orders")}


def reconcile_until_quiet(env: dict[str, str], cwd: Path, node: NodeHandle, db_path: Path) -> list[dict]:
    """Node confirms, one ``otc-bridge reconcile`` pass; again until neither changed anything."""
    passes = []
    for _ in range(MAX_PASSES):
        wait_out_grace(db_path)
        confirmed = node.post("/dev/confirm").json()["confirmed_count"]
        done = run_cli_reconcile(env, cwd)
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        passes.append({"dev_confirmed": confirmed, **summary})
        if not confirmed and not any(summary.get(key) for key in CHANGE_KEYS):
            return passes
    raise AssertionError(f"not quiet after {MAX_PASSES} passes: {passes}")


def wait_until_gone(pid: int, timeout: float = 20.0) -> None:
    """Until process ``pid`` has exited (absent, or a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as file:
                if file.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except FileNotFoundError:
            return
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.05)


@pytest.mark.parametrize("lost_host", [True, False], ids=["host-lost", "bridge-killed"])
def test_kill_mid_load_then_restore_from_the_replica(litestream_bin, tmp_path, lost_host):
    """``host-lost``: Litestream is SIGKILLed with the bridge; the writes of the trailing
    seconds may be lost. ``bridge-killed``: only the bridge's processes are SIGKILLed;
    Litestream, told by the kernel that its parent died, ships the rest: nothing is lost."""
    figures: dict[str, object] = {"scenario": "host-lost" if lost_host else "bridge-killed"}
    try:
        kill_and_restore(litestream_bin, tmp_path, figures, lost_host=lost_host)
    finally:
        print("replication figures:", json.dumps(figures))


def kill_and_restore(litestream_bin: Path, tmp_path: Path, figures: dict[str, object], *, lost_host: bool) -> None:
    (tmp_path / "node-files").mkdir()
    with devnode_process(tmp_path / "node-files") as node:
        sellers = [Wallet.generate() for _ in range(TRADERS)]
        buyers = [Wallet.generate() for _ in range(TRADERS)]
        for wallet in sellers + buyers:
            node.fund(wallet.address, "10000")
        buyers_before = {b.address: node.balance(b.address) for b in buyers}
        live_dir, replica = tmp_path / "live", tmp_path / "replica"
        live_db = live_dir / "bridge.db"
        env = {k: v for k, v in bridge_env(node.url, live_db).items() if k != "OTC_RECONCILE_DISABLED"}
        env.update(OTC_RECONCILE_INTERVAL_SECONDS="2", OTC_SETTLEMENT_STUCK_SECONDS="60",
                   OTC_LITESTREAM_BIN=str(litestream_bin), OTC_REPLICA_DIR=str(replica))

        # 1-2. Litestream killed and restarted, then the whole session killed mid-load.
        proc, url = serve_replicate(env, tmp_path)
        try:
            first = int(re.search(r"litestream started \(pid (\d+)\)", proc.output).group(1))
            os.kill(first, signal.SIGKILL)
            proc.wait_for("litestream exited")
            deadline = time.monotonic() + 10
            while proc.output.count("litestream started") < 2:
                assert time.monotonic() < deadline, proc.output[-3000:]
                time.sleep(0.05)
            alerts = db_rows(live_db, "SELECT payload FROM outbox WHERE topic = 'alert'")
            assert [json.loads(a["payload"])["code"] for a in alerts] == ["replication_down"]

            stop, lock, trades = threading.Event(), threading.Lock(), []
            threads = [threading.Thread(target=trader, args=(url, sellers[n], buyers[n], n, stop, trades, lock),
                                        daemon=True) for n in range(TRADERS)]
            threads.append(threading.Thread(target=confirmer, args=(node.url, stop), daemon=True))
            for thread in threads:
                thread.start()
            load_started = time.monotonic()
            while time.monotonic() - load_started < LOAD_SECONDS:
                time.sleep(0.1)
                assert proc.popen.poll() is None
            side_car = int(re.findall(r"litestream started \(pid (\d+)\)", proc.output)[-1])
            killed_at = time.time()
            if lost_host:  # Litestream dies with the bridge: what it had not shipped is lost
                os.kill(side_car, signal.SIGKILL)
            proc.kill()  # SIGKILL to the serve session: master and workers
            wait_until_gone(side_car)  # otherwise SIGTERMed as its parent died: ships the rest, exits
        finally:
            proc.kill()
            print("--- serve --replicate output (tail) ---\n" + proc.output[-4000:])
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        gaps = sync_gaps(proc.output)
        figures["litestream sync gap s (median, max)"] = (round(statistics.median(gaps), 2), round(max(gaps), 2))
        figures["trades started"] = len(trades)
        figures["confirm answers during the load"] = dict(Counter(t.confirm_answer for t in trades if t.confirm_sent))

        # 3. The disk is lost; restore the replica into a new directory.
        new_db = tmp_path / "restored" / "bridge.db"
        restore_env = {**env, "OTC_DB_PATH": str(new_db)}
        started = time.monotonic()
        code, restored = cli_json(["restore", "--from-replica"], restore_env, tmp_path)
        figures["restore wall s"] = round(time.monotonic() - started, 2)
        assert code == 0 and restored["ok"], restored
        figures["restore (fetch, total) s"] = (restored["fetch_seconds"], restored["total_seconds"])
        figures["database bytes"] = restored["bytes"]

        # 4. Only the trailing seconds are lost.
        lost_versions, kept_versions = versions(live_db), versions(new_db)
        acks = [(at, trade.order_id, version) for trade in trades for _, at, version in trade.acks]
        missing = [(at, oid, v) for at, oid, v in acks if kept_versions.get(oid, 0) < v]
        figures["acknowledged writes"] = len(acks)
        figures["acknowledged writes lost"] = len(missing)
        if missing:
            figures["oldest lost ack before the kill s"] = round(killed_at - min(at for at, _, _ in missing), 2)
        assert all(killed_at - at <= LOSS_BOUND_SECONDS for at, _, _ in missing), figures
        if not lost_host:
            assert missing == [], figures
        changed = {oid for oid, v in lost_versions.items() if kept_versions.get(oid) != v}
        figures["orders with lost writes"] = len(changed)
        assert all(kept_versions[oid] <= v for oid, v in lost_versions.items() if oid in kept_versions)

        # 5. Serve the restored file; audit; reconcile; the traders re-confirm; all consistent.
        after_env = {**bridge_env(node.url, new_db), "OTC_LITESTREAM_BIN": str(litestream_bin),
                     "OTC_REPLICA_DIR": str(replica)}
        proc, url = serve_replicate(after_env, tmp_path)
        try:
            code, audit = cli_json(["audit", "--json"], after_env, tmp_path)
            early = {m["order_id"] for m in audit["mismatches"]}
            figures["audit mismatches right after the restore"] = len(audit["mismatches"])
            in_flight = {r["order_id"] for r in db_rows(new_db, "SELECT order_id FROM orders WHERE status IN "
                                                                "('locking', 'settling', 'payout_pending')")}
            # Only orders whose latest writes were lost, or that a request or the reconciler
            # was moving when the kill came (the reconciler's work, as after any crash).
            assert early <= changed | in_flight, audit
            passes = reconcile_until_quiet(after_env, tmp_path, node, new_db)
            api = BridgeClient(url, timeout_seconds=60)
            retried, paused = 0, 0
            for trade in trades:
                row = db_rows(new_db, "SELECT status FROM orders WHERE order_id = ?", (trade.order_id,))
                if trade.confirm_sent and row and row[0]["status"] == "matched":
                    status, body = api.confirm(trade.order_id, secret=trade.secret, quote_tx="0x" + "ab" * 32)
                    # 503: releases paused, the worker does not cover the escrow the restored
                    # book believes it holds (see the note on lost settlements below).
                    assert status == 200 or (status == 503 and "Releases are paused" in body["error"]), body
                    retried += 1
                    paused += status == 503
            figures["confirms re-sent after the restore (refused: releases paused)"] = (retried, paused)
            passes += reconcile_until_quiet(after_env, tmp_path, node, new_db)
            figures["reconcile passes"] = len(passes)
            code, audit = cli_json(["audit", "--all", "--json"], after_env, tmp_path)
            late = {m["order_id"] for m in audit["mismatches"]}
            figures["audit --all mismatches at the end"] = len(late)
            assert late <= changed, audit
            if not lost_host:
                assert code == 0 and audit["ok"] and not paused, audit
            done = subprocess.run(CLI + ["attention", "--json", "--older-than", "0"], env=after_env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)
            attention_ids = {item["order_id"] for item in json.loads(done.stdout)}
        finally:
            proc.kill()
            print("--- serve after the restore (tail) ---\n" + proc.output[-3000:])

        # Every order is terminal or resting consistently with the node, except orders whose
        # settlement the restore lost while the node had already paid their buyer: the restored
        # book has them open or matched, their escrow job completed into the worker. The escrow
        # watch takes that for tampering: an open one goes to refund the seller from the worker
        # (the node refuses: the worker already paid the buyer with it) and lands in
        # settlement_recovery; a matched one is kept "in custody", which the worker no longer
        # covers, so releases pause. None of this pays anyone twice; each is left to an
        # operator and listed by `otc-bridge attention` (docs/backups.md, after a restore).
        statuses = {r["order_id"]: r["status"] for r in db_rows(new_db, "SELECT order_id, status FROM orders")}
        tampered = {r["order_id"] for r in db_rows(new_db, "SELECT order_id FROM orders "
                                                           "WHERE escrow_tampered_at IS NOT NULL")}
        stuck = {oid: st for oid, st in statuses.items() if st not in TERMINAL | RESTING or oid in tampered}
        figures["orders left to an operator"] = sorted(stuck.values())
        assert set(stuck) <= changed, (stuck, changed)
        assert set(stuck) <= attention_ids | late, (stuck, attention_ids)
        if not lost_host:
            assert not stuck, stuck
        # Nobody was paid twice: every buyer got exactly the payouts the node confirmed (one
        # key per order), and no order both paid its buyer and refunded its seller.
        rows = {r["order_id"]: r for r in db_rows(new_db, "SELECT * FROM orders")}
        rows.update({r["order_id"]: r for r in db_rows(live_db, "SELECT * FROM orders")})  # matches lost later
        paid: dict[str, int] = {}
        for order_id, row in rows.items():
            payout = node.get(f"/wallet/tx/{payout_tx_hash('otc_payout:' + order_id)}").json().get("status")
            refund = statuses.get(order_id) and db_rows(new_db, "SELECT refund_tx_hash FROM orders WHERE order_id = ?",
                                                        (order_id,))[0]["refund_tx_hash"]
            refunded = bool(refund) and node.get(f"/wallet/tx/{refund}").json().get("status") == "confirmed"
            assert not (payout == "confirmed" and refunded), order_id
            if payout == "confirmed":
                paid[row["taker_wallet"]] = paid.get(row["taker_wallet"], 0) + row["escrow_reward_micro_rtc"]
        for buyer in buyers:
            assert node.balance(buyer.address) - buyers_before[buyer.address] == paid.get(buyer.address, 0)
        # Escrow of orders the restore lost entirely stays claimed until its TTL; the node then
        # refunds it to the seller (expired here at once).
        orphans = []
        body = node.get("/agent/jobs", status="claimed", limit=100).json()
        for job in body["jobs"]:
            order_ids = {tag.rpartition(":v")[0] for tag in parse_tags(job.get("tags")) if ":v" in tag}
            if job["poster_wallet"] in {s.address for s in sellers} and not order_ids & set(kept_versions):
                assert order_ids & set(lost_versions), job  # an order of the lost trailing seconds
                orphans.append(job["job_id"])
        figures["escrow jobs of orders lost entirely"] = len(orphans)
        for job_id in orphans:
            assert node.post(f"/dev/jobs/{job_id}/expire").status_code == 200
            node.get(f"/agent/jobs/{job_id}")  # the node's lazy expiry refunds the seller
        node.assert_conserved()
