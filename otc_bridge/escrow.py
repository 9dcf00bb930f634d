"""Typed client for the escrow node: a RustChain node's RIP-302 job escrow, wallet, pending pool.

Every call returns a frozen result whose ``outcome`` is one of three (STYLE.md 7):

* ``ok``: a 2xx (or an authoritative answer such as ``/wallet/tx`` 404 ``not_found``) whose
  JSON body has the shape the call expects;
* ``failed``: an explicit refusal, a 4xx whose JSON body carries the node's ``error`` string:
  the node did not apply the effect. 429 is ``failed`` with ``retry_after_seconds``. A 409
  never means "probably mine": the caller must read the job or payout back (NODE_API.md §4);
* ``unknown``: timeout, connection error, redirect, any 5xx, or a 2xx/4xx whose body is not
  JSON or not of the expected shape: the effect may or may not have happened (SPEC §4 rule 3).

The client never retries and never follows redirects (one would carry ``X-Admin-Key`` to
another host). It never logs the admin key or request bodies. All money is integer micro-RTC;
floats exist only at the wire edge, in :mod:`otc_bridge.escrow_amounts`.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from otc_bridge.escrow_amounts import (  # re-exported: the wire-edge helpers belong to this client
    expected_escrow_micro_rtc,
    expected_fee_micro_rtc,
    payout_tx_hash,
    reward_rtc_wire,
    transfer_rtc_wire,
)

__all__ = ["EscrowClientError", "EscrowNodeClient", "InsecureAdminTransport", "Job", "JobRead",
           "NodeResult", "Outcome", "TxStatus", "expected_escrow_micro_rtc",
           "expected_fee_micro_rtc", "payout_tx_hash", "reward_rtc_wire", "transfer_rtc_wire"]

log = logging.getLogger("otc_bridge.escrow")

TTL_MIN_SECONDS, TTL_MAX_SECONDS = 3600, 2_592_000  # the node clamps silently (NODE_API §1.2)
DEFAULT_RETRY_AFTER_SECONDS = 60
_IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # NODE_API §1.11 check 4
_TX_HASH_RE = re.compile(r"[0-9a-fA-F]{32}")  # NODE_API §1.12 /wallet/tx
_MAX_ERROR_CHARS = 300


class EscrowClientError(Exception):
    """The client refused to send a call (misconfiguration); nothing reached the node."""


class InsecureAdminTransport(EscrowClientError, ValueError):
    """The admin key would travel over plain HTTP to a non-loopback host (SPEC §5)."""


class Outcome(enum.StrEnum):
    """The three outcomes of a node call (STYLE.md 7). A ``str`` enum: ``Outcome.OK == "ok"``."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class NodeResult:
    """One node call's outcome.

    ``endpoint``: the route with placeholders, e.g. ``"POST /agent/jobs/<job_id>/claim"`` (for
    metrics). ``status_code``: None on transport failure. ``body``: the parsed JSON object when
    there was one (on failed/unknown too). ``error``: the node's ``error`` string, or "timeout",
    "connection error", "bad json", "bad error body", "bad shape: ...", "http 502", ...
    ``retry_after_seconds``: set on 429 only.
    """

    outcome: Outcome
    endpoint: str
    status_code: int | None
    body: dict | None
    error: str | None
    latency_ms: int
    retry_after_seconds: int | None = None

    @property
    def ok(self) -> bool:
        """The call did what was asked and the answer has the expected shape."""
        return self.outcome is Outcome.OK

    @property
    def failed(self) -> bool:
        """The node explicitly refused; the effect was not applied."""
        return self.outcome is Outcome.FAILED

    @property
    def unknown(self) -> bool:
        """The effect may or may not have happened; only a read-back can tell."""
        return self.outcome is Outcome.UNKNOWN


@dataclass(frozen=True)
class Job:
    """An escrow job as ``GET /agent/jobs/<id>`` reports it (NODE_API.md §1.8).

    Amounts are integer micro-RTC as the node stores them (``reward_i64`` is the truncated
    reward, ``escrow_i64`` = reward + fee); ``expires_at`` is unix seconds. ``tags`` arrive as a
    JSON string and are parsed ([] unless a JSON list; non-string items dropped).
    """

    job_id: str
    poster_wallet: str
    worker_wallet: str | None
    status: str
    reward_i64: int
    escrow_i64: int
    platform_fee_i64: int
    expires_at: int
    title: str
    description: str
    tags: list[str]


@dataclass(frozen=True)
class JobRead:
    """Result of :meth:`EscrowNodeClient.get_job`; ``job`` is set only when ``result.ok``."""

    result: NodeResult
    job: Job | None

    @property
    def not_found(self) -> bool:
        """True for the node's explicit 404 ``Job not found`` (a FAILED result)."""
        return self.result.failed and self.result.status_code == 404


@dataclass(frozen=True)
class TxStatus:
    """Result of :meth:`EscrowNodeClient.tx_status` (NODE_API.md §1.12): ``status`` is
    ``"pending"``, ``"confirmed"``, ``"failed"`` (voided) or ``"not_found"`` when ``result.ok``,
    else None."""

    result: NodeResult
    status: str | None


class _BadShape(Exception):
    """A response body lacks what the call needs; the outcome becomes UNKNOWN."""


Expect = Callable[[int, dict], None]


def _shape(*, needs_ok: bool = True, **rules: Any) -> Expect:
    """A body check. Per key, a rule is a type (isinstance, bools refused), a set (the value is
    a str among its members) or a str (the value equals it)."""

    def check(_code: int, body: dict) -> None:
        if needs_ok and body.get("ok") is not True:
            raise _BadShape("'ok' is not true")
        for key, rule in rules.items():
            value = body.get(key)
            if isinstance(rule, (set, frozenset)):
                good = isinstance(value, str) and value in rule
            elif isinstance(rule, str):
                good = value == rule
            else:
                good = isinstance(value, rule) and not isinstance(value, bool)
            if not good:
                raise _BadShape(f"{key!r} missing or unexpected")

    return check


def _parse_tags(raw: Any) -> list[str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return [tag for tag in raw if isinstance(tag, str)] if isinstance(raw, list) else []


def _parse_job(raw: Any, job_id: str) -> Job:
    """Raise _BadShape unless ``raw`` is the job ``job_id`` with integer amounts."""
    if not isinstance(raw, dict):
        raise _BadShape("'job' missing or not an object")
    _shape(needs_ok=False, job_id=job_id, poster_wallet=str, status=str, reward_i64=int,
           escrow_i64=int, platform_fee_i64=int, expires_at=int, title=str, description=str)(0, raw)
    worker = raw.get("worker_wallet")
    if worker is not None and not isinstance(worker, str):
        raise _BadShape("'worker_wallet' of the wrong type")
    fields = ("job_id", "poster_wallet", "status", "reward_i64", "escrow_i64",
              "platform_fee_i64", "expires_at", "title", "description")
    return Job(worker_wallet=worker, tags=_parse_tags(raw.get("tags")), **{k: raw[k] for k in fields})


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, not an IP literal: only "localhost" counts as loopback
        return False


def _check_admin_transport(base_url: str, allow_insecure_admin: bool) -> None:
    """Raise InsecureAdminTransport unless the admin key may travel to ``base_url`` (SPEC §5)."""
    parts = urlsplit(base_url)
    if parts.scheme == "https" or allow_insecure_admin or _is_loopback(parts.hostname or ""):
        return
    raise InsecureAdminTransport(
        f"refusing to send the admin key over plain HTTP to {parts.hostname!r}; use https, a "
        "loopback host, or OTC_ALLOW_INSECURE_ADMIN=1")


def _json_object(content: bytes) -> dict | None:
    def refuse(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        parsed = json.loads(content, parse_constant=refuse)
    except (ValueError, RecursionError):  # "no JSON object" is the answer: callers map it to UNKNOWN
        return None
    return parsed if isinstance(parsed, dict) else None


def _classify(code: int, body: dict | None, expect: Expect,
              authoritative: frozenset[int]) -> tuple[Outcome, str | None]:
    """Map an HTTP answer onto (outcome, error); see the module docstring."""
    raw_error = body.get("error") if body is not None else None
    node_error = raw_error[:_MAX_ERROR_CHARS] if isinstance(raw_error, str) else None
    if code == 429:  # rate limiting refuses before doing anything (NODE_API §4)
        return Outcome.FAILED, node_error or "rate limited"
    if 200 <= code < 300 or code in authoritative:
        if body is None:
            return Outcome.UNKNOWN, "bad json"
        try:
            expect(code, body)
        except _BadShape as exc:
            return Outcome.UNKNOWN, f"bad shape: {exc}"
        return Outcome.OK, None
    if 400 <= code < 500:
        if node_error is not None:
            return Outcome.FAILED, node_error
        return Outcome.UNKNOWN, "bad json" if body is None else "bad error body"
    return Outcome.UNKNOWN, node_error or f"http {code}"  # 1xx, 3xx (not followed), 5xx


def _transport_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):  # first: ConnectTimeout is also a ConnectionError
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection error"
    return f"transport error: {type(exc).__name__}"


class EscrowNodeClient:
    """Client of one escrow node; thread-safe as far as the injected Session is.

    ``base_url`` is ``http(s)://host[:port]``. Every call uses the timeout
    ``(connect_timeout_seconds, read_timeout_seconds)``, ``verify=tls_verify`` (bool or CA
    bundle path) and no redirects. ``admin_key`` (the node's ``RC_ADMIN_KEY``) goes as
    ``X-Admin-Key`` on ``/wallet/transfer`` and ``/pending/*`` only (NODE_API.md §2).

    Raises ValueError for a base_url that is not http(s) with a host, and
    InsecureAdminTransport when an admin key would go over plain HTTP to a non-loopback host
    without ``allow_insecure_admin`` (checked here and again on every admin call).
    """

    def __init__(self, base_url: str, *, admin_key: str | None,
                 session: requests.Session | None = None, connect_timeout_seconds: float = 3.05,
                 read_timeout_seconds: float = 10.0, allow_insecure_admin: bool = False,
                 tls_verify: bool | str = True) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"escrow node base_url must be http(s)://host[:port]: {base_url!r}")
        self._base_url = base_url.rstrip("/")
        self._admin_key = admin_key or None
        self._allow_insecure_admin = allow_insecure_admin
        if self._admin_key is not None:
            _check_admin_transport(self._base_url, allow_insecure_admin)
        self._session = session if session is not None else requests.Session()
        self._timeout = (connect_timeout_seconds, read_timeout_seconds)
        self._tls_verify = tls_verify

    @property
    def base_url(self) -> str:
        """The node's base URL, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        return f"EscrowNodeClient(base_url={self._base_url!r}, admin_key={'set' if self._admin_key else None})"

    # -- /agent/*: no auth on the node (NODE_API.md §2) -------------------------------------

    def create_job(self, *, poster_wallet: str, amount_micro_rtc: int, ttl_seconds: int,
                   title: str, description: str, tags: list[str],
                   category: str = "other") -> NodeResult:
        """``POST /agent/jobs`` (§1.2): lock ``amount + 5% fee`` micro-RTC from the poster.

        OK: a 2xx with a string ``body["job_id"]`` (then read the job back and check its
        amounts). A 2xx without one is UNKNOWN: the job may exist. Not idempotent: after
        UNKNOWN look for the job in ``list_open_jobs`` rather than resend (NODE_API.md §4).
        Raises ValueError for an amount outside 0.01..10,000 RTC or a TTL the node would clamp.
        """
        if not TTL_MIN_SECONDS <= ttl_seconds <= TTL_MAX_SECONDS:
            raise ValueError(f"ttl_seconds {ttl_seconds} outside the node's 3600..2592000")
        payload = {"poster_wallet": poster_wallet, "title": title, "description": description,
                   "category": category, "reward_rtc": reward_rtc_wire(amount_micro_rtc),
                   "ttl_seconds": ttl_seconds, "tags": list(tags)}
        return self._request("POST", "/agent/jobs", "/agent/jobs", payload=payload,
                             expect=_shape(job_id=str))

    def get_job(self, job_id: str) -> JobRead:
        """``GET /agent/jobs/<job_id>`` (§1.8); the node may lazily expire and refund the job.

        A ``job`` lacking integer amounts, or naming another job, is UNKNOWN. The node's 404
        ``Job not found`` is FAILED with ``not_found`` True.
        """
        def check(code: int, body: dict) -> None:
            _shape()(code, body)
            _parse_job(body.get("job"), job_id)

        result = self._request("GET", "/agent/jobs/<job_id>", self._job_path(job_id), expect=check)
        return JobRead(result, _parse_job(result.body["job"], job_id) if result.ok else None)

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
                             expect=_shape(jobs=list))

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
                               expect=_shape(needs_ok=False, amount_i64=int, miner_id=wallet))
        return result, (result.body["amount_i64"] if result.ok else None)

    def tx_status(self, tx_hash: str) -> TxStatus:
        """``GET /wallet/tx/<tx_hash>`` (§1.12), the authoritative payout lookup.

        200 gives pending/confirmed/failed (voided); 404 with ``status:"not_found"`` is an
        authoritative OK answer; a 404 without that body is UNKNOWN. Raises ValueError unless
        ``tx_hash`` is 32 hex characters.
        """
        if not isinstance(tx_hash, str) or not _TX_HASH_RE.fullmatch(tx_hash):
            raise ValueError("tx_hash must be 32 hexadecimal characters")

        def check(code: int, body: dict) -> None:
            if code == 404:
                _shape(needs_ok=False, status={"not_found"})(code, body)
            else:
                _shape(status={"pending", "confirmed", "failed"})(code, body)

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
        if not isinstance(idempotency_key, str) or not _IDEMPOTENCY_KEY_RE.fullmatch(
                idempotency_key):
            raise ValueError("idempotency_key must match [A-Za-z0-9._:-]{1,128}")
        expected_hash = payout_tx_hash(idempotency_key)
        payload = {"from_miner": from_wallet, "to_miner": to_wallet,
                   "amount_rtc": transfer_rtc_wire(amount_micro_rtc), "reason": reason,
                   "idempotency_key": idempotency_key}
        expect = _shape(phase={"pending", "confirmed", "voided"}, pending_id=int,
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
                             payload={"limit": limit}, expect=_shape(confirmed_count=int),
                             admin=True)

    def void_pending(self, *, tx_hash: str, reason: str) -> NodeResult:
        """``POST /pending/void`` (§1.12): void a still-pending transfer; moves no money.

        OK needs ``ok`` and an int ``voided_id``. A row no longer pending is a FAILED 400
        ``Cannot void - status is '<s>'``. Admin-key errors as :meth:`transfer`.
        """
        return self._request("POST", "/pending/void", "/pending/void",
                             payload={"tx_hash": tx_hash, "reason": reason},
                             expect=_shape(voided_id=int), admin=True)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _job_path(job_id: str, action: str = "") -> str:
        path = "/agent/jobs/" + quote(job_id, safe="")
        return f"{path}/{action}" if action else path

    def _transition(self, job_id: str, action: str, payload: dict, statuses: set[str],
                    **rules: Any) -> NodeResult:
        expect = _shape(job_id=job_id, status=statuses, **rules)
        return self._request("POST", f"/agent/jobs/<job_id>/{action}",
                             self._job_path(job_id, action), payload=payload, expect=expect)

    def _admin_headers(self) -> dict[str, str]:
        if self._admin_key is None:
            raise EscrowClientError("this call needs the node's admin key; none is configured")
        _check_admin_transport(self._base_url, self._allow_insecure_admin)
        return {"X-Admin-Key": self._admin_key}

    def _request(self, method: str, route: str, path: str, *, expect: Expect,
                 payload: dict | None = None, params: dict | None = None, admin: bool = False,
                 authoritative: frozenset[int] = frozenset()) -> NodeResult:
        """Send one call, never retried, and map it onto ok/failed/unknown."""
        endpoint = f"{method} {route}"
        headers = {"Accept": "application/json", **(self._admin_headers() if admin else {})}
        started = time.monotonic()
        try:
            resp = self._session.request(
                method, self._base_url + path, params=params, json=payload, headers=headers,
                timeout=self._timeout, verify=self._tls_verify, allow_redirects=False)
        except requests.RequestException as exc:
            latency_ms = int((time.monotonic() - started) * 1000)
            result = NodeResult(Outcome.UNKNOWN, endpoint, None, None, _transport_error(exc),
                                latency_ms)
            log.warning("escrow node %s -> unknown error=%r latency_ms=%d", endpoint,
                        result.error, latency_ms, exc_info=exc)
            return result
        latency_ms = int((time.monotonic() - started) * 1000)
        body = _json_object(resp.content)
        outcome, error = _classify(resp.status_code, body, expect, authoritative)
        retry_after = None
        if resp.status_code == 429:
            raw = resp.headers.get("Retry-After", "").strip()
            retry_after = int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else DEFAULT_RETRY_AFTER_SECONDS
        if outcome is not Outcome.OK:
            log.warning("escrow node %s -> %s status=%d error=%r latency_ms=%d", endpoint,
                        outcome.value, resp.status_code, error, latency_ms)
        return NodeResult(outcome, endpoint, resp.status_code, body, error, latency_ms, retry_after)
