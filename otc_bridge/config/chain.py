"""Settings of the EVM quote chain (ETH and USDC legs): where our HTLC contract is, how final
a log must be before it counts, and the timelock rules of the buyer-held mode
(docs/protocol.md §12).

Without ``OTC_EVM_RPC_URL`` the bridge does not watch any chain: every pair is settled on
evidence (the preimage and a ``quote_tx`` string), as the reference bridge does, and the
API says so in ``settlement_instructions.quote_verification``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from otc_bridge.config.reader import ConfigError, Reader

#: Our HTLC contract's own timelock bounds, from the creating block (contract HTLC.vy).
CONTRACT_MIN_LOCK_SECONDS = 3600
CONTRACT_MAX_LOCK_SECONDS = 7 * 24 * 3600
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class QuoteChain:
    """One EVM chain and our HTLC contract on it.

    ``confirmations`` is ``None`` for "the chain's ``finalized`` block" (the default), else a
    block count (0 on a dev chain that mines on demand). Addresses are 0x-prefixed hex as
    given. Times are seconds; amounts of gas price are wei.

    Buyer-held mode (docs/protocol.md §12.3): a lock's timelock must lie in
    [``buyer_timelock_min_seconds``, ``buyer_timelock_max_seconds``] after its block's time,
    and no irreversible step (reveal, release, claim) runs once chain time reaches
    ``timelock - buyer_margin_seconds``. The margin must cover the release, the claim's way
    to finality and a tolerated outage of the bridge.

    The bridge's claim (docs/protocol.md §12.8) pays at most ``max_fee_per_gas_wei`` per gas.
    A claim not mined once ``claim_bump_after_seconds`` have passed since it was sent and
    either ``claim_bump_after_blocks`` blocks were mined without it or the next block's base
    fee is above its max fee is replaced at the same nonce with every fee raised by
    ``claim_bump_percent`` percent (at least the 10 % plus 1 wei nodes require), or to the
    node's current suggestion if that is higher.
    """

    rpc_url: str
    chain_id: int
    htlc_address: str
    usdc_address: str | None = None
    confirmations: int | None = None
    claimer_key: str | None = field(default=None, repr=False)  # a hot key: never in a log line
    lock_window_seconds: int = 3600
    buyer_timelock_min_seconds: int = 4 * 3600
    buyer_timelock_max_seconds: int = 24 * 3600
    buyer_margin_seconds: int = 2 * 3600
    reorg_window_blocks: int = 64
    log_chunk_blocks: int = 2000
    max_fee_per_gas_wei: int = 200 * 10**9
    claimer_low_balance_wei: int = 5 * 10**16
    claim_bump_after_blocks: int = 3
    claim_bump_after_seconds: int = 30
    claim_bump_percent: int = 20

    def validate(self, settle_window_seconds: int) -> None:
        """Cross-field rules; raises :class:`ConfigError` naming the variable at fault."""
        if self.buyer_timelock_min_seconds < CONTRACT_MIN_LOCK_SECONDS:
            raise ConfigError("OTC_BUYER_HELD_TIMELOCK_MIN_SECONDS", "must be at least 3600 (the contract's floor)")
        if self.buyer_timelock_max_seconds > min(CONTRACT_MAX_LOCK_SECONDS, settle_window_seconds):
            raise ConfigError("OTC_BUYER_HELD_TIMELOCK_MAX_SECONDS",
                              "must be at most 7 days (the contract's ceiling) and at most OTC_SETTLE_WINDOW_SECONDS")
        if self.buyer_timelock_max_seconds < self.buyer_timelock_min_seconds:
            raise ConfigError("OTC_BUYER_HELD_TIMELOCK_MAX_SECONDS", "must be at least the minimum")
        if self.buyer_timelock_min_seconds - self.buyer_margin_seconds < 1800:
            raise ConfigError("OTC_BUYER_HELD_MARGIN_SECONDS",
                              "must leave the buyer at least 1800 s to reveal before timelock - margin "
                              "on the shortest timelock")


def read_quote_chain(r: Reader) -> QuoteChain | None:
    """The ``OTC_EVM_*`` settings, or ``None`` when ``OTC_EVM_RPC_URL`` is not set."""
    rpc_url = r.url("OTC_EVM_RPC_URL")
    if rpc_url is None:
        return None
    chain_id = r.integer("OTC_EVM_CHAIN_ID", 0, 1, 2**53)
    if chain_id == 0:
        raise ConfigError("OTC_EVM_CHAIN_ID", "required with OTC_EVM_RPC_URL (checked against the node's eth_chainId)")
    htlc = _address(r, "OTC_HTLC_ADDRESS")
    if htlc is None:
        raise ConfigError("OTC_HTLC_ADDRESS", "required with OTC_EVM_RPC_URL")
    confirmations_raw = (r.optional("OTC_EVM_CONFIRMATIONS") or "finalized").lower()
    confirmations = None if confirmations_raw == "finalized" else r.integer("OTC_EVM_CONFIRMATIONS", 0, 0, 10_000)
    key = r.optional("OTC_EVM_CLAIMER_KEY")
    if key is not None and not _KEY.fullmatch(key):
        raise ConfigError("OTC_EVM_CLAIMER_KEY", "must be a 32-byte private key in hex")
    d = QuoteChain
    return QuoteChain(
        rpc_url=rpc_url, chain_id=chain_id, htlc_address=htlc, usdc_address=_address(r, "OTC_USDC_ADDRESS"),
        confirmations=confirmations, claimer_key=key,
        lock_window_seconds=r.integer("OTC_LOCK_WINDOW_SECONDS", d.lock_window_seconds, 300, 7 * 86400),
        buyer_timelock_min_seconds=r.integer("OTC_BUYER_HELD_TIMELOCK_MIN_SECONDS", d.buyer_timelock_min_seconds,
                                             600, 10**7),
        buyer_timelock_max_seconds=r.integer("OTC_BUYER_HELD_TIMELOCK_MAX_SECONDS", d.buyer_timelock_max_seconds,
                                             600, 10**7),
        buyer_margin_seconds=r.integer("OTC_BUYER_HELD_MARGIN_SECONDS", d.buyer_margin_seconds, 60, 10**7),
        reorg_window_blocks=r.integer("OTC_EVM_REORG_WINDOW_BLOCKS", d.reorg_window_blocks, 1, 10_000),
        log_chunk_blocks=r.integer("OTC_EVM_LOG_CHUNK_BLOCKS", d.log_chunk_blocks, 1, 100_000),
        max_fee_per_gas_wei=r.integer("OTC_EVM_MAX_FEE_WEI", d.max_fee_per_gas_wei, 1, 10**15),
        claimer_low_balance_wei=r.integer("OTC_EVM_CLAIMER_LOW_BALANCE_WEI", d.claimer_low_balance_wei, 0, 10**24),
        claim_bump_after_blocks=r.integer("OTC_EVM_CLAIM_BUMP_BLOCKS", d.claim_bump_after_blocks, 1, 10_000),
        claim_bump_after_seconds=r.integer("OTC_EVM_CLAIM_BUMP_SECONDS", d.claim_bump_after_seconds, 0, 86_400),
        # Below 10 % nodes refuse the replacement (docs/protocol.md §12.8).
        claim_bump_percent=r.integer("OTC_EVM_CLAIM_BUMP_PERCENT", d.claim_bump_percent, 10, 100),
    )


def _address(r: Reader, name: str) -> str | None:
    raw = r.optional(name)
    if raw is not None and not _ADDRESS.fullmatch(raw):
        raise ConfigError(name, f"must be a 0x-prefixed 20-byte hex address, got {raw!r}")
    return raw
