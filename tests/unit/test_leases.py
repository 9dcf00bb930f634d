"""Named leases as file locks: exclusive while held, free the moment the holder lets go or
dies (a real child process SIGKILLed), the ``held()`` wait loop driven by an injected clock
and sleep, and the holder record ``/readyz`` reads."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from otc_bridge.storage import leases
from otc_bridge.storage.db import Database
from otc_bridge.storage.leases import LeaseBusy

T0 = 1_800_000_000.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    return database


class FakeTime:
    """A clock that only moves when ``sleep`` is called; ``on_sleep`` runs at every sleep."""

    def __init__(self, start: float, on_sleep=None) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def foreign_hold(db: Database, name: str = "job") -> int:
    """Lock the lease's file through a descriptor of its own, as another process would
    (``flock`` locks belong to the open file, not to the process); close it to let go."""
    fd = os.open(leases.lock_path(db, name), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_lock_files_sit_beside_the_database(db, tmp_path):
    assert leases.lock_path(db, "reconciler") == str(tmp_path / "x.db.reconciler.lock")
    assert leases.lock_path(str(tmp_path / "x.db"), "outbox") == str(tmp_path / "x.db.outbox.lock")
    odd = {leases.lock_path(db, name) for name in ("escrow-create:RTCab", "escrow-create_RTCab", "a/../b", "a/.._b")}
    assert len(odd) == 4 and all(Path(p).parent == tmp_path for p in odd)


def test_exclusive_until_released(db):
    first = leases.try_hold(db, "job", now=T0)
    assert first is not None and first.held
    assert leases.try_hold(db, "job", now=T0) is None  # same process, another caller
    assert leases.try_hold(db, "other", now=T0) is not None  # names are independent
    first.release()
    first.release()  # idempotent
    assert not first.held
    second = leases.try_hold(db, "job", now=T0 + 1)
    assert second is not None
    second.release()


def test_another_process_holding_the_file_keeps_everyone_out(db):
    fd = foreign_hold(db)
    try:
        assert leases.try_hold(db, "job") is None
    finally:
        os.close(fd)  # the holder's descriptor closes (as when its process dies)
    lease = leases.try_hold(db, "job")
    assert lease is not None
    lease.release()


def test_the_holder_is_recorded_and_the_file_removed_on_release(db):
    lease = leases.try_hold(db, "job", now=T0)
    record = json.loads(Path(leases.lock_path(db, "job")).read_bytes())
    assert (record["pid"], record["since"], record["holder"]) == (os.getpid(), T0, lease.holder)
    seen = leases.holder(db, "job")
    assert (seen.pid, seen.since, seen.alive, seen.held) == (os.getpid(), T0, True, True)
    assert seen.as_dict(T0 + 12) == {"held": True, "pid": os.getpid(), "since": T0, "held_seconds": 12.0}
    lease.release()
    assert not Path(leases.lock_path(db, "job")).exists()
    assert leases.holder(db, "job") is None


def test_a_leftover_file_of_a_dead_holder_is_reported_free_and_taken_at_once(db):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    # process_start -1: even if the pid were reused meanwhile, that process started later.
    Path(leases.lock_path(db, "job")).write_text(json.dumps({"pid": int(dead.stdout), "process_start": -1,
                                                              "since": T0}))
    seen = leases.holder(db, "job")
    assert seen.alive is False and not seen.held and "died" in seen.as_dict(T0)["note"]
    lease = leases.try_hold(db, "job", now=T0)
    assert lease is not None and leases.holder(db, "job").pid == os.getpid()
    lease.release()


def test_a_file_unlinked_by_its_last_holder_is_not_a_lease(db):
    """The unlink race: B opened the file, A released (unlinked + unlocked) it; B's lock on the
    orphaned file must not count, since C can create and lock a new file at the path."""
    a = leases.try_hold(db, "job")
    stale = os.open(leases.lock_path(db, "job"), os.O_RDWR)
    a.release()
    c = leases.try_hold(db, "job")
    try:
        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds: nobody locks the orphan
        assert not leases._same_file(stale, leases.lock_path(db, "job"))
    finally:
        os.close(stale)
        c.release()


def test_new_holder_is_unique():
    assert len({leases.new_holder() for _ in range(100)}) == 100


def test_held_takes_and_releases(db):
    fake = FakeTime(T0)
    with leases.held(db, "job", ttl_seconds=30, wait_seconds=5, clock=fake.clock, sleep=fake.sleep) as holder:
        assert leases.holder(db, "job").holder == holder
        assert leases.try_hold(db, "job") is None
    assert leases.holder(db, "job") is None
    assert fake.sleeps == []


def test_held_releases_when_the_block_raises(db):
    fake = FakeTime(T0)
    with pytest.raises(KeyError), leases.held(db, "job", wait_seconds=5, clock=fake.clock, sleep=fake.sleep):
        raise KeyError("boom")
    assert leases.holder(db, "job") is None
    with leases.held(db, "job", wait_seconds=5, clock=fake.clock, sleep=fake.sleep):
        pass  # the in-process lock was released too


def test_held_raises_lease_busy_after_the_wait(db):
    fd = foreign_hold(db)
    fake = FakeTime(T0)
    entered = []
    try:
        with pytest.raises(LeaseBusy, match="job"), leases.held(db, "job", ttl_seconds=30, wait_seconds=1,
                                                                 clock=fake.clock, sleep=fake.sleep):
            entered.append(True)
    finally:
        os.close(fd)
    assert entered == []
    assert fake.sleeps and all(s == leases.POLL_SECONDS for s in fake.sleeps)
    assert fake.now >= T0 + 1 and len(fake.sleeps) == pytest.approx(20, abs=1)
    with leases.held(db, "job", wait_seconds=0):
        pass  # a failed wait leaves nothing behind


def test_held_waits_for_a_holder_that_lets_go(db):
    fd = foreign_hold(db)
    fake = FakeTime(T0, on_sleep=lambda n: os.close(fd) if n == 4 else None)
    with leases.held(db, "job", wait_seconds=5, clock=fake.clock, sleep=fake.sleep) as holder:
        assert leases.holder(db, "job").holder == holder
    assert len(fake.sleeps) == 4


def test_held_with_zero_wait_fails_at_once(db):
    fd = foreign_hold(db)
    fake = FakeTime(T0)
    try:
        with pytest.raises(LeaseBusy), leases.held(db, "job", wait_seconds=0, clock=fake.clock, sleep=fake.sleep):
            pass
    finally:
        os.close(fd)
    assert fake.sleeps == []


def test_threads_of_one_process_queue_on_the_local_lock(db):
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with leases.held(db, "job", wait_seconds=5):
            inside.set()
            leave.wait(timeout=30)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(timeout=30)
        fake = FakeTime(T0)
        with pytest.raises(LeaseBusy), leases.held(db, "job", wait_seconds=0, clock=fake.clock, sleep=fake.sleep):
            pass
        assert fake.sleeps == []  # refused by the in-process lock, before polling the file
        assert leases.try_hold(db, "job") is None
    finally:
        leave.set()
        thread.join(timeout=30)
    with leases.held(db, "job", wait_seconds=0):
        pass


HOLD = """
import sys, time
from otc_bridge.storage import leases
lease = leases.try_hold(sys.argv[1], sys.argv[2])
print("held" if lease else "busy", flush=True)
time.sleep(120)
"""


def test_a_killed_holder_process_frees_the_lease_at_once(db):
    """The issue's failure, in small: the holder is SIGKILLed mid-block, nobody expires
    anything by hand, and the lease is free as soon as the process is gone."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, db.path, "reconciler"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert child.stdout.readline().strip() == "held"
        assert leases.try_hold(db, "reconciler") is None
        seen = leases.holder(db, "reconciler")
        assert (seen.pid, seen.held) == (child.pid, True)
        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        lease = leases.try_hold(db, "reconciler")
        taken_after = time.monotonic() - killed
    finally:
        child.kill()
        child.wait(timeout=10)
    assert lease is not None, "the dead process's lease was not free"
    assert taken_after < 1.0
    assert leases.holder(db, "reconciler").pid == os.getpid()
    lease.release()


def test_a_reused_pid_is_not_mistaken_for_the_holder(db):
    """The pid recorded in a leftover file now names another process (one that started later):
    not the holder."""
    Path(leases.lock_path(db, "job")).write_text(json.dumps({"pid": os.getpid(), "process_start": 1, "since": T0}))
    assert leases.holder(db, "job").alive is False
    lease = leases.try_hold(db, "job", now=T0)
    assert leases.holder(db, "job").alive is True  # the record of this process's own start
    lease.release()
