"""A broken invariant after commit is logged, counted, alerted through the outbox and raised."""

from __future__ import annotations

import pytest

from otc_bridge.storage import invariants, orders
from otc_bridge.storage.db import Database


def check(db: Database, order_id: str) -> None:
    """The post-commit check as a transition runs it (the row as committed, no trade row)."""
    invariants.check_after_commit(db, orders.get_order(db.connection(), order_id), has_trade=False)


def test_broken_invariant_is_counted_alerted_and_raised(tmp_path):
    db = Database(str(tmp_path / "b.db"))
    db.migrate()
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO orders (order_id, side, pair, status, maker_wallet, maker_quote_address, amount_micro_rtc,"
            " price_nano_quote, total_quote_nano, ttl_seconds, created_at, expires_at, updated_at)"
            " VALUES ('otc_x', 'sell', 'RTC/USDC', 'completed', 'RTCa', '', 1000000, 1, 1, 3600, 1, 2, 1)")
    before = invariants.failure_counts().get("completed_without_trade", 0)
    with pytest.raises(invariants.InvariantBroken) as caught:
        check(db, "otc_x")
    assert "completed_without_trade" in caught.value.codes
    assert invariants.failure_counts()["completed_without_trade"] == before + 1
    alerts = db.read("SELECT topic, payload FROM outbox WHERE order_id = 'otc_x'")
    assert [a["topic"] for a in alerts] == ["alert"] and "invariant_broken" in alerts[0]["payload"]
    # Deduplicated: the same broken row alerts once.
    with pytest.raises(invariants.InvariantBroken):
        check(db, "otc_x")
    assert len(db.read("SELECT 1 FROM outbox WHERE order_id = 'otc_x'")) == 1


def test_sound_order_passes_silently(tmp_path):
    db = Database(str(tmp_path / "b.db"))
    db.migrate()
    with db.transaction() as tx:
        tx.execute(
            "INSERT INTO orders (order_id, side, pair, status, maker_wallet, maker_quote_address, amount_micro_rtc,"
            " price_nano_quote, total_quote_nano, ttl_seconds, created_at, expires_at, updated_at)"
            " VALUES ('otc_y', 'buy', 'RTC/USDC', 'open', 'RTCa', '', 1000000, 1, 1, 3600, 1, 2, 1)")
    check(db, "otc_y")
    assert db.read("SELECT 1 FROM outbox") == []
