"""Wallet signatures (docs/protocol.md §3): address formula, canonical wallets, the signed bytes,
every refusal code in the reference's order, and single-use replay protection."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from otc_bridge.domain import wallets
from otc_bridge.domain.wallets import AuthError, VerifiedWallet
from otc_bridge.storage import signatures
from otc_bridge.storage.db import Database

NOW = 1_800_000_000
ACTION, ORDER_ID = "match_order", "otc_0123456789abcdef"
BOUND = {"eth_address": "0x" + "11" * 20}


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


KEY = _key(7)
PUBLIC = _raw_public(KEY)
WALLET = wallets.wallet_for_public_key(PUBLIC)


def _signed(wallet: str = WALLET, *, timestamp: int = NOW, key: Ed25519PrivateKey = KEY,
            bound: dict | None = None, action: str = ACTION) -> dict:
    message = wallets.signed_message(action, ORDER_ID, timestamp, wallet, BOUND if bound is None else bound)
    return {"public_key": _raw_public(key).hex(), "signature": key.sign(message).hex(), "timestamp": timestamp}


def _verify(wallet: str, wallet_auth: object, *, now: int = NOW, bound: dict | None = None) -> VerifiedWallet:
    return wallets.verify(wallet, wallet_auth, action=ACTION, order_id=ORDER_ID,
                       bound=BOUND if bound is None else bound, now=now)


def _code(wallet: str, wallet_auth: object, **kwargs) -> str:
    with pytest.raises(AuthError) as info:
        _verify(wallet, wallet_auth, **kwargs)
    assert str(info.value) == info.value.code
    return info.value.code


# --- addresses -------------------------------------------------------------------------------


def test_wallet_for_public_key_formula():
    expected = "RTC" + hashlib.sha256(PUBLIC).hexdigest()[:40]
    assert expected == WALLET
    assert len(WALLET) == 43 and "RTC" + WALLET[3:].lower() == WALLET


@pytest.mark.parametrize(("text", "canonical"), [
    ("RTC" + "ab" * 20, "RTC" + "ab" * 20),
    ("RTC" + "AB" * 20, "RTC" + "ab" * 20),
    ("RTC" + "aB0F" * 10, "RTC" + "ab0f" * 10),
])
def test_canonical_wallet_lowercases_hex_and_keeps_prefix(text, canonical):
    assert wallets.is_native_wallet(text)
    assert wallets.canonical_wallet(text) == canonical


@pytest.mark.parametrize("text", [
    "", "RTC", "rtc" + "ab" * 20, "RTC" + "ab" * 19, "RTC" + "ab" * 21, "RTC" + "g" * 40,
    "0x" + "ab" * 20, " RTC" + "ab" * 20, "RTC" + "ab" * 20 + " ", "alice",
])
def test_non_native_wallets(text):
    assert not wallets.is_native_wallet(text)
    with pytest.raises(AuthError) as info:
        wallets.canonical_wallet(text)
    assert info.value.code == "wallet_must_be_native_rtc_address"


def test_trailing_newline_is_not_a_native_wallet():
    text = "RTC" + "ab" * 20 + "\n"
    assert not wallets.is_native_wallet(text)
    with pytest.raises(AuthError, match="wallet_must_be_native_rtc_address"):
        wallets.canonical_wallet(text)


def test_signed_message_is_compact_sorted_json():
    message = wallets.signed_message("create_order", "create_order", 5, "RTCx",
                                         {"side": "sell", "amount_micro_rtc": 1})
    assert message == (b'{"action":"create_order","amount_micro_rtc":1,"order_id":"create_order",'
                       b'"side":"sell","timestamp":5,"wallet":"RTCx"}')
    assert json.loads(message) == {"action": "create_order", "amount_micro_rtc": 1, "order_id": "create_order",
                                   "side": "sell", "timestamp": 5, "wallet": "RTCx"}


def test_signed_message_escapes_non_ascii():
    expected = b'{"action":"a","order_id":"o","timestamp":1,"wallet":"w","x":"\\u00e9"}'
    assert wallets.signed_message("a", "o", 1, "w", {"x": "é"}) == expected


# --- verify ----------------------------------------------------------------------------------


def test_good_signature_is_accepted():
    verified = _verify(WALLET, _signed())
    assert verified.wallet == WALLET
    assert verified.timestamp == NOW
    message = wallets.signed_message(ACTION, ORDER_ID, NOW, WALLET, BOUND)
    assert verified.digest == hashlib.sha256(PUBLIC + message).hexdigest()


def test_upper_case_wallet_signed_as_sent_returns_canonical_wallet():
    sent = "RTC" + WALLET[3:].upper()
    verified = _verify(sent, _signed(sent))
    assert verified.wallet == WALLET


def test_signature_over_canonical_string_fails_when_upper_case_was_sent():
    sent = "RTC" + WALLET[3:].upper()
    assert _code(sent, _signed(WALLET)) == "wallet_auth_invalid_signature"


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_timestamp_within_window(skew):
    assert _verify(WALLET, _signed(timestamp=NOW + skew)).timestamp == NOW + skew


def _with(**changes) -> dict:
    return {**_signed(), **changes}


def _without(name: str) -> dict:
    body = _signed()
    del body[name]
    return body


OTHER_PUBLIC = _raw_public(_key(8)).hex()

REFUSALS = [
    ("not_native", "RTCnothex", _signed(), "wallet_must_be_native_rtc_address"),
    ("not_native_before_auth", "bob", None, "wallet_must_be_native_rtc_address"),
    ("auth_none", WALLET, None, "wallet_auth_required"),
    ("auth_string", WALLET, "sig", "wallet_auth_required"),
    ("auth_list", WALLET, [1, 2, 3], "wallet_auth_required"),
    ("no_public_key", WALLET, _without("public_key"), "wallet_auth_public_key_signature_timestamp_required"),
    ("no_signature", WALLET, _without("signature"), "wallet_auth_public_key_signature_timestamp_required"),
    ("no_timestamp", WALLET, _without("timestamp"), "wallet_auth_public_key_signature_timestamp_required"),
    ("empty_public_key", WALLET, _with(public_key=""), "wallet_auth_public_key_signature_timestamp_required"),
    ("null_timestamp", WALLET, _with(timestamp=None), "wallet_auth_public_key_signature_timestamp_required"),
    ("bool_timestamp", WALLET, _with(timestamp=True), "wallet_auth_invalid_timestamp"),
    ("string_timestamp", WALLET, _with(timestamp=str(NOW)), "wallet_auth_invalid_timestamp"),
    ("float_timestamp", WALLET, _with(timestamp=float(NOW)), "wallet_auth_invalid_timestamp"),
    ("old_timestamp", WALLET, _signed(timestamp=NOW - 301), "wallet_auth_timestamp_expired"),
    ("future_timestamp", WALLET, _signed(timestamp=NOW + 301), "wallet_auth_timestamp_expired"),
    ("expired_beats_encoding", WALLET, _with(timestamp=NOW - 301, public_key="zz"), "wallet_auth_timestamp_expired"),
    ("public_key_not_hex", WALLET, _with(public_key="zz" * 32), "wallet_auth_invalid_encoding"),
    ("public_key_short", WALLET, _with(public_key=PUBLIC.hex()[:-2]), "wallet_auth_invalid_encoding"),
    ("public_key_long", WALLET, _with(public_key=PUBLIC.hex() + "00"), "wallet_auth_invalid_encoding"),
    ("public_key_odd", WALLET, _with(public_key=PUBLIC.hex()[:-1]), "wallet_auth_invalid_encoding"),
    ("public_key_int", WALLET, _with(public_key=12345), "wallet_auth_invalid_encoding"),
    ("signature_not_hex", WALLET, _with(signature="zz" * 64), "wallet_auth_invalid_encoding"),
    ("signature_short", WALLET, _with(signature="ab" * 63), "wallet_auth_invalid_encoding"),
    ("signature_long", WALLET, _with(signature="ab" * 65), "wallet_auth_invalid_encoding"),
    ("other_key", WALLET, _with(public_key=OTHER_PUBLIC), "wallet_auth_public_key_does_not_match_wallet"),
    ("garbage_signature", WALLET, _with(signature="00" * 64), "wallet_auth_invalid_signature"),
    ("signed_by_other_key", WALLET, _with(signature=_signed(key=_key(8))["signature"]),
     "wallet_auth_invalid_signature"),
    ("other_action", WALLET, _with(signature=_signed(action="cancel_order")["signature"]),
     "wallet_auth_invalid_signature"),
    ("tampered_bound_field", WALLET, _signed(bound={"eth_address": "0x" + "22" * 20}),
     "wallet_auth_invalid_signature"),
    ("extra_bound_field", WALLET, _signed(bound={**BOUND, "extra": 1}), "wallet_auth_invalid_signature"),
]


@pytest.mark.parametrize(("wallet", "wallet_auth", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusal_codes(wallet, wallet_auth, code):
    assert _code(wallet, wallet_auth) == code


@pytest.mark.parametrize("field", ["public_key", "signature"])
def test_trailing_newline_in_hex_is_an_encoding_error(field):
    body = _signed()
    body[field] = body[field][:-1] + "\n"
    assert _code(WALLET, body) == "wallet_auth_invalid_encoding"


def test_public_key_upper_case_hex_is_accepted():
    body = _signed()
    body["public_key"] = body["public_key"].upper()
    body["signature"] = body["signature"].upper()
    assert _verify(WALLET, body).wallet == WALLET


# --- consume ---------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "auth.db"))
    database.migrate()
    return database


def _consume(db: Database, verified: VerifiedWallet, now: int = NOW, action: str = ACTION) -> None:
    with db.transaction() as tx:
        signatures.consume(tx, verified, action, now)


def test_consume_refuses_a_second_use(db):
    verified = _verify(WALLET, _signed())
    _consume(db, verified)
    with pytest.raises(AuthError) as info:
        _consume(db, verified, now=NOW + 10)
    assert info.value.code == "wallet_auth_replayed"
    rows = db.read("SELECT digest, wallet, action, used_at, expires_at FROM used_signatures")
    assert [tuple(r) for r in rows] == [(verified.digest, WALLET, ACTION, NOW, NOW + 301)]


def test_different_messages_are_independent(db):
    _consume(db, _verify(WALLET, _signed()))
    _consume(db, _verify(WALLET, _signed(timestamp=NOW + 1)))
    assert db.read_one("SELECT COUNT(*) FROM used_signatures")[0] == 2


def test_refused_replay_inside_a_transaction_rolls_back_with_it(db):
    verified = _verify(WALLET, _signed())
    _consume(db, verified)
    with pytest.raises(AuthError), db.transaction() as tx:
        tx.execute("INSERT INTO leases (name, holder, expires_at) VALUES ('x', 'y', 1)")
        signatures.consume(tx, verified, ACTION, NOW)
    assert db.read("SELECT * FROM leases") == []


def test_consume_prunes_expired_rows(db):
    old = _verify(WALLET, _signed(timestamp=NOW), now=NOW)
    _consume(db, old)  # expires_at = NOW + 301
    newer = _verify(WALLET, _signed(timestamp=NOW + 400), now=NOW + 400)
    _consume(db, newer, now=NOW + 301)
    assert db.read_one("SELECT COUNT(*) FROM used_signatures")[0] == 2  # expires_at == now: kept
    latest = _verify(WALLET, _signed(timestamp=NOW + 500), now=NOW + 500)
    _consume(db, latest, now=NOW + 302)
    digests = {r["digest"] for r in db.read("SELECT digest FROM used_signatures")}
    assert digests == {newer.digest, latest.digest}
