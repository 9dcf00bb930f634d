"""Talk to an EVM node: connect, sign transactions with a local key, send them, wait for them.

A transaction goes out in three steps, so a caller on the money path can record what it is
about to send before sending it (the signed transaction's hash is known before broadcast):

    signed = prepare(w3, account, client.contract.functions.claim(swap_id, preimage), fees=fees)
    ... commit an intent naming signed.hash ...
    broadcast(w3, signed)
    receipt = wait_for_receipt(w3, signed.hash)

:func:`transact` does all three for callers that need no intent (dev tools, tests).
Transport failures (``requests`` exceptions, web3's ``Web3RPCError``) propagate unchanged:
after one, a broadcast may or may not have reached the node; broadcasting the same
:class:`SignedTx` again is safe (same nonce, same hash), and signing the same fields again
gives the same hash (signatures are deterministic, RFC 6979).

Fees are explicit :class:`Fees` (wei per gas). A transaction stuck in the mempool is replaced at
its nonce with every fee at least :func:`replacement_floor` (docs/protocol.md §12.8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import TxReceipt

from otc_bridge.chain.artifacts import Artifact

#: Nodes accept a transaction that replaces a pending one (same sender, same nonce) only if
#: it raises the gas price, or both EIP-1559 fees, by at least this much (geth's
#: ``txpool.pricebump`` default; Nethermind and Besu also use 10 %).
REPLACEMENT_BUMP_PERCENT = 10
#: Gas of a plain ETH transfer (what a 0-wei transfer to oneself costs, to free a nonce).
TRANSFER_GAS = 21_000

#: Headroom over eth_estimateGas: state may change between the estimate and the block
#: (unused gas is not charged, so a generous limit costs nothing).
GAS_HEADROOM_PERCENT = 20


class ChainError(Exception):
    """Base of the errors this package raises about the chain."""


class TransactionReverted(ChainError):
    """The EVM refused the transaction: at estimate time (``reason`` is the revert string,
    ``tx_hash`` is None and nothing was sent) or on chain (receipt status 0, ``reason`` is
    ``"reverted on chain"``, ``receipt`` is set; the sender paid the gas)."""

    def __init__(self, reason: str, *, tx_hash: str | None = None, receipt: TxReceipt | None = None) -> None:
        super().__init__(reason if tx_hash is None else f"{reason} (tx {tx_hash})")
        self.reason = reason
        self.tx_hash = tx_hash
        self.receipt = receipt


class ReceiptTimeout(ChainError):
    """No receipt within the wait: the transaction may still be mined later, or dropped."""


@dataclass(frozen=True)
class Fees:
    """What one unit of gas of a transaction may cost, in wei: EIP-1559
    (``max_fee_per_gas_wei`` and ``max_priority_fee_per_gas_wei``, ``gas_price_wei`` None) or
    legacy (``gas_price_wei`` only). Raises ValueError on a mix, a negative fee, or a
    priority fee above the max fee (nodes refuse those)."""

    max_fee_per_gas_wei: int | None = None
    max_priority_fee_per_gas_wei: int | None = None
    gas_price_wei: int | None = None

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.max_fee_per_gas_wei, self.max_priority_fee_per_gas_wei)]
        if (self.legacy and any(given)) or (not self.legacy and not all(given)):
            raise ValueError("fees are either gas_price_wei alone or both EIP-1559 fees")
        if any(v is not None and v < 0 for v in (self.max_fee_per_gas_wei, self.max_priority_fee_per_gas_wei,
                                                 self.gas_price_wei)):
            raise ValueError("fees cannot be negative")
        if not self.legacy and self.max_priority_fee_per_gas_wei > self.max_fee_per_gas_wei:
            raise ValueError("the priority fee cannot exceed the max fee")

    @property
    def legacy(self) -> bool:
        return self.gas_price_wei is not None

    @property
    def ceiling_wei(self) -> int:
        """The most one unit of gas can cost: the gas price, or the max fee."""
        return self.gas_price_wei if self.legacy else self.max_fee_per_gas_wei

    def params(self) -> dict[str, int]:
        """The transaction fields: ``gasPrice``, or ``maxFeePerGas`` and ``maxPriorityFeePerGas``."""
        if self.legacy:
            return {"gasPrice": self.gas_price_wei}
        return {"maxFeePerGas": self.max_fee_per_gas_wei, "maxPriorityFeePerGas": self.max_priority_fee_per_gas_wei}

    def covers(self, other: Fees) -> bool:
        """True if both the fee cap and the priority fee here are at least ``other``'s (a
        gas price is both, as nodes compare a replacement)."""
        def caps(fees: Fees) -> tuple[int, int]:
            if fees.legacy:
                return fees.gas_price_wei, fees.gas_price_wei
            return fees.max_fee_per_gas_wei, fees.max_priority_fee_per_gas_wei
        return all(mine >= theirs for mine, theirs in zip(caps(self), caps(other), strict=True))

    def at_least(self, other: Fees) -> Fees:
        """Each fee raised to ``other``'s where that is higher; ``self`` if the kinds differ."""
        if self.legacy != other.legacy:
            return self
        if self.legacy:
            return Fees(gas_price_wei=max(self.gas_price_wei, other.gas_price_wei))
        return Fees(max(self.max_fee_per_gas_wei, other.max_fee_per_gas_wei),
                    max(self.max_priority_fee_per_gas_wei, other.max_priority_fee_per_gas_wei))

    def capped(self, cap_wei: int) -> Fees:
        """The max fee (or gas price) lowered to ``cap_wei`` if above it, the priority fee too."""
        if self.legacy:
            return Fees(gas_price_wei=min(self.gas_price_wei, cap_wei))
        top = min(self.max_fee_per_gas_wei, cap_wei)
        return Fees(top, min(self.max_priority_fee_per_gas_wei, top))


def replacement_floor(fees: Fees) -> Fees:
    """The lowest fees a node accepts for a transaction replacing one that pays ``fees``:
    each raised by :data:`REPLACEMENT_BUMP_PERCENT` percent (rounded up) plus 1 wei, so it is
    strictly higher even when a fee is 0."""
    return bumped(fees, REPLACEMENT_BUMP_PERCENT)


def bumped(fees: Fees, percent: int) -> Fees:
    """``fees`` with each fee raised by ``percent`` percent (rounded up) plus 1 wei, and never
    by less than :func:`replacement_floor` (``percent`` below 10 still gives the floor)."""
    percent = max(percent, REPLACEMENT_BUMP_PERCENT)

    def raise_wei(fee_wei: int) -> int:
        return fee_wei - (-fee_wei * percent // 100) + 1  # the percent rounded up, plus 1 wei

    if fees.legacy:
        return Fees(gas_price_wei=raise_wei(fees.gas_price_wei))
    return Fees(raise_wei(fees.max_fee_per_gas_wei), raise_wei(fees.max_priority_fee_per_gas_wei))


def next_base_fee_wei(w3: Web3) -> int | None:
    """The base fee of the next block, per gas in wei (one ``eth_feeHistory``), or None on a
    chain without one (no EIP-1559, or a base fee of 0: legacy gas prices suit both)."""
    # The last entry is the next block's: what the node will charge, including a base fee an
    # operator (or anvil_setNextBlockBaseFeePerGas) set for it. An EIP-1559 base fee never
    # decays below 7 wei, so 0 means there is none.
    base_fees = w3.eth.fee_history(1, "latest").get("baseFeePerGas") or [0]
    return int(base_fees[-1]) or None


def suggest_fees(w3: Web3) -> Fees:
    """The node's fees for a transaction that should be in the next block: on an EIP-1559
    chain the priority fee of ``eth_maxPriorityFeePerGas`` and a max fee of twice the next
    base fee plus it (room for six full blocks of base fee increases); else ``eth_gasPrice``."""
    base_wei = next_base_fee_wei(w3)
    if base_wei is None:
        return Fees(gas_price_wei=w3.eth.gas_price)
    tip_wei = w3.eth.max_priority_fee
    return Fees(2 * base_wei + tip_wei, tip_wei)


@dataclass(frozen=True)
class SignedTx:
    """A signed transaction ready to broadcast: ``raw`` (the RLP bytes), ``hash`` (``0x`` hex,
    the hash it will have on chain), ``sender``, ``nonce``, ``gas`` (the limit) and ``fees``."""

    raw: bytes
    hash: str
    sender: str
    nonce: int
    gas: int
    fees: Fees | None = None


def connect(rpc_url: str, *, timeout_seconds: float = 10.0) -> Web3:
    """A web3 client for the JSON-RPC endpoint ``rpc_url`` (HTTP), each request bounded by
    ``timeout_seconds``. Does not contact the node."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_seconds}))


def revert_reason(exc: Exception) -> str:
    """The revert string of a web3 ``ContractLogicError`` (``"wrong preimage"``), without
    web3's ``"execution reverted: "`` prefix; the exception's text otherwise."""
    message = str(getattr(exc, "message", None) or exc)
    prefix = "execution reverted: "
    return message[len(prefix):] if message.startswith(prefix) else message


def prepare(w3: Web3, account: LocalAccount, call: ContractFunction | ContractConstructor, *, value: int = 0,
            gas: int | None = None, nonce: int | None = None, fees: Fees | None = None) -> SignedTx:
    """Build and sign ``call`` from ``account`` with ``value`` wei attached.

    ``gas`` None: estimated (plus :data:`GAS_HEADROOM_PERCENT`), which runs the call against
    the latest block and raises :class:`TransactionReverted` (nothing sent) if it would revert.
    A given ``gas`` skips the estimate, so a call that reverts is mined and fails on chain.
    ``nonce`` None: the account's pending transaction count. ``fees`` None: web3's EIP-1559
    defaults from the node's suggestion; given: exactly those (what a replacement needs).
    """
    params: dict[str, Any] = {"from": account.address, "value": value, "chainId": w3.eth.chain_id,
                              "nonce": w3.eth.get_transaction_count(account.address, "pending") if nonce is None
                              else nonce}
    if gas is None:
        try:
            estimate = call.estimate_gas({"from": account.address, "value": value})
        except ContractLogicError as exc:
            raise TransactionReverted(revert_reason(exc)) from exc
        gas = estimate * (100 + GAS_HEADROOM_PERCENT) // 100
    params["gas"] = gas
    if fees is not None:
        params.update(fees.params())
    return _sign(account, call.build_transaction(params))


def prepare_cancel(w3: Web3, account: LocalAccount, *, nonce: int, fees: Fees) -> SignedTx:
    """Sign a 0-wei transfer from ``account`` to itself at ``nonce`` with ``fees``: sent as the
    replacement of a pending transaction that should no longer run, it uses up the nonce for
    :data:`TRANSFER_GAS` gas and does nothing else."""
    return _sign(account, {"from": account.address, "to": account.address, "value": 0, "chainId": w3.eth.chain_id,
                           "nonce": nonce, "gas": TRANSFER_GAS, **fees.params()})


def _sign(account: LocalAccount, tx: dict[str, Any]) -> SignedTx:
    signed = account.sign_transaction(tx)
    fees = (Fees(gas_price_wei=int(tx["gasPrice"])) if "gasPrice" in tx
            else Fees(int(tx["maxFeePerGas"]), int(tx["maxPriorityFeePerGas"])))
    return SignedTx(raw=bytes(signed.raw_transaction), hash=HexBytes(signed.hash).to_0x_hex(),
                    sender=account.address, nonce=int(tx["nonce"]), gas=int(tx["gas"]), fees=fees)


def broadcast(w3: Web3, signed: SignedTx) -> str:
    """Send ``signed`` to the node; returns its hash (``0x`` hex). Sending the same
    transaction again is not an error: a node that already holds it is a success."""
    try:
        w3.eth.send_raw_transaction(signed.raw)
    except Web3RPCError as refused:
        # Nodes word "already known" differently; asking for the transaction is unambiguous.
        try:
            w3.eth.get_transaction(signed.hash)
        except TransactionNotFound:
            raise refused from None
    return signed.hash


def find(w3: Web3, tx_hash: str) -> dict[str, Any] | None:
    """The node's record of ``tx_hash`` (pending: ``blockNumber`` None; or mined), or None
    when the node does not know it (never received, dropped, or reorged away)."""
    try:
        return dict(w3.eth.get_transaction(tx_hash))
    except TransactionNotFound:
        return None


def wait_for_receipt(w3: Web3, tx_hash: str, *, timeout_seconds: float = 120.0,
                     poll_seconds: float = 0.2) -> TxReceipt:
    """Poll for the receipt of ``tx_hash`` for at most ``timeout_seconds``.

    Returns it when the transaction succeeded (status 1). Raises :class:`TransactionReverted`
    (with the receipt) on status 0, :class:`ReceiptTimeout` when no receipt came in time.
    A receipt means "in the node's current chain": it says nothing about confirmations.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            receipt = None
        if receipt is not None:
            if receipt["status"] != 1:
                raise TransactionReverted("reverted on chain", tx_hash=tx_hash, receipt=receipt)
            return receipt
        if time.monotonic() >= deadline:
            raise ReceiptTimeout(f"no receipt for {tx_hash} after {timeout_seconds} s")
        time.sleep(poll_seconds)


def transact(w3: Web3, account: LocalAccount, call: ContractFunction | ContractConstructor, *, value: int = 0,
             gas: int | None = None, timeout_seconds: float = 120.0) -> TxReceipt:
    """:func:`prepare`, :func:`broadcast` and :func:`wait_for_receipt` in one call; raises
    what they raise."""
    signed = prepare(w3, account, call, value=value, gas=gas)
    broadcast(w3, signed)
    return wait_for_receipt(w3, signed.hash, timeout_seconds=timeout_seconds)


def deploy(w3: Web3, account: LocalAccount, artifact: Artifact, *args: Any,
           timeout_seconds: float = 120.0) -> str:
    """Deploy ``artifact`` with constructor ``args`` from ``account``; returns the new
    contract's checksummed address. Raises as :func:`transact`."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transact(w3, account, factory.constructor(*args), timeout_seconds=timeout_seconds)
    return Web3.to_checksum_address(receipt["contractAddress"])


def contract_at(w3: Web3, artifact: Artifact, address: str) -> Contract:
    """A web3 contract object for ``artifact``'s ABI at ``address`` (no call made)."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact.abi)
