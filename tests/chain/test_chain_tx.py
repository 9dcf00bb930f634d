"""Sending in steps: the hash is known before the broadcast, a second broadcast of the same
transaction is harmless, and each way of failing has its own error."""

from __future__ import annotations

import pytest
from chain_helpers import new_secret, open_eth_swap

from otc_bridge.chain import tx
from otc_bridge.chain.htlc import SwapState
from otc_bridge.chain.tx import ReceiptTimeout, TransactionReverted


def test_prepared_claim_has_its_hash_before_broadcast_and_may_be_sent_twice(evm):
    created, preimage, _ = open_eth_swap(evm)
    claimer = evm.accounts["claimer"]
    signed = tx.prepare(evm.w3, claimer.signer, evm.htlc.contract.functions.claim(created.swap_id, preimage))
    assert signed.sender == claimer.address and signed.nonce == evm.w3.eth.get_transaction_count(claimer.address)
    assert tx.broadcast(evm.w3, signed) == signed.hash
    assert tx.broadcast(evm.w3, signed) == signed.hash  # already mined: still a success
    receipt = tx.wait_for_receipt(evm.w3, signed.hash)
    assert receipt["transactionHash"].to_0x_hex() == signed.hash
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED


def test_refusal_at_estimate_sends_nothing(evm):
    created, _, _ = open_eth_swap(evm)
    claimer = evm.accounts["claimer"]
    nonce = evm.w3.eth.get_transaction_count(claimer.address)
    wrong, _ = new_secret()
    with pytest.raises(TransactionReverted) as refused:
        tx.prepare(evm.w3, claimer.signer, evm.htlc.contract.functions.claim(created.swap_id, wrong))
    assert (refused.value.reason, refused.value.tx_hash, refused.value.receipt) == ("wrong preimage", None, None)
    assert evm.w3.eth.get_transaction_count(claimer.address) == nonce


def test_refusal_on_chain_carries_the_receipt(evm):
    wrong, _ = new_secret()
    claimer = evm.accounts["claimer"]
    signed = tx.prepare(evm.w3, claimer.signer, evm.htlc.contract.functions.claim(b"\x05" * 32, wrong), gas=100_000)
    tx.broadcast(evm.w3, signed)
    with pytest.raises(TransactionReverted) as refused:
        tx.wait_for_receipt(evm.w3, signed.hash)
    assert refused.value.tx_hash == signed.hash and refused.value.receipt["status"] == 0


def test_no_receipt_in_time_is_a_timeout(evm):
    with pytest.raises(ReceiptTimeout):
        tx.wait_for_receipt(evm.w3, "0x" + "ab" * 32, timeout_seconds=0.2, poll_seconds=0.05)
