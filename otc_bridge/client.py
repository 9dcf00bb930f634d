"""A small Python client for the bridge's JSON API, with Ed25519 wallet signing.

Used by ``otc-bridge demo``, the integration tests and the benchmark; bots can use it as
the reference for the signing scheme (see :func:`otc_bridge.domain.wallets.signed_message`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otc_bridge.domain.wallets import signed_message, wallet_for_public_key


@dataclass(frozen=True)
class Wallet:
    """An Ed25519 key pair and its RTC address (``RTC`` + 40 lower-case hex)."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Wallet:
        """A fresh random wallet."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, text: str) -> Wallet:
        """A deterministic wallet from a passphrase (demo and tests only: not a KDF)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(text.encode()).digest()))

    @property
    def public_key_hex(self) -> str:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
        return raw.hex()

    @property
    def address(self) -> str:
        return wallet_for_public_key(bytes.fromhex(self.public_key_hex))

    def auth(self, action: str, order_id: str, bound: dict[str, Any], *, wallet: str | None = None,
             timestamp: int | None = None) -> dict[str, Any]:
        """The ``wallet_auth`` object for one request (``wallet`` as it will be sent)."""
        ts = int(time.time()) if timestamp is None else timestamp
        message = signed_message(action, order_id, ts, wallet or self.address, bound)
        return {"public_key": self.public_key_hex, "signature": self.private_key.sign(message).hex(),
                "timestamp": ts}


class BridgeClient:
    """Calls the bridge over HTTP; every method returns ``(status_code, json_body)``."""

    def __init__(self, base_url: str, session: requests.Session | None = None,
                 timeout_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.timeout_seconds = timeout_seconds

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict]:
        response = self.session.request(method, self.base_url + path, timeout=self.timeout_seconds, **kwargs)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {"error": response.text[:200]}

    def create_order(self, wallet: Wallet, *, side: str, pair: str, amount_micro_rtc: int,
                     price_nano_quote: int, eth_address: str = "", ttl_seconds: int = 7 * 86400,
                     htlc_hash: str | None = None, **overrides: Any) -> tuple[int, dict]:
        """Sign and send a create (amounts as exact integers); ``htlc_hash``: a buyer-held buy
        order (sha256 of the maker's own preimage, 64 lower-case hex)."""
        bound = {"side": side, "pair": pair, "amount_micro_rtc": amount_micro_rtc,
                 "price_per_rtc_nano_quote": price_nano_quote, "ttl_seconds": ttl_seconds,
                 "eth_address": eth_address} | ({"htlc_hash": htlc_hash} if htlc_hash else {})
        body = {"side": side, "pair": pair, "wallet": wallet.address, "amount_micro_rtc": amount_micro_rtc,
                "price_per_rtc_nano_quote": price_nano_quote, "ttl_seconds": ttl_seconds,
                "eth_address": eth_address, "wallet_auth": wallet.auth("create_order", "create_order", bound)}
        if htlc_hash:
            body["htlc_hash"] = htlc_hash
        body.update(overrides)
        return self._call("POST", "/api/orders", json=body)

    def match(self, wallet: Wallet, order_id: str, eth_address: str = "", *,
              htlc_hash: str | None = None) -> tuple[int, dict]:
        """Sign and send a match; ``htlc_hash``: take a sell order buyer-held."""
        bound = {"eth_address": eth_address} | ({"htlc_hash": htlc_hash} if htlc_hash else {})
        body = {"wallet": wallet.address, "eth_address": eth_address,
                "wallet_auth": wallet.auth("match_order", order_id, bound)}
        if htlc_hash:
            body["htlc_hash"] = htlc_hash
        return self._call("POST", f"/api/orders/{order_id}/match", json=body)

    def reveal(self, wallet: Wallet, order_id: str, *, secret: str) -> tuple[int, dict]:
        """A buyer-held reveal: the RTC buyer's signed confirm with its own preimage."""
        body = {"secret": secret, "wallet": wallet.address,
                "wallet_auth": wallet.auth("confirm_order", order_id, {})}
        return self._call("POST", f"/api/orders/{order_id}/confirm", json=body)

    def confirm(self, order_id: str, *, secret: str, quote_tx: str, wallet: str | None = None) -> tuple[int, dict]:
        """Settle with the preimage (no signature: the preimage is the authority)."""
        body: dict[str, Any] = {"secret": secret, "quote_tx": quote_tx}
        if wallet:
            body["wallet"] = wallet
        return self._call("POST", f"/api/orders/{order_id}/confirm", json=body)

    def cancel(self, wallet: Wallet, order_id: str) -> tuple[int, dict]:
        """Sign and send a cancel."""
        body = {"wallet": wallet.address, "wallet_auth": wallet.auth("cancel_order", order_id, {})}
        return self._call("POST", f"/api/orders/{order_id}/cancel", json=body)

    def order(self, order_id: str) -> tuple[int, dict]:
        return self._call("GET", f"/api/orders/{order_id}")

    def get(self, path: str, **params: Any) -> tuple[int, dict]:
        return self._call("GET", path, params=params)

    def reconcile(self, admin_token: str) -> tuple[int, dict]:
        return self._call("POST", "/admin/reconcile", headers={"Authorization": f"Bearer {admin_token}"})
