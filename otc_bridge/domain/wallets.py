"""Wallet signatures (Ed25519), canonical wallets and single-use replay protection.

Wire scheme kept from the reference bridge (docs/protocol.md §3): the wallet is ``"RTC"`` + the first
40 hex characters of sha256(raw 32-byte public key); the signed bytes are the UTF-8 of
the compact, key-sorted JSON of ``{action, order_id, timestamp, wallet}`` plus the
action's bound fields; the timestamp must be within 300 s of the server clock. Error
codes are the reference's, all HTTP 401. Two deliberate differences: wallets are
canonicalised (``RTC`` + lower-case hex) after the signature is checked over the string as
sent, and a signature is single-use (``wallet_auth_replayed``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIGNATURE_WINDOW_SECONDS = 300
_WALLET_RE = re.compile(r"RTC[0-9a-fA-F]{40}")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


class AuthError(Exception):
    """A wallet signature was refused; ``code`` is the reference's error string (401)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class VerifiedWallet:
    """A wallet proven by signature: ``wallet`` is canonical, ``digest`` identifies the
    signed message for replay protection."""

    wallet: str
    digest: str
    timestamp: int


def is_native_wallet(text: str) -> bool:
    """True for ``RTC`` + 40 hex characters (any hex case)."""
    return bool(_WALLET_RE.fullmatch(text))


def canonical_wallet(text: str) -> str:
    """``RTC`` + lower-case hex; raises ``AuthError('wallet_must_be_native_rtc_address')``."""
    if not is_native_wallet(text):
        raise AuthError("wallet_must_be_native_rtc_address")
    return "RTC" + text[3:].lower()


def wallet_for_public_key(public_key: bytes) -> str:
    """The canonical wallet address of a raw 32-byte Ed25519 public key."""
    return "RTC" + hashlib.sha256(public_key).hexdigest()[:40]


def signed_message(action: str, order_id: str, timestamp: int, wallet: str,
                   bound: dict[str, Any]) -> bytes:
    """The exact bytes a wallet signs: compact sorted JSON, UTF-8 (ASCII-escaped)."""
    payload = dict(bound, action=action, order_id=order_id, timestamp=timestamp, wallet=wallet)
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def verify(
    wallet_as_sent: str,
    wallet_auth: object,
    *,
    action: str,
    order_id: str,
    bound: dict[str, Any],
    now: int,
) -> VerifiedWallet:
    """Check ``wallet_auth = {public_key, signature, timestamp}`` for ``wallet_as_sent``.

    Checks run in the reference's order and raise :class:`AuthError` with its codes:
    ``wallet_must_be_native_rtc_address``, ``wallet_auth_required``,
    ``wallet_auth_public_key_signature_timestamp_required``, ``wallet_auth_invalid_timestamp``,
    ``wallet_auth_timestamp_expired``, ``wallet_auth_invalid_encoding``,
    ``wallet_auth_public_key_does_not_match_wallet``, ``wallet_auth_invalid_signature``.
    Unlike the reference, the timestamp must be a JSON integer (strict types).
    """
    canonical = canonical_wallet(wallet_as_sent)
    if not isinstance(wallet_auth, dict):
        raise AuthError("wallet_auth_required")
    public_hex = wallet_auth.get("public_key")
    signature_hex = wallet_auth.get("signature")
    timestamp = wallet_auth.get("timestamp")
    if not public_hex or not signature_hex or timestamp is None:
        raise AuthError("wallet_auth_public_key_signature_timestamp_required")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise AuthError("wallet_auth_invalid_timestamp")
    if abs(now - timestamp) > SIGNATURE_WINDOW_SECONDS:
        raise AuthError("wallet_auth_timestamp_expired")
    public_key = _hex_bytes(public_hex, 32)
    if wallet_for_public_key(public_key) != canonical:
        raise AuthError("wallet_auth_public_key_does_not_match_wallet")
    signature = _hex_bytes(signature_hex, 64)
    message = signed_message(action, order_id, timestamp, wallet_as_sent, bound)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        raise AuthError("wallet_auth_invalid_signature") from None
    # The digest covers key and message, not the signature bytes: any second valid
    # signature over the same message is the same authorisation and is refused too.
    digest = hashlib.sha256(public_key + message).hexdigest()
    return VerifiedWallet(wallet=canonical, digest=digest, timestamp=timestamp)


def _hex_bytes(value: object, length: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX_RE.fullmatch(value):
        raise AuthError("wallet_auth_invalid_encoding")
    return bytes.fromhex(value)
