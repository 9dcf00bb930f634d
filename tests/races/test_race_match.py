"""Real threads racing to take (or withdraw) the same order through the live bridge.

Every racer has its own ``BridgeClient`` (own ``requests.Session``) and is released by a
``threading.Barrier``. The compare-and-swap on ``status`` + ``order_version`` must let
exactly one request win; the others get 409 and leave nothing behind, neither in the
bridge's database nor on the escrow node.
"""

from __future__ import annotations

import pytest
from bridge_support import BUYER_ETH, SELLER_ETH, WORKER, open_sell
from race_helpers import clients, funded_wallets, jobs_by_status, race, transitions, winners

from otc_bridge.client import Wallet

ROUNDS = range(5)
MATCH_LOST = ("Order was matched by someone else", "Order is not open (status: ")
BUY_AMOUNT, BUY_ESCROW = 5_000_000, 5_250_000  # reward + the node's 5 % fee


def _lost_match(result: tuple[int, dict]) -> bool:
    code, body = result
    return code == 409 and body.get("error", "").startswith(MATCH_LOST)


@pytest.mark.parametrize("round_", ROUNDS)
def test_eight_takers_race_for_one_sell_order(round_, api, live_bridge, dev_node, seller, bridge):
    order_id, _ = open_sell(api, seller)
    job_id = api.order(order_id)[1]["order"]["escrow_job_id"]
    takers = [Wallet.generate() for _ in range(8)]
    racers = clients(live_bridge, len(takers))

    results = race([lambda c=c, w=w: c.match(w, order_id, BUYER_ETH) for c, w in zip(racers, takers, strict=True)])

    won = winners(results)
    assert len(won) == 1, results
    assert all(_lost_match(r) for i, r in enumerate(results) if i != won[0]), results
    order = api.order(order_id)[1]["order"]
    assert order["status"] == "matched"
    assert order["taker_wallet"] == takers[won[0]].address == results[won[0]][1]["taker_wallet"]
    assert transitions(bridge, order_id).count(("open", "matched")) == 1
    # Every verified signature is burned, the losers' too: none of them can be replayed later.
    used = bridge.db.read_one("SELECT COUNT(*) FROM used_signatures WHERE action = 'match_order'")[0]
    assert used == len(takers)
    job = dev_node.job(job_id)
    assert (job["status"], job["worker_wallet"]) == ("claimed", WORKER)
    assert jobs_by_status(dev_node) == {"claimed": 1}
    dev_node.assert_conserved()


@pytest.mark.parametrize("round_", ROUNDS)
def test_eight_sellers_race_for_one_buy_order_lock_one_escrow(round_, api, live_bridge, dev_node, buyer, bridge):
    status, body = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=BUY_AMOUNT,
                                    price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, body
    order_id = body["order_id"]
    takers = funded_wallets(dev_node, 8, "100")
    racers = clients(live_bridge, len(takers))

    results = race([lambda c=c, w=w: c.match(w, order_id, SELLER_ETH) for c, w in zip(racers, takers, strict=True)])

    won = winners(results)
    assert len(won) == 1, results
    assert all(_lost_match(r) for i, r in enumerate(results) if i != won[0]), results
    winner = takers[won[0]]
    assert len(results[won[0]][1]["htlc_secret"]) == 64
    assert all("htlc_secret" not in body for i, (_, body) in enumerate(results) if i != won[0])
    order = api.order(order_id)[1]["order"]
    assert (order["status"], order["taker_wallet"]) == ("matched", winner.address)
    assert transitions(bridge, order_id) == [(None, "open"), ("open", "locking"), ("locking", "matched")]
    # Exactly one escrow job exists: the winner's, claimed by the bridge. No loser's escrow was created.
    assert jobs_by_status(dev_node) == {"claimed": 1}
    listed = dev_node.get("/agent/jobs", status="claimed").json()["jobs"]
    assert [j["poster_wallet"] for j in listed] == [winner.address]
    job = dev_node.job(order["escrow_job_id"])
    assert (job["poster_wallet"], job["worker_wallet"], job["escrow_i64"]) == (winner.address, WORKER, BUY_ESCROW)
    for wallet in takers:
        expected = 100_000_000 - (BUY_ESCROW if wallet is winner else 0)
        assert dev_node.balance(wallet.address) == expected, wallet.address
    dev_node.assert_conserved()


@pytest.mark.parametrize("takers", [1, 3])
@pytest.mark.parametrize("round_", ROUNDS)
def test_cancel_races_match_exactly_one_wins(round_, takers, api, live_bridge, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    order_id, _ = open_sell(api, seller)
    job_id = api.order(order_id)[1]["order"]["escrow_job_id"]
    buyers = [Wallet.generate() for _ in range(takers)]
    racers = clients(live_bridge, takers + 1)
    actions = [lambda: racers[0].cancel(seller, order_id)]
    actions += [lambda c=c, w=w: c.match(w, order_id, BUYER_ETH) for c, w in zip(racers[1:], buyers, strict=True)]

    results = race(actions)

    won = winners(results)
    assert len(won) == 1, results
    order = api.order(order_id)[1]["order"]
    job = dev_node.job(job_id)
    if won == [0]:  # the cancel won: escrow refunded in full, nobody recorded as taker
        assert all(_lost_match(r) for r in results[1:]), results
        assert results[0][1]["escrow_refunded"] is True
        assert (order["status"], order["taker_wallet"], order["end_cause"]) == ("cancelled", None, "cancelled")
        assert job["status"] == "cancelled"
        assert dev_node.balance(seller.address) == before
        assert ("open", "matched") not in transitions(bridge, order_id)
    else:  # a match won: the order is matched and the escrow still held by the bridge's worker
        code, body = results[0]
        assert code == 409, results
        assert body["error"].startswith(("Can only cancel open orders", "Order is no longer open")), body
        assert (order["status"], order["taker_wallet"]) == ("matched", buyers[won[0] - 1].address)
        assert (job["status"], job["worker_wallet"]) == ("claimed", WORKER)
        assert dev_node.balance(seller.address) == before - 10_500_000
        assert ("open", "refund_pending") not in transitions(bridge, order_id)
    alerts = bridge.db.read("SELECT reason FROM order_events WHERE order_id = ? AND kind = 'alert'", (order_id,))
    assert [a["reason"] for a in alerts] == []
    dev_node.assert_conserved()


@pytest.mark.parametrize("round_", ROUNDS)
def test_cancel_races_takers_of_a_buy_order_exactly_one_wins(round_, api, live_bridge, dev_node, buyer, bridge):
    status, body = api.create_order(buyer, side="buy", pair="RTC/USDC", amount_micro_rtc=BUY_AMOUNT,
                                    price_nano_quote=60_000_000, eth_address=BUYER_ETH)
    assert status == 201, body
    order_id = body["order_id"]
    takers = funded_wallets(dev_node, 3, "100")
    racers = clients(live_bridge, 4)
    actions = [lambda: racers[0].cancel(buyer, order_id)]
    actions += [lambda c=c, w=w: c.match(w, order_id, SELLER_ETH) for c, w in zip(racers[1:], takers, strict=True)]

    results = race(actions)

    won = winners(results)
    assert len(won) == 1, results
    order = api.order(order_id)[1]["order"]
    if won == [0]:  # cancelled before any taker locked anything: no escrow exists at all
        assert all(_lost_match(r) for r in results[1:]), results
        assert (order["status"], order["taker_wallet"], order["escrow_job_id"]) == ("cancelled", None, None)
        assert jobs_by_status(dev_node) == {}
        assert all(dev_node.balance(w.address) == 100_000_000 for w in takers)
    else:
        winner = takers[won[0] - 1]
        assert results[0][0] == 409, results
        assert (order["status"], order["taker_wallet"]) == ("matched", winner.address)
        assert jobs_by_status(dev_node) == {"claimed": 1}
        for wallet in takers:
            assert dev_node.balance(wallet.address) == 100_000_000 - (BUY_ESCROW if wallet is winner else 0)
    dev_node.assert_conserved()
