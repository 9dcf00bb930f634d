"""Fixtures of the backup, replication and deployment-kit tests.

The real-process harness of the crash tests (``tests/crash/crash_support.py``: CLI commands in
their own session, readiness awaited on output lines) is reused for ``serve --replicate``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))

from otc_bridge.serving import replication  # noqa: E402


@pytest.fixture(scope="session")
def litestream_bin() -> Path:
    """The pinned Litestream binary: the tool cache's, installed with npm on first use
    (``otc-bridge replication install``). Skipped only where npm itself is missing."""
    found = replication.find_binary(os.environ)
    if found is not None and replication.binary_version(found) == replication.LITESTREAM_VERSION:
        return found
    if shutil.which("npm") is None:
        pytest.skip("no litestream and no npm to install it")
    return replication.install(os.environ)
