"""The create rules (timelock window, order id length, amount, seller), swap ids, and the
exact shape of what the contract stores and logs."""

from __future__ import annotations

import pytest
from chain_helpers import ETH, lock_until, new_secret, open_eth_swap
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3

from otc_bridge.chain import tx
from otc_bridge.chain.htlc import (
    ETH_TOKEN,
    MAX_LOCK_SECONDS,
    MIN_LOCK_SECONDS,
    SWAP_CREATED_TOPIC,
    MalformedLog,
    SwapCreated,
    SwapState,
    decode_log,
    hashlock_of,
    swap_id_for,
    timelock_bounds,
)
from otc_bridge.chain.tx import TransactionReverted

FIXED_GAS = 400_000


def _create_at(evm, block_time: int, timelock: int, order_id: str = "t"):
    """createSwapETH mined in a block at ``block_time`` (fixed gas: a refusal is mined too)."""
    _, hashlock = new_secret()
    evm.set_next_block_timestamp(block_time)
    return evm.htlc.create_swap_eth(evm.accounts["buyer"].signer, seller=evm.accounts["seller"].address,
                                    hashlock=hashlock, timelock=timelock, rtc_order_id=order_id, amount_wei=ETH,
                                    gas=FIXED_GAS)


@pytest.mark.parametrize(("offset", "accepted"), [
    (MIN_LOCK_SECONDS - 1, False), (MIN_LOCK_SECONDS, True),
    (MAX_LOCK_SECONDS, True), (MAX_LOCK_SECONDS + 1, False),
])
def test_timelock_window_is_one_hour_to_seven_days_inclusive(evm, offset, accepted):
    block_time = evm.latest_timestamp() + 10
    assert timelock_bounds(block_time) == (block_time + 3600, block_time + 7 * 86400)
    if accepted:
        created, _ = _create_at(evm, block_time, block_time + offset)
        assert evm.htlc.swap(created.swap_id).timelock == block_time + offset
    else:
        with pytest.raises(TransactionReverted) as refused:
            _create_at(evm, block_time, block_time + offset)
        assert refused.value.receipt["status"] == 0
        assert evm.htlc.nonce(evm.accounts["buyer"].address) == 0


def test_timelock_refusals_say_why(evm):
    _, hashlock = new_secret()
    buyer, seller = evm.accounts["buyer"].signer, evm.accounts["seller"].address
    for timelock, reason in ((lock_until(evm, 60), "timelock too soon"), (lock_until(evm, 30 * 86400), "too far"),
                             (0, "timelock too soon"), (2**256 - 1, "timelock too far")):
        with pytest.raises(TransactionReverted, match=reason):
            evm.htlc.create_swap_eth(buyer, seller=seller, hashlock=hashlock, timelock=timelock,
                                     rtc_order_id="t", amount_wei=ETH)


def test_order_id_is_at_most_64_bytes(evm):
    open_eth_swap(evm, order_id="x" * 64)
    open_eth_swap(evm, order_id="é" * 32)  # 64 bytes in UTF-8
    for too_long in ("x" * 65, "x" * 63 + "é"):  # bytes count, not characters
        with pytest.raises(TransactionReverted):
            open_eth_swap(evm, order_id=too_long)
    assert evm.htlc.nonce(evm.accounts["buyer"].address) == 2


def test_amount_and_seller_must_be_set(evm):
    _, hashlock = new_secret()
    buyer, seller = evm.accounts["buyer"].signer, evm.accounts["seller"].address
    with pytest.raises(TransactionReverted, match="amount is zero"):
        evm.htlc.create_swap_eth(buyer, seller=seller, hashlock=hashlock, timelock=lock_until(evm),
                                 rtc_order_id="t", amount_wei=0)
    evm.usdc.approve(buyer, evm.htlc.address, 10)
    with pytest.raises(TransactionReverted, match="amount is zero"):
        evm.htlc.create_swap_erc20(buyer, seller=seller, token=evm.usdc.address, amount=0, hashlock=hashlock,
                                   timelock=lock_until(evm), rtc_order_id="t")
    with pytest.raises(TransactionReverted, match="seller is zero"):
        evm.htlc.create_swap_eth(buyer, seller=ETH_TOKEN, hashlock=hashlock, timelock=lock_until(evm),
                                 rtc_order_id="t", amount_wei=ETH)


def test_swap_ids_follow_the_senders_nonce(evm):
    buyer, other = evm.accounts["buyer"].address, evm.spare_accounts[0]
    chain_id = evm.w3.eth.chain_id
    predicted = evm.htlc.next_swap_id(buyer)
    first, _, _ = open_eth_swap(evm)
    second, _, _ = open_eth_swap(evm)
    third, _, _ = open_eth_swap(evm, buyer=other.name)
    assert first.swap_id == predicted == swap_id_for(chain_id, evm.htlc.address, buyer, 0)
    assert second.swap_id == swap_id_for(chain_id, evm.htlc.address, buyer, 1)
    assert third.swap_id == swap_id_for(chain_id, evm.htlc.address, other.address, 0)
    assert len({first.swap_id, second.swap_id, third.swap_id}) == 3
    assert (evm.htlc.nonce(buyer), evm.htlc.nonce(other.address)) == (2, 1)
    # The id does not depend on the block: another contract address or chain gives another id.
    assert swap_id_for(chain_id + 1, evm.htlc.address, buyer, 0) != first.swap_id


def test_created_event_and_getter_hold_exactly_what_was_sent(evm):
    buyer, seller = evm.accounts["buyer"], evm.accounts["seller"].address
    preimage, hashlock = new_secret()
    timelock = lock_until(evm, 3 * 3600)
    created, receipt = evm.htlc.create_swap_eth(buyer.signer, seller=seller, hashlock=hashlock, timelock=timelock,
                                                rtc_order_id="ord_0123456789abcdef", amount_wei=123_456_789)
    assert (created.buyer, created.seller, created.token, created.amount, created.hashlock, created.timelock,
            created.rtc_order_id) == (buyer.address, seller, ETH_TOKEN, 123_456_789, hashlock, timelock,
                                      "ord_0123456789abcdef")
    assert (created.at.block_number, created.at.block_hash, created.at.tx_hash) == (
        receipt["blockNumber"], receipt["blockHash"].to_0x_hex(), receipt["transactionHash"].to_0x_hex())
    (raw,) = receipt["logs"]
    assert raw["topics"][0] == SWAP_CREATED_TOPIC
    assert raw["topics"][2][12:] == bytes.fromhex(buyer.address[2:])  # indexed: buyer, seller
    swap = evm.htlc.swap(created.swap_id)
    assert (swap.buyer, swap.seller, swap.token, swap.amount, swap.hashlock, swap.timelock, swap.state) == (
        buyer.address, seller, ETH_TOKEN, 123_456_789, hashlock, timelock, SwapState.OPEN)
    assert swap.is_eth and swap.claimable_at(timelock - 1) and not swap.claimable_at(timelock)
    assert swap.refundable_at(timelock) and not swap.refundable_at(timelock - 1)
    assert evm.htlc.events(receipt["blockNumber"], "latest") == [created]
    assert hashlock_of(preimage) == hashlock


def test_missing_swap_reads_as_none(evm):
    swap = evm.htlc.swap(b"\x07" * 32)
    assert swap.state is SwapState.NONE and swap.amount == 0 and not swap.claimable_at(0)


def test_plain_eth_transfer_to_the_contract_is_refused(evm):
    sender = evm.accounts["buyer"]
    with pytest.raises(Exception, match="revert"):
        evm.w3.eth.estimate_gas({"from": sender.address, "to": evm.htlc.address, "value": ETH})


def test_order_id_that_is_not_utf8_still_decodes(evm):
    """Anyone can open a swap: a log with arbitrary order-id bytes must not break a watcher."""
    buyer = evm.accounts["buyer"].signer
    _, hashlock = new_secret()
    selector = function_signature_to_4byte_selector("createSwapETH(address,bytes32,uint256,string)")
    # A string is ABI-encoded as bytes: encode raw bytes to bypass web3's str check.
    data = selector + abi_encode(["address", "bytes32", "uint256", "bytes"],
                                 [evm.accounts["seller"].address, hashlock, lock_until(evm), b"\xff\xfeord"])
    signed = buyer.sign_transaction({"to": evm.htlc.address, "value": ETH, "data": data, "gas": FIXED_GAS,
                                     "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": 31337,
                                     "nonce": evm.w3.eth.get_transaction_count(buyer.address)})
    tx_hash = evm.w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = tx.wait_for_receipt(evm.w3, Web3.to_hex(tx_hash))
    (event,) = evm.htlc.events(receipt["blockNumber"], receipt["blockNumber"])
    assert isinstance(event, SwapCreated) and event.rtc_order_id == "\ufffd\ufffdord"


def test_decode_log_ignores_other_topics_and_rejects_broken_ones():
    position = {"blockNumber": 1, "blockHash": b"\x01" * 32, "transactionHash": b"\x02" * 32, "logIndex": 0}
    assert decode_log({**position, "topics": [b"\x09" * 32], "data": b""}) is None
    assert decode_log({**position, "topics": [], "data": b""}) is None
    with pytest.raises(MalformedLog):
        decode_log({**position, "topics": [SWAP_CREATED_TOPIC, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32],
                    "data": b"\x00" * 5})
    with pytest.raises(MalformedLog):
        decode_log({**position, "topics": [SWAP_CREATED_TOPIC], "data": b""})
    with pytest.raises(ValueError, match="32 bytes"):
        hashlock_of(b"\x00" * 31)
