"""At least once across a worker crash: the same event id again after the claim expires,
then delivered and never again. In process (crash hook) and as a real killed process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from outbox_support import NOW, SECRET, add_event, deliveries, migrate, row

from otc_bridge import crashpoints
from otc_bridge.notify import outbox_worker
from otc_bridge.storage.db import Database


class WorkerDied(BaseException):
    """Stands for the process ending at a crash point (nothing after it runs)."""


def crash_at(point: str):
    def hook(name: str) -> None:
        if name == point:
            crashpoints.set_hook(None)  # die once
            raise WorkerDied(name)
    crashpoints.set_hook(hook)


def test_crash_after_the_post_redelivers_the_same_event_after_the_claim_expires(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    key = add_event(local.db)
    crash_at("outbox:after_send")
    with pytest.raises(WorkerDied):
        outbox_worker.run_once(local, NOW)
    assert receiver.ids() == [key]  # the receiver got it, the worker never recorded it
    assert deliveries(local.db, key)["main"]["state"] == "delivering"

    visible_again = NOW + local.config.outbox_visibility_seconds
    assert outbox_worker.run_once(local, visible_again - 1)["delivered"] == 0  # claim still live
    assert outbox_worker.run_once(local, visible_again)["delivered"] == 1
    assert receiver.ids() == [key, key]  # same stable id: the receiver deduplicates
    assert all(call.signed_ok() for call in receiver.calls)
    delivery = deliveries(local.db, key)["main"]
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 2)
    assert row(local.db, key)["state"] == "delivered"
    outbox_worker.run_once(local, visible_again + 86400)
    assert len(receiver.calls) == 2


def test_crash_between_claim_and_post_sends_it_later(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    key = add_event(local.db)
    crash_at("outbox:before_send")
    with pytest.raises(WorkerDied):
        outbox_worker.run_once(local, NOW)
    assert receiver.calls == []
    assert outbox_worker.run_once(local, NOW + local.config.outbox_visibility_seconds)["delivered"] == 1
    assert receiver.ids() == [key]


def test_a_killed_worker_process_redelivers(tmp_path, receiver):
    """``otc-bridge worker --once`` killed (``os._exit``) right after its POST; the next
    process sends the same event again once the claim expired."""
    db = Database(str(tmp_path / "bridge.db"))
    db.migrate()
    migrate(db)
    key = add_event(db, "order.completed", order_id="otc_k", now=0)  # due long ago
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_"))}
    env.update(OTC_DB_PATH=db.path, RUSTCHAIN_NODE="http://127.0.0.1:9", OTC_OUTBOX_VISIBILITY_SECONDS="2",
               OTC_WEBHOOK_CONNECT_TIMEOUT_SECONDS="0.5", OTC_WEBHOOK_TIMEOUT_SECONDS="0.5",
               OTC_WEBHOOKS=json.dumps([{"url": receiver.url, "secret": SECRET, "events": ["*"], "name": "main"}]))
    cli = [sys.executable, "-m", "otc_bridge.cli", "worker", "--once"]
    crashed = subprocess.run(cli, env={**env, crashpoints.ENABLE_VARIABLE: "1",
                                       crashpoints.POINT_VARIABLE: "outbox:after_send"},
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == crashpoints.EXIT_CODE, crashed.stderr
    assert receiver.ids() == [key] and deliveries(db, key)["main"]["state"] == "delivering"

    expires = deliveries(db, key)["main"]["next_attempt_at"]
    early = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    if time.time() < expires - 0.5:  # (a slow machine may already be past the expiry)
        assert json.loads(early.stdout)["delivered"] == 0 and receiver.ids() == [key]
    time.sleep(max(0.0, expires + 1 - time.time()))  # a real process: real time must pass
    subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert receiver.ids() == [key, key]
    assert all(call.signed_ok(now=int(call.headers["x-otc-timestamp"])) for call in receiver.calls)
    assert deliveries(db, key)["main"]["state"] == "delivered" and row(db, key)["state"] == "delivered"
