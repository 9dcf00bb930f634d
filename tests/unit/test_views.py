"""Public JSON shapes (docs/protocol.md §3, §4 rule 4): what never leaves the process, when the preimage
does, and the settlement instructions' timelocks and base-unit totals for every pair."""

from __future__ import annotations

import pytest

from otc_bridge.config import Config
from otc_bridge.domain import money, views
from otc_bridge.domain.order import Order
from otc_bridge.domain.status import Status
from otc_bridge.storage.db import Database

NOW = 1_800_000_000
MAKER, TAKER = "RTC" + "a1" * 20, "RTC" + "b2" * 20
MAKER_Q, TAKER_Q = "0x" + "11" * 20, "0x" + "22" * 20
SECRET = "5e" * 32
INTERNAL = ("escrow_ref", "payout_key", "attention_reason", "ip_hash", "escrow_wallet", "escrow_ttl_seconds")


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    return database


def instructions(row, cfg: Config) -> dict:
    return views.settlement_instructions(row, htlc_min_seconds=cfg.htlc_min_seconds,
                                         claim_margin_seconds=cfg.claim_margin_seconds)


def make_row(db: Database, **overrides) -> Order:
    """An orders row with every column set, internal bookkeeping included."""
    amount, price = overrides.get("amount_micro_rtc", 10_000_000), overrides.get("price_nano_quote", 50_000_000)
    columns = {
        "order_id": "otc_0011223344556677", "side": "sell", "pair": "RTC/USDC", "status": "matched",
        "order_version": 3, "maker_wallet": MAKER, "maker_quote_address": MAKER_Q,
        "amount_micro_rtc": amount, "price_nano_quote": price,
        "total_quote_nano": money.total_quote_nano(amount, price), "ttl_seconds": 86_400,
        "created_at": NOW - 500, "expires_at": NOW + 86_000, "updated_at": NOW, "taker_wallet": TAKER,
        "taker_quote_address": TAKER_Q, "matched_at": NOW - 100, "settle_by": NOW - 100 + 172_800,
        "htlc_hash": "ab" * 32, "htlc_secret": SECRET, "quote_tx": "0xquote", "escrow_wallet": MAKER,
        "escrow_ref": "otc_0011223344556677:v1", "escrow_job_id": "job_1", "escrow_reward_micro_rtc": amount,
        "escrow_total_micro_rtc": amount * 105 // 100, "escrow_ttl_seconds": 400_000,
        "payout_wallet": TAKER, "payout_key": "otc_payout:otc_0011223344556677", "payout_tx_hash": "cd" * 16,
        "payout_micro_rtc": amount, "settling_at": NOW, "confirmed_at": NOW, "ended_at": None,
        "end_cause": None, "attention_reason": "operator looked at it",
    } | overrides
    names, marks = ", ".join(columns), ", ".join(f":{k}" for k in columns)
    with db.transaction() as tx:
        tx.execute("DELETE FROM orders")
        tx.execute(f"INSERT INTO orders ({names}) VALUES ({marks})", columns)  # noqa: S608
    return Order.from_row(db.read_one("SELECT * FROM orders"))


def _all_keys(value) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


@pytest.mark.parametrize("status", list(Status))
def test_order_view_preimage_only_when_completed(db, status):
    view = views.order_view(make_row(db, status=str(status)))
    if status == Status.COMPLETED:
        assert view["htlc_secret"] == SECRET
    else:
        assert "htlc_secret" not in view
        assert SECRET not in repr(view)
    assert view["status"] == status and view["order_version"] == 3


@pytest.mark.parametrize("status", list(Status))
def test_no_internal_columns_ever(db, status):
    row = make_row(db, status=str(status))
    for shape in (views.order_view(row), views.book_entry(row), instructions(row, Config())):
        assert not _all_keys(shape) & set(INTERNAL)
        for secret_value in ("otc_0011223344556677:v1", "otc_payout:otc_0011223344556677", "operator looked"):
            assert secret_value not in repr(shape)


def test_order_view_fields(db):
    view = views.order_view(make_row(db, pair="RTC/ERG", amount_micro_rtc=2_010_000, price_nano_quote=123_456_789))
    assert view["quote_currency"] == "ERG"
    assert (view["amount_micro_rtc"], view["amount_rtc"]) == (2_010_000, 2.01)
    assert (view["price_per_rtc_nano_quote"], view["price_per_rtc"]) == (123_456_789, 0.123456789)
    assert (view["total_quote_nano"], view["total_quote"]) == (248_148_146, 0.248148146)
    assert (view["maker_eth_address"], view["taker_eth_address"]) == (MAKER_Q, TAKER_Q)
    assert (view["settlement_tx"], view["payout_tx_hash"], view["escrow_job_id"]) == ("0xquote", "cd" * 16, "job_1")


def test_book_entry_is_the_compact_subset(db):
    row = make_row(db, status="open")
    entry = views.book_entry(row)
    assert set(entry) == {"order_id", "order_version", "side", "pair", "maker_wallet", "amount_micro_rtc",
                          "amount_rtc", "price_per_rtc_nano_quote", "price_per_rtc", "total_quote_nano",
                          "total_quote", "quote_currency", "status", "htlc_hash", "created_at", "expires_at",
                          "escrow_job_id"}
    assert entry.items() <= views.order_view(row).items()


@pytest.mark.parametrize(("pair", "amount", "price", "currency", "decimals", "base_units"), [
    ("RTC/USDC", 10_000_000, 50_000_000, "USDC", 6, "500000"),
    ("RTC/USDC", 1_000_000, 1, "USDC", 6, "1"),
    ("RTC/ETH", 10_000_000, 50_000_000, "ETH", 18, "500000000000000000"),
    ("RTC/ETH", 2_010_000, 123_456_789, "ETH", 18, "248148145890000000"),
    ("RTC/ETH", 10_000_000_000, 1000 * 10**9, "ETH", 18, str(10**25)),
    ("RTC/ERG", 2_010_000, 123_456_789, "ERG", 9, "248148146"),
])
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_settlement_instructions_amounts(db, side, pair, amount, price, currency, decimals, base_units):
    row = make_row(db, side=side, pair=pair, amount_micro_rtc=amount, price_nano_quote=price)
    out = instructions(row, Config())
    assert (out["currency"], out["quote_decimals"], out["total_quote_base_units"]) == (currency, decimals, base_units)
    assert isinstance(out["total_quote_base_units"], str)
    assert out["total_quote_nano"] == money.total_quote_nano(amount, price)
    assert out["hash_algorithm"] == "sha256" and out["htlc_hash"] == "ab" * 32


@pytest.mark.parametrize(("side", "pay_to", "recipient"), [("sell", MAKER_Q, TAKER), ("buy", TAKER_Q, MAKER)])
def test_settlement_instructions_parties(db, side, pay_to, recipient):
    out = instructions(make_row(db, side=side), Config())
    assert (out["pay_to_address"], out["rtc_recipient"]) == (pay_to, recipient)
    assert (make_row(db, side=side).seller_wallet == MAKER) is (side == "sell")


@pytest.mark.parametrize(("env", "matched_at", "settle_by", "low", "high"), [
    ({}, NOW, NOW + 172_800, NOW + 43_200, NOW + 86_400),
    ({"OTC_SETTLE_WINDOW_SECONDS": "7200", "OTC_HTLC_MIN_SECONDS": "600", "OTC_CLAIM_MARGIN_SECONDS": "3600"},
     NOW, NOW + 7200, NOW + 600, NOW + 3600),
    ({"OTC_SETTLE_WINDOW_SECONDS": str(5 * 86400), "OTC_HTLC_MIN_SECONDS": "3600",
      "OTC_CLAIM_MARGIN_SECONDS": str(2 * 86400)}, 1_000, 1_000 + 5 * 86400, 4_600, 1_000 + 3 * 86400),
])
def test_settlement_instructions_timelocks(db, env, matched_at, settle_by, low, high):
    cfg = Config.from_env(env)
    out = instructions(make_row(db, matched_at=matched_at, settle_by=settle_by), cfg)
    assert (out["htlc_timelock_min"], out["htlc_timelock_max"], out["settle_by"]) == (low, high, settle_by)
    assert low < high <= settle_by


@pytest.mark.parametrize(("side", "step"), [
    ("sell", "Send quote currency to complete the swap"),
    ("buy", "RTC is locked in escrow. Buyer sends quote currency."),
], ids=["sell", "buy"])
def test_settlement_instructions_text(db, side, step):
    out = instructions(make_row(db, side=side, price_nano_quote=25_000_000), Config())
    assert out["step"] == step
    assert "0.25 USDC" in out["note"]
    assert out["amount"] == 0.25


def test_settlement_note_for_tiny_totals_is_plain_decimal(db):
    out = instructions(make_row(db, amount_micro_rtc=100_000, price_nano_quote=5_000), Config())
    assert out["total_quote_nano"] == 500
    assert "Lock 0.0000005 USDC" in out["note"]


@pytest.mark.parametrize(("side", "maker", "taker"), [("sell", "S", "B"), ("buy", "B", "S")])
def test_trade_view_names_parties_by_role(db, side, maker, taker):
    with db.transaction() as tx:
        tx.execute("INSERT INTO orders (order_id, side, pair, status, maker_wallet, maker_quote_address,"
                   " amount_micro_rtc, price_nano_quote, total_quote_nano, ttl_seconds, created_at, expires_at,"
                   " updated_at) VALUES ('o', ?, 'RTC/USDC', 'completed', 'm', 'q', 1, 1, 1, 1, 1, 1, 1)", (side,))
        tx.execute("INSERT INTO trades (trade_id, order_id, pair, side, seller_wallet, buyer_wallet,"
                   " amount_micro_rtc, price_nano_quote, total_quote_nano, payout_micro_rtc, created_at)"
                   " VALUES ('t', 'o', 'RTC/USDC', ?, 'S', 'B', 1500000, 50000000, 75000000, 1500000, 7)",
                   (side,))
    view = views.trade_view(db.read_one("SELECT * FROM trades"))
    assert (view["maker_wallet"], view["taker_wallet"]) == (maker, taker)
    assert (view["seller_wallet"], view["buyer_wallet"]) == ("S", "B")
    assert (view["amount_rtc"], view["total_quote"], view["completed_at"]) == (1.5, 0.075, 7)
