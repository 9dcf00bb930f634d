"""Explicit fees and replacements (otc_bridge/chain/tx.py, docs/protocol.md §12.8): the
arithmetic of a bump, and on anvil a claim replaced in the mempool at the same nonce (EIP-1559
and legacy), a cancel that frees the nonce, and the node's next base fee read back.

Mining turns manual in the tests that look at the mempool (``evm_setAutomine`` false), once
their swap is open, and automatic again when they end, with the next block's base fee as it
was: an anvil snapshot covers neither.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chain_helpers import open_eth_swap

from otc_bridge.chain import tx
from otc_bridge.chain.htlc import SwapState
from otc_bridge.chain.tx import Fees

GWEI = 10**9


def test_a_bump_raises_every_fee_by_the_percent_rounded_up_plus_one_wei():
    assert tx.replacement_floor(Fees(10, 0)) == Fees(12, 1)  # 10 + ceil(1.0) + 1; a zero tip still rises
    assert tx.replacement_floor(Fees(3 * GWEI, GWEI)) == Fees(3_300_000_001, 1_100_000_001)
    assert tx.replacement_floor(Fees(gas_price_wei=7)) == Fees(gas_price_wei=9)  # 7 + ceil(0.7) + 1
    assert tx.bumped(Fees(100, 50), 20) == Fees(121, 61)
    assert tx.bumped(Fees(100, 50), 5) == tx.replacement_floor(Fees(100, 50))  # never under the floor
    for fees in (Fees(1, 1), Fees(999_999_999, 3), Fees(gas_price_wei=123_456_789)):
        floor = tx.replacement_floor(fees)
        assert floor.ceiling_wei * 100 >= fees.ceiling_wei * 110 + 100  # at least 10 % plus 1 wei
        assert floor.covers(fees) and not fees.covers(floor)


def test_fees_cap_and_compare_as_nodes_do():
    assert Fees(10 * GWEI, 3 * GWEI).capped(2 * GWEI) == Fees(2 * GWEI, 2 * GWEI)  # the tip never above the max
    assert Fees(gas_price_wei=9).capped(5) == Fees(gas_price_wei=5)
    assert Fees(10, 1).at_least(Fees(8, 2)) == Fees(10, 2)
    assert not Fees(20, 1).covers(Fees(10, 2))  # a replacement must raise both fees
    assert Fees(gas_price_wei=10).covers(Fees(10, 10)) and not Fees(gas_price_wei=10).covers(Fees(11, 1))
    for bad in ({"max_fee_per_gas_wei": 1}, {"max_fee_per_gas_wei": 1, "max_priority_fee_per_gas_wei": 2},
                {"gas_price_wei": 1, "max_fee_per_gas_wei": 1, "max_priority_fee_per_gas_wei": 1},
                {"gas_price_wei": -1}, {}):
        with pytest.raises(ValueError):
            Fees(**bad)


@pytest.fixture
def manual(evm) -> Iterator:
    """Call it to mine on demand from then on (next base fee 1 gwei). Automine and the next
    base fee are put back after (neither is part of an anvil snapshot)."""
    base_fee_wei = tx.next_base_fee_wei(evm.w3)

    def go_manual() -> None:
        evm.rpc("evm_setAutomine", False)
        evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(GWEI))

    try:
        yield go_manual
    finally:
        evm.rpc("anvil_dropAllTransactions")
        evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(base_fee_wei))
        evm.rpc("evm_setAutomine", True)


def pooled(chain, address: str) -> dict[int, str]:
    """``{nonce: tx hash}`` of ``address``'s transactions in anvil's mempool."""
    pending = chain.rpc("txpool_content")["pending"].get(address.lower(), {})
    return {int(nonce): entry["hash"] for nonce, entry in pending.items()}


def test_the_next_base_fee_and_the_suggestion_follow_the_node(evm, manual):
    manual()
    evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(7 * GWEI))
    assert tx.next_base_fee_wei(evm.w3) == 7 * GWEI
    tip = evm.w3.eth.max_priority_fee
    assert tx.suggest_fees(evm.w3) == Fees(14 * GWEI + tip, tip)


def test_a_claim_is_replaced_at_its_nonce_by_one_paying_the_floor(evm, manual):
    created, preimage, _ = open_eth_swap(evm)
    manual()
    claimer = evm.accounts["claimer"]
    call = evm.htlc.contract.functions.claim(created.swap_id, preimage)
    first = tx.prepare(evm.w3, claimer.signer, call, fees=Fees(3 * GWEI, GWEI))
    assert first.fees == Fees(3 * GWEI, GWEI) and first.nonce == evm.w3.eth.get_transaction_count(claimer.address)
    again = tx.prepare(evm.w3, claimer.signer, call, fees=first.fees, gas=first.gas, nonce=first.nonce)
    assert again.hash == first.hash  # signing the same fields again: the same transaction
    tx.broadcast(evm.w3, first)
    sent = evm.w3.eth.get_transaction(first.hash)
    assert (sent["maxFeePerGas"], sent["maxPriorityFeePerGas"]) == (3 * GWEI, GWEI)
    second = tx.prepare(evm.w3, claimer.signer, call, fees=tx.replacement_floor(first.fees), gas=first.gas,
                        nonce=first.nonce)
    tx.broadcast(evm.w3, second)
    assert pooled(evm, claimer.address) == {first.nonce: second.hash}
    assert tx.find(evm.w3, first.hash) is None and tx.find(evm.w3, second.hash)["blockNumber"] is None
    evm.mine()
    assert tx.wait_for_receipt(evm.w3, second.hash, timeout_seconds=5)["status"] == 1
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED


def test_a_legacy_claim_is_replaced_by_a_higher_gas_price(evm, manual):
    created, preimage, _ = open_eth_swap(evm)
    manual()
    claimer = evm.accounts["claimer"]
    call = evm.htlc.contract.functions.claim(created.swap_id, preimage)
    first = tx.prepare(evm.w3, claimer.signer, call, fees=Fees(gas_price_wei=3 * GWEI))
    tx.broadcast(evm.w3, first)
    assert evm.w3.eth.get_transaction(first.hash)["type"] == 0
    second = tx.prepare(evm.w3, claimer.signer, call, fees=tx.replacement_floor(first.fees), gas=first.gas,
                        nonce=first.nonce)
    assert second.fees == Fees(gas_price_wei=3_300_000_001)
    tx.broadcast(evm.w3, second)
    assert pooled(evm, claimer.address) == {first.nonce: second.hash}
    evm.mine()
    assert tx.wait_for_receipt(evm.w3, second.hash, timeout_seconds=5)["effectiveGasPrice"] == 3_300_000_001


def test_a_cancel_uses_up_the_nonce_of_a_claim_for_transfer_gas(evm, manual):
    created, preimage, _ = open_eth_swap(evm)
    manual()
    claimer = evm.accounts["claimer"]
    claim = tx.prepare(evm.w3, claimer.signer, evm.htlc.contract.functions.claim(created.swap_id, preimage),
                       fees=Fees(3 * GWEI, GWEI))
    tx.broadcast(evm.w3, claim)
    cancel = tx.prepare_cancel(evm.w3, claimer.signer, nonce=claim.nonce, fees=tx.replacement_floor(claim.fees))
    tx.broadcast(evm.w3, cancel)
    evm.mine()
    receipt = tx.wait_for_receipt(evm.w3, cancel.hash, timeout_seconds=5)
    assert (receipt["gasUsed"], receipt["to"]) == (tx.TRANSFER_GAS, claimer.address)
    assert evm.w3.eth.get_transaction_count(claimer.address) == claim.nonce + 1
    assert evm.htlc.swap(created.swap_id).state is SwapState.OPEN  # the claim never ran
