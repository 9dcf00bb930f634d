"""Single-use wallet signatures: a verified signature is burnt in ``used_signatures``.
"""

from __future__ import annotations

from otc_bridge.domain.wallets import SIGNATURE_WINDOW_SECONDS, AuthError, VerifiedWallet
from otc_bridge.storage.db import Tx


def consume(tx: Tx, verified: VerifiedWallet, action: str, now: int) -> None:
    """Mark the signature used, in the caller's transaction; raises ``wallet_auth_replayed``.

    Rows are kept until the timestamp window has passed for good (after that the
    timestamp check alone refuses the message), then pruned here.
    """
    tx.execute("DELETE FROM used_signatures WHERE expires_at < ?", (now,))
    cur = tx.execute(
        "INSERT OR IGNORE INTO used_signatures (digest, wallet, action, used_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (verified.digest, verified.wallet, action, now,
         verified.timestamp + SIGNATURE_WINDOW_SECONDS + 1),
    )
    if cur.rowcount != 1:
        raise AuthError("wallet_auth_replayed")
