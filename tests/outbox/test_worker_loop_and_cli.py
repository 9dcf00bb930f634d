"""The worker as operators run it: the background loop of ``serve``/``dev`` and
``otc-bridge worker``."""

from __future__ import annotations

import json
import statistics
import time

from click.testing import CliRunner
from outbox_support import SECRET, add_event, row

from otc_bridge import background
from otc_bridge.cli import main


def test_background_loop_delivers_soon_after_the_commit(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    stop = background.start_outbox_worker(local, interval_seconds=0.05)
    assert stop is not None
    try:
        latencies = []
        for i in range(10):
            add_event(local.db, "order.open", order_id=f"otc_{i}", now=int(time.time()))
            committed = time.time()
            calls = receiver.wait_for(i + 1)
            assert len(calls) == i + 1
            latencies.append(calls[-1].at - committed)
    finally:
        stop.set()
    # Normal case: within one polling interval plus the POST (generous bound for slow CI).
    assert statistics.median(latencies) < 1.0, latencies


def test_the_loop_can_be_disabled(local):
    local.config = local.config.replace(outbox_disabled=True)
    assert background.start_outbox_worker(local) is None


def test_the_loop_survives_a_crashing_pass(local, receiver, monkeypatch):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    real, calls = background.outbox_worker.run_once, []

    def flaky(bridge, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return real(bridge, **kwargs)

    monkeypatch.setattr(background.outbox_worker, "run_once", flaky)
    add_event(local.db, now=int(time.time()))
    stop = background.start_outbox_worker(local, interval_seconds=0.05)
    try:
        assert len(receiver.wait_for(1)) == 1
    finally:
        stop.set()


def cli_env(local, **extra: str) -> dict[str, str]:
    return {"OTC_DB_PATH": local.db.path, "RUSTCHAIN_NODE": "http://127.0.0.1:9", **extra}


def test_worker_once_prints_its_counts(local, receiver):
    key = add_event(local.db, now=int(time.time()) - 1)
    hooks = json.dumps([{"url": receiver.url, "secret": SECRET, "events": ["order.*"]}])
    result = CliRunner().invoke(main, ["worker", "--once", "--webhooks", hooks], env=cli_env(local))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"fanned_out": 1, "delivered": 1, "retried": 0, "dead": 0, "errors": 0,
                                         "skipped_locked": 0, "more": 0}
    assert receiver.ids() == [key] and row(local.db, key)["state"] == "delivered"


def test_worker_reads_webhooks_from_the_environment(local, receiver):
    key = add_event(local.db, now=int(time.time()) - 1)
    hooks = json.dumps([{"url": receiver.url, "secret": SECRET, "events": ["*"]}])
    result = CliRunner().invoke(main, ["worker", "--once"], env=cli_env(local, OTC_WEBHOOKS=hooks))
    assert result.exit_code == 0, result.output
    assert receiver.ids() == [key]


def test_worker_refuses_bad_webhooks_naming_the_variable(local):
    bad = json.dumps([{"url": "ftp://x.example", "secret": SECRET, "events": ["*"]}])
    result = CliRunner().invoke(main, ["worker", "--once", "--webhooks", bad], env=cli_env(local))
    assert result.exit_code == 2
    assert "OTC_WEBHOOKS: entry 0: url" in result.output and SECRET not in result.output


def test_notify_wakes_the_loop_before_its_next_poll(local, receiver):
    local.config = local.config.replace(webhooks=(receiver.hook(),))
    first = add_event(local.db, "order.open", now=int(time.time()) - 1)
    stop = background.start_outbox_worker(local, interval_seconds=60)
    try:
        assert receiver.wait_for(1) and receiver.ids() == [first]  # the startup pass ran
        key = add_event(local.db, now=int(time.time()) - 1)
        committed = time.time()
        background.outbox.notify()
        calls = receiver.wait_for(2, timeout=5)
        assert [c.event_id for c in calls] == [first, key]  # long before the 60 s poll
        assert calls[1].at - committed < 5
    finally:
        stop.set()
        background.outbox.notify()
