"""otc_bridge.dev.node: a local simulator of the RustChain escrow node.

It reproduces the node's behaviour as recorded in docs/escrow-node.md: the RIP-302
job escrow under ``/agent/*`` (no auth, 5 % fee, float truncation of rewards, 20 active
jobs per poster, lazy expiry with refund), ``GET /wallet/balance``, the admin
``POST /wallet/transfer`` into a pending pool with idempotency keys,
``POST /pending/confirm``, ``POST /pending/void``, ``GET /pending/list`` (offset ignored),
``GET /wallet/tx/<hash>``, the optional admin rate limit, the 1 MB body limit and
``X-Request-Id``. It keeps its own SQLite file. Server time is
``int(time.time()) + offset``, the offset stored in that file.

Dev-only endpoints (no key; never rate limited nor faulted):

* ``POST /dev/fund {"wallet", "amount_rtc"}``: mint into a wallet; ``amount_rtc`` is a
  decimal string or number, >= 0, at most 6 decimals. 200
  ``{"ok", "wallet", "amount_i64": <new balance>, "amount_rtc"}``.
* ``GET /dev/clock``; ``POST /dev/clock {"advance_seconds": N}`` or
  ``{"set_offset_seconds": N}`` → ``{"ok", "now", "offset_seconds"}``.
* ``POST /dev/jobs/<job_id>/expire``: ``expires_at = now - 1`` (lazy expiry then applies).
* ``POST /dev/void {"tx_hash"|"pending_id", "reason"?}``: void a pending transfer.
* ``POST /dev/confirm {"limit"?}``: confirm the due pending transfers, like
  ``/pending/confirm``.
* ``GET /dev/state``: every balance, their sum, ``minted_i64``, ``agent_escrow_i64``, the
  escrow locked by jobs, the pending pool by status and the jobs by status.
* ``GET /dev/stats``: requests received since the process started, by method and route
  (``"POST /agent/jobs/<job_id>/claim"``), with their handling time (``stats.py``); counting
  changes no answer.
* ``GET|POST|DELETE /dev/faults``: list, add (object or list) or clear fault rules. A rule:
  ``{"endpoint": "POST /agent/jobs/<job_id>/accept" | "*", "kind": "timeout_after" |
  "drop_before" | "error_5xx" | "latency" | "rate_limit", "count"?: N,
  "probability"?: p, "seed"?: s, "latency_ms"?: ms, "status"?: 500|502|503, "html"?: bool}``.
  See ``otc_bridge.dev.node.faults`` for the semantics and ``parse_fault_spec`` for the CLI
  form ``"POST /wallet/transfer=timeout_after:count=1,latency_ms=200"``.

Run it with ``python -m otc_bridge.dev.node --help``, or in tests with
``otc_bridge.dev.node.server.start_in_thread(create_app(...))``. Importing this package does
no work.
"""

from .app import create_app

__all__ = ["create_app"]
