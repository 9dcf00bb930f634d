"""ETH swaps end to end: who gets paid, exactly how much, and when each call is refused."""

from __future__ import annotations

import pytest
from chain_helpers import ETH, eth_balance, gas_cost, new_secret, open_eth_swap, past_timelock

from otc_bridge.chain.htlc import SwapClaimed, SwapRefunded, SwapState
from otc_bridge.chain.tx import TransactionReverted

#: With a fixed gas limit, a refused call is mined and fails on chain (no estimate to stop it).
FIXED_GAS = 300_000


def test_claim_by_a_third_party_pays_the_seller_the_exact_amount(evm):
    seller, claimer = evm.accounts["seller"].address, evm.accounts["claimer"]
    created, preimage, _ = open_eth_swap(evm, amount=3 * ETH // 2)
    assert eth_balance(evm, evm.htlc.address) == 3 * ETH // 2
    seller_before, claimer_before = eth_balance(evm, seller), eth_balance(evm, claimer.address)
    receipt = evm.htlc.claim(claimer.signer, created.swap_id, preimage)
    assert eth_balance(evm, seller) - seller_before == 3 * ETH // 2  # the seller sent nothing, paid no gas
    assert claimer_before - eth_balance(evm, claimer.address) == gas_cost(receipt)
    assert eth_balance(evm, evm.htlc.address) == 0
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED
    (event,) = evm.htlc.receipt_events(receipt)
    assert isinstance(event, SwapClaimed)
    assert (event.swap_id, event.preimage) == (created.swap_id, preimage)


def test_seller_claiming_itself_receives_the_amount_less_its_gas(evm):
    seller = evm.accounts["seller"]
    created, preimage, _ = open_eth_swap(evm, amount=2 * ETH)
    before = eth_balance(evm, seller.address)
    receipt = evm.htlc.claim(seller.signer, created.swap_id, preimage)
    assert eth_balance(evm, seller.address) == before + 2 * ETH - gas_cost(receipt)


def test_refund_after_the_timelock_returns_everything_but_gas_to_the_buyer(evm):
    buyer = evm.accounts["buyer"]
    before = eth_balance(evm, buyer.address)
    created, _, create_receipt = open_eth_swap(evm, amount=ETH)
    past_timelock(evm, created.timelock)
    refund_receipt = evm.htlc.refund(buyer.signer, created.swap_id)
    assert eth_balance(evm, buyer.address) == before - gas_cost(create_receipt) - gas_cost(refund_receipt)
    assert eth_balance(evm, evm.htlc.address) == 0
    assert evm.htlc.swap(created.swap_id).state is SwapState.REFUNDED
    (event,) = evm.htlc.receipt_events(refund_receipt)
    assert isinstance(event, SwapRefunded) and event.swap_id == created.swap_id


def test_refund_sent_by_anyone_pays_the_buyer(evm):
    buyer, stranger = evm.accounts["buyer"].address, evm.spare_accounts[0]
    created, _, _ = open_eth_swap(evm, amount=ETH)
    past_timelock(evm, created.timelock)
    before = eth_balance(evm, buyer)
    evm.htlc.refund(stranger.signer, created.swap_id)
    assert eth_balance(evm, buyer) - before == ETH


def test_wrong_preimage_is_refused(evm):
    created, preimage, _ = open_eth_swap(evm)
    other, _ = new_secret()
    with pytest.raises(TransactionReverted, match="wrong preimage"):
        evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, other)
    assert evm.htlc.swap(created.swap_id).state is SwapState.OPEN


def test_claim_in_the_last_second_before_the_timelock_is_accepted(evm):
    created, preimage, _ = open_eth_swap(evm)
    evm.set_next_block_timestamp(created.timelock - 1)
    receipt = evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage, gas=FIXED_GAS)
    assert evm.w3.eth.get_block(receipt["blockNumber"])["timestamp"] == created.timelock - 1
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED


def test_claim_at_the_timelock_is_refused_on_chain(evm):
    created, preimage, _ = open_eth_swap(evm)
    evm.set_next_block_timestamp(created.timelock)
    with pytest.raises(TransactionReverted) as refused:
        evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage, gas=FIXED_GAS)
    assert refused.value.receipt["status"] == 0
    assert evm.w3.eth.get_block(refused.value.receipt["blockNumber"])["timestamp"] == created.timelock
    assert evm.htlc.swap(created.swap_id).state is SwapState.OPEN


def test_claim_after_the_timelock_is_refused(evm):
    created, preimage, _ = open_eth_swap(evm)
    evm.mine_at(created.timelock + 600)
    with pytest.raises(TransactionReverted, match="timelock reached"):
        evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)


def test_refund_before_the_timelock_is_refused(evm):
    created, _, _ = open_eth_swap(evm)
    with pytest.raises(TransactionReverted, match="timelock not reached"):
        evm.htlc.refund(evm.accounts["buyer"].signer, created.swap_id)
    evm.set_next_block_timestamp(created.timelock - 1)
    with pytest.raises(TransactionReverted):
        evm.htlc.refund(evm.accounts["buyer"].signer, created.swap_id, gas=FIXED_GAS)
    assert evm.htlc.swap(created.swap_id).state is SwapState.OPEN


def test_refund_at_exactly_the_timelock_is_accepted(evm):
    created, _, _ = open_eth_swap(evm)
    evm.set_next_block_timestamp(created.timelock)
    evm.htlc.refund(evm.accounts["buyer"].signer, created.swap_id, gas=FIXED_GAS)
    assert evm.htlc.swap(created.swap_id).state is SwapState.REFUNDED


def test_a_swap_ends_once(evm):
    claimer, buyer = evm.accounts["claimer"].signer, evm.accounts["buyer"].signer
    claimed, preimage, _ = open_eth_swap(evm, order_id="claimed")
    refunded, preimage_2, _ = open_eth_swap(evm, order_id="refunded")
    evm.htlc.claim(claimer, claimed.swap_id, preimage)
    with pytest.raises(TransactionReverted, match="swap not open"):
        evm.htlc.claim(claimer, claimed.swap_id, preimage)
    past_timelock(evm, max(claimed.timelock, refunded.timelock))
    with pytest.raises(TransactionReverted, match="swap not open"):  # claimed: no refund later
        evm.htlc.refund(buyer, claimed.swap_id)
    evm.htlc.refund(buyer, refunded.swap_id)
    with pytest.raises(TransactionReverted, match="swap not open"):
        evm.htlc.refund(buyer, refunded.swap_id)
    with pytest.raises(TransactionReverted, match="swap not open"):  # the state is checked first
        evm.htlc.claim(claimer, refunded.swap_id, preimage_2)
    assert evm.htlc.swap(claimed.swap_id).state is SwapState.CLAIMED
    assert evm.htlc.swap(refunded.swap_id).state is SwapState.REFUNDED
    assert eth_balance(evm, evm.htlc.address) == 0


def test_unknown_swap_can_be_neither_claimed_nor_refunded(evm):
    preimage, _ = new_secret()
    with pytest.raises(TransactionReverted, match="swap not open"):
        evm.htlc.claim(evm.accounts["claimer"].signer, b"\x01" * 32, preimage)
    with pytest.raises(TransactionReverted, match="swap not open"):
        evm.htlc.refund(evm.accounts["claimer"].signer, b"\x01" * 32)


def test_claim_reveals_the_preimage_in_the_log(evm):
    created, preimage, receipt = open_eth_swap(evm)
    claim = evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)
    events = evm.htlc.events(receipt["blockNumber"], claim["blockNumber"])
    assert [type(e).__name__ for e in events] == ["SwapCreated", "SwapClaimed"]
    assert events[1].preimage == preimage
    assert events[1].at.tx_hash == claim["transactionHash"].to_0x_hex()
