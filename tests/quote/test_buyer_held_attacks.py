"""Buyer-held mode under every node-level escrow attack, at every status where one is
possible (docs/protocol.md §11, §12.5): the buyer either gets the RTC or refunds the quote;
the seller either gets the quote or keeps the RTC. Never both to one side.

Statuses: ``awaiting_lock`` (matched, the buyer has not locked) and ``locked`` (the buyer's
lock verified, before the reveal). After the reveal the job is completed into the bridge's
worker and the node refuses any further action on it."""

from __future__ import annotations

import pytest
from bridge_support import third_party
from quote_helpers import AMOUNT_MICRO_RTC, due_base_units, run_pass, view
from test_buyer_held import FUNDED, lock, sell_matched_buyer_held

ATTACKS = {"deliver": ("deliver",), "deliver+dispute": ("deliver", "dispute"),
           "refund_to_poster": ("deliver", "dispute", "cancel"), "steal_to_worker": ("deliver", "accept"),
           "expire": ()}
#: Where each attack leaves the escrow: in the bridge's custody for the match (the watch
#: accepts a delivered job at once), or back with the seller.
IN_CUSTODY = {"deliver", "steal_to_worker"}


def attack(dev_node, job_id: str, poster: str, name: str) -> None:
    third_party(dev_node, job_id, poster, *(ATTACKS[name] or ("expire",)))


@pytest.mark.parametrize("when", ["awaiting_lock", "locked"])
@pytest.mark.parametrize("name", list(ATTACKS))
def test_neither_trader_loses_to_the_other(api, bridge, evm, dev_node, seller, buyer, when, name):
    seller_eth, buyer_eth = (evm.w3.eth.get_balance(evm.accounts[r].address) for r in ("seller", "buyer"))
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    created = lock(evm, order_id, htlc_hash) if when == "locked" else None
    run_pass(bridge)
    attack(dev_node, view(api, order_id)["escrow_job_id"], seller.address, name)
    run_pass(bridge)  # the escrow watch sees it within one pass
    if created is None and view(api, order_id)["status"] == "matched":
        created = lock(evm, order_id, htlc_hash)  # the escrow is in custody: the match stands
        run_pass(bridge)
    if created is not None:
        api.reveal(buyer, order_id, secret=secret)
    for _ in range(3):
        run_pass(bridge)
        dev_node.confirm_pending()
    order = view(api, order_id)
    assert (order["status"] == "completed") == (name in IN_CUSTODY), order
    buyer_rtc, seller_rtc = dev_node.balance(buyer.address), dev_node.balance(seller.address)
    paid_seller = evm.w3.eth.get_balance(evm.accounts["seller"].address) - seller_eth
    if order["status"] == "completed":
        # The buyer got the RTC, and the lock was claimed for the seller (the bridge's claimer).
        assert buyer_rtc == FUNDED + AMOUNT_MICRO_RTC
        assert paid_seller == due_base_units("RTC/ETH") and order["quote_leg"]["state"] == "claimed"
        return
    # Nothing was released: the buyer keeps (or refunds) the quote, the seller keeps the RTC.
    assert order["status"] in ("cancelled", "expired"), order
    assert buyer_rtc == FUNDED and paid_seller == 0
    assert seller_rtc == FUNDED  # reward and the node's fee back to the poster
    assert "htlc_secret" not in order
    if created is not None:
        evm.increase_time(created.timelock - evm.latest_timestamp() + 1)
        evm.htlc.refund(evm.accounts["claimer"].signer, created.swap_id)
        spent_gas = buyer_eth - evm.w3.eth.get_balance(evm.accounts["buyer"].address)
        assert 0 <= spent_gas < 10**16  # the buyer's ETH is back, but for the lock's gas
