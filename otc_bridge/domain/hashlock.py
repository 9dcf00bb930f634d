"""HTLC hashlock helpers: preimage generation and constant-time verification.

Kept from the reference so on-chain HTLCs interoperate (docs/protocol.md §3): the preimage is 32
random bytes written as 64 lower-case hex characters, and ``htlc_hash`` is the sha256 of
the raw 32 bytes (not of the hex text), as HTLC contracts on ETH and ERG compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

_PREIMAGE_RE = re.compile(r"[0-9a-fA-F]{64}")


def new_preimage() -> tuple[str, str]:
    """A fresh ``(preimage_hex, htlc_hash_hex)`` pair from the OS CSPRNG."""
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


def is_preimage_format(secret: str) -> bool:
    """True if ``secret`` is 64 hex characters (32 bytes)."""
    return bool(_PREIMAGE_RE.fullmatch(secret))


def preimage_matches(secret: str, htlc_hash: str) -> bool:
    """Constant-time check that sha256(bytes.fromhex(secret)) equals ``htlc_hash``.

    ``secret`` must already have passed :func:`is_preimage_format`.
    """
    digest = hashlib.sha256(bytes.fromhex(secret)).hexdigest()
    return hmac.compare_digest(digest, htlc_hash.lower())
