"""The bridge's claim stuck in the mempool (docs/protocol.md §12.8), on anvil: replaced at the
same nonce with fees raised by at least 10 % plus 1 wei, never above the cap, recorded before
each broadcast so a crash anywhere is finished by the next pass, and counted once whichever
transaction lands (the watcher's final ``SwapClaimed``).

Mining is by hand once the buyer's payout is committed (``evm_setAutomine`` false, the next
base fee set with ``anvil_setNextBlockBaseFeePerGas``); a claim is kept out of blocks by a
base fee above its max fee, or by a block gas limit too small for it. Logs count one block
deep (``OTC_EVM_CONFIRMATIONS=1``), so a mined claim is seen by the claimer before the
watcher counts it. ``OTC_EVM_CLAIM_BUMP_SECONDS=0`` unless a test is about the seconds.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator

import pytest
from bridge_support import bridge_env, dies_at
from quote_helpers import AMOUNT_MICRO_RTC, PRICE_NANO_QUOTE, due_base_units, run_pass, view

from otc_bridge import crashpoints
from otc_bridge.app import build_bridge
from otc_bridge.chain import tx
from otc_bridge.chain.tx import Fees
from otc_bridge.config import Config
from otc_bridge.settlement import reconcile
from otc_bridge.storage import quote_locks

GWEI = 10**9
SETTINGS = {"OTC_EVM_CONFIRMATIONS": "1", "OTC_EVM_CLAIM_BUMP_SECONDS": "0", "OTC_EVM_CLAIM_BUMP_BLOCKS": "3"}


@pytest.fixture
def bridge_config(tmp_path, dev_node, evm) -> Config:
    return Config.from_env(bridge_env(tmp_path, dev_node.url, **{**evm.env(), **SETTINGS}))


class Miner:
    """Mining by hand on the test's chain, and what the claimer has in anvil's mempool."""

    def __init__(self, evm) -> None:
        self.evm = evm
        self.claimer = evm.accounts["claimer"].address
        self.block_gas_limit = evm.w3.eth.get_block("latest")["gasLimit"]

    def manual(self) -> None:
        self.evm.rpc("evm_setAutomine", False)
        self.base_fee(GWEI)

    def base_fee(self, wei: int) -> None:
        self.evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(wei))

    def mine(self, blocks: int = 1, *, gas_limit: int | None = None) -> None:
        """Mine ``blocks`` blocks, each holding at most ``gas_limit`` gas if given."""
        if gas_limit is not None:
            self.evm.rpc("anvil_setBlockGasLimit", hex(gas_limit))
        for _ in range(blocks):
            self.evm.rpc("evm_mine")
        self.evm.rpc("anvil_setBlockGasLimit", hex(self.block_gas_limit))

    def pool(self) -> dict[int, str]:
        """``{nonce: tx hash}`` of the claimer's pending transactions."""
        pending = self.evm.rpc("txpool_content")["pending"].get(self.claimer.lower(), {})
        return {int(nonce): entry["hash"] for nonce, entry in pending.items()}

    def nonce(self) -> int:
        return self.evm.w3.eth.get_transaction_count(self.claimer)


@pytest.fixture
def miner(evm) -> Iterator[Miner]:
    """A :class:`Miner`; automine, the block gas limit and the next base fee put back after
    (no anvil snapshot covers them)."""
    base_fee_wei = tx.next_base_fee_wei(evm.w3)
    found = Miner(evm)
    try:
        yield found
    finally:
        evm.rpc("anvil_dropAllTransactions")
        evm.rpc("anvil_setBlockGasLimit", hex(found.block_gas_limit))
        evm.rpc("anvil_setNextBlockBaseFeePerGas", hex(base_fee_wei))
        evm.rpc("evm_setAutomine", True)


def paid(api, bridge, evm, seller, buyer) -> str:
    """A buyer-held RTC/ETH sell order in ``payout_pending``, its lock open; its id."""
    status, created = api.create_order(seller, side="sell", pair="RTC/ETH", amount_micro_rtc=AMOUNT_MICRO_RTC,
                                       price_nano_quote=PRICE_NANO_QUOTE, eth_address=evm.accounts["seller"].address)
    assert status == 201, created
    order_id, raw = created["order_id"], secrets.token_bytes(32)
    status, body = api.match(buyer, order_id, evm.accounts["buyer"].address, htlc_hash=hashlib.sha256(raw).hexdigest())
    assert status == 200, body
    evm.htlc.create_swap_eth(evm.accounts["buyer"].signer, seller=evm.accounts["seller"].address,
                             hashlock=hashlib.sha256(raw).digest(), timelock=evm.latest_timestamp() + 6 * 3600,
                             rtc_order_id=order_id, amount_wei=due_base_units("RTC/ETH"))
    evm.mine()  # one block deep: counted
    run_pass(bridge)
    status, body = api.reveal(buyer, order_id, secret=raw.hex())
    assert status == 200 and body["status"] == "payout_pending", body
    return order_id


def second_bridge(bridge, evm, dev_node, tmp_path, clock, **settings: str):
    """Another bridge on the same database and chain with ``settings`` changed (close it)."""
    env = bridge_env(tmp_path, dev_node.url, **{**evm.env(), **SETTINGS, **settings},
                     OTC_DB_PATH=str(bridge.config.db_path))
    return build_bridge(Config.from_env(env), clock=clock)


def sent(bridge, order_id: str) -> list[quote_locks.ClaimTx]:
    """The claimer's recorded transactions for the order, oldest first."""
    rows = bridge.db.read("SELECT event_id, order_id, node_ref, detail FROM order_events WHERE order_id = ? AND "
                          "node_endpoint = ? AND node_outcome = 'intent' ORDER BY event_id",
                          (order_id, quote_locks.CLAIM_ENDPOINT))
    return [quote_locks.ClaimTx.from_row(row) for row in rows]


def outcomes(bridge, order_id: str) -> list[tuple[str, str | None]]:
    return [(r["node_outcome"], r["node_ref"]) for r in bridge.db.read(
        "SELECT node_outcome, node_ref FROM order_events WHERE order_id = ? AND node_endpoint = ? AND "
        "node_outcome != 'intent' ORDER BY event_id", (order_id, quote_locks.CLAIM_ENDPOINT))]


def alerts(bridge, order_id: str) -> list[str]:
    return [r["reason"].split(":")[0] for r in bridge.db.read(
        "SELECT reason FROM order_events WHERE order_id = ? AND kind = 'alert'", (order_id,))]


def fees(claim: quote_locks.ClaimTx) -> Fees:
    return Fees(claim.max_fee_per_gas_wei, claim.max_priority_fee_per_gas_wei)


def raises_enough(new: quote_locks.ClaimTx, old: quote_locks.ClaimTx) -> bool:
    """Both fees at least 10 % plus 1 wei above ``old``'s: what nodes require of a replacement."""
    return (new.max_fee_per_gas_wei * 100 >= old.max_fee_per_gas_wei * 110 + 100
            and new.max_priority_fee_per_gas_wei * 100 >= old.max_priority_fee_per_gas_wei * 110 + 100)


def settle_and_check(bridge, api, evm, miner: Miner, order_id: str, *, landed: str, nonce: int,
                     seller_wei: int) -> None:
    """Mine what is pending and one block more (the watcher counts one block deep): the leg
    is claimed by ``landed``, the seller got the lock exactly once, the claimer used ``nonce``
    and no other."""
    miner.base_fee(GWEI)
    miner.mine(2)
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert (leg["state"], leg["claim_tx"]) == ("claimed", landed), leg
    assert evm.w3.eth.get_balance(evm.accounts["seller"].address) == seller_wei + due_base_units("RTC/ETH")
    assert miner.nonce() == nonce + 1 and miner.pool() == {}
    assert run_pass(bridge)["quote_claims_sent"] == 0


def test_a_claim_stuck_under_a_risen_base_fee_is_replaced_at_its_nonce_and_counts_once(api, bridge, evm, miner,
                                                                                       seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    miner.manual()
    nonce = miner.nonce()
    assert run_pass(bridge)["quote_claims_sent"] == 1
    (first,) = sent(bridge, order_id)
    tip = evm.w3.eth.max_priority_fee
    assert (first.nonce, fees(first)) == (nonce, Fees(2 * GWEI + tip, tip))  # the node's suggestion
    assert miner.pool() == {nonce: first.tx_hash}
    miner.base_fee(10 * GWEI)  # fees rose above what the claim may pay: it cannot be mined
    assert run_pass(bridge)["quote_claims_sent"] == 0
    first, second = sent(bridge, order_id)
    assert second.nonce == nonce and miner.pool() == {nonce: second.tx_hash}
    assert raises_enough(second, first)
    assert fees(second) == Fees(20 * GWEI + tip, tx.bumped(fees(first), 20).max_priority_fee_per_gas_wei)
    run_pass(bridge)  # not stuck any more (it pays the base fee): nothing new
    assert len(sent(bridge, order_id)) == 2
    miner.mine()
    receipt = evm.w3.eth.get_transaction_receipt(second.tx_hash)
    print(f"replaced claim: gas used {receipt['gasUsed']}, {receipt['effectiveGasPrice']} wei per gas")
    run_pass(bridge)  # mined, not yet final: the claimer recognises it, the watcher does not count it yet
    assert outcomes(bridge, order_id) == [("ok", second.tx_hash)]
    assert view(api, order_id)["quote_leg"]["state"] == "locked"
    settle_and_check(bridge, api, evm, miner, order_id, landed=second.tx_hash, nonce=nonce, seller_wei=seller_wei)
    assert outcomes(bridge, order_id) == [("ok", second.tx_hash)]


def test_a_claim_left_out_of_blocks_is_bumped_after_the_configured_blocks(api, bridge, evm, miner, seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    miner.manual()
    nonce = miner.nonce()
    run_pass(bridge)
    (first,) = sent(bridge, order_id)
    miner.mine(2, gas_limit=first.gas - 1)  # blocks too small for it: it waits in the mempool
    run_pass(bridge)
    assert len(sent(bridge, order_id)) == 1 and miner.pool() == {nonce: first.tx_hash}  # 2 blocks < 3
    miner.mine(1, gas_limit=first.gas - 1)
    run_pass(bridge)
    first, second = sent(bridge, order_id)
    # Base fees fell over the empty blocks: the bump itself (20 %, plus 1 wei) sets the fees.
    assert fees(second) == tx.bumped(fees(first), 20) and raises_enough(second, first)
    assert (second.nonce, second.gas) == (nonce, first.gas) and miner.pool() == {nonce: second.tx_hash}
    settle_and_check(bridge, api, evm, miner, order_id, landed=second.tx_hash, nonce=nonce, seller_wei=seller_wei)


def test_no_bump_before_the_configured_seconds(api, bridge, evm, miner, seller, buyer, dev_node, tmp_path):
    skew = [0]
    patient = second_bridge(bridge, evm, dev_node, tmp_path, lambda: evm.latest_timestamp() + skew[0],
                            OTC_EVM_CLAIM_BUMP_SECONDS="60")
    try:
        order_id = paid(api, bridge, evm, seller, buyer)
        miner.manual()
        run_pass(patient)
        miner.base_fee(10 * GWEI)
        for skew[0] in (0, 59):
            run_pass(patient)
            assert len(sent(bridge, order_id)) == 1
        skew[0] = 60
        run_pass(patient)
        assert len(sent(bridge, order_id)) == 2
    finally:
        patient.db.close()


def test_bumps_stop_at_the_max_fee_and_alert_once(api, bridge, evm, miner, seller, buyer, dev_node, tmp_path):
    cap_wei = 5 * GWEI
    capped = second_bridge(bridge, evm, dev_node, tmp_path, evm.latest_timestamp, OTC_EVM_MAX_FEE_WEI=str(cap_wei))
    try:
        order_id = paid(api, bridge, evm, seller, buyer)
        seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
        miner.manual()
        nonce = miner.nonce()
        run_pass(capped)
        miner.base_fee(7 * GWEI // 2)  # 3.5 gwei: the claim (3 gwei) is stuck; the market asks 8 gwei
        run_pass(capped)
        first, second = sent(bridge, order_id)
        assert second.max_fee_per_gas_wei == cap_wei and raises_enough(second, first)  # lowered to the cap
        miner.base_fee(6 * GWEI)  # stuck again; 10 % more than the cap is not allowed
        run_pass(capped)
        run_pass(capped)
        assert len(sent(bridge, order_id)) == 2 and miner.pool() == {nonce: second.tx_hash}
        assert all(claim.max_fee_per_gas_wei <= cap_wei for claim in sent(bridge, order_id))
        assert alerts(bridge, order_id).count("claim_bump_capped") == 1
        settle_and_check(capped, api, evm, miner, order_id, landed=second.tx_hash, nonce=nonce,
                         seller_wei=seller_wei)
    finally:
        capped.db.close()


@pytest.mark.parametrize("point", ["before:claim_tx", "after:claim_tx"])
def test_a_crash_around_the_replacements_broadcast_is_finished_at_the_same_nonce(point, api, bridge, evm, miner,
                                                                                 seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    miner.manual()
    nonce = miner.nonce()
    run_pass(bridge)
    miner.base_fee(10 * GWEI)
    with dies_at(point):
        reconcile.run_once(bridge)
    first, second = sent(bridge, order_id)  # the replacement was recorded before its broadcast
    assert miner.pool() == {nonce: first.tx_hash if point == "before:claim_tx" else second.tx_hash}
    assert run_pass(bridge)["quote_claims_sent"] == 0  # re-sends the recorded replacement, or waits for it
    assert miner.pool() == {nonce: second.tx_hash} and len(sent(bridge, order_id)) == 2
    settle_and_check(bridge, api, evm, miner, order_id, landed=second.tx_hash, nonce=nonce, seller_wei=seller_wei)


def test_the_original_landing_before_its_replacement_goes_out_counts_once(api, bridge, evm, miner, seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    miner.manual()
    nonce = miner.nonce()
    run_pass(bridge)
    miner.base_fee(10 * GWEI)

    def original_lands(name: str) -> None:  # the replacement is recorded; a block takes the original first
        if name == "before:claim_tx":
            crashpoints.set_hook(None)
            miner.base_fee(GWEI)
            miner.mine()

    crashpoints.set_hook(original_lands)
    try:
        summary = run_pass(bridge)  # the replacement's broadcast is refused (nonce used): no error
    finally:
        crashpoints.set_hook(None)
    assert summary["waiting"] == 0
    first, second = sent(bridge, order_id)
    assert tx.find(evm.w3, second.tx_hash) is None and miner.nonce() == nonce + 1
    run_pass(bridge)
    assert outcomes(bridge, order_id) == [("ok", first.tx_hash)]
    settle_and_check(bridge, api, evm, miner, order_id, landed=first.tx_hash, nonce=nonce, seller_wei=seller_wei)


def test_a_claim_whose_lock_the_seller_claimed_is_cancelled_once_stuck(api, bridge, evm, miner, seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    miner.manual()
    nonce = miner.nonce()
    run_pass(bridge)
    (first,) = sent(bridge, order_id)
    order = view(api, order_id)
    own = evm.accounts["seller"].signer  # the seller claims too, paying more
    call = evm.htlc.contract.functions.claim(bytes.fromhex(order["quote_leg"]["swap_id"][2:]),
                                             bytes.fromhex(order["htlc_secret"]))
    theirs = tx.prepare(evm.w3, own, call, fees=Fees(30 * GWEI, 2 * GWEI))
    tx.broadcast(evm.w3, theirs)
    # Room for one claim (blocks fill by gas used): the seller's, which pays the higher tip.
    miner.mine(gas_limit=first.gas + 30_000)
    assert evm.w3.eth.get_transaction_receipt(theirs.hash)["status"] == 1
    run_pass(bridge)
    assert miner.pool() == {nonce: first.tx_hash} and len(sent(bridge, order_id)) == 1  # not stuck yet: waits
    miner.base_fee(5 * GWEI)  # now it is stuck, and it would only revert: its nonce is freed instead
    run_pass(bridge)
    claim, cancel = sent(bridge, order_id)
    assert (cancel.action, cancel.nonce, cancel.gas) == ("cancel", nonce, tx.TRANSFER_GAS)
    assert raises_enough(cancel, claim) and miner.pool() == {nonce: cancel.tx_hash}
    miner.mine(2)
    receipt = evm.w3.eth.get_transaction_receipt(cancel.tx_hash)
    assert (receipt["status"], receipt["gasUsed"]) == (1, tx.TRANSFER_GAS)
    run_pass(bridge)
    leg = view(api, order_id)["quote_leg"]
    assert (leg["state"], leg["claim_tx"]) == ("claimed", theirs.hash)
    assert miner.nonce() == nonce + 1 and run_pass(bridge)["quote_claims_sent"] == 0


def test_a_dropped_claim_is_sent_again_as_recorded(api, bridge, evm, miner, seller, buyer):
    order_id = paid(api, bridge, evm, seller, buyer)
    seller_wei = evm.w3.eth.get_balance(evm.accounts["seller"].address)
    miner.manual()
    nonce = miner.nonce()
    run_pass(bridge)
    (first,) = sent(bridge, order_id)
    evm.rpc("anvil_dropTransaction", first.tx_hash)
    assert miner.pool() == {}
    assert run_pass(bridge)["quote_claims_sent"] == 0
    assert miner.pool() == {nonce: first.tx_hash} and len(sent(bridge, order_id)) == 1  # same hash, no new record
    settle_and_check(bridge, api, evm, miner, order_id, landed=first.tx_hash, nonce=nonce, seller_wei=seller_wei)
