"""Talk to an EVM node: connect, sign transactions with a local key, send them, wait for them.

A transaction goes out in three steps, so a caller on the money path can record what it is
about to send before sending it (the signed transaction's hash is known before broadcast):

    signed = prepare(w3, account, client.contract.functions.claim(swap_id, preimage))
    ... commit an intent naming signed.hash ...
    broadcast(w3, signed)
    receipt = wait_for_receipt(w3, signed.hash)

:func:`transact` does all three for callers that need no intent (dev tools, tests).
Transport failures (``requests`` exceptions, web3's ``Web3RPCError``) propagate unchanged:
after one, a broadcast may or may not have reached the node; broadcasting the same
:class:`SignedTx` again is safe (same nonce, same hash).
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
class SignedTx:
    """A signed transaction ready to broadcast: ``raw`` (the RLP bytes), ``hash`` (``0x`` hex,
    the hash it will have on chain), ``sender``, ``nonce``, and ``gas`` (the limit)."""

    raw: bytes
    hash: str
    sender: str
    nonce: int
    gas: int


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
            gas: int | None = None, nonce: int | None = None) -> SignedTx:
    """Build and sign ``call`` from ``account`` with ``value`` wei attached.

    ``gas`` None: estimated (plus :data:`GAS_HEADROOM_PERCENT`), which runs the call against
    the latest block and raises :class:`TransactionReverted` (nothing sent) if it would revert.
    A given ``gas`` skips the estimate, so a call that reverts is mined and fails on chain.
    ``nonce`` None: the account's pending transaction count. Fees (EIP-1559) come from the
    node's suggestion.
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
    tx = call.build_transaction(params)
    signed = account.sign_transaction(tx)
    return SignedTx(raw=bytes(signed.raw_transaction), hash=HexBytes(signed.hash).to_0x_hex(),
                    sender=account.address, nonce=params["nonce"], gas=gas)


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
