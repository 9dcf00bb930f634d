"""Contracts as parties: a receiver that calls back into the HTLC when paid gets paid once and
its call back is refused; a receiver that refuses payment cannot claim, and the buyer can
still take the funds back after the timelock."""

from __future__ import annotations

import pytest
from chain_helpers import (
    ACCEPT,
    ETH,
    REENTER_CLAIM,
    REENTER_REFUND,
    REJECT,
    eth_balance,
    lock_until,
    new_secret,
    open_eth_swap,
    past_timelock,
)

from otc_bridge.chain import tx
from otc_bridge.chain.htlc import SwapState
from otc_bridge.chain.tx import TransactionReverted


def _configure(evm, hostile, mode: int, target: bytes = b"\x00" * 32, preimage: bytes = b"\x00" * 32) -> None:
    tx.transact(evm.w3, evm.accounts["deployer"].signer, hostile.functions.configure(mode, target, preimage))


def _hostile_state(hostile) -> tuple[int, bool, int]:
    return (hostile.functions.attempts().call(), hostile.functions.reentered().call(),
            hostile.functions.received().call())


def test_seller_reentering_claim_of_the_same_swap_is_paid_once(evm, test_contracts):
    hostile = test_contracts.hostile
    # Someone else's swap keeps enough ETH in the contract for a second payment to be possible.
    bystander, _, _ = open_eth_swap(evm, amount=5 * ETH, order_id="bystander")
    created, preimage, _ = open_eth_swap(evm, amount=2 * ETH, seller=hostile.address)
    _configure(evm, hostile, REENTER_CLAIM, created.swap_id, preimage)
    evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)
    assert _hostile_state(hostile) == (1, False, 2 * ETH)
    assert eth_balance(evm, hostile.address) == 2 * ETH
    assert eth_balance(evm, evm.htlc.address) == 5 * ETH
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED
    assert evm.htlc.swap(bystander.swap_id).state is SwapState.OPEN


def test_reentry_is_refused_even_into_another_valid_claim(evm, test_contracts):
    """The lock, not only the state check: a second swap the call back could legally claim
    stays open until claimed in a transaction of its own."""
    hostile = test_contracts.hostile
    first, preimage_1, _ = open_eth_swap(evm, amount=ETH, seller=hostile.address, order_id="one")
    second, preimage_2, _ = open_eth_swap(evm, amount=ETH, seller=hostile.address, order_id="two")
    _configure(evm, hostile, REENTER_CLAIM, second.swap_id, preimage_2)
    evm.htlc.claim(evm.accounts["claimer"].signer, first.swap_id, preimage_1)
    assert _hostile_state(hostile) == (1, False, ETH)
    assert evm.htlc.swap(second.swap_id).state is SwapState.OPEN
    _configure(evm, hostile, ACCEPT)
    evm.htlc.claim(evm.accounts["claimer"].signer, second.swap_id, preimage_2)
    assert eth_balance(evm, hostile.address) == 2 * ETH


def test_buyer_reentering_refund_is_refunded_once(evm, test_contracts):
    hostile = test_contracts.hostile
    bystander, _, _ = open_eth_swap(evm, amount=5 * ETH, order_id="bystander")
    _, hashlock = new_secret()
    timelock = lock_until(evm)
    # The hostile contract creates the swap, so it is the buyer a refund pays.
    receipt = tx.transact(evm.w3, evm.accounts["deployer"].signer,
                          hostile.functions.createSwap(evm.accounts["seller"].address, hashlock, timelock),
                          value=3 * ETH)
    (created,) = evm.htlc.receipt_events(receipt)
    assert created.buyer == hostile.address
    _configure(evm, hostile, REENTER_REFUND, created.swap_id)
    past_timelock(evm, timelock)
    tx.transact(evm.w3, evm.accounts["deployer"].signer, hostile.functions.callRefund(created.swap_id))
    assert _hostile_state(hostile) == (1, False, 3 * ETH)
    assert eth_balance(evm, hostile.address) == 3 * ETH
    assert eth_balance(evm, evm.htlc.address) == 5 * ETH
    assert evm.htlc.swap(bystander.swap_id).state is SwapState.OPEN
    assert evm.htlc.swap(created.swap_id).state is SwapState.REFUNDED


def test_seller_refusing_payment_cannot_claim_and_the_buyer_gets_it_back(evm, test_contracts):
    hostile = test_contracts.hostile
    _configure(evm, hostile, REJECT)
    created, preimage, _ = open_eth_swap(evm, amount=ETH, seller=hostile.address)
    with pytest.raises(TransactionReverted):
        evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)
    assert evm.htlc.swap(created.swap_id).state is SwapState.OPEN
    past_timelock(evm, created.timelock)
    buyer = evm.accounts["buyer"].address
    before = eth_balance(evm, buyer)
    evm.htlc.refund(evm.accounts["claimer"].signer, created.swap_id)
    assert eth_balance(evm, buyer) - before == ETH
