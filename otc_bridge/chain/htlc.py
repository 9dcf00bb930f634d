"""Our HTLC contract (``contracts/HTLC.vy``) from Python: its rules as constants, swap ids,
typed reads, and its events decoded from raw logs.

Units: amounts are integers in wei (ETH swaps) or the token's base units (1 USDC = 10**6);
timelocks and times are unix seconds as the chain's ``block.timestamp``. Ids, hashlocks and
preimages are 32-byte ``bytes`` (``.hex()`` gives the bridge's lower-case hex form);
addresses are checksummed ``0x`` strings.

The contract's rules (see the source's docstring): a swap is claimable while
``block.timestamp < timelock`` (anyone may send the claim; it pays the seller), refundable
from ``block.timestamp >= timelock`` on (it pays the buyer), and ends once. A new swap's
timelock lies in ``[now + MIN_LOCK_SECONDS, now + MAX_LOCK_SECONDS]``, inclusive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.types import BlockIdentifier, TxReceipt

from otc_bridge.chain import tx
from otc_bridge.chain.artifacts import HTLC, load_artifact

#: The shortest and longest lock a swap may be created with, seconds after the creating block.
MIN_LOCK_SECONDS = 3600
MAX_LOCK_SECONDS = 7 * 86400
#: The longest ``rtcOrderId`` the contract accepts, in UTF-8 bytes.
MAX_ORDER_ID_BYTES = 64
#: The ``token`` of an ETH swap.
ETH_TOKEN = "0x0000000000000000000000000000000000000000"  # noqa: S105 - the zero address, no secret

SWAP_CREATED_TOPIC = keccak(text="SwapCreated(bytes32,address,address,address,uint256,bytes32,uint256,string)")
SWAP_CLAIMED_TOPIC = keccak(text="SwapClaimed(bytes32,bytes32)")
SWAP_REFUNDED_TOPIC = keccak(text="SwapRefunded(bytes32)")


class SwapState(IntEnum):
    """A swap's state as ``swaps()`` reports it; ``NONE`` means no swap has that id."""

    NONE = 0
    OPEN = 1
    CLAIMED = 2
    REFUNDED = 3


class MalformedLog(tx.ChainError):
    """A log carried one of the HTLC's event topics but did not decode as that event."""


@dataclass(frozen=True)
class Swap:
    """One swap as stored on chain. ``token`` is :data:`ETH_TOKEN` for ETH; ``amount`` is
    what the contract holds for it (wei or token base units; for a fee-on-transfer token,
    what actually arrived)."""

    swap_id: bytes
    buyer: str
    seller: str
    token: str
    amount: int
    hashlock: bytes
    timelock: int
    state: SwapState

    @property
    def is_eth(self) -> bool:
        """True for an ETH swap (``token`` is :data:`ETH_TOKEN`)."""
        return self.token == ETH_TOKEN

    def claimable_at(self, timestamp: int) -> bool:
        """True if a claim mined in a block with this ``timestamp`` would be accepted (given
        the preimage): the swap is open and the timelock not reached."""
        return self.state is SwapState.OPEN and timestamp < self.timelock

    def refundable_at(self, timestamp: int) -> bool:
        """True if a refund mined in a block with this ``timestamp`` would be accepted."""
        return self.state is SwapState.OPEN and timestamp >= self.timelock


@dataclass(frozen=True)
class LogPosition:
    """Where an event was logged: ``block_number``, ``block_hash`` and ``tx_hash`` (``0x``
    hex), ``log_index`` within the block, and ``removed`` (the node's flag for a log
    dropped by a reorg, only ever true in filter answers)."""

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = False


@dataclass(frozen=True)
class SwapCreated:
    """``SwapCreated``: a swap was opened. ``rtc_order_id`` is decoded as UTF-8 with
    replacement characters (the chain does not check it; anyone can open a swap with any
    bytes), so it can never match a real, ASCII order id by accident."""

    swap_id: bytes
    buyer: str
    seller: str
    token: str
    amount: int
    hashlock: bytes
    timelock: int
    rtc_order_id: str
    at: LogPosition


@dataclass(frozen=True)
class SwapClaimed:
    """``SwapClaimed``: the swap paid its seller; ``preimage`` is now public."""

    swap_id: bytes
    preimage: bytes
    at: LogPosition


@dataclass(frozen=True)
class SwapRefunded:
    """``SwapRefunded``: the swap paid its buyer back."""

    swap_id: bytes
    at: LogPosition


SwapEvent = SwapCreated | SwapClaimed | SwapRefunded


def hashlock_of(preimage: bytes) -> bytes:
    """sha256 of a 32-byte ``preimage``, as the contract checks it. Raises ``ValueError`` for
    any other length (the contract takes exactly ``bytes32``)."""
    if len(preimage) != 32:
        raise ValueError(f"preimage must be 32 bytes, got {len(preimage)}")
    return hashlib.sha256(preimage).digest()


def swap_id_for(chain_id: int, htlc_address: str, sender: str, nonce: int) -> bytes:
    """The id the contract gives the swap that ``sender`` creates with its ``nonce``-th
    create (0-based; ``HTLCClient.nonce`` tells the next): keccak256 of the ABI encoding of
    (chain id, contract address, sender, nonce). No block data, so it is known in advance."""
    return keccak(abi_encode(["uint256", "address", "address", "uint256"],
                             [chain_id, Web3.to_checksum_address(htlc_address),
                              Web3.to_checksum_address(sender), nonce]))


def timelock_bounds(now: int) -> tuple[int, int]:
    """``(earliest, latest)`` timelock the contract accepts in a block with timestamp
    ``now`` (seconds), both inclusive."""
    return now + MIN_LOCK_SECONDS, now + MAX_LOCK_SECONDS


def _position(log: Any) -> LogPosition:
    return LogPosition(block_number=int(log["blockNumber"]), block_hash=Web3.to_hex(log["blockHash"]),
                       tx_hash=Web3.to_hex(log["transactionHash"]), log_index=int(log["logIndex"]),
                       removed=bool(log.get("removed", False)))


def _address_topic(topic: bytes) -> str:
    if any(topic[:12]):
        raise MalformedLog("address topic has non-zero high bytes")
    return Web3.to_checksum_address(topic[12:])


def decode_log(log: Any) -> SwapEvent | None:
    """Decode one raw log (as ``eth_getLogs`` or a receipt gives it) of the HTLC.

    Returns None for a log whose first topic is none of the three events. Raises
    :class:`MalformedLog` for one that has such a topic but does not decode. The caller
    must check ``log["address"]`` is the HTLC: any contract can emit the same topics.
    """
    topics = [bytes(t) for t in log["topics"]]
    if not topics:
        return None
    data = bytes(log["data"])
    at = _position(log)
    try:
        if topics[0] == SWAP_CREATED_TOPIC and len(topics) == 4:
            token, amount, hashlock, timelock, order_id = abi_decode(
                ["address", "uint256", "bytes32", "uint256", "bytes"], data)
            return SwapCreated(swap_id=topics[1], buyer=_address_topic(topics[2]), seller=_address_topic(topics[3]),
                               token=Web3.to_checksum_address(token), amount=amount, hashlock=hashlock,
                               timelock=timelock, rtc_order_id=order_id.decode("utf-8", errors="replace"), at=at)
        if topics[0] == SWAP_CLAIMED_TOPIC and len(topics) == 2:
            (preimage,) = abi_decode(["bytes32"], data)
            return SwapClaimed(swap_id=topics[1], preimage=preimage, at=at)
        if topics[0] == SWAP_REFUNDED_TOPIC and len(topics) == 2 and not data:
            return SwapRefunded(swap_id=topics[1], at=at)
    except Exception as exc:  # noqa: BLE001 - eth_abi raises several types for bad data
        raise MalformedLog(f"undecodable HTLC log in tx {at.tx_hash}: {exc}") from exc
    if topics[0] in (SWAP_CREATED_TOPIC, SWAP_CLAIMED_TOPIC, SWAP_REFUNDED_TOPIC):
        raise MalformedLog(f"HTLC event with {len(topics)} topics in tx {at.tx_hash}")
    return None


class HTLCClient:
    """One deployed HTLC contract at ``address`` on the chain ``w3`` is connected to.

    Reads take ``block`` (a number, or ``"latest"``/``"safe"``/``"finalized"``) so a caller
    can read at a confirmation depth. Writes sign with a local ``LocalAccount`` and wait for
    the receipt (:func:`otc_bridge.chain.tx.transact`); they raise
    :class:`~otc_bridge.chain.tx.TransactionReverted` when the contract refuses (the
    reason is the contract's revert string, e.g. ``"wrong preimage"``, ``"timelock
    reached"``, ``"swap not open"``). For a two-step send (record the hash, then broadcast),
    pass ``self.contract.functions.<fn>(...)`` to :func:`otc_bridge.chain.tx.prepare`.
    """

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.contract = tx.contract_at(w3, load_artifact(HTLC), self.address)

    # --- reads -------------------------------------------------------------------------------

    def swap(self, swap_id: bytes, *, block: BlockIdentifier = "latest") -> Swap:
        """The swap ``swap_id`` as of ``block``; state :attr:`SwapState.NONE` (all fields
        zero) when it does not exist there."""
        buyer, seller, token, amount, hashlock, timelock, state = self.contract.functions.swaps(swap_id).call(
            block_identifier=block)
        return Swap(swap_id=bytes(swap_id), buyer=Web3.to_checksum_address(buyer),
                    seller=Web3.to_checksum_address(seller), token=Web3.to_checksum_address(token), amount=amount,
                    hashlock=bytes(hashlock), timelock=timelock, state=SwapState(state))

    def nonce(self, sender: str, *, block: BlockIdentifier = "latest") -> int:
        """How many swaps ``sender`` has created (the nonce of its next one)."""
        return self.contract.functions.nonces(Web3.to_checksum_address(sender)).call(block_identifier=block)

    def next_swap_id(self, sender: str) -> bytes:
        """The id ``sender``'s next create will get (as of the latest block)."""
        return swap_id_for(self.w3.eth.chain_id, self.address, sender, self.nonce(sender))

    def events(self, from_block: int, to_block: BlockIdentifier) -> list[SwapEvent]:
        """Every HTLC event in blocks ``from_block..to_block`` (inclusive), in chain order.
        The node bounds how many blocks one query may span; page large ranges."""
        logs = self.w3.eth.get_logs({"address": self.address, "fromBlock": from_block, "toBlock": to_block,
                                     "topics": [[SWAP_CREATED_TOPIC, SWAP_CLAIMED_TOPIC, SWAP_REFUNDED_TOPIC]]})
        return self._decode_all(logs)

    def receipt_events(self, receipt: TxReceipt) -> list[SwapEvent]:
        """The HTLC events in one transaction's receipt (logs of other contracts ignored)."""
        return self._decode_all(receipt["logs"])

    def _decode_all(self, logs: Any) -> list[SwapEvent]:
        events = []
        for log in sorted(logs, key=lambda entry: (entry["blockNumber"], entry["logIndex"])):
            if Web3.to_checksum_address(log["address"]) != self.address:
                continue
            event = decode_log(log)
            if event is not None:
                events.append(event)
        return events

    # --- writes ------------------------------------------------------------------------------

    def create_swap_eth(self, account: LocalAccount, *, seller: str, hashlock: bytes, timelock: int,
                        rtc_order_id: str, amount_wei: int, gas: int | None = None) -> tuple[SwapCreated, TxReceipt]:
        """Lock ``amount_wei`` from ``account`` (the buyer) for ``seller``; returns the
        ``SwapCreated`` event and the receipt."""
        call = self.contract.functions.createSwapETH(Web3.to_checksum_address(seller), hashlock, timelock,
                                                     rtc_order_id)
        return self._created(tx.transact(self.w3, account, call, value=amount_wei, gas=gas))

    def create_swap_erc20(self, account: LocalAccount, *, seller: str, token: str, amount: int, hashlock: bytes,
                          timelock: int, rtc_order_id: str, gas: int | None = None) -> tuple[SwapCreated, TxReceipt]:
        """Take ``amount`` base units of ``token`` from ``account`` (which must have approved
        this contract for at least that) and lock what arrives for ``seller``; returns the
        ``SwapCreated`` event (its ``amount`` is what arrived) and the receipt."""
        call = self.contract.functions.createSwapERC20(Web3.to_checksum_address(seller),
                                                       Web3.to_checksum_address(token), amount, hashlock, timelock,
                                                       rtc_order_id)
        return self._created(tx.transact(self.w3, account, call, gas=gas))

    def claim(self, account: LocalAccount, swap_id: bytes, preimage: bytes, *, gas: int | None = None) -> TxReceipt:
        """Claim ``swap_id`` with ``preimage``, sent (and its gas paid) by ``account``; the
        funds go to the swap's seller whoever sends it."""
        return tx.transact(self.w3, account, self.contract.functions.claim(swap_id, preimage), gas=gas)

    def refund(self, account: LocalAccount, swap_id: bytes, *, gas: int | None = None) -> TxReceipt:
        """Refund ``swap_id`` to its buyer, sent by ``account`` (anyone)."""
        return tx.transact(self.w3, account, self.contract.functions.refund(swap_id), gas=gas)

    def _created(self, receipt: TxReceipt) -> tuple[SwapCreated, TxReceipt]:
        created = [e for e in self.receipt_events(receipt) if isinstance(e, SwapCreated)]
        if len(created) != 1:
            raise MalformedLog(f"expected one SwapCreated in the receipt, found {len(created)}")
        return created[0], receipt
