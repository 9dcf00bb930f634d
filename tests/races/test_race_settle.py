"""Real threads racing on settlement and on escrow creation through the live bridge.

Confirms: exactly one request wins the ``matched -> settling`` claim, so the escrow is
released (deliver + accept) once and the buyer is paid by exactly one transfer. Creates:
one seller creating several orders at once gets exactly one correct escrow per order
(the bridge serialises job creation per wallet, docs/escrow-node.md §4). Replays: the same signed
create sent by eight threads at once locks one escrow.
"""

from __future__ import annotations

import time

import pytest
from bridge_support import ADMIN_TOKEN, SELLER_ETH, WORKER, matched_buy, matched_sell
from race_helpers import clients, jobs_by_status, race, transitions, winners

ROUNDS = range(5)
CONFIRM_LOST = ("Order is no longer matched", "Order must be matched to confirm (current: ")
PRICE = 50_000_000


def _escrow(amount_micro_rtc: int) -> int:
    return amount_micro_rtc + amount_micro_rtc * 5 // 100  # the node's 5 % fee (exact for these amounts)


@pytest.mark.parametrize("side", ["sell", "buy"])
@pytest.mark.parametrize("round_", ROUNDS)
def test_eight_confirms_release_once_and_pay_once(round_, side, api, live_bridge, dev_node, seller, buyer, bridge):
    if side == "sell":
        order_id, secret = matched_sell(api, seller, buyer)
        amount = 10_000_000
    else:
        order_id, secret = matched_buy(api, buyer, seller)
        amount = 5_000_000
    job_id = api.order(order_id)[1]["order"]["escrow_job_id"]
    buyer_before = dev_node.balance(buyer.address)
    racers = clients(live_bridge, 8)

    results = race([lambda c=c, i=i: c.confirm(order_id, secret=secret, quote_tx=f"0xquote{i}")
                    for i, c in enumerate(racers)])

    won = winners(results)
    assert len(won) == 1, results
    lost = [r for i, r in enumerate(results) if i != won[0]]
    assert all(code == 409 and body["error"].startswith(CONFIRM_LOST) for code, body in lost), lost
    assert results[won[0]][1]["status"] == "payout_pending"
    assert transitions(bridge, order_id).count(("matched", "settling")) == 1
    order = api.order(order_id)[1]["order"]
    assert (order["status"], order["settlement_tx"]) == ("payout_pending", f"0xquote{won[0]}")
    # The node saw one release and one queued transfer.
    actions = [entry["action"] for entry in dev_node.job(job_id)["activity_log"]]
    assert (actions.count("delivered"), actions.count("completed")) == (1, 1), actions
    assert dev_node.state()["pending"] == {"pending": {"count": 1, "amount_i64": amount}}

    assert dev_node.confirm_pending() == 1
    status, body = api.reconcile(ADMIN_TOKEN)
    assert (status, body["summary"]["promoted"]) == (200, 1)
    order = api.order(order_id)[1]["order"]
    assert (order["status"], order["htlc_secret"]) == ("completed", secret)
    assert dev_node.balance(buyer.address) == buyer_before + amount
    assert dev_node.balance(WORKER) == 0
    assert [t["order_id"] for t in api.get("/api/trades")[1]["trades"]] == [order_id]
    # Nothing is paid again: a late confirm is refused and another pass changes nothing.
    assert api.confirm(order_id, secret=secret, quote_tx="0xlate")[0] == 409
    assert api.reconcile(ADMIN_TOKEN)[1]["summary"]["promoted"] == 0
    assert dev_node.state()["pending"] == {"confirmed": {"count": 1, "amount_i64": amount}}
    dev_node.assert_conserved()


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("round_", ROUNDS)
def test_one_seller_creating_concurrently_locks_exact_escrows(round_, count, api, live_bridge, dev_node, seller,
                                                               bridge):
    before = dev_node.balance(seller.address)
    # Distinct amounts: each job is told apart, and two identical orders signed in the same
    # second would be the same message (refused as a replay by design).
    amounts = [10_000_000 * (i + 1) for i in range(count)]
    racers = clients(live_bridge, count)

    results = race([lambda c=c, a=a: c.create_order(seller, side="sell", pair="RTC/USDC", amount_micro_rtc=a,
                                                    price_nano_quote=PRICE, eth_address=SELLER_ETH)
                    for c, a in zip(racers, amounts, strict=True)])

    assert [code for code, _ in results] == [201] * count, results
    locked = sum(_escrow(a) for a in amounts)
    assert dev_node.balance(seller.address) == before - locked
    state = dev_node.assert_conserved()
    assert state["agent_escrow_i64"] == locked
    assert jobs_by_status(dev_node) == {"claimed": count}
    for (_, body), amount in zip(results, amounts, strict=True):
        order = api.order(body["order_id"])[1]["order"]
        assert (order["status"], order["amount_micro_rtc"]) == ("open", amount)
        job = dev_node.job(order["escrow_job_id"])
        assert (job["poster_wallet"], job["worker_wallet"], job["status"]) == (seller.address, WORKER, "claimed")
        assert (job["reward_i64"], job["escrow_i64"]) == (amount, _escrow(amount))
    assert len({body["escrow_job_id"] for _, body in results}) == count
    assert bridge.db.read_one("SELECT COUNT(*) FROM leases")[0] == 0  # every creation lease was given back

    # Both (all) end correctly: concurrent cancels refund each escrow exactly once.
    order_ids = [body["order_id"] for _, body in results]
    results = race([lambda c=c, o=o: c.cancel(seller, o) for c, o in zip(racers, order_ids, strict=True)])
    assert [(code, body["status"]) for code, body in results] == [(200, "cancelled")] * count, results
    assert dev_node.balance(seller.address) == before
    assert jobs_by_status(dev_node) == {"cancelled": count}
    dev_node.assert_conserved()


def test_escrow_creation_is_serialised_per_wallet(live_bridge, dev_node, seller, bridge):
    """The dev node does not reproduce the real node's over-lock (docs/escrow-node.md §4), so show the
    serialisation itself: when every job creation takes >= 0.4 s on the node, three
    concurrent creates by one wallet cannot all be done in less than 3 x 0.4 s."""
    dev_node.add_fault(endpoint="POST /agent/jobs", kind="latency", latency_ms=400)
    racers = clients(live_bridge, 3)
    started = time.monotonic()
    results = race([lambda c=c, i=i: c.create_order(seller, side="sell", pair="RTC/USDC",
                                                    amount_micro_rtc=1_000_000 * (i + 1), price_nano_quote=PRICE,
                                                    eth_address=SELLER_ETH)
                    for i, c in enumerate(racers)])
    elapsed = time.monotonic() - started
    assert [code for code, _ in results] == [201] * 3, results
    assert elapsed >= 1.2, f"job creations overlapped: three creates took {elapsed:.2f} s"
    dev_node.assert_conserved()


@pytest.mark.parametrize("round_", ROUNDS)
def test_same_signed_create_sent_eight_times_at_once_locks_one_escrow(round_, live_bridge, dev_node, seller, bridge):
    before = dev_node.balance(seller.address)
    bound = {"side": "sell", "pair": "RTC/USDC", "amount_micro_rtc": 10_000_000,
             "price_per_rtc_nano_quote": PRICE, "ttl_seconds": 86_400, "eth_address": SELLER_ETH}
    body = {**bound, "wallet": seller.address,
            "wallet_auth": seller.auth("create_order", "create_order", bound)}
    racers = clients(live_bridge, 8)

    results = race([lambda c=c: c.session.post(f"{c.base_url}/api/orders", json=body, timeout=30) for c in racers])

    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [401] * 7, [r.text for r in results]
    assert all(r.json() == {"error": "wallet_auth_replayed"} for r in results if r.status_code == 401)
    assert bridge.db.read_one("SELECT COUNT(*) FROM orders")[0] == 1
    assert jobs_by_status(dev_node) == {"claimed": 1}
    assert dev_node.balance(seller.address) == before - _escrow(10_000_000)
    dev_node.assert_conserved()
