"""Test-only crash points: make the process die abruptly at a named step.

Crash tests (tests/crash) start the real server with ``OTC_ENABLE_CRASH_POINTS=1`` and
``OTC_CRASH_POINT=<name>``; when execution reaches that point the process ends with
``os._exit`` (no cleanup, no flush: as a power cut or SIGKILL would leave it), and the test
restarts it and lets the reconciler finish. Without the enabling variable every call here
is a no-op, whatever ``OTC_CRASH_POINT`` says.

Names:
* ``before:<call>`` / ``after:<call>``: around every HTTP call to the escrow node, where
  ``<call>`` is ``create_job``, ``get_job``, ``list_jobs``, ``claim``, ``deliver``, ``accept``,
  ``dispute``, ``cancel``, ``transfer``, ``tx_status``, ``balance``, ``pending_list`` (see :func:`call_name`);
  ``after:`` fires once the node's answer has arrived, before the bridge records it.
* ``after_commit:<status>``: right after a transaction that moved an order into
  ``<status>`` (``after_commit:locking`` for a new order's intent row) committed.
* ``before:claim_tx`` / ``after:claim_tx``: around every broadcast of the bridge's claimer (a
  claim of a buyer-held quote lock for its seller, its re-send, a replacement, a cancel;
  settlement/claimer.py, docs/protocol.md §12.8).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable

log = logging.getLogger(__name__)

ENABLE_VARIABLE = "OTC_ENABLE_CRASH_POINTS"
POINT_VARIABLE = "OTC_CRASH_POINT"
EXIT_CODE = 86

_JOB_ACTION = re.compile(r"^/agent/jobs/[^/]+/(claim|deliver|accept|dispute|cancel)$")


_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """In-process tests only: call ``hook(name)`` at every crash point (it may raise a
    ``BaseException`` to stop the operation there, as a crash would); ``None`` removes it."""
    global _hook
    _hook = hook


def crash_point(name: str) -> None:
    """Exit the process at once if crash points are enabled and ``name`` is the chosen one."""
    if _hook is not None:
        _hook(name)
    if os.environ.get(ENABLE_VARIABLE) != "1" or os.environ.get(POINT_VARIABLE) != name:
        return
    log.critical("crash point %s reached: exiting abruptly (test hook)", name)
    os._exit(EXIT_CODE)


def call_name(method: str, path: str) -> str:
    """The short name of a node call for crash points (``POST /agent/jobs/x/claim`` -> ``claim``)."""
    match = _JOB_ACTION.match(path)
    if match:
        return match.group(1)
    if path == "/agent/jobs":
        return "create_job" if method == "POST" else "list_jobs"
    if path.startswith("/agent/jobs/"):
        return "get_job"
    if path.startswith("/wallet/tx/"):
        return "tx_status"
    return {"/wallet/transfer": "transfer", "/wallet/balance": "balance",
            "/pending/list": "pending_list"}.get(path, path.strip("/"))
