"""What the escrow-node client returns, and how an HTTP answer becomes one of three outcomes.

:class:`NodeResult` carries ``ok`` / ``failed`` / ``unknown`` (the meaning of each is in
:mod:`otc_bridge.node.client`), the status code, the parsed JSON body and the error string;
:class:`Job`, :class:`JobRead` and :class:`TxStatus` are the typed reads. :func:`classify`
maps a status code and body onto an outcome against the shape a call expects
(:func:`expect_shape`); anything unexpected is ``unknown``, never a guess.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

TTL_MIN_SECONDS, TTL_MAX_SECONDS = 3600, 2_592_000  # the node clamps silently (docs/escrow-node.md §1.2)
DEFAULT_RETRY_AFTER_SECONDS = 60
IDEMPOTENCY_KEY_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # docs/escrow-node.md §1.11 check 4
TX_HASH_RE = re.compile(r"[0-9a-fA-F]{32}")  # docs/escrow-node.md §1.12 /wallet/tx
_MAX_ERROR_CHARS = 300


class EscrowClientError(Exception):
    """The client refused to send a call (misconfiguration); nothing reached the node."""


class InsecureAdminTransport(EscrowClientError, ValueError):
    """The admin key would travel over plain HTTP to a non-loopback host (docs/protocol.md §5)."""


class Outcome(enum.StrEnum):
    """The three outcomes of a node call . A ``str`` enum: ``Outcome.OK == "ok"``."""

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
    """An escrow job as ``GET /agent/jobs/<id>`` reports it (docs/escrow-node.md §1.8).

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
    """Result of :meth:`EscrowNodeClient.tx_status` (docs/escrow-node.md §1.12): ``status`` is
    ``"pending"``, ``"confirmed"``, ``"failed"`` (voided) or ``"not_found"`` when ``result.ok``,
    else None."""

    result: NodeResult
    status: str | None


class _BadShape(Exception):
    """A response body lacks what the call needs; the outcome becomes UNKNOWN."""


Expect = Callable[[int, dict], None]


def expect_shape(*, needs_ok: bool = True, **rules: Any) -> Expect:
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


def parse_tags(raw: Any) -> list[str]:
    """A job's tags as a list of strings: the node returns them as a JSON string
    (docs/escrow-node.md §1.8); anything unparseable carries no tag."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:  # not JSON: no tags, so nothing to match on
            return []
    return [tag for tag in raw if isinstance(tag, str)] if isinstance(raw, list) else []


def parse_job(raw: Any, job_id: str) -> Job:
    """Raise _BadShape unless ``raw`` is the job ``job_id`` with integer amounts."""
    if not isinstance(raw, dict):
        raise _BadShape("'job' missing or not an object")
    expect_shape(needs_ok=False, job_id=job_id, poster_wallet=str, status=str, reward_i64=int,
           escrow_i64=int, platform_fee_i64=int, expires_at=int, title=str, description=str)(0, raw)
    worker = raw.get("worker_wallet")
    if worker is not None and not isinstance(worker, str):
        raise _BadShape("'worker_wallet' of the wrong type")
    fields = ("job_id", "poster_wallet", "status", "reward_i64", "escrow_i64",
              "platform_fee_i64", "expires_at", "title", "description")
    return Job(worker_wallet=worker, tags=parse_tags(raw.get("tags")), **{k: raw[k] for k in fields})


def json_object(content: bytes) -> dict | None:
    def refuse(name: str) -> Any:
        raise ValueError(f"non-finite number {name}")

    try:
        parsed = json.loads(content, parse_constant=refuse)
    except (ValueError, RecursionError):  # "no JSON object" is the answer: callers map it to UNKNOWN
        return None
    return parsed if isinstance(parsed, dict) else None


def classify(code: int, body: dict | None, expect: Expect,
              authoritative: frozenset[int]) -> tuple[Outcome, str | None]:
    """Map an HTTP answer onto (outcome, error); see the module docstring."""
    raw_error = body.get("error") if body is not None else None
    node_error = raw_error[:_MAX_ERROR_CHARS] if isinstance(raw_error, str) else None
    if code == 429:  # rate limiting refuses before doing anything (docs/escrow-node.md §4)
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


def transport_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):  # first: ConnectTimeout is also a ConnectionError
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection error"
    return f"transport error: {type(exc).__name__}"
