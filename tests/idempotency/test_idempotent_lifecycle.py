"""The key's life: concurrency (409), expiry and pruning, admin scope, stale holders, every
POST route taking part, and what a keyed confirm costs the database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import requests
from bridge_support import ADMIN_TOKEN, matched_sell
from idem_support import count, create_body, new_key, post, replayed, rows

from otc_bridge import crashpoints
from otc_bridge.api.idempotency import HEADER, IN_PROGRESS, PRUNE_INTERVAL_SECONDS, REPLAYED_HEADER
from otc_bridge.storage import idempotency as store

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_retry_while_the_first_attempt_runs_is_409(bridge, live_bridge, seller):
    """The first create is held inside its escrow creation; the same request meanwhile is 409."""
    reached, release = threading.Event(), threading.Event()

    def hold(name: str) -> None:
        if name == "before:create_job":
            reached.set()
            release.wait(30)

    key, body = new_key(), create_body(seller, "sell", timestamp=bridge.now())
    results = {}

    def first() -> None:
        results["first"] = requests.post(f"{live_bridge}/api/orders", json=body, headers={HEADER: key}, timeout=60)

    crashpoints.set_hook(hold)
    try:
        thread = threading.Thread(target=first)
        thread.start()
        assert reached.wait(30)
        during = requests.post(f"{live_bridge}/api/orders", json=body, headers={HEADER: key}, timeout=30)
        release.set()
        thread.join(60)
    finally:
        crashpoints.set_hook(None)
    assert during.status_code == 409
    assert during.json() == {"error": IN_PROGRESS, "field": HEADER, "retry_after_seconds": 2}
    assert during.headers["Retry-After"] == "2"
    assert results["first"].status_code == 201
    after = requests.post(f"{live_bridge}/api/orders", json=body, headers={HEADER: key}, timeout=30)
    assert (after.status_code, after.headers[REPLAYED_HEADER]) == (201, "true")
    assert after.json()["htlc_secret"] == results["first"].json()["htlc_secret"]
    assert count(bridge, "orders") == 1


def test_keys_expire_after_24_hours_and_are_pruned(http_client, bridge, clock):
    first_key = new_key()
    first = post(http_client, "/admin/reconcile", None, first_key, **ADMIN)
    again = post(http_client, "/admin/reconcile", None, first_key, **ADMIN)
    assert (first.status_code, replayed(again), again.get_data()) == (200, True, first.get_data())
    clock.advance(store.TTL_SECONDS - 1)
    assert replayed(post(http_client, "/admin/reconcile", None, first_key, **ADMIN))  # still within 24 h
    post(http_client, "/admin/reconcile", None, new_key(), **ADMIN)
    assert len(rows(bridge)) == 2
    clock.advance(store.TTL_SECONDS + PRUNE_INTERVAL_SECONDS)
    fresh = post(http_client, "/admin/reconcile", None, first_key, **ADMIN)
    assert fresh.status_code == 200 and not replayed(fresh)  # expired: the key names a new request
    (row,) = rows(bridge)  # the other expired row was pruned
    assert row["created_at"] == clock.now


def test_admin_keys_are_scoped_to_the_token_and_bind_the_operator(http_client, bridge, clock, seller, buyer,
                                                                    live_bridge):
    from otc_bridge.client import BridgeClient

    order_id, _ = matched_sell(BridgeClient(live_bridge), seller, buyer)
    key = new_key()
    path = f"/admin/orders/{order_id}/resolve"
    body = {"to": "completed", "reason": "checked on the node"}
    first = post(http_client, path, body, key, **ADMIN, **{"X-Operator": "alice"})
    assert first.status_code == 409  # not in settlement_recovery: the refusal is the stored answer
    again = post(http_client, path, body, key, **ADMIN, **{"X-Operator": "alice"})
    assert (again.status_code, replayed(again), again.get_data()) == (409, True, first.get_data())
    other = post(http_client, path, body, key, **ADMIN, **{"X-Operator": "bob"})
    assert (other.status_code, other.get_json()["field"]) == (422, HEADER)
    # Without the token nothing is reserved or replayed: the admin check answers first.
    assert post(http_client, path, body, key).status_code == 401


def test_a_reservation_whose_process_is_gone_is_taken_over_at_once(http_client, bridge, clock, seller):
    """No waiting for the age bound when the holder's pid no longer exists on this host."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert store.holder_gone(f"{store.this_holder().rpartition(':')[0]}:{dead.pid}")
    assert not store.holder_gone(store.this_holder())  # this process
    assert not store.holder_gone(f"another-host:{dead.pid}")  # cannot tell: alive
    assert not store.holder_gone(f"{store.this_holder().rpartition(':')[0]}:{os.getppid()}")

    key, body = new_key(), create_body(seller, "buy", timestamp=clock.now)
    path = "/api/orders"
    from otc_bridge.api.idempotency import fingerprint, wallet_scope

    key_id = store.key_id(wallet_scope(seller.address), key)
    holder = f"{store.this_holder().rpartition(':')[0]}:{dead.pid}"
    assert store.reserve(bridge.db, key_id, route=f"POST {path}", fingerprint=fingerprint(f"POST {path}", body),
                         holder=holder, now=clock.now)
    answer = post(http_client, path, body, key)  # no clock move
    assert answer.status_code == 201 and answer.get_json()["status"] == "open"
    assert count(bridge, "orders") == 1


def test_every_post_route_takes_an_idempotency_key(bridge_app):
    """All POST routes but the dev chain relay (a JSON-RPC pass-through, dev only)."""
    posts = {rule.rule: bridge_app.view_functions[rule.endpoint] for rule in bridge_app.url_map.iter_rules()
             if "POST" in rule.methods}
    assert set(posts) >= {"/api/orders", "/api/orders/<order_id>/match", "/api/orders/<order_id>/confirm",
                          "/api/orders/<order_id>/cancel", "/admin/reconcile",
                          "/admin/orders/<order_id>/redrive-payout", "/admin/orders/<order_id>/resolve"}
    missing = [path for path, view in posts.items() if not getattr(view, "idempotent", False)]
    assert missing in ([], ["/dev/evm-rpc"]), missing


# --- storage -----------------------------------------------------------------------------------------

def test_storage_reserve_complete_take_over(bridge):
    db, now = bridge.db, 1_000_000
    kid = store.key_id("wallet:RTCx", "k")
    assert store.reserve(db, kid, route="POST /x", fingerprint="f", holder="h:1", now=now)
    assert not store.reserve(db, kid, route="POST /x", fingerprint="f", holder="h:2", now=now + 1)
    row = store.find(db.connection(), kid, now=now + 1)
    assert (row.state, row.holder, row.locked_at) == ("in_flight", "h:1", now)
    assert not store.is_stale(row, now=now + 100, stale_after_seconds=150)
    assert store.is_stale(row, now=now + 150, stale_after_seconds=150)
    assert store.take_over(db, row, holder="h:2", now=now + 150)
    assert not store.take_over(db, row, holder="h:3", now=now + 150)  # the CAS: only one retry wins
    assert not store.complete(db, kid, holder="h:1", locked_at=now, status_code=200, response=b"x", headers={},
                              now=now + 151)  # the first attempt no longer holds it
    sealed = store.seal("k", kid, b'{"ok":true}')
    assert store.complete(db, kid, holder="h:2", locked_at=now + 150, status_code=200, response=sealed,
                          headers={"Retry-After": "3"}, now=now + 151)
    done = store.find(db.connection(), kid, now=now + 152)
    assert done.done and store.unseal("k", kid, done.response) == b'{"ok":true}'
    assert done.headers == {"Retry-After": "3"}
    assert store.find(db.connection(), kid, now=now + store.TTL_SECONDS) is None  # expired
    assert store.reserve(db, kid, route="POST /y", fingerprint="g", holder="h:4", now=now + store.TTL_SECONDS)
    assert store.prune(db, now + 2 * store.TTL_SECONDS) == 1


def test_sealed_answers_need_the_clients_key(bridge):
    kid = store.key_id("admin:x", "the-key")
    sealed = store.seal("the-key", kid, b"secret body")
    assert b"secret body" not in sealed
    for key, row_id in (("another-key", kid), ("the-key", store.key_id("admin:x", "other"))):
        try:
            store.unseal(key, row_id, sealed)
        except Exception as exc:  # cryptography's InvalidTag
            assert type(exc).__name__ == "InvalidTag"
        else:
            raise AssertionError("unsealed with the wrong key")


# --- cost ---------------------------------------------------------------------------------------------

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _write_transactions(statements: list[str]) -> int:
    count_, inside = 0, False
    for sql in statements:
        word = sql.strip().split(None, 1)[0].upper()
        if word == "BEGIN":
            count_, inside = count_ + 1, True
        elif word in ("COMMIT", "ROLLBACK"):
            inside = False
        elif not inside and _WRITE.match(sql):
            count_ += 1
    return count_


def _traced(http_client, bridge, path: str, body: dict, key: str | None) -> tuple[int, list[str]]:
    conn = bridge.db.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        response = post(http_client, path, body, key)
    finally:
        conn.set_trace_callback(None)
    return response.status_code, statements


def test_a_keyed_confirm_costs_two_statements_more(http_client, bridge, clock, seller, buyer, live_bridge):
    """tests/integration/test_confirm_cost.py holds a confirm without a key to 12 statements
    in 3 write transactions. With a key: + the reservation (one INSERT ... ON CONFLICT) and
    + the stored answer (one UPDATE), each its own autocommit write: 14 statements, 5 write
    transactions (plus one DELETE of expired rows at most every PRUNE_INTERVAL_SECONDS)."""
    from otc_bridge.client import BridgeClient

    api = BridgeClient(live_bridge)
    post(http_client, "/admin/reconcile", None, new_key(), **ADMIN)  # this app's first keyed request prunes
    plain_id, plain_secret = matched_sell(api, seller, buyer)
    keyed_id, keyed_secret = matched_sell(api, seller, buyer, amount_micro_rtc=20_000_000)  # another message
    status, plain = _traced(http_client, bridge, f"/api/orders/{plain_id}/confirm",
                            {"secret": plain_secret, "quote_tx": "0xabc"}, None)
    assert status == 200
    status, keyed = _traced(http_client, bridge, f"/api/orders/{keyed_id}/confirm",
                            {"secret": keyed_secret, "quote_tx": "0xabc"}, new_key())
    assert status == 200
    extra = [s for s in keyed if "idempotency_keys" in s]
    assert len(keyed) - len(plain) == 2 == len(extra), "\n".join(keyed)
    assert _write_transactions(keyed) - _write_transactions(plain) == 2
    assert len(plain) <= 12 and _write_transactions(plain) <= 3
