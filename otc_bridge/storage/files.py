"""Files the bridge keeps on disk are private to its user: 0600 files, 0700 directories
(docs/protocol.md §8).

The SQLite file holds every order, the payout keys and, once revealed, the preimages;
``dev.json`` holds the admin token. Modes are set explicitly (``os.open`` with a mode, then
``fchmod``/``chmod``) so the process umask can neither widen nor narrow them. SQLite gives
its ``-wal`` and ``-shm`` files the database file's mode when it creates them; ones left
from an earlier run are tightened as well. Every SQLite file the bridge opens goes through
:func:`private_database`, the rate-limit counters' ``<db>-ratelimit`` beside the database too.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import uuid
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: str | Path, *, tighten_existing: bool = False) -> Path:
    """Create ``path`` and any missing parents as 0700 (umask-independent); an existing
    directory is changed to 0700 only with ``tighten_existing`` (a directory the bridge did
    not create, such as the working directory, is left alone)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another of our processes
            directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)
    if tighten_existing and not missing:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: str | Path) -> None:
    """Make ``path`` exist with mode 0600: created empty with that mode if missing, tightened
    to it if it exists (an older install's 0644 file). A file of another user is left as it
    is: only its owner may change its mode, and refusing to open it would gain nothing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _tighten(path)
        return
    try:
        os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away from the mode given to open
    finally:
        os.close(fd)


def _tighten(path: str | Path) -> None:
    # PermissionError: not ours (see private_file). FileNotFoundError: a -wal/-shm that the
    # last connection of another process removed between our look and the chmod.
    with contextlib.suppress(PermissionError, FileNotFoundError):
        os.chmod(path, FILE_MODE)


def private_database(path: str | Path) -> None:
    """Prepare a SQLite file: its directory (created 0700 if missing), the file itself 0600,
    and any ``-wal``/``-shm``/``-journal`` left beside it 0600."""
    path = Path(path)
    private_dir(path.parent)
    private_file(path)
    for suffix in _SQLITE_SIDE_FILES:
        _tighten(path.with_name(path.name + suffix))  # absent ones are skipped


def create_wal_database(path: str | Path, setup: tuple[str, ...] = ()) -> None:
    """Create the SQLite file ``path`` (0600, like :func:`private_database`) already in WAL
    mode, with the ``setup`` statements run, unless it exists. Made under a temporary name and
    linked into place (a link fails if the name exists): connections that open a new file
    together (threads, worker processes) would each switch it to WAL, and SQLite refuses all
    but one ``database is locked`` at once, without waiting for the busy timeout."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.new-{uuid.uuid4().hex[:12]}")
    private_database(temporary)
    try:
        with contextlib.closing(sqlite3.connect(temporary, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            for sql in setup:
                conn.execute(sql)
        with contextlib.suppress(FileExistsError):  # made meanwhile by another thread or process
            os.link(temporary, path)
    finally:
        for suffix in ("", *_SQLITE_SIDE_FILES):  # the last close removed -wal and -shm already
            Path(f"{temporary}{suffix}").unlink(missing_ok=True)


def write_private(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` as a 0600 file, atomically: a temporary file made
    0600 from its creation, then renamed over ``path``; nobody ever reads a partial or
    wider-readable copy."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
