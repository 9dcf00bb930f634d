"""The buyer-held mode on anvil (docs/protocol.md §12.5): the RTC buyer chooses the hashlock,
locks, reveals only against a verified lock, and the bridge claims the lock for the seller
once the buyer's payout is committed. Neither trader can lose funds to the other."""

from __future__ import annotations

import hashlib
import secrets

from bridge_support import third_party
from quote_helpers import AMOUNT_MICRO_RTC, PRICE_NANO_QUOTE, due_base_units, run_pass, view

from otc_bridge.client import Wallet

FUNDED = 1000 * 10**6


def preimage() -> tuple[str, str]:
    """``(preimage, htlc_hash)`` as 64 lower-case hex each."""
    raw = secrets.token_bytes(32)
    return raw.hex(), hashlib.sha256(raw).hexdigest()


def sell_matched_buyer_held(api, evm, seller: Wallet, buyer: Wallet, pair: str = "RTC/ETH"):
    status, created = api.create_order(seller, side="sell", pair=pair, amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE, eth_address=evm.accounts["seller"].address)
    assert status == 201, created
    secret, htlc_hash = preimage()
    status, body = api.match(buyer, created["order_id"], evm.accounts["buyer"].address, htlc_hash=htlc_hash)
    assert status == 200, body
    return created["order_id"], secret, htlc_hash, body


def lock(evm, order_id: str, htlc_hash: str, *, pair: str = "RTC/ETH", hours: int = 6):
    account, seller = evm.accounts["buyer"], evm.accounts["seller"].address
    timelock = evm.latest_timestamp() + hours * 3600 + 60
    if pair == "RTC/ETH":
        created, _ = evm.htlc.create_swap_eth(account.signer, seller=seller, hashlock=bytes.fromhex(htlc_hash),
                                              timelock=timelock, rtc_order_id=order_id,
                                              amount_wei=due_base_units(pair))
    else:
        evm.usdc.approve(account.signer, evm.htlc.address, due_base_units(pair))
        created, _ = evm.htlc.create_swap_erc20(account.signer, seller=seller, token=evm.usdc.address,
                                                amount=due_base_units(pair), hashlock=bytes.fromhex(htlc_hash),
                                                timelock=timelock, rtc_order_id=order_id)
    return created


def test_eth_sell_order_end_to_end(api, bridge, evm, dev_node, seller, buyer):
    order_id, secret, htlc_hash, matched = sell_matched_buyer_held(api, evm, seller, buyer)
    instructions = matched["settlement_instructions"]
    assert instructions["preimage_holder"] == "buyer" and "warning" not in instructions
    assert instructions["htlc_hash"] == htlc_hash and matched["seller_secret_void"] is True
    assert "htlc_secret" not in matched
    created = lock(evm, order_id, htlc_hash)
    run_pass(bridge)
    assert view(api, order_id)["quote_leg"]["state"] == "locked"

    seller_eth = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 200 and body["status"] == "payout_pending", body
    assert view(api, order_id)["htlc_secret"] == secret  # payout committed: the seller may read it
    summary = run_pass(bridge)
    assert summary["quote_claims_sent"] == 1
    run_pass(bridge)  # the claim was mined (automine): the watcher records it
    leg = view(api, order_id)["quote_leg"]
    assert leg["state"] == "claimed" and leg["swap_id"] == "0x" + created.swap_id.hex()
    # The seller got exactly the locked amount and paid no gas: the bridge's claimer did.
    assert evm.w3.eth.get_balance(evm.accounts["seller"].address) == seller_eth + due_base_units("RTC/ETH")
    assert dev_node.confirm_pending() == 1
    run_pass(bridge)
    assert view(api, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == FUNDED + AMOUNT_MICRO_RTC


def test_usdc_buy_order_end_to_end(api, bridge, evm, dev_node, seller, buyer):
    secret, htlc_hash = preimage()
    status, created = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE, eth_address=evm.accounts["buyer"].address,
                                       htlc_hash=htlc_hash)
    assert status == 201, created
    order_id = created["order_id"]
    status, matched = api.match(seller, order_id, evm.accounts["seller"].address)
    assert status == 200 and "htlc_secret" not in matched, matched  # the taker never learns a preimage
    assert matched["htlc_hash"] == htlc_hash
    lock(evm, order_id, htlc_hash, pair="RTC/USDC")
    run_pass(bridge)
    before = evm.usdc.balance_of(evm.accounts["seller"].address)
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 200 and body["status"] == "payout_pending", body
    run_pass(bridge)
    run_pass(bridge)
    assert evm.usdc.balance_of(evm.accounts["seller"].address) == before + due_base_units("RTC/USDC")
    dev_node.confirm_pending()
    run_pass(bridge)
    assert view(api, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == FUNDED + AMOUNT_MICRO_RTC
    assert dev_node.balance(seller.address) < FUNDED - AMOUNT_MICRO_RTC  # sold: reward + the node's fee


def _signed_reveal(api, wallet: Wallet, order_id: str, secret: str, timestamp: int):
    body = {"secret": secret, "wallet": wallet.address,
            "wallet_auth": wallet.auth("confirm_order", order_id, {}, timestamp=timestamp)}
    response = api.session.post(f"{api.base_url}/api/orders/{order_id}/confirm", json=body, timeout=30)
    return response.status_code, response.json()


def test_reveal_refusals_store_nothing(api, bridge, evm, dev_node, seller, buyer):
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    t = evm.latest_timestamp()  # each refused reveal burns its signature: sign each one anew
    status, body = _signed_reveal(api, buyer, order_id, secret, t)  # no lock yet
    assert status == 409 and "No verified quote lock" in body["error"], body
    status, body = _signed_reveal(api, buyer, order_id, "zz" * 32, t + 1)
    assert status == 400 and body["field"] == "secret", body
    status, body = _signed_reveal(api, seller, order_id, secret, t + 2)  # the seller may not reveal
    assert status == 403, body
    status, body = api.confirm(order_id, secret=secret, quote_tx="0xabc")  # unsigned
    assert status == 403, body
    created = lock(evm, order_id, htlc_hash, hours=4)
    run_pass(bridge)
    assert view(api, order_id)["quote_leg"]["state"] == "locked"
    late = evm.increase_time(created.timelock - evm.latest_timestamp() - 7200 + 1)  # past timelock - margin
    status, body = _signed_reveal(api, buyer, order_id, secret, late)
    assert status == 409 and "Too late" in body["error"], body
    stored = bridge.db.read_one("SELECT status, htlc_secret FROM orders WHERE order_id = ?", (order_id,))
    assert (stored["status"], stored["htlc_secret"]) == ("matched", None)
    assert dev_node.balance(buyer.address) == FUNDED


def test_hashlock_reuse_and_misplaced_htlc_hash_are_refused(api, bridge, evm, seller, buyer):
    order_id, _, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    status, created = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE + 1,
                                       eth_address=evm.accounts["seller"].address)
    assert status == 201, created
    status, body = api.match(buyer, created["order_id"], evm.accounts["buyer"].address, htlc_hash=htlc_hash)
    assert status == 409 and "used by an earlier order" in body["error"], body
    # The seller's own creation-time hashlock counts as used too.
    status, body = api.match(buyer, created["order_id"], evm.accounts["buyer"].address,
                             htlc_hash=created["htlc_hash"])
    assert status == 409, body
    status, body = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=PRICE_NANO_QUOTE + 2, eth_address=evm.accounts["seller"].address,
                                    htlc_hash=preimage()[1])
    assert status == 400 and body["field"] == "htlc_hash", body
    status, body = api.create_order(buyer, side="buy", pair="RTC/ERG", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                    price_nano_quote=PRICE_NANO_QUOTE, htlc_hash=preimage()[1],
                                    eth_address="9" + "f" * 50)
    assert status == 400 and body["field"] == "htlc_hash", body


def test_a_seller_clawback_before_the_reveal_costs_the_buyer_nothing(api, bridge, evm, dev_node, seller, buyer):
    """The seller takes the escrow back on the node (deliver as the worker, dispute and cancel
    as the poster) after the buyer locked. The reveal is refused, nothing is published, and
    the buyer refunds the lock after its timelock: each side keeps what it had."""
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    created = lock(evm, order_id, htlc_hash)
    run_pass(bridge)
    third_party(dev_node, view(api, order_id)["escrow_job_id"], seller.address, "deliver", "dispute", "cancel")
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 409 and "taken back" in body["error"], body
    assert bridge.db.read_one("SELECT htlc_secret FROM orders WHERE order_id = ?", (order_id,))[0] is None
    buyer_eth = evm.w3.eth.get_balance(evm.accounts["buyer"].address)
    evm.increase_time(created.timelock - evm.latest_timestamp() + 1)
    receipt = evm.htlc.refund(evm.accounts["claimer"].signer, created.swap_id)  # anyone may send it
    assert receipt["status"] == 1
    assert evm.w3.eth.get_balance(evm.accounts["buyer"].address) == buyer_eth + due_base_units("RTC/ETH")
    assert dev_node.balance(seller.address) == FUNDED  # the seller has the RTC back, and no ETH
    assert dev_node.balance(buyer.address) == FUNDED



def test_a_release_interrupted_until_timelock_minus_margin_is_not_resumed(api, bridge, evm, dev_node, seller, buyer):
    """The reveal won the claim but the node's deliver got no answer (settling). When the
    reconciler comes back after the lock's timelock - margin, the claim for the seller could
    no longer land safely: nothing has left escrow, so the order goes back to matched and no
    RTC moves; the buyer refunds the quote after the timelock."""
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    created = lock(evm, order_id, htlc_hash, hours=4)
    run_pass(bridge)
    dev_node.add_fault(endpoint="POST /agent/jobs/<job_id>/deliver", kind="drop_before", count=1)
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 200 and body["status"] == "settling", body
    evm.increase_time(created.timelock - evm.latest_timestamp() - 7200 + 1)
    run_pass(bridge)
    row = bridge.db.read_one("SELECT status FROM orders WHERE order_id = ?", (order_id,))
    assert row["status"] == "matched"
    codes = [r["reason"].split(":")[0] for r in bridge.db.read(
        "SELECT reason FROM order_events WHERE order_id = ? AND kind = 'alert'", (order_id,))]
    assert "release_too_late" in codes
    assert dev_node.balance(buyer.address) == FUNDED and dev_node.confirm_pending() == 0


def test_a_reveal_whose_claim_would_revert_is_refused(api, bridge, evm, dev_node, seller, buyer):
    """The seller's quote address refuses ETH (a contract that reverts when paid): a claim
    for it would revert, so the RTC must not go out against that lock, and nothing is stored."""
    from pathlib import Path

    from otc_bridge.chain import tx
    from otc_bridge.chain.artifacts import load_artifact

    artifact = load_artifact("HostileReceiver", Path(__file__).resolve().parents[1] / "chain" / "contracts")
    deployer = evm.accounts["deployer"].signer
    hostile = tx.contract_at(evm.w3, artifact, tx.deploy(evm.w3, deployer, artifact, evm.htlc.address))
    tx.transact(evm.w3, deployer, hostile.functions.configure(3, b"\0" * 32, b"\0" * 32))  # 3: reject payments
    status, created = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE, eth_address=hostile.address)
    assert status == 201, created
    secret, htlc_hash = preimage()
    status, body = api.match(buyer, created["order_id"], evm.accounts["buyer"].address, htlc_hash=htlc_hash)
    assert status == 200, body
    account = evm.accounts["buyer"]
    evm.htlc.create_swap_eth(account.signer, seller=hostile.address, hashlock=bytes.fromhex(htlc_hash),
                             timelock=evm.latest_timestamp() + 5 * 3600, rtc_order_id=created["order_id"],
                             amount_wei=due_base_units("RTC/ETH"))
    run_pass(bridge)
    assert view(api, created["order_id"])["quote_leg"]["state"] == "locked"
    status, body = api.reveal(buyer, created["order_id"], secret=secret)
    assert status == 409 and "would revert" in body["error"], body
    row = bridge.db.read_one("SELECT status, htlc_secret FROM orders WHERE order_id = ?", (created["order_id"],))
    assert (row["status"], row["htlc_secret"]) == ("matched", None)
    assert dev_node.balance(buyer.address) == FUNDED


def test_a_buyer_who_makes_and_claims_a_bogus_lock_gets_nothing(api, bridge, evm, dev_node, seller, buyer):
    """The buyer holds the preimage: a lock that pays the buyer himself (or pays too little)
    and that he claims back is never the order's lock, settles nothing, and the reveal stays
    refused."""
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    account = evm.accounts["buyer"]
    created, _ = evm.htlc.create_swap_eth(account.signer, seller=account.address, hashlock=bytes.fromhex(htlc_hash),
                                          timelock=evm.latest_timestamp() + 5 * 3600, rtc_order_id=order_id,
                                          amount_wei=due_base_units("RTC/ETH"))
    evm.htlc.claim(account.signer, created.swap_id, bytes.fromhex(secret))  # pays himself back
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert leg["state"] == "invalid" and leg["reason"].startswith("wrong seller"), leg
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 409 and "No verified quote lock" in body["error"], body
    run_pass(bridge)
    assert view(api, order_id)["status"] == "matched"
    assert dev_node.balance(buyer.address) == FUNDED


def test_a_relisted_buyer_held_buy_order_keeps_its_hashlock_and_settles_later(api, bridge, evm, dev_node, seller,
                                                                               buyer):
    """The first taker's escrow is taken back on the node: the buy order goes back on the
    book with the maker's own hashlock (the buyer still holds the preimage) and no quote leg;
    the next taker's match settles as usual."""
    secret, htlc_hash = preimage()
    status, created = api.create_order(buyer, side="buy", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE, eth_address=evm.accounts["buyer"].address,
                                       htlc_hash=htlc_hash)
    assert status == 201, created
    order_id = created["order_id"]
    status, matched = api.match(seller, order_id, evm.accounts["seller"].address)
    assert status == 200, matched
    third_party(dev_node, matched["escrow_job_id"], seller.address, "deliver", "dispute", "cancel")
    run_pass(bridge)
    relisted = view(api, order_id)
    assert (relisted["status"], relisted["htlc_hash"], relisted["quote_leg"]) == ("open", htlc_hash, None)
    second = Wallet.generate()
    dev_node.fund(second.address, "1000")
    status, matched = api.match(second, order_id, evm.accounts["seller"].address)
    assert status == 200 and matched["htlc_hash"] == htlc_hash and "htlc_secret" not in matched, matched
    lock(evm, order_id, htlc_hash)
    run_pass(bridge)
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 200 and body["status"] == "payout_pending", body
    run_pass(bridge)
    dev_node.confirm_pending()
    run_pass(bridge)
    assert view(api, order_id)["status"] == "completed"
    assert dev_node.balance(buyer.address) == FUNDED + AMOUNT_MICRO_RTC


def test_a_pending_payout_whose_claim_can_no_longer_land_is_voided(api, bridge, evm, dev_node, seller, buyer,
                                                                  tmp_path):
    """No claimer key, and the seller never claims: once the lock's timelock passes while the
    buyer's payout still waits on the node, the bridge voids the payout and pays the escrow's
    reward back to the seller; the buyer refunds the lock. Neither side keeps both legs."""
    from bridge_support import bridge_env

    from otc_bridge.app import build_bridge
    from otc_bridge.config import Config
    from otc_bridge.operator import audit
    settings = {k: v for k, v in evm.env().items() if k != "OTC_EVM_CLAIMER_KEY"}
    keyless = build_bridge(Config.from_env(bridge_env(tmp_path, dev_node.url, **settings,
                                                      OTC_DB_PATH=str(bridge.config.db_path))),
                           clock=evm.latest_timestamp)
    order_id, secret, htlc_hash, _ = sell_matched_buyer_held(api, evm, seller, buyer)
    created = lock(evm, order_id, htlc_hash, hours=4)
    run_pass(keyless)
    status, body = api.reveal(buyer, order_id, secret=secret)
    assert status == 200 and body["status"] == "payout_pending", body
    assert run_pass(keyless)["quote_claims_sent"] == 0  # no hot key: nobody claims for the seller
    evm.increase_time(created.timelock - evm.latest_timestamp() + 1)
    assert run_pass(keyless)["payouts_voided"] == 1
    assert dev_node.confirm_pending() == 1  # the custody refund (the voided payout is gone)
    run_pass(keyless)
    order = view(api, order_id)
    assert (order["status"], order["end_cause"]) == ("cancelled", "quote_unclaimable")
    assert dev_node.balance(buyer.address) == FUNDED
    fee = AMOUNT_MICRO_RTC * 5 // 100
    assert dev_node.balance(seller.address) == FUNDED - fee  # the node keeps its fee on a completed job
    buyer_eth = evm.w3.eth.get_balance(evm.accounts["buyer"].address)
    evm.htlc.refund(evm.accounts["claimer"].signer, created.swap_id)
    assert evm.w3.eth.get_balance(evm.accounts["buyer"].address) == buyer_eth + due_base_units("RTC/ETH")
    assert audit.audit(keyless, include_terminal=True) == []
    keyless.db.close()
