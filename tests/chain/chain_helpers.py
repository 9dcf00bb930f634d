"""Helpers of the HTLC tests: secrets, timelocks, balances, gas, and the test-only contracts
(tests/chain/contracts, compiled into tests/chain/contracts/compiled by scripts/build_contracts)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from web3.contract import Contract
from web3.types import TxReceipt

from otc_bridge.chain import tx
from otc_bridge.chain.artifacts import load_artifact
from otc_bridge.chain.htlc import SwapCreated, hashlock_of
from otc_bridge.dev.chain import DevChain

TEST_CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
ETH = 10**18
USDC = 10**6
#: A lock comfortably inside the contract's window (the create's block comes a few seconds
#: after the latest block a test reads).
TWO_HOURS = 2 * 3600

# HostileReceiver's modes (tests/chain/contracts/HostileReceiver.vy).
ACCEPT, REENTER_CLAIM, REENTER_REFUND, REJECT = 0, 1, 2, 3


@dataclass(frozen=True)
class TestContracts:
    """The test-only contracts on the session's chain."""

    fee_token: Contract
    hostile: Contract


def deploy_test_contracts(chain: DevChain) -> TestContracts:
    deployer = chain.accounts["deployer"].signer
    fee_artifact = load_artifact("FeeToken", TEST_CONTRACTS_DIR)
    hostile_artifact = load_artifact("HostileReceiver", TEST_CONTRACTS_DIR)
    fee = tx.deploy(chain.w3, deployer, fee_artifact)
    hostile = tx.deploy(chain.w3, deployer, hostile_artifact, chain.htlc.address)
    return TestContracts(fee_token=tx.contract_at(chain.w3, fee_artifact, fee),
                         hostile=tx.contract_at(chain.w3, hostile_artifact, hostile))


def new_secret() -> tuple[bytes, bytes]:
    """``(preimage, hashlock)``: 32 random bytes and their sha256."""
    preimage = secrets.token_bytes(32)
    return preimage, hashlock_of(preimage)


def lock_until(chain: DevChain, seconds: int = TWO_HOURS) -> int:
    """A timelock ``seconds`` after the latest block."""
    return chain.latest_timestamp() + seconds


def eth_balance(chain: DevChain, address: str) -> int:
    return chain.w3.eth.get_balance(address)


def gas_cost(receipt: TxReceipt) -> int:
    """Wei the sender paid for ``receipt``'s transaction."""
    return receipt["gasUsed"] * receipt["effectiveGasPrice"]


def open_eth_swap(chain: DevChain, *, amount: int = 3 * ETH // 2, seller: str | None = None,
                  buyer: str = "buyer", order_id: str = "order-eth-1",
                  timelock: int | None = None) -> tuple[SwapCreated, bytes, TxReceipt]:
    """``buyer`` (a role) locks ``amount`` wei for ``seller`` (default: the seller role);
    returns the event, the preimage and the receipt."""
    preimage, hashlock = new_secret()
    created, receipt = chain.htlc.create_swap_eth(
        chain.accounts[buyer].signer, seller=seller or chain.accounts["seller"].address, hashlock=hashlock,
        timelock=timelock or lock_until(chain), rtc_order_id=order_id, amount_wei=amount)
    return created, preimage, receipt


def open_usdc_swap(chain: DevChain, *, amount: int = 250 * USDC, buyer: str = "buyer",
                   order_id: str = "order-usdc-1") -> tuple[SwapCreated, bytes, TxReceipt]:
    """``buyer`` approves and locks ``amount`` test-USDC base units for the seller."""
    preimage, hashlock = new_secret()
    account = chain.accounts[buyer].signer
    chain.usdc.approve(account, chain.htlc.address, amount)
    created, receipt = chain.htlc.create_swap_erc20(
        account, seller=chain.accounts["seller"].address, token=chain.usdc.address, amount=amount,
        hashlock=hashlock, timelock=lock_until(chain), rtc_order_id=order_id)
    return created, preimage, receipt


def past_timelock(chain: DevChain, timelock: int) -> None:
    """Mine a block at ``timelock`` (so a refund is due and a claim too late)."""
    chain.mine_at(timelock)
