"""What must hold after a benchmark: orders terminal, money conserved, a clean serve log.

The bridge's SQLite file is read directly, read-only (``mode=ro``), so that checking costs
the bridge no request and no CPU. Amounts are integers of micro-RTC throughout.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TERMINAL = ("completed", "cancelled", "expired")
NODE_ESCROW_WALLET, NODE_FEE_WALLET = "agent_escrow", "founder_community"
WORKER_WALLET = "otc_bridge_worker"  # OTC_WORKER_WALLET's default, which the benchmark keeps
ESCROW_HELD = ("open", "matched")  # statuses whose order's escrow job still holds the RTC
POLL_SECONDS = 0.25


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def read_rows(db_path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    """Rows of a read-only query on the bridge's database."""
    conn = _connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def by_status(db_path: Path) -> dict[str, int]:
    """Orders per status."""
    return {row[0]: row[1] for row in read_rows(db_path, "SELECT status, COUNT(*) FROM orders GROUP BY status")}


def count(db_path: Path, sql: str) -> int:
    return int(read_rows(db_path, sql)[0][0])


def unsettled(statuses: dict[str, int], allow_open: bool) -> dict[str, int]:
    """The statuses that still wait for something (``open`` too unless ``allow_open``)."""
    allowed = (*TERMINAL, "open") if allow_open else TERMINAL
    return {status: n for status, n in statuses.items() if status not in allowed and n}


def wait_settled(db_path: Path, timeout: float, allow_open: bool,
                 nudge: Callable[[], object] | None = None) -> dict[str, Any]:
    """Poll until no order waits for the reconciler (see :func:`unsettled`), at most
    ``timeout`` seconds; ``nudge`` runs between polls (e.g. a reconcile pass when the
    background reconciler is off). ``{"ok", "waited_s", "by_status", "unsettled"}``."""
    started = time.monotonic()
    while True:
        statuses = by_status(db_path)
        waiting = unsettled(statuses, allow_open)
        waited = time.monotonic() - started
        if not waiting or waited >= timeout:
            return {"ok": not waiting, "waited_s": round(waited, 2), "by_status": statuses, "unsettled": waiting}
        if nudge is not None:
            nudge()
        time.sleep(POLL_SECONDS)


def wait_pool_empty(read_state: Callable[[], dict], timeout: float) -> dict:
    """Poll the node's state until no transfer is pending (the cron confirmed them all)."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state()
        if not state.get("pending", {}).get("pending", {}).get("count") or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_SECONDS)


def expected_balances(db_path: Path, minted: dict[str, int]) -> dict[str, int]:
    """Every wallet's balance the orders imply (micro-RTC), from what was minted into it.

    A completed sell order took ``escrow_total`` (reward + the node's fee) from its seller,
    paid the reward to the worker, the fee to the node's fee wallet, and the worker paid
    ``payout`` to the buyer. An ``open`` or ``matched`` order's escrow sits in the node's escrow
    wallet. A cancelled or expired order was refunded whole.
    """
    expected = dict(minted)
    for wallet in (NODE_ESCROW_WALLET, NODE_FEE_WALLET, WORKER_WALLET):
        expected.setdefault(wallet, 0)
    rows = read_rows(db_path, "SELECT status, escrow_wallet, escrow_total_micro_rtc, escrow_reward_micro_rtc, "
                              "payout_wallet, payout_micro_rtc FROM orders WHERE escrow_job_id IS NOT NULL")
    for row in rows:
        total, reward = row["escrow_total_micro_rtc"] or 0, row["escrow_reward_micro_rtc"] or 0
        if row["status"] == "completed":
            expected[row["escrow_wallet"]] = expected.get(row["escrow_wallet"], 0) - total
            expected[NODE_FEE_WALLET] += total - reward
            expected[WORKER_WALLET] += reward - row["payout_micro_rtc"]
            expected[row["payout_wallet"]] = expected.get(row["payout_wallet"], 0) + row["payout_micro_rtc"]
        elif row["status"] in ESCROW_HELD:
            expected[row["escrow_wallet"]] = expected.get(row["escrow_wallet"], 0) - total
            expected[NODE_ESCROW_WALLET] += total
    return expected


def conservation(db_path: Path, state: dict, minted: dict[str, int]) -> dict[str, Any]:
    """Money on the dev node against what was minted and what the orders say.

    ``total``: the sum of all balances (fees and escrow included) equals what was minted;
    ``escrow``: the escrow wallet holds exactly the jobs' locked escrow; ``pool``: no transfer
    is left pending; ``wallets``: each wallet holds what :func:`expected_balances` says.
    """
    balances: dict[str, int] = state["balances"]
    expected = expected_balances(db_path, minted)
    wrong = {wallet: {"expected": want, "node": balances.get(wallet, 0)}
             for wallet, want in expected.items() if balances.get(wallet, 0) != want}
    strangers = {wallet: amount for wallet, amount in balances.items() if wallet not in expected and amount}
    pending = state.get("pending", {}).get("pending", {}).get("count") or 0
    result = {
        "total": state["total_balance_i64"] == state["minted_i64"],
        "escrow": state["agent_escrow_i64"] == state["escrow_locked_i64"],
        "pool": pending == 0,
        "wallets": not wrong and not strangers,
        "minted_micro_rtc": state["minted_i64"], "total_balance_micro_rtc": state["total_balance_i64"],
        "escrow_micro_rtc": state["agent_escrow_i64"], "escrow_locked_micro_rtc": state["escrow_locked_i64"],
        "fees_micro_rtc": state["founder_community_i64"], "pending_transfers": pending,
        "wrong_wallets": dict(list(wrong.items())[:10]), "unknown_wallets": dict(list(strangers.items())[:10]),
    }
    result["ok"] = all(result[name] for name in ("total", "escrow", "pool", "wallets"))
    return result


_ERROR_LINE = re.compile(r'"level":\s*"(ERROR|CRITICAL)"|\[(ERROR|CRITICAL)\]')


def serve_log(text: str) -> dict[str, Any]:
    """``database is locked`` occurrences and error lines of the serve log (with a sample)."""
    errors = [line for line in text.splitlines() if _ERROR_LINE.search(line)]
    return {"database_locked": text.count("database is locked"), "error_lines": len(errors),
            "error_sample": [line[:300] for line in errors[:5]]}
