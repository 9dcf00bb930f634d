"""Typed client for the escrow node: a RustChain node's RIP-302 job escrow, wallet, pending pool.

Every call returns a frozen result whose ``outcome`` is one of three :

* ``ok``: a 2xx (or an authoritative answer such as ``/wallet/tx`` 404 ``not_found``) whose
  JSON body has the shape the call expects;
* ``failed``: an explicit refusal, a 4xx whose JSON body carries the node's ``error`` string:
  the node did not apply the effect. 429 is ``failed`` with ``retry_after_seconds``. A 409
  never means "probably mine": the caller must read the job or payout back (docs/escrow-node.md §4);
* ``unknown``: timeout, connection error, redirect, any 5xx, or a 2xx/4xx whose body is not
  JSON or not of the expected shape: the effect may or may not have happened (docs/protocol.md §4 rule 3).

The client never retries and never follows redirects (one would carry ``X-Admin-Key`` to
another host). It never logs the admin key or request bodies. All money is integer micro-RTC;
floats exist only at the wire edge, in :mod:`otc_bridge.node.amounts`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests

from otc_bridge.node.amounts import (
    payout_tx_hash,
    reward_rtc_wire,
    rtc_to_micro_rtc,
    transfer_rtc_wire,
)
from otc_bridge.node.results import (
    IDEMPOTENCY_KEY_RE,
    TTL_MAX_SECONDS,
    TTL_MIN_SECONDS,
    TX_HASH_RE,
    JobRead,
    NodeResult,
    TxStatus,
    expect_shape,
    parse_job,
)
from otc_bridge.node.transport import Transport

log = logging.getLogger("otc_bridge.node")


class EscrowNodeClient:
    """Client of one escrow node; thread-safe as far as the injected Session is.

    ``base_url`` is ``http(s)://host[:port]``. Every call uses the timeout
    ``(connect_timeout_seconds, read_timeout_seconds)``, a total ``deadline_seconds`` and a
    ``max_response_bytes`` cap on the answer (either exceeded: UNKNOWN), ``verify=tls_verify``
    (bool or CA bundle path) and no redirects. ``admin_key`` (the node's ``RC_ADMIN_KEY``) goes as
    ``X-Admin-Key`` on ``/wallet/transfer`` and ``/pending/*`` only (docs/escrow-node.md §2).

    Raises ValueError for a base_url that is not http(s) with a host, and
    InsecureAdminTransport when an admin key would go over plain HTTP to a non-loopback host
    without ``allow_insecure_admin`` (checked here and again on every admin call).
    """

    def __init__(self, base_url: str, *, admin_key: str | None,
                 session: requests.Session | None = None, connect_timeout_seconds: float = 3.05,
                 read_timeout_seconds: float = 10.0, allow_insecure_admin: bool = False,
                 tls_verify: bool | str = True, deadline_seconds: float = 15.0,
                 max_response_bytes: int = 1024 * 1024) -> None:
        self._transport = Transport(base_url, admin_key=admin_key, session=session,
                                    timeout=(connect_timeout_seconds, read_timeout_seconds),
                                    allow_insecure_admin=allow_insecure_admin, tls_verify=tls_verify,
                                    deadline_seconds=deadline_seconds, max_response_bytes=max_response_bytes)
        self._request = self._transport.request

    @property
    def base_url(self) -> str:
        """The node's base URL, without a trailing slash."""
        return self._transport.base_url

    def __repr__(self) -> str:
        return f"EscrowNodeClient(base_url={self.base_url!r}, admin_key={self._transport.admin_key_state})"

    # -- /agent/*: no auth on the node (docs/escrow-node.md §2) -------------------------------------

    def create_job(self, *, poster_wallet: str, amount_micro_rtc: int, ttl_seconds: int,
                   title: str, description: str, tags: list[str],
                   category: str = "other") -> NodeResult:
        """``POST /agent/jobs`` (§1.2): lock ``amount + 5% fee`` micro-RTC from the poster.

        OK: a 2xx with a string ``body["job_id"]`` (then read the job back and check its
        amounts). A 2xx without one is UNKNOWN: the job may exist. Not idempotent: after
        UNKNOWN look for the job in ``list_open_jobs`` rather than resend (docs/escrow-node.md §4).
        Raises ValueError for an amount outside 0.01..10,000 RTC or a TTL the node would clamp.
        """
        if not TTL_MIN_SECONDS <= ttl_seconds <= TTL_MAX_SECONDS:
            raise ValueError(f"ttl_seconds {ttl_seconds} outside the node's 3600..2592000")
        payload = {"poster_wallet": poster_wallet, "title": title, "description": description,
                   "category": category, "reward_rtc": reward_rtc_wire(amount_micro_rtc),
                   "ttl_seconds": ttl_seconds, "tags": list(tags)}
        return self._request("POST", "/agent/jobs", "/agent/jobs", payload=payload,
                             expect=expect_shape(job_id=str))

    def get_job(self, job_id: str) -> JobRead:
        """``GET /agent/jobs/<job_id>`` (§1.8); the node may lazily expire and refund the job.

        A ``job`` lacking integer amounts, or naming another job, is UNKNOWN. The node's 404
        ``Job not found`` is FAILED with ``not_found`` True.
        """
        def check(code: int, body: dict) -> None:
            expect_shape()(code, body)
            parse_job(body.get("job"), job_id)

        result = self._request("GET", "/agent/jobs/<job_id>", self._job_path(job_id), expect=check)
        return JobRead(result, parse_job(result.body["job"], job_id) if result.ok else None)

    def list_jobs(self, *, status: str, limit: int = 100, offset: int = 0) -> NodeResult:
        """``GET /agent/jobs?status=<status>`` (§1.8): ``body["jobs"]`` is a list of job summaries.

        ``offset`` works on this route. The node first sweeps expired open/claimed jobs.
        Raises ValueError unless 1 <= limit <= 100 (the node caps silently at 100, which
        would break paging), offset >= 0 and ``status`` is a plain word.
        """
        if not 1 <= limit <= 100 or offset < 0 or not status.isalpha():
            raise ValueError("limit must be 1..100, offset >= 0 and status a word")
        params = {"status": status, "limit": limit, "offset": offset}
        return self._request("GET", "/agent/jobs", "/agent/jobs", params=params,
                             expect=expect_shape(jobs=list))

    def list_open_jobs(self, *, limit: int = 100, offset: int = 0) -> NodeResult:
        """``list_jobs(status="open", ...)``."""
        return self.list_jobs(status="open", limit=limit, offset=offset)

    def claim_job(self, job_id: str, *, worker_wallet: str) -> NodeResult:
        """``POST .../claim`` (§1.3). A 409 "not open" is FAILED even if we hold it: read back."""
        return self._transition(job_id, "claim", {"worker_wallet": worker_wallet}, {"claimed"})

    def deliver_job(self, job_id: str, *, worker_wallet: str, result_summary: str) -> NodeResult:
        """``POST .../deliver`` (§1.4). 410: this call itself expired and refunded the job."""
        payload = {"worker_wallet": worker_wallet, "result_summary": result_summary}
        return self._transition(job_id, "deliver", payload, {"delivered"})

    def accept_job(self, job_id: str, *, poster_wallet: str,
                   rating: int | None = None) -> NodeResult:
        """``POST .../accept`` (§1.5): releases escrow to the worker. OK needs a numeric
        ``reward_paid_rtc`` (the truncated reward credited; prefer ``job.reward_i64``)."""
        payload: dict[str, Any] = {"poster_wallet": poster_wallet}
        if rating is not None:
            payload["rating"] = rating
        return self._transition(job_id, "accept", payload, {"completed"},
                                reward_paid_rtc=(int, float))

    def dispute_job(self, job_id: str, *, poster_wallet: str, reason: str) -> NodeResult:
        """``POST .../dispute`` (§1.6): delivered -> disputed; the escrow stays locked."""
        payload = {"poster_wallet": poster_wallet, "reason": reason}
        return self._transition(job_id, "dispute", payload, {"disputed"})

    def cancel_job(self, job_id: str, *, poster_wallet: str) -> NodeResult:
        """``POST .../cancel`` (§1.7): refunds reward + fee. OK ``body["status"]`` is
        ``"cancelled"`` or ``"expired"`` (claimed past TTL). A retry of a cancel that landed
        gets 409: read back."""
        return self._transition(job_id, "cancel", {"poster_wallet": poster_wallet},
                                {"cancelled", "expired"}, refunded_rtc=(int, float))

    # -- public wallet reads ----------------------------------------------------------------

    def balance_micro_rtc(self, wallet: str) -> tuple[NodeResult, int | None]:
        """``GET /wallet/balance?miner_id=`` (§1.10): confirmed balance in micro-RTC, or None.

        Success has no ``ok`` key; it needs an int ``amount_i64`` and the same ``miner_id``.
        Pending transfers are not reflected.
        """
        result = self._request("GET", "/wallet/balance", "/wallet/balance",
                               params={"miner_id": wallet},
                               expect=expect_shape(needs_ok=False, amount_i64=int, miner_id=wallet))
        return result, (result.body["amount_i64"] if result.ok else None)

    def tx_status(self, tx_hash: str) -> TxStatus:
        """``GET /wallet/tx/<tx_hash>`` (§1.12), the authoritative payout lookup.

        200 gives pending/confirmed/failed (voided); 404 with ``status:"not_found"`` is an
        authoritative OK answer; a 404 without that body is UNKNOWN. Raises ValueError unless
        ``tx_hash`` is 32 hex characters.
        """
        if not isinstance(tx_hash, str) or not TX_HASH_RE.fullmatch(tx_hash):
            raise ValueError("tx_hash must be 32 hexadecimal characters")

        def check(code: int, body: dict) -> None:
            if code == 404:
                expect_shape(needs_ok=False, status={"not_found"})(code, body)
            else:
                expect_shape(status={"pending", "confirmed", "failed"})(code, body)

        result = self._request("GET", "/wallet/tx/<tx_hash>", f"/wallet/tx/{tx_hash}",
                               expect=check, authoritative=frozenset({404}))
        return TxStatus(result, result.body["status"] if result.ok else None)

    # -- admin: X-Admin-Key, rate limited on the node ---------------------------------------

    def transfer(self, *, from_wallet: str, to_wallet: str, amount_micro_rtc: int, reason: str,
                 idempotency_key: str) -> NodeResult:
        """``POST /wallet/transfer`` (§1.11): queue a keyed transfer in the pending pool.

        OK needs ``phase`` in pending/confirmed/voided, an int ``pending_id`` and ``tx_hash`` ==
        ``payout_tx_hash(idempotency_key)``. ``phase == "voided"`` is still OK: the caller must
        check ``body["phase"]``; re-paying needs a new key (§4). After UNKNOWN resend with the
        same key, wallets, amount and reason, or read ``tx_status``. Raises ValueError for a
        key the node would refuse or an amount that cannot go on the wire exactly;
        EscrowClientError / InsecureAdminTransport if the admin key is missing or unsafe to send.
        """
        if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY_RE.fullmatch(
                idempotency_key):
            raise ValueError("idempotency_key must match [A-Za-z0-9._:-]{1,128}")
        expected_hash = payout_tx_hash(idempotency_key)
        payload = {"from_miner": from_wallet, "to_miner": to_wallet,
                   "amount_rtc": transfer_rtc_wire(amount_micro_rtc), "reason": reason,
                   "idempotency_key": idempotency_key}
        expect = expect_shape(phase={"pending", "confirmed", "voided"}, pending_id=int,
                        tx_hash=expected_hash)
        result = self._request("POST", "/wallet/transfer", "/wallet/transfer", payload=payload,
                               expect=expect, admin=True)
        returned = (result.body or {}).get("tx_hash")
        if result.unknown and isinstance(returned, str) and returned != expected_hash:
            log.error("escrow node answered a transfer with tx_hash %r, expected %r",
                      str(returned)[:64], expected_hash)
        return result

    def confirm_pending(self, limit: int = 100) -> NodeResult:
        """``POST /pending/confirm`` (§1.12): confirm due pending transfers, oldest first.

        OK needs ``ok`` and an int ``confirmed_count``. Raises ValueError unless
        1 <= limit <= 500; admin-key errors as :meth:`transfer`.
        """
        if not 1 <= limit <= 500:
            raise ValueError("limit must be 1..500")
        return self._request("POST", "/pending/confirm", "/pending/confirm",
                             payload={"limit": limit}, expect=expect_shape(confirmed_count=int),
                             admin=True)

    def pending_debits_micro_rtc(self, wallet: str) -> tuple[NodeResult, int | None, bool]:
        """``GET /pending/list?status=pending&miner_id=<wallet>&limit=500`` (§1.12, admin key):
        the sum of ``wallet``'s queued outgoing transfers in micro-RTC, or None if unusable, and
        whether the list may be cut (the node returns at most the newest 500 rows and ignores
        ``offset``, so a full page cannot be paged further)."""
        result = self._request("GET", "/pending/list", "/pending/list",
                               params={"status": "pending", "miner_id": wallet, "limit": 500},
                               expect=expect_shape(pending=list), admin=True)
        if not result.ok:
            return result, None, False
        rows = [row for row in result.body["pending"] if isinstance(row, dict) and row.get("from_miner") == wallet]
        amounts = [rtc_to_micro_rtc(row.get("amount_rtc")) for row in rows]
        if any(amount is None for amount in amounts):
            return result, None, False
        return result, sum(amounts), len(result.body["pending"]) >= 500

    def void_pending(self, *, tx_hash: str, reason: str) -> NodeResult:
        """``POST /pending/void`` (§1.12): void a still-pending transfer; moves no money.

        OK needs ``ok`` and an int ``voided_id``. A row no longer pending is a FAILED 400
        ``Cannot void - status is '<s>'``. Admin-key errors as :meth:`transfer`.
        """
        return self._request("POST", "/pending/void", "/pending/void",
                             payload={"tx_hash": tx_hash, "reason": reason},
                             expect=expect_shape(voided_id=int), admin=True)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _job_path(job_id: str, action: str = "") -> str:
        path = "/agent/jobs/" + quote(job_id, safe="")
        return f"{path}/{action}" if action else path

    def _transition(self, job_id: str, action: str, payload: dict, statuses: set[str],
                    **rules: Any) -> NodeResult:
        expect = expect_shape(job_id=job_id, status=statuses, **rules)
        return self._request("POST", f"/agent/jobs/<job_id>/{action}",
                             self._job_path(job_id, action), payload=payload, expect=expect)
