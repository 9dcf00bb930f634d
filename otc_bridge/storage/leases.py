"""Named leases bound to the holder's process: one holder at a time, across threads and processes.

A lease is an exclusive ``flock(2)`` on a small file beside the database,
``<db>.<name>.lock`` (``<db>.reconciler.lock``, ``<db>.outbox.lock``,
``<db>.escrow-create_<wallet>-<hash>.lock``). The kernel drops the lock when the holder's
file descriptor closes, and so when its process dies in any way (SIGKILL, ``os._exit``,
OOM kill): a dead holder never blocks anyone, and a live one can never be overtaken, however
long its block runs (no TTL to outlive). Why this and not a renewed TTL row: docs/leases.md.

* ``flock`` locks belong to an open file description, so each acquisition opens the file
  anew; threads of one process queue first on an in-process lock per file (one poller per
  process, and correct even where ``flock`` is emulated with per-process ``fcntl`` locks).
* The holder writes ``{"pid", "process_start", "holder", "since", "host"}`` into the file (``/readyz``
  reads it through :func:`holder`) and unlinks it when it gives the lease back; a file left by a holder
  that died is simply locked again by the next one. An acquirer that locked a file which was
  unlinked meanwhile (the classic unlink race) sees its inode gone from the path and retries.
* Scope: one machine, like the SQLite database itself (WAL needs shared memory, so every
  process using the file is on the host that has it). Not for NFS.

Used by the reconciler and the outbox worker (one driver per pass, :func:`try_hold`), the
per-wallet escrow creation (docs/escrow-node.md §4, "Concurrent job creation by the same
poster") and the operator actions (one per order, :func:`held`). No database row is written.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from otc_bridge.storage.db import Database

POLL_SECONDS = 0.05
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_RETRIES = 100  # inode changed under us this many times in a row: treat as busy


class LeaseBusy(RuntimeError):
    """The lease stayed held by someone else for the whole wait."""


def new_holder() -> str:
    """A holder id unique to this process and call."""
    return f"{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lock_path(db: Database | str, name: str) -> str:
    """The lock file of lease ``name`` for the database ``db`` (a :class:`Database` or a path):
    ``<db>.<name>.lock``; a name with characters other than ``[A-Za-z0-9_.-]`` has them
    replaced and a hash of the exact name appended, so two names never share a file."""
    path = db.path if isinstance(db, Database) else db
    safe = _UNSAFE.sub("_", name)[:80]
    if safe != name:
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return f"{os.path.abspath(path)}.{safe}.lock"


_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


def _local_lock(path: str) -> threading.Lock:
    with _local_locks_guard:
        return _local_locks.setdefault(path, threading.Lock())


class Lease:
    """A lease this process holds until :meth:`release` (idempotent) or its death."""

    def __init__(self, name: str, path: str, fd: int, holder: str, since: float, local: threading.Lock) -> None:
        self.name, self.path, self.holder, self.since = name, path, holder, since
        self._fd: int | None = fd
        self._local = local

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lease back: unlink the file (while still locked, so nobody else holds it)
        and close it, which drops the lock; then let this process's other threads in."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with suppress(OSError):
                if _same_file(fd, self.path):
                    os.unlink(self.path)
            os.close(fd)
        finally:
            self._local.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        on_path = os.stat(path)
    except FileNotFoundError:  # removed by its releaser after we opened it: not the lock file
        return False
    mine = os.fstat(fd)
    return (on_path.st_dev, on_path.st_ino) == (mine.st_dev, mine.st_ino)


def _lock_file(path: str) -> int | None:
    """An open descriptor holding the exclusive ``flock`` on the file now at ``path``, or
    ``None`` if another open file holds it."""
    for _ in range(_RETRIES):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the previous holder unlinked it after we opened it: lock the new file
    return None


def _take(path: str, name: str, now: float, local: threading.Lock) -> Lease | None:
    """The lease on ``path`` if its file lock is free (this thread holds ``local``), else ``None``."""
    fd = _lock_file(path)
    if fd is None:
        return None
    holder = new_holder()
    info = json.dumps({"name": name, "holder": holder, "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                       "since": now, "host": socket.gethostname()}, sort_keys=True).encode()
    with suppress(OSError):  # the record is for reports; the lock is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
    return Lease(name, path, fd, holder, now, local)


def try_hold(db: Database | str, name: str, *, now: float | None = None) -> Lease | None:
    """Take lease ``name`` if it is free now, else ``None`` at once (never waits).

    ``now`` (unix seconds) is recorded as the holder's start; default: the wall clock.
    """
    path = lock_path(db, name)
    local = _local_lock(path)
    if not local.acquire(blocking=False):
        return None
    try:
        lease = _take(path, name, time.time() if now is None else now, local)
    except BaseException:
        local.release()
        raise
    if lease is None:
        local.release()
    return lease


@contextmanager
def held(
    db: Database | str,
    name: str,
    *,
    wait_seconds: float,
    ttl_seconds: float | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Hold lease ``name`` for the ``with`` block (yields the holder id); raises
    :class:`LeaseBusy` if it stayed taken for ``wait_seconds``.

    Threads of one process queue on an in-process lock first, so only one of them polls the
    file; processes poll every :data:`POLL_SECONDS`. ``ttl_seconds`` is accepted for older
    callers and ignored: the lease lasts exactly as long as the block or the process.
    """
    del ttl_seconds
    path = lock_path(db, name)
    local = _local_lock(path)
    if not local.acquire(timeout=max(0.0, wait_seconds)):
        raise LeaseBusy(name)
    try:
        deadline = clock() + wait_seconds
        while (lease := _take(path, name, clock(), local)) is None:
            if clock() >= deadline:
                raise LeaseBusy(name)
            sleep(POLL_SECONDS)
    except BaseException:
        local.release()
        raise
    try:
        yield lease.holder
    finally:
        lease.release()


# --- reports ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """What a lease's file says about its holder, for reports (``/readyz``).

    ``alive``: the recorded process exists on this host (``None``: another host, or the
    file holds no record yet). A file whose process is gone was left by a holder that died:
    the kernel has already freed its lock, so the lease is free.
    """

    name: str
    pid: int | None
    holder: str | None
    since: float | None
    host: str | None
    alive: bool | None

    @property
    def held(self) -> bool:
        return self.alive is not False

    def as_dict(self, now: float) -> dict:
        out = {"held": self.held, "pid": self.pid, "since": self.since}
        if self.since is not None:
            out["held_seconds"] = round(float(now - self.since), 1)
        if self.alive is False:
            out["note"] = f"process {self.pid} died holding it; the kernel freed the lock"
        if self.host is not None and self.host != socket.gethostname():
            out["host"] = self.host
        return out


def holder(db: Database | str, name: str) -> Holder | None:
    """Who holds lease ``name``, from its file (read only, never locks): ``None`` if it is
    free (no file)."""
    try:
        with open(lock_path(db, name), "rb") as file:
            raw = file.read(4096)
    except FileNotFoundError:  # no lock file: nobody holds the lease
        return None
    try:
        info = json.loads(raw) if raw else {}
    except ValueError:
        info = {}
    pid = info.get("pid") if isinstance(info.get("pid"), int) else None
    host = info.get("host") if isinstance(info.get("host"), str) else None
    alive = None
    if pid is not None and host in (None, socket.gethostname()):
        alive = _alive(pid, info.get("process_start"))
    since = info.get("since") if isinstance(info.get("since"), int | float) else None
    return Holder(name, pid, info.get("holder"), since, host, alive)


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux ``/proc``), to tell it
    from a later process given the same pid; ``None`` where unknown."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat is not None and len(stat) > 19 else None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (``[0]`` is the state)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:  # no such process (or no /proc): its start time is unknown
        return None
    return text[text.rfind(")") + 2:].split()


def _alive(pid: int, process_start: object = None) -> bool:
    """Process ``pid`` runs (not a zombie) and, if recorded, is the one that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # the recorded holder is gone: the lease is not held
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (or not readable): the signal check is all there is
    if stat[0] in ("Z", "X"):
        return False
    return not isinstance(process_start, int) or len(stat) <= 19 or int(stat[19]) == process_start
