"""What the quote-chain watcher and the buyer-held reveal read from the chain (docs/protocol.md §12).

:class:`QuoteChainReader` answers in plain values: block heights, 0x hashes, unix seconds
of chain time. "Safe" is the block the bridge counts up to: the chain's ``finalized`` block
when ``confirmations`` is ``None``, else ``latest - confirmations``. Every failure to reach
the chain raises :class:`ChainUnavailable` (the caller retries on its next pass; nothing is
decided on a missing answer).
"""

from __future__ import annotations

from dataclasses import dataclass

from hexbytes import HexBytes
from requests import RequestException
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from otc_bridge.chain import htlc, tx


class ChainUnavailable(tx.ChainError):
    """The chain's node did not give a usable answer (transport error, RPC error, a block
    it should have and does not)."""


@dataclass(frozen=True)
class BlockRef:
    """One block: ``number``, ``hash`` (0x hex) and ``time`` (its timestamp, unix seconds)."""

    number: int
    hash: str
    time: int


class QuoteChainReader:
    """Reads of one chain (``chain_id``) and our HTLC contract at ``htlc_address``."""

    def __init__(self, rpc_url: str, *, chain_id: int, htlc_address: str, confirmations: int | None,
                 timeout_seconds: float = 10.0) -> None:
        self.w3 = tx.connect(rpc_url, timeout_seconds=timeout_seconds)
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.htlc = htlc.HTLCClient(self.w3, htlc_address)
        self._chain_checked = False

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (RequestException, Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailable(f"{what}: {exc}") from exc

    def check_chain_id(self) -> None:
        """Raise :class:`ChainUnavailable` unless the node serves ``chain_id`` (a bridge
        pointed at the wrong chain must not count a single log). Asked once per process
        once it matched: a node does not change chains."""
        if self._chain_checked:
            return
        served = self._call("eth_chainId", lambda: self.w3.eth.chain_id)
        if served != self.chain_id:
            raise ChainUnavailable(f"the node serves chain {served}, OTC_EVM_CHAIN_ID is {self.chain_id}")
        self._chain_checked = True

    def block(self, identifier: int | str) -> BlockRef:
        """Block ``identifier`` (a number, ``latest`` or ``finalized``)."""
        found = self._call(f"eth_getBlockByNumber({identifier})", self.w3.eth.get_block, identifier)
        return BlockRef(number=found["number"], hash=HexBytes(found["hash"]).to_0x_hex(), time=found["timestamp"])

    def safe_head(self) -> BlockRef:
        """The newest block whose logs count (see the module docstring)."""
        if self.confirmations is None:
            return self.block("finalized")
        latest = self.block("latest")
        if self.confirmations == 0:
            return latest
        return self.block(max(0, latest.number - self.confirmations))

    def latest_time(self) -> int:
        """The newest block's timestamp: the chain's "now" for timelock margins."""
        return self.block("latest").time

    def events(self, from_block: int, to_block: int, chunk_blocks: int) -> list[htlc.SwapEvent]:
        """Our contract's events in ``from_block..to_block`` (inclusive), in chain order, read
        in spans of at most ``chunk_blocks`` (nodes bound ``eth_getLogs`` ranges)."""
        found: list[htlc.SwapEvent] = []
        start = from_block
        while start <= to_block:
            end = min(to_block, start + chunk_blocks - 1)
            found += self._call(f"eth_getLogs({start}..{end})", self.htlc.events, start, end)
            start = end + 1
        return found

    def swap(self, swap_id: str) -> htlc.Swap:
        """The swap as of the latest block (state ``NONE`` if the chain has no such swap)."""
        return self._call("swaps()", self.htlc.swap, bytes(HexBytes(swap_id)), block="latest")

    def claim_refusal(self, swap_id: str, preimage: str) -> str | None:
        """Why ``claim(swap_id, preimage)`` would revert now (an ``eth_call`` against the
        latest block: wrong preimage, timelock reached, swap not open, a seller that refuses
        ETH or a blocklisted token receiver), or ``None`` if it would succeed."""
        call = self.htlc.contract.functions.claim(bytes(HexBytes(swap_id)), bytes(HexBytes(preimage)))
        try:
            call.call({"from": "0x" + "00" * 19 + "01"}, block_identifier="latest")
        except ContractLogicError as exc:
            return tx.revert_reason(exc) or "claim would revert"
        except (RequestException, Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailable(f"eth_call claim: {exc}") from exc
        return None

    def balance_wei(self, address: str) -> int:
        """ETH balance of ``address`` at the latest block, in wei."""
        return self._call("eth_getBalance", self.w3.eth.get_balance, Web3.to_checksum_address(address))
