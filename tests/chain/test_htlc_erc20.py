"""Token swaps: test USDC end to end, allowances, and a token that takes a fee and returns no bool."""

from __future__ import annotations

import pytest
from chain_helpers import USDC, lock_until, new_secret, open_usdc_swap, past_timelock

from otc_bridge.chain import tx
from otc_bridge.chain.htlc import SwapCreated, SwapState
from otc_bridge.chain.tx import TransactionReverted


def test_usdc_swap_claim_pays_the_seller_exactly(evm):
    seller, buyer = evm.accounts["seller"].address, evm.accounts["buyer"].address
    seller_before, buyer_before = evm.usdc.balance_of(seller), evm.usdc.balance_of(buyer)
    created, preimage, _ = open_usdc_swap(evm, amount=250 * USDC)
    assert (created.token, created.amount) == (evm.usdc.address, 250 * USDC)
    assert evm.usdc.balance_of(evm.htlc.address) == 250 * USDC
    assert evm.usdc.allowance(buyer, evm.htlc.address) == 0  # exactly what was approved was taken
    evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)
    assert evm.usdc.balance_of(seller) - seller_before == 250 * USDC
    assert buyer_before - evm.usdc.balance_of(buyer) == 250 * USDC
    assert evm.usdc.balance_of(evm.htlc.address) == 0
    assert evm.htlc.swap(created.swap_id).state is SwapState.CLAIMED


def test_usdc_refund_after_the_timelock_returns_the_buyer_everything(evm):
    buyer = evm.accounts["buyer"]
    before = evm.usdc.balance_of(buyer.address)
    created, _, _ = open_usdc_swap(evm, amount=1_234_567)
    assert evm.usdc.balance_of(buyer.address) == before - 1_234_567
    past_timelock(evm, created.timelock)
    evm.htlc.refund(evm.spare_accounts[0].signer, created.swap_id)
    assert evm.usdc.balance_of(buyer.address) == before
    assert evm.usdc.balance_of(evm.htlc.address) == 0


def test_usdc_swap_without_allowance_is_refused(evm):
    buyer = evm.accounts["buyer"]
    _, hashlock = new_secret()
    kwargs = {"seller": evm.accounts["seller"].address, "token": evm.usdc.address, "hashlock": hashlock,
              "timelock": lock_until(evm), "rtc_order_id": "no-allowance"}
    with pytest.raises(TransactionReverted, match="allowance too low"):
        evm.htlc.create_swap_erc20(buyer.signer, amount=10 * USDC, **kwargs)
    evm.usdc.approve(buyer.signer, evm.htlc.address, 10 * USDC - 1)
    with pytest.raises(TransactionReverted, match="allowance too low"):
        evm.htlc.create_swap_erc20(buyer.signer, amount=10 * USDC, **kwargs)
    assert evm.htlc.nonce(buyer.address) == 0
    assert evm.usdc.balance_of(evm.htlc.address) == 0


def test_usdc_swap_beyond_the_balance_is_refused(evm):
    stranger = evm.spare_accounts[0]  # holds no test USDC
    evm.usdc.approve(stranger.signer, evm.htlc.address, USDC)
    _, hashlock = new_secret()
    with pytest.raises(TransactionReverted, match="balance too low"):
        evm.htlc.create_swap_erc20(stranger.signer, seller=evm.accounts["seller"].address, token=evm.usdc.address,
                                   amount=USDC, hashlock=hashlock, timelock=lock_until(evm), rtc_order_id="poor")


def test_fee_on_transfer_token_records_what_arrived(evm, test_contracts):
    fee_token, buyer, seller = test_contracts.fee_token, evm.accounts["buyer"], evm.accounts["seller"].address
    tx.transact(evm.w3, buyer.signer, fee_token.functions.mint(buyer.address, 10_000))
    tx.transact(evm.w3, buyer.signer, fee_token.functions.approve(evm.htlc.address, 10_000))
    preimage, hashlock = new_secret()
    created, _ = evm.htlc.create_swap_erc20(buyer.signer, seller=seller, token=fee_token.address, amount=10_000,
                                            hashlock=hashlock, timelock=lock_until(evm), rtc_order_id="fee")
    assert created.amount == 9_900  # 1 % burnt on the way in
    assert evm.htlc.swap(created.swap_id).amount == 9_900
    assert fee_token.functions.balanceOf(evm.htlc.address).call() == 9_900
    # The token returns no bool from transfer/transferFrom: the claim must still go through.
    evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, preimage)
    assert fee_token.functions.balanceOf(seller).call() == 9_900 - 99  # and 1 % on the way out
    assert fee_token.functions.balanceOf(evm.htlc.address).call() == 0


def test_token_address_must_be_a_contract(evm):
    buyer = evm.accounts["buyer"].signer
    _, hashlock = new_secret()
    common = {"seller": evm.accounts["seller"].address, "amount": 1, "hashlock": hashlock,
              "timelock": lock_until(evm), "rtc_order_id": "x"}
    with pytest.raises(TransactionReverted, match="token is zero"):
        evm.htlc.create_swap_erc20(buyer, token="0x" + "00" * 20, **common)
    with pytest.raises(TransactionReverted, match="token has no code"):
        evm.htlc.create_swap_erc20(buyer, token=evm.accounts["seller"].address, **common)


def test_token_swap_events_and_getter_agree(evm):
    created, _, receipt = open_usdc_swap(evm, amount=7 * USDC, order_id="usdc-order-7")
    (event,) = [e for e in evm.htlc.receipt_events(receipt) if isinstance(e, SwapCreated)]
    swap = evm.htlc.swap(created.swap_id)
    assert (swap.buyer, swap.seller, swap.token, swap.amount, swap.hashlock, swap.timelock) == (
        event.buyer, event.seller, event.token, event.amount, event.hashlock, event.timelock)
    assert event.rtc_order_id == "usdc-order-7" and not swap.is_eth
