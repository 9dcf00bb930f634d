"""Named leases in SQLite: exclusive until expiry, renewable, taken over after expiry, and
the ``held()`` wait loop driven by an injected clock and sleep (no real waiting)."""

from __future__ import annotations

import threading

import pytest

from otc_bridge.storage import leases
from otc_bridge.storage.db import Database
from otc_bridge.storage.leases import LeaseBusy

T0 = 1_800_000_000.0


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    return database


def _row(db: Database, name: str = "job") -> tuple | None:
    row = db.read_one("SELECT holder, expires_at FROM leases WHERE name = ?", (name,))
    return None if row is None else tuple(row)


class FakeTime:
    """A clock that only moves when ``sleep`` is called."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_exclusive_until_expiry(db):
    assert leases.try_acquire(db, "job", "a", 10, T0)
    assert _row(db) == ("a", T0 + 10)
    assert not leases.try_acquire(db, "job", "b", 10, T0)
    assert not leases.try_acquire(db, "job", "b", 10, T0 + 9.999)
    assert _row(db) == ("a", T0 + 10)


def test_renewable_by_the_holder(db):
    assert leases.try_acquire(db, "job", "a", 10, T0)
    assert leases.try_acquire(db, "job", "a", 10, T0 + 5)
    assert _row(db) == ("a", T0 + 15)
    assert not leases.try_acquire(db, "job", "b", 10, T0 + 14)


@pytest.mark.parametrize("when", [T0 + 10, T0 + 10.5, T0 + 86400])
def test_taken_over_after_expiry(db, when):
    assert leases.try_acquire(db, "job", "a", 10, T0)
    assert leases.try_acquire(db, "job", "b", 10, when)
    assert _row(db) == ("b", when + 10)
    assert not leases.try_acquire(db, "job", "a", 10, when)


def test_names_are_independent(db):
    assert leases.try_acquire(db, "one", "a", 10, T0)
    assert leases.try_acquire(db, "two", "b", 10, T0)


def test_release_only_by_holder(db):
    assert leases.try_acquire(db, "job", "a", 10, T0)
    leases.release(db, "job", "b")
    assert _row(db) == ("a", T0 + 10)
    leases.release(db, "job", "a")
    assert _row(db) is None
    assert leases.try_acquire(db, "job", "b", 10, T0)
    leases.release(db, "job", "a")  # a no longer holds it: no effect
    assert _row(db) == ("b", T0 + 10)


def test_new_holder_is_unique():
    assert len({leases.new_holder() for _ in range(100)}) == 100


def test_held_takes_and_releases(db):
    fake = FakeTime(T0)
    with leases.held(db, "job", ttl_seconds=30, wait_seconds=5, clock=fake.clock, sleep=fake.sleep) as holder:
        assert _row(db) == (holder, T0 + 30)
    assert _row(db) is None
    assert fake.sleeps == []


def test_held_releases_when_the_block_raises(db):
    fake = FakeTime(T0)
    with pytest.raises(KeyError), leases.held(db, "job", ttl_seconds=30, wait_seconds=5,
                                              clock=fake.clock, sleep=fake.sleep):
        raise KeyError("boom")
    assert _row(db) is None
    with leases.held(db, "job", ttl_seconds=30, wait_seconds=5, clock=fake.clock, sleep=fake.sleep):
        pass  # the in-process lock was released too


def test_held_raises_lease_busy_after_the_wait(db):
    assert leases.try_acquire(db, "job", "other-process", 3600, T0)
    fake = FakeTime(T0)
    entered = []
    with pytest.raises(LeaseBusy, match="job"), leases.held(db, "job", ttl_seconds=30, wait_seconds=1,
                                                             clock=fake.clock, sleep=fake.sleep):
        entered.append(True)
    assert entered == []
    assert fake.sleeps and all(s == 0.05 for s in fake.sleeps)
    assert fake.now >= T0 + 1 and len(fake.sleeps) == pytest.approx(20, abs=1)
    assert _row(db) == ("other-process", T0 + 3600)  # the other holder is untouched


def test_held_waits_for_an_expiring_lease(db):
    assert leases.try_acquire(db, "job", "crashed", 0.2, T0)
    fake = FakeTime(T0)
    with leases.held(db, "job", ttl_seconds=30, wait_seconds=5, clock=fake.clock, sleep=fake.sleep) as holder:
        assert holder != "crashed"
        assert _row(db)[0] == holder
    assert 0.2 <= fake.now - T0 < 0.3
    assert len(fake.sleeps) in (4, 5)


def test_held_with_zero_wait_fails_at_once(db):
    assert leases.try_acquire(db, "job", "other", 60, T0)
    fake = FakeTime(T0)
    with pytest.raises(LeaseBusy), leases.held(db, "job", ttl_seconds=30, wait_seconds=0,
                                               clock=fake.clock, sleep=fake.sleep):
        pass
    assert fake.sleeps == []


def test_threads_of_one_process_queue_on_the_local_lock(db):
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with leases.held(db, "job", ttl_seconds=30, wait_seconds=5):
            inside.set()
            leave.wait(timeout=30)
        db.close()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(timeout=30)
        fake = FakeTime(T0)
        with pytest.raises(LeaseBusy), leases.held(db, "job", ttl_seconds=30, wait_seconds=0,
                                                   clock=fake.clock, sleep=fake.sleep):
            pass
        assert fake.sleeps == []  # refused by the in-process lock, before polling the table
    finally:
        leave.set()
        thread.join(timeout=30)
    with leases.held(db, "job", ttl_seconds=30, wait_seconds=0):
        pass
