"""``/wallet/*`` routes of the dev node: balance, admin transfer, transaction status.

docs/escrow-node.md §1.10 to §1.12. ``POST /wallet/transfer`` only queues a ``pending_ledger`` row;
balances move when the pending pool is confirmed (``pending.py``). Like the real route it
has no exception handler, so a database error gives Flask's HTML 500 page.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import sqlite3
from decimal import ROUND_DOWN, Decimal
from typing import Any

from flask import Blueprint, jsonify, request

from . import store
from .common import Answer, error, is_admin, json_body
from .store import I64_MAX, MICRO_PER_RTC, db, to_rtc, transaction

bp = Blueprint("devnode_wallet", __name__)
_MINER_ID = re.compile(r"[A-Za-z0-9._:-]{1,80}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TX_HASH = re.compile(r"[0-9a-fA-F]{32}")


def idempotency_tx_hash(key: str) -> str:
    """``sha256("wallet_transfer_idempotency:" + key).hexdigest()[:32]`` (docs/escrow-node.md §1.12)."""
    return hashlib.sha256(f"wallet_transfer_idempotency:{key}".encode()).hexdigest()[:32]


def quantize_rtc(amount: int | float) -> int:
    """RTC → micro-RTC with ``Decimal(str(x)) * 1e6`` rounded down (2.01 → 2,010,000)."""
    return int((Decimal(str(amount)) * MICRO_PER_RTC).to_integral_value(rounding=ROUND_DOWN))


@bp.get("/wallet/balance")
def balance() -> Answer:
    """``{"miner_id","amount_i64","amount_rtc"}`` (no ``ok`` key): the confirmed balance."""
    miner_id = request.args.get("miner_id") or None
    address = request.args.get("address") or None
    if miner_id and address and miner_id != address:
        return jsonify(
            {"ok": False, "error": "miner_id and address must match when both are provided"}
        ), 400
    wallet = miner_id or address
    if wallet is None:
        return jsonify({"ok": False, "error": "miner_id or address required"}), 400
    if not _MINER_ID.fullmatch(wallet):
        return jsonify({"ok": False, "error": "invalid miner_id"}), 400
    amount_i64 = store.get_balance(db(), wallet)
    return jsonify(
        {"miner_id": wallet, "amount_i64": amount_i64, "amount_rtc": to_rtc(amount_i64)}
    ), 200


def _bad(code: str, **details: Any) -> tuple[str, dict[str, Any]]:
    return code, details


def parse_transfer(body: Any) -> dict[str, Any] | tuple[str, dict[str, Any]]:
    """Validate a transfer body in the node's order; a tuple is ``(error_code, details)``."""
    if not isinstance(body, dict):
        return _bad("invalid_json_body")
    from_miner, to_miner = body.get("from_miner"), body.get("to_miner")
    if from_miner is None or to_miner is None:
        return _bad("missing_from_or_to")
    if not isinstance(from_miner, str) or not isinstance(to_miner, str):
        return _bad("invalid_from_or_to_type")
    from_miner, to_miner = from_miner.strip(), to_miner.strip()
    if not from_miner or not to_miner:
        return _bad("missing_from_or_to")
    amount = body.get("amount_rtc")
    # JSON numbers only: a bool or a string is not an amount here.
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return _bad("amount_not_number", amount_type=type(amount).__name__)
    if not math.isfinite(amount):
        return _bad("amount_not_finite")
    if amount <= 0:
        return _bad("amount_must_be_positive", amount_rtc=amount)
    amount_i64 = quantize_rtc(amount)
    if amount_i64 < 1:
        return _bad("amount_too_small_after_quantization", amount_rtc=amount, min_rtc=1e-06)
    if amount_i64 > I64_MAX:
        return _bad("amount_exceeds_i64", amount_rtc=amount)
    return {
        "from_miner": from_miner, "to_miner": to_miner, "amount_i64": amount_i64,
        "reason": str(body.get("reason") or "admin_transfer"),
    }


def _pending_debits(conn: sqlite3.Connection, miner_id: str) -> int:
    return conn.execute(
        "SELECT COALESCE(SUM(amount_i64), 0) FROM pending_ledger "
        "WHERE from_miner = ? AND status = 'pending'",
        (miner_id,),
    ).fetchone()[0]


def _transfer_answer(row: sqlite3.Row, message: str) -> Answer:
    delay = store.settings().confirm_delay_seconds
    return jsonify({
        "ok": True, "phase": row["status"], "pending_id": row["id"], "tx_hash": row["tx_hash"],
        "from_miner": row["from_miner"], "to_miner": row["to_miner"],
        "amount_rtc": to_rtc(row["amount_i64"]), "confirms_at": row["confirms_at"],
        "confirms_in_hours": delay / 3600, "message": message,
    }), 200


@bp.post("/wallet/transfer")
def transfer() -> Answer:
    """Queue an admin transfer (200 ``phase:"pending"``); idempotent by ``idempotency_key``.

    Checks in docs/escrow-node.md §1.11 order: 401 admin key, 400 body codes, 400
    ``invalid_idempotency_key``, replay (200 with the row's current ``phase``) or 409
    ``idempotency_key_conflict``, 400 ``Insufficient available balance`` (balance minus
    pending outgoing). No balance moves here.
    """
    if not is_admin("X-Admin-Key"):
        return error(401, "Unauthorized - admin key required",
                     hint="Use /wallet/transfer/signed for user transfers")
    body = json_body()
    parsed = parse_transfer(body)
    if isinstance(parsed, tuple):
        code, details = parsed
        return error(400, code, details=details)
    key = body.get("idempotency_key")
    if key is not None and not (isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key)):
        return error(400, "invalid_idempotency_key")
    tx_hash = idempotency_tx_hash(key) if key is not None else secrets.token_hex(16)
    conn = db()
    with transaction(conn):
        ts = store.now(conn)
        row = conn.execute(
            "SELECT * FROM pending_ledger WHERE tx_hash = ?", (tx_hash,)
        ).fetchone()
        if row is not None:
            stored = {name: row[name] for name in ("from_miner", "to_miner", "amount_i64", "reason")}
            if stored != parsed:
                return error(409, "idempotency_key_conflict", tx_hash=tx_hash)
            return _transfer_answer(row, "Transfer already pending for idempotency key.")
        balance_i64 = store.get_balance(conn, parsed["from_miner"])
        debits_i64 = _pending_debits(conn, parsed["from_miner"])
        if balance_i64 - debits_i64 < parsed["amount_i64"]:
            return error(
                400, "Insufficient available balance", balance_rtc=to_rtc(balance_i64),
                pending_debits_rtc=to_rtc(debits_i64),
                available_rtc=to_rtc(balance_i64 - debits_i64),
                requested_rtc=to_rtc(parsed["amount_i64"]),
            )
        delay = store.settings().confirm_delay_seconds
        cursor = conn.execute(
            "INSERT INTO pending_ledger (ts, epoch, from_miner, to_miner, amount_i64, reason, "
            "status, created_at, confirms_at, tx_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (ts, store.current_slot(ts), parsed["from_miner"], parsed["to_miner"],
             parsed["amount_i64"], parsed["reason"], ts, ts + delay, tx_hash),
        )
        row = conn.execute(
            "SELECT * FROM pending_ledger WHERE id = ?", (cursor.lastrowid,)
        ).fetchone()
    return _transfer_answer(
        row, f"Transfer pending. Will confirm in {delay // 3600} hours unless voided."
    )


def _ledger_pair_present(conn: sqlite3.Connection, row: sqlite3.Row) -> bool:
    count = conn.execute(
        "SELECT COUNT(*) FROM ledger WHERE reason IN (?, ?)",
        (f"transfer_out:{row['to_miner']}:{row['tx_hash']}",
         f"transfer_in:{row['from_miner']}:{row['tx_hash']}"),
    ).fetchone()[0]
    return count >= 2


@bp.get("/wallet/tx/<tx_hash>")
def tx_status(tx_hash: str) -> Answer:
    """Status of a transfer by hash: pending / confirmed / failed (voided) / 404 / 400."""
    if not _TX_HASH.fullmatch(tx_hash):
        return jsonify(
            {"ok": False, "error": "tx_hash must be exactly 32 hexadecimal characters"}
        ), 400
    tx_hash = tx_hash.lower()
    conn = db()
    row = conn.execute("SELECT * FROM pending_ledger WHERE tx_hash = ?", (tx_hash,)).fetchone()
    answer: dict[str, Any] = {"ok": True, "tx_hash": tx_hash, "confirmations": 0,
                              "block_height": None}
    if row is not None and row["status"] in ("pending", "confirming"):
        return jsonify({**answer, "status": "pending"}), 200
    if row is not None and row["status"] == "voided":
        return jsonify({**answer, "status": "failed"}), 200
    if row is not None and row["status"] == "confirmed" and _ledger_pair_present(conn, row):
        return jsonify(
            {**answer, "status": "confirmed", "confirmations": 1, "block_height": row["epoch"]}
        ), 200
    return jsonify(
        {"ok": False, "status": "not_found", "error": "transaction_not_found"}
    ), 404
