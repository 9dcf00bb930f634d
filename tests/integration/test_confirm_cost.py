"""What one confirm request costs the database: at most 3 write transactions, 12 statements.

Counted with ``sqlite3``'s trace callback on the connection the request runs on (Flask's
test client serves it in this thread), against the dev node over real HTTP. The budget
comes from the restructuring issue: one read of the order, the compare-and-swap into
``settling`` (with the payout key and the release intent), and the compare-and-swap with
the release's outcome; the per-IP rate limit is one upsert. docs/architecture.md explains
the count.
"""

from __future__ import annotations

import re

from bridge_support import matched_sell

MAX_WRITE_TRANSACTIONS = 3
MAX_STATEMENTS = 12
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def write_transactions(statements: list[str]) -> int:
    """``BEGIN`` ... ``COMMIT`` blocks, plus writing statements run outside one (autocommit)."""
    count, inside = 0, False
    for sql in statements:
        word = sql.strip().split(None, 1)[0].upper()
        if word == "BEGIN":
            count, inside = count + 1, True
        elif word in ("COMMIT", "ROLLBACK"):
            inside = False
        elif not inside and _WRITE.match(sql):
            count += 1
    return count


def traced_confirm(http_client, bridge, order_id: str, secret: str) -> tuple[dict, list[str]]:
    conn = bridge.db.connection()  # this thread's connection, opened before counting
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        response = http_client.post(f"/api/orders/{order_id}/confirm", json={"secret": secret, "quote_tx": "0xabc"})
    finally:
        conn.set_trace_callback(None)
    assert response.status_code == 200, response.get_json()
    return response.get_json(), statements


def test_confirm_runs_within_its_statement_and_transaction_budget(api, seller, buyer, bridge, http_client):
    order_id, secret = matched_sell(api, seller, buyer)
    body, statements = traced_confirm(http_client, bridge, order_id, secret)
    assert body["status"] == "payout_pending"
    listing = "\n".join(statements)
    assert write_transactions(statements) <= MAX_WRITE_TRANSACTIONS, listing
    assert len(statements) <= MAX_STATEMENTS, listing
    # One read of the order: no step re-reads the row it already holds.
    reads = [s for s in statements if re.match(r"\s*SELECT \* FROM orders", s)]
    assert len(reads) == 1, listing


def test_the_counter_sees_every_statement_of_a_transaction():
    statements = ["SELECT 1", "BEGIN IMMEDIATE", "UPDATE orders SET x = 1", "INSERT INTO outbox VALUES (1)",
                  "COMMIT", "INSERT INTO rate_limits VALUES (1)", "BEGIN IMMEDIATE", "COMMIT"]
    assert write_transactions(statements) == 3
