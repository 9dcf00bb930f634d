"""The quote-chain watcher on anvil (docs/protocol.md §12): locks are verified against their
order, the first valid one is sticky, invalid ones are listed with their reason and never
settle anything, a seller's on-chain claim settles a seller-held order without a confirm,
a reorged lock is not counted, and a match without a valid lock by ``lock_by`` unwinds."""

from __future__ import annotations

import pytest
from quote_helpers import AMOUNT_MICRO_RTC, due_base_units, lock_eth, matched, run_pass, view

from otc_bridge.chain.htlc import ETH_TOKEN


def test_awaiting_lock_then_locked_then_claimed_by_the_seller_settles_without_a_confirm(
        api, bridge, evm, dev_node, seller, buyer):
    order_id, secret, order = matched(api, evm, seller, buyer)
    instructions = order["settlement_instructions"]
    assert (instructions["quote_verification"], instructions["preimage_holder"]) == ("evm", "seller")
    assert instructions["htlc_contract"] == evm.htlc.address and instructions["token_contract"] is None
    assert instructions["chain_id"] == 31337 and instructions["lock_by"] == order["matched_at"] + 3600
    assert "warning" in instructions
    run_pass(bridge)
    assert view(api, order_id)["quote_leg"]["state"] == "awaiting_lock"

    created = lock_eth(evm, order)
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert (leg["state"], leg["swap_id"]) == ("locked", "0x" + created.swap_id.hex())
    assert leg["timelock"] == created.timelock and leg["lock_tx"] == created.at.tx_hash

    seller_eth = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    receipt = evm.htlc.claim(evm.accounts["claimer"].signer, created.swap_id, bytes.fromhex(secret))
    assert evm.w3.eth.get_balance(evm.accounts["seller"].address) == seller_eth + due_base_units("RTC/ETH")
    summary = run_pass(bridge)  # nobody confirms: the watcher settles with the preimage the claim revealed
    assert summary["settled_from_chain"] == 1
    after = view(api, order_id)
    assert after["status"] == "payout_pending"
    assert after["quote_leg"]["state"] == "claimed"
    assert after["quote_leg"]["claim_tx"] == receipt["transactionHash"].to_0x_hex()
    assert dev_node.confirm_pending() == 1
    run_pass(bridge)
    done = view(api, order_id)
    assert done["status"] == "completed" and done["htlc_secret"] == secret
    assert dev_node.balance(buyer.address) == 1000 * 10**6 + AMOUNT_MICRO_RTC


def _bad_locks(evm, order, other):
    """One invalid lock per rule, each with the reason the order must show."""
    due = due_base_units("RTC/ETH")
    return [
        (dict(amount=due - 1), "amount too small"),
        (dict(hashlock="11" * 32), "wrong hashlock"),
        (dict(seller=evm.accounts["buyer"].address), "wrong seller"),
        (dict(timelock=order["matched_at"] + 2 * 3600), "timelock too short"),
        (dict(timelock=order["settle_by"] - 23 * 3600), "timelock too long"),
        (dict(rtc_order_id=other), "wrong hashlock"),  # tagged with another order's id: judged against that order
    ]


def test_invalid_locks_are_listed_with_their_reason_and_never_override_a_valid_lock(
        api, bridge, evm, dev_node, seller, buyer):
    order_id, secret, order = matched(api, evm, seller, buyer)
    other_id, _, _ = matched(api, evm, seller, buyer, price=3_000_000)
    for kwargs, reason in _bad_locks(evm, order, other_id):
        lock_eth(evm, order, **kwargs)
        run_pass(bridge)
        leg = view(api, kwargs.get("rtc_order_id", order_id))["quote_leg"]
        assert leg["state"] == "invalid" and leg["swap_id"] is None, leg
        assert leg["reason"].startswith(reason), leg
    assert view(api, order_id)["status"] == "matched"

    good = lock_eth(evm, order)
    later = lock_eth(evm, order)  # a second valid lock: the first stays the order's lock
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert (leg["state"], leg["swap_id"]) == ("locked", "0x" + good.swap_id.hex())
    # The seller claims the *later* lock: only a claim of the order's own lock settles anything.
    evm.htlc.claim(evm.accounts["seller"].signer, later.swap_id, bytes.fromhex(secret))
    assert run_pass(bridge)["settled_from_chain"] == 0
    assert view(api, order_id)["status"] == "matched"
    rows = bridge.db.read("SELECT valid, reason FROM quote_locks WHERE order_id = ? ORDER BY block_number",
                          (order_id,))
    assert [r["valid"] for r in rows] == [0, 0, 0, 0, 0, 1, 1]


def test_wrong_token_and_a_lock_before_the_match_are_invalid(api, bridge, evm, seller, buyer):
    status, body = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=2_000_000, eth_address=evm.accounts["seller"].address)
    assert status == 201, body
    order_id = body["order_id"]
    # Locked while the order is still open: mined before any match.
    lock_eth(evm, {"htlc_hash": body["htlc_hash"], "order_id": order_id, "matched_at": evm.latest_timestamp()})
    evm.increase_time(5)
    status, order = api.match(buyer, order_id, evm.accounts["buyer"].address)
    assert status == 200, order
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert leg["state"] == "awaiting_lock"  # mined before this match: not a lock of it at all
    # A USDC lock on an ETH order.
    usdc, buyer_account = evm.usdc, evm.accounts["buyer"]
    usdc.approve(buyer_account.signer, evm.htlc.address, 10**9)
    evm.htlc.create_swap_erc20(buyer_account.signer, seller=evm.accounts["seller"].address, token=usdc.address,
                               amount=10**9, hashlock=bytes.fromhex(order["htlc_hash"]),
                               timelock=order["matched_at"] + 13 * 3600, rtc_order_id=order_id)
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert leg["state"] == "invalid" and leg["reason"].startswith("wrong token"), leg
    assert ETH_TOKEN in leg["reason"]


def test_a_lock_reorged_away_before_its_confirmations_is_never_counted(api, bridge, evm, seller, buyer, tmp_path,
                                                                       dev_node):
    from bridge_support import bridge_env

    from otc_bridge.app import build_bridge
    from otc_bridge.config import Config
    settings = {**evm.env(), "OTC_EVM_CONFIRMATIONS": "3", "OTC_DB_PATH": str(bridge.config.db_path)}
    deep = build_bridge(Config.from_env(bridge_env(tmp_path, dev_node.url, **settings)), clock=evm.latest_timestamp)
    order_id, _, order = matched(api, evm, seller, buyer)
    run_pass(deep)
    lock_eth(evm, order)
    evm.mine(1)
    run_pass(deep)  # 1 confirmation of 3: not counted yet
    assert view(api, order_id)["quote_leg"]["state"] == "awaiting_lock"
    evm.reorg(2)  # the lock's block and the next one are replaced: the lock is gone
    evm.mine(5)
    run_pass(deep)
    assert view(api, order_id)["quote_leg"]["state"] == "awaiting_lock"
    assert deep.db.read_one("SELECT COUNT(*) FROM quote_locks")[0] == 0
    deep.db.close()


def test_a_counted_lock_whose_block_leaves_the_chain_is_uncounted(api, bridge, evm, seller, buyer):
    order_id, _, order = matched(api, evm, seller, buyer)
    lock_eth(evm, order)
    run_pass(bridge)  # confirmations 0 (dev): counted at once
    assert view(api, order_id)["quote_leg"]["state"] == "locked"
    evm.reorg(1)
    summary = run_pass(bridge)
    assert summary["quote_locks_reorged"] == 1
    assert view(api, order_id)["quote_leg"]["state"] == "awaiting_lock"


@pytest.mark.parametrize("locked", [False, True])
def test_a_match_without_a_valid_lock_by_lock_by_unwinds(api, bridge, evm, seller, buyer, locked):
    order_id, _, order = matched(api, evm, seller, buyer)
    if locked:
        lock_eth(evm, order)
    run_pass(bridge)
    evm.increase_time(3600 + 5)
    summary = run_pass(bridge)
    after = view(api, order_id)
    if locked:
        assert (after["status"], summary["unwound"]) == ("matched", 0)
    else:
        assert (after["status"], summary["unwound"]) == ("open", 1)  # back on the book, escrow held
        assert after["quote_leg"] is None and after["taker_wallet"] is None


def test_a_usdc_swap_settles_from_the_sellers_claim(api, bridge, evm, dev_node, seller, buyer):
    order_id, secret, order = matched(api, evm, seller, buyer, pair="RTC/USDC")
    assert order["settlement_instructions"]["token_contract"] == evm.usdc.address
    due, account = due_base_units("RTC/USDC"), evm.accounts["buyer"]
    evm.usdc.approve(account.signer, evm.htlc.address, due)
    created, _ = evm.htlc.create_swap_erc20(account.signer, seller=evm.accounts["seller"].address,
                                            token=evm.usdc.address, amount=due,
                                            hashlock=bytes.fromhex(order["htlc_hash"]),
                                            timelock=order["matched_at"] + 13 * 3600, rtc_order_id=order_id)
    run_pass(bridge)
    assert view(api, order_id)["quote_leg"]["state"] == "locked"
    before = evm.usdc.balance_of(evm.accounts["seller"].address)
    evm.htlc.claim(evm.accounts["seller"].signer, created.swap_id, bytes.fromhex(secret))
    assert evm.usdc.balance_of(evm.accounts["seller"].address) == before + due
    run_pass(bridge)
    assert dev_node.confirm_pending() == 1
    run_pass(bridge)
    assert view(api, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == 1000 * 10**6 + AMOUNT_MICRO_RTC


def test_seller_held_escrow_is_not_refunded_while_a_lock_with_its_hashlock_can_be_claimed(
        api, bridge, evm, dev_node, seller, buyer):
    """A buy order: the taker (RTC seller) holds the preimage. An invalid lock with the
    order's hashlock still pays the seller; refunding the taker's escrow at the unwind would
    let the seller claim the buyer's ETH and keep the RTC too."""
    status, body = api.create_order(buyer, side="buy", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=2_000_000, eth_address=evm.accounts["buyer"].address)
    assert status == 201, body
    order_id = body["order_id"]
    status, order = api.match(seller, order_id, evm.accounts["seller"].address)
    assert status == 200, order
    created = lock_eth(evm, order, amount=due_base_units("RTC/ETH") - 1)  # invalid: one wei short
    run_pass(bridge)
    assert view(api, order_id)["quote_leg"]["state"] == "invalid"
    evm.increase_time(3600 + 5)  # past lock_by: the match unwinds, the taker's escrow is due back
    run_pass(bridge)
    held = bridge.db.read_one("SELECT status FROM orders WHERE order_id = ?", (order_id,))
    assert held["status"] == "refund_pending"
    escrowed = dev_node.balance(seller.address)
    assert escrowed < 1000 * 10**6  # still in escrow
    evm.increase_time(13 * 3600)  # the lock's timelock passed: only its buyer can take it now
    evm.htlc.refund(evm.accounts["buyer"].signer, created.swap_id)
    run_pass(bridge)
    assert view(api, order_id)["status"] == "open"  # the taker refunded, the buy order back on the book
    assert dev_node.balance(seller.address) == 1000 * 10**6


def test_near_the_timelock_only_the_sellers_final_claim_releases(api, bridge, evm, dev_node, seller, buyer):
    """A preimage copied from a claim stuck in the mempool must not let the buyer take the
    RTC and then refund the quote: from timelock - margin a confirm is refused, and the
    seller's final claim settles the order through the watcher."""
    order_id, secret, order = matched(api, evm, seller, buyer)
    created = lock_eth(evm, order)
    run_pass(bridge)
    evm.increase_time(created.timelock - evm.latest_timestamp() - 7200 + 1)
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xcopied")
    assert status == 409 and "timelock is near" in body["error"], body
    assert bridge.db.read_one("SELECT htlc_secret, status FROM orders WHERE order_id = ?", (order_id,))[:] == \
        (None, "matched")
    evm.htlc.claim(evm.accounts["seller"].signer, created.swap_id, bytes.fromhex(secret))
    assert run_pass(bridge)["settled_from_chain"] == 1
    assert view(api, order_id)["status"] == "payout_pending"


def test_an_evm_orders_escrow_outlives_any_quote_lock(api, bridge, evm, seller):
    """Seller-held: the escrow must not go back to the seller (the node refunds a job past its
    TTL by itself) while a lock with the order's hashlock could still be claimed: up to the
    contract's 7-day timelock after settle_by."""
    status, body = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=2_000_000, eth_address=evm.accounts["seller"].address,
                                    ttl_seconds=86_400)
    assert status == 201, body
    row = bridge.db.read_one("SELECT escrow_ttl_seconds FROM orders WHERE order_id = ?", (body["order_id"],))
    assert row[0] == 86_400 + 48 * 3600 + 7 * 86_400 + 3600
    status, body = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=2_000_001, eth_address=evm.accounts["seller"].address,
                                    ttl_seconds=25 * 86_400)
    assert status == 400 and body["field"] == "ttl_seconds", body


def test_a_bridge_pointed_at_another_chain_counts_nothing(api, bridge, evm, seller, buyer, tmp_path, dev_node):
    from bridge_support import bridge_env

    from otc_bridge.app import build_bridge
    from otc_bridge.config import Config
    settings = {**evm.env(), "OTC_EVM_CHAIN_ID": "1", "OTC_DB_PATH": str(bridge.config.db_path)}
    wrong = build_bridge(Config.from_env(bridge_env(tmp_path, dev_node.url, **settings)), clock=evm.latest_timestamp)
    order_id, _, order = matched(api, evm, seller, buyer)
    lock_eth(evm, order)
    from otc_bridge.settlement import reconcile
    summary = reconcile.run_once(wrong)
    assert summary["chain_unavailable"] == 1 and summary["quote_locks_seen"] == 0
    assert view(api, order_id)["quote_leg"]["state"] == "awaiting_lock"
    wrong.db.close()
