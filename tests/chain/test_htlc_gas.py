"""What each HTLC call costs in gas, on anvil 1.7.1 with the contract as committed.

The figures are the contract's budget: a change that makes a call dearer must raise the
bound here on purpose. ``gasUsed`` of the whole transaction (21,000 base and calldata
included), a 20-byte order id:

    createSwapETH    a sender's first swap 140,915; later swaps 123,815 (its nonce slot exists)
    createSwapERC20  161,492 (test USDC; 195,692 when both the sender's nonce and the
                     contract's token balance are new slots)
    claim            ETH 47,788; test USDC 53,705
    refund           ETH 46,630; test USDC 47,747
"""

from __future__ import annotations

from chain_helpers import ETH, USDC, open_eth_swap, open_usdc_swap, past_timelock

#: Upper bounds: the measured figure plus about 1 %.
BUDGET = {"create_eth_first": 142_400, "create_eth_again": 125_100, "create_erc20_first": 197_700,
          "create_erc20_again": 163_200, "claim_eth": 48_300, "claim_erc20": 54_300, "refund_eth": 47_100,
          "refund_erc20": 48_300}


def test_gas_per_call_stays_within_budget(evm):
    used = {}
    claimer = evm.accounts["claimer"].signer
    eth_1, preimage_1, receipt = open_eth_swap(evm, amount=ETH, order_id="ord_0123456789abcdef")
    used["create_eth_first"] = receipt["gasUsed"]
    eth_2, _, receipt = open_eth_swap(evm, amount=ETH, order_id="ord_0123456789abcdef")
    used["create_eth_again"] = receipt["gasUsed"]
    evm.usdc.mint(claimer, evm.accounts["spare4"].address, 1000 * USDC)
    usdc_1, preimage_u, receipt = open_usdc_swap(evm, amount=100 * USDC, buyer="spare4",
                                                 order_id="ord_0123456789abcdef")
    used["create_erc20_first"] = receipt["gasUsed"]
    usdc_2, _, receipt = open_usdc_swap(evm, amount=100 * USDC, buyer="spare4", order_id="ord_0123456789abcdef")
    used["create_erc20_again"] = receipt["gasUsed"]
    used["claim_eth"] = evm.htlc.claim(claimer, eth_1.swap_id, preimage_1)["gasUsed"]
    used["claim_erc20"] = evm.htlc.claim(claimer, usdc_1.swap_id, preimage_u)["gasUsed"]
    past_timelock(evm, max(eth_2.timelock, usdc_2.timelock))
    used["refund_eth"] = evm.htlc.refund(claimer, eth_2.swap_id)["gasUsed"]
    used["refund_erc20"] = evm.htlc.refund(claimer, usdc_2.swap_id)["gasUsed"]
    print("gas used:", used)
    over = {name: (gas, BUDGET[name]) for name, gas in used.items() if gas > BUDGET[name]}
    assert not over, f"over budget (used, bound): {over}"
