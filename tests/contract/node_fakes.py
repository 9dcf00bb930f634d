"""A stateful fake of the escrow node at the ``requests`` edge (``responses`` callbacks).

The unit tests answer each call with one canned body. The contract suite needs more: a
sequence of calls whose answers depend on what came before (a claim after a claim, a replay
after a void). This fake keeps the node's state in memory (balances, jobs, the pending pool)
and answers every route the client uses with the bodies of ``node_bodies``, in the check
order of docs/escrow-node.md. It is written from that document, not from the dev node's code,
so that running the same tests against both compares two independent readings of it.

Time is the integer ``now``, moved only by the test; nothing sleeps. Faults mirror the dev
node's rules (otc_bridge/dev/node/faults.py) for the kinds the suite injects, each firing
once. Refusals the client can never provoke (non-numeric amounts, a missing JSON body on the
job actions) are not modelled: the fake trusts the client's own argument checks there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import node_bodies as bodies
import requests
import responses

FAKE_NOW = 1_795_234_790  # any fixed instant: the node's clock is int(time.time())
ESCROW_WALLET, FEE_WALLET = "agent_escrow", "founder_community"
MAX_BODY_BYTES = 1024 * 1024
FEE_RATE = 0.05
MAX_ACTIVE_JOBS = 20
_MINER_ID = re.compile(r"[A-Za-z0-9._:-]{1,80}")
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TX_HASH = re.compile(r"[0-9a-fA-F]{32}")

Answer = tuple[int, Any]  # (status, JSON body)


@dataclass(frozen=True)
class Request:
    """What a handler sees of one HTTP request."""

    query: dict[str, str]
    body: Any  # the JSON body, or None without one (Flask's get_json(silent=True))
    headers: Any

    def field(self, name: str) -> str:
        """``str(body[name]).strip()``, the node's reading of a wallet or text field."""
        body = self.body if isinstance(self.body, dict) else {}
        return str(body.get(name, "")).strip()


def job_amounts(reward_rtc: float) -> tuple[int, int]:
    """``(reward_i64, platform_fee_i64)`` with the node's float truncation (§1.2)."""
    reward_i64 = int(reward_rtc * 1e6)
    return reward_i64, int(reward_i64 * FEE_RATE)


def _parse_reward(raw: Any) -> float | str:
    if raw is None or isinstance(raw, bool):
        return "reward_rtc must be a number"
    try:
        reward = float(raw)
    except (TypeError, ValueError):
        return "reward_rtc must be a number"
    if not math.isfinite(reward) or not 0.01 <= reward <= 10_000:
        return "reward_rtc must be between 0.01 and 10000 RTC"
    return reward


def parse_new_job(req: Request) -> dict[str, Any] | str:
    """The §1.2 field rules in order; a str is the 400 error."""
    body = req.body
    fields = {name: req.field(name) for name in ("poster_wallet", "title", "description")}
    fields["category"] = str(body.get("category", "other")).strip().lower()
    fields["reward_rtc"] = _parse_reward(body.get("reward_rtc"))
    for refused, message in ((not fields["poster_wallet"], bodies.POSTER_REQUIRED),
                             (len(fields["title"]) < 5, bodies.TITLE_TOO_SHORT),
                             (len(fields["description"]) < 20, bodies.DESCRIPTION_TOO_SHORT),
                             (fields["category"] not in bodies.CATEGORIES, bodies.BAD_CATEGORY),
                             (isinstance(fields["reward_rtc"], str), fields["reward_rtc"])):
        if refused:
            return message
    fields["ttl_seconds"] = max(3600, min(2_592_000, int(body.get("ttl_seconds", 604_800))))
    fields["tags"] = json.dumps(body.get("tags", []))
    return fields


class _Jobs:
    """``/agent/*`` (§1.2-§1.9): the job escrow and its state machine."""

    now: int
    balances: dict[str, int]
    jobs: dict[str, dict]

    def _move(self, source: str, target: str, amount_i64: int) -> None:
        self.balances[source] = self.balances.get(source, 0) - amount_i64
        self.balances[target] = self.balances.get(target, 0) + amount_i64

    def _log(self, job: dict, action: str, actor: str | None) -> None:
        job["activity_log"].append({"action": action, "actor_wallet": actor, "details": None,
                                    "created_at": self.now})

    def _expire_if_due(self, job: dict) -> bool:
        """Lazy expiry (§1.9): an open/claimed job past its TTL is expired and refunded."""
        if job["status"] not in ("open", "claimed") or self.now <= job["expires_at"]:
            return False
        job["status"] = "expired"
        self._move(ESCROW_WALLET, job["poster_wallet"], job["escrow_i64"])
        self._log(job, "expired", None)
        return True

    def create_job(self, req: Request) -> Answer:
        if not isinstance(req.body, dict):
            return 400, bodies.error("JSON body required" if req.body is None
                                     else "JSON object required")
        fields = parse_new_job(req)
        if isinstance(fields, str):
            return 400, bodies.error(fields)
        poster, reward_rtc = fields["poster_wallet"], fields["reward_rtc"]
        reward_i64, fee_i64 = job_amounts(reward_rtc)
        balance = self.balances.get(poster, 0)
        if balance < reward_i64 + fee_i64:
            return 400, bodies.insufficient_escrow(balance_i64=balance, reward_rtc=reward_rtc,
                                                   reward_i64=reward_i64, fee_i64=fee_i64)
        active = sum(1 for job in self.jobs.values() if job["poster_wallet"] == poster
                     and job["status"] in ("open", "claimed", "delivered"))
        if active >= MAX_ACTIVE_JOBS:
            return 429, bodies.error(bodies.ACTIVE_JOB_CAP, active_jobs=active)
        job = self._insert_job(fields, reward_i64, fee_i64)
        return 201, bodies.job_posted(job_id=job["job_id"], poster_wallet=poster,
                                      reward_rtc=reward_rtc, reward_i64=reward_i64,
                                      fee_i64=fee_i64, expires_at=job["expires_at"],
                                      ttl_seconds=fields["ttl_seconds"])

    def _insert_job(self, fields: dict, reward_i64: int, fee_i64: int) -> dict:
        seed = f"{fields['poster_wallet']}:{fields['title']}:{self.now}:{len(self.jobs)}"
        job = bodies.job_row(
            job_id="job_" + hashlib.sha256(seed.encode()).hexdigest()[:16],
            poster_wallet=fields["poster_wallet"], title=fields["title"],
            description=fields["description"], category=fields["category"],
            reward_rtc=fields["reward_rtc"], reward_i64=reward_i64, fee_i64=fee_i64,
            created_at=self.now, expires_at=self.now + fields["ttl_seconds"], tags=fields["tags"])
        self.jobs[job["job_id"]] = job
        self._move(fields["poster_wallet"], ESCROW_WALLET, job["escrow_i64"])
        self._log(job, "posted", fields["poster_wallet"])
        return job

    def get_job(self, _req: Request, job_id: str) -> Answer:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, bodies.error(bodies.JOB_NOT_FOUND)
        self._expire_if_due(job)
        return 200, bodies.job_read(json.loads(json.dumps(job)))

    def list_jobs(self, req: Request) -> Answer:
        limit, offset = req.query.get("limit", "50"), req.query.get("offset", "0")
        for name, value in (("limit", limit), ("offset", offset)):
            if not value.isdigit():
                return 400, bodies.error(f"{name} must be a non-negative integer")
        for job in self.jobs.values():
            self._expire_if_due(job)
        status = req.query.get("status", "open").strip()
        # Reward descending, then newest first (insertion order stands in for created_at).
        ranked = sorted(enumerate(self.jobs.values()), key=lambda pair: (-pair[1]["reward_rtc"],
                                                                          -pair[0]))
        wanted = [job for _, job in ranked if status in ("", job["status"])]
        page = wanted[int(offset):int(offset) + min(int(limit), 100)]
        return 200, bodies.job_list(page, total=len(wanted), limit=min(int(limit), 100),
                                    offset=int(offset))

    def _find(self, job_id: str, actor: str, actor_field: str) -> dict | Answer:
        if not actor:
            return 400, bodies.error(f"{actor_field} required")
        job = self.jobs.get(job_id)
        return job if job is not None else (404, bodies.error(bodies.JOB_NOT_FOUND))

    def claim(self, req: Request, job_id: str) -> Answer:
        worker = req.field("worker_wallet")
        job = self._find(job_id, worker, "worker_wallet")
        if not isinstance(job, dict):
            return job
        if job["status"] != "open":
            return 409, bodies.error(bodies.not_open(job["status"]))
        if worker == job["poster_wallet"]:
            return 400, bodies.error(bodies.OWN_JOB)
        if self._expire_if_due(job):
            return 410, bodies.error(bodies.JOB_EXPIRED)
        job.update(status="claimed", worker_wallet=worker, claimed_at=self.now)
        self._log(job, "claimed", worker)
        return 200, bodies.job_claimed(job_id=job_id, worker_wallet=worker,
                                       reward_rtc=job["reward_rtc"], expires_at=job["expires_at"])

    def deliver(self, req: Request, job_id: str) -> Answer:
        worker, summary = req.field("worker_wallet"), req.field("result_summary")
        if worker and not summary:
            return 400, bodies.error("deliverable_url or result_summary required")
        job = self._find(job_id, worker, "worker_wallet")
        if not isinstance(job, dict):
            return job
        if job["status"] != "claimed":
            return 409, bodies.error(bodies.not_claimed(job["status"]))
        if worker != job["worker_wallet"]:
            return 403, bodies.error(bodies.WRONG_WORKER)
        if self._expire_if_due(job):
            return 410, bodies.error(bodies.JOB_EXPIRED)
        job.update(status="delivered", delivered_at=self.now, result_summary=summary)
        self._log(job, "delivered", worker)
        return 200, bodies.job_delivered(job_id=job_id)

    def accept(self, req: Request, job_id: str) -> Answer:
        poster = req.field("poster_wallet")
        job = self._find(job_id, poster, "poster_wallet")
        if not isinstance(job, dict):
            return job
        if job["status"] != "delivered":  # status before poster (§1.5)
            return 409, bodies.error(bodies.not_delivered(job["status"]))
        if poster != job["poster_wallet"]:
            return 403, bodies.error(bodies.WRONG_POSTER_ACCEPT)
        job.update(status="completed", completed_at=self.now)
        self._move(ESCROW_WALLET, job["worker_wallet"], job["reward_i64"])
        self._move(ESCROW_WALLET, FEE_WALLET, job["platform_fee_i64"])
        self._log(job, "completed", poster)
        return 200, bodies.job_completed(job_id=job_id, worker_wallet=job["worker_wallet"],
                                         reward_i64=job["reward_i64"],
                                         fee_i64=job["platform_fee_i64"])

    def dispute(self, req: Request, job_id: str) -> Answer:
        poster, reason = req.field("poster_wallet"), req.field("reason")
        if poster and not reason:
            return 400, bodies.error("reason required")
        job = self._find(job_id, poster, "poster_wallet")
        if not isinstance(job, dict):
            return job
        if job["status"] != "delivered":
            return 409, bodies.error(bodies.cannot_dispute(job["status"]))
        if poster != job["poster_wallet"]:
            return 403, bodies.error(bodies.WRONG_POSTER_DISPUTE)
        job.update(status="disputed", rejection_reason=reason)
        self._log(job, "disputed", poster)
        return 200, bodies.job_disputed(job_id=job_id)

    def cancel(self, req: Request, job_id: str) -> Answer:
        poster = req.field("poster_wallet")
        job = self._find(job_id, poster, "poster_wallet")
        if not isinstance(job, dict):
            return job
        if poster != job["poster_wallet"]:  # poster before status (§1.7)
            return 403, bodies.error(bodies.WRONG_POSTER_CANCEL)
        if job["status"] == "claimed" and self._expire_if_due(job):
            return 200, bodies.job_cancelled(job_id=job_id, escrow_i64=job["escrow_i64"],
                                             expired=True)
        if job["status"] not in ("open", "disputed"):
            return 409, bodies.error(bodies.cannot_cancel(job["status"]))
        job["status"] = "cancelled"
        self._move(ESCROW_WALLET, poster, job["escrow_i64"])
        self._log(job, "escrow_refunded", poster)
        self._log(job, "cancelled", poster)
        return 200, bodies.job_cancelled(job_id=job_id, escrow_i64=job["escrow_i64"])


class _Wallet:
    """``/wallet/*`` and ``/pending/*`` (§1.10-§1.12): balances and the pending pool."""

    now: int
    admin_key: str
    confirm_delay_seconds: int
    balances: dict[str, int]
    pending: list[dict]
    _move: Callable[[str, str, int], None]

    def _is_admin(self, req: Request, *names: str) -> bool:
        return any(req.headers.get(name) == self.admin_key for name in names)

    def balance(self, req: Request) -> Answer:
        miner_id, address = req.query.get("miner_id"), req.query.get("address")
        if miner_id and address and miner_id != address:
            return 400, bodies.ok_false("miner_id and address must match when both are "
                                               "provided")
        wallet = miner_id or address
        if not wallet:
            return 400, bodies.ok_false("miner_id or address required")
        if not _MINER_ID.fullmatch(wallet):
            return 400, bodies.ok_false(bodies.INVALID_MINER_ID)
        return 200, bodies.balance(wallet, self.balances.get(wallet, 0))

    def transfer(self, req: Request) -> Answer:
        if not self._is_admin(req, "X-Admin-Key"):
            return 401, bodies.admin_required()
        body = req.body if isinstance(req.body, dict) else {}
        wanted = {"from_miner": req.field("from_miner"), "to_miner": req.field("to_miner"),
                  "amount_i64": int((Decimal(str(body.get("amount_rtc", 0))) * 10**6)
                                    .to_integral_value(rounding=ROUND_DOWN)),
                  "reason": str(body.get("reason") or "admin_transfer")}
        if not wanted["from_miner"] or not wanted["to_miner"]:
            return 400, bodies.error("missing_from_or_to", details={})
        key = body.get("idempotency_key")
        if not (isinstance(key, str) and _IDEMPOTENCY_KEY.fullmatch(key)):
            return 400, bodies.error("invalid_idempotency_key")
        tx_hash = hashlib.sha256(f"wallet_transfer_idempotency:{key}".encode()).hexdigest()[:32]
        row = self._row(tx_hash=tx_hash)
        if row is not None:
            return self._replay(row, wanted)
        return self._queue(wanted, tx_hash)

    def _replay(self, row: dict, wanted: dict) -> Answer:
        if any(row[name] != value for name, value in wanted.items()):
            return 409, bodies.error(bodies.IDEMPOTENCY_CONFLICT, tx_hash=row["tx_hash"])
        return 200, self._transfer_answer(row, replay=True)

    def _queue(self, wanted: dict, tx_hash: str) -> Answer:
        balance = self.balances.get(wanted["from_miner"], 0)
        debits = sum(row["amount_i64"] for row in self.pending
                     if row["from_miner"] == wanted["from_miner"] and row["status"] == "pending")
        if balance - debits < wanted["amount_i64"]:
            return 400, bodies.insufficient_available(balance_i64=balance, debits_i64=debits,
                                                      requested_i64=wanted["amount_i64"])
        row = {"id": len(self.pending) + 1, "ts": self.now, "epoch": self.now // 600,
               "status": "pending", "confirms_at": self.now + self.confirm_delay_seconds,
               "voided_by": None, "voided_reason": None, "tx_hash": tx_hash, **wanted}
        self.pending.append(row)
        return 200, self._transfer_answer(row, replay=False)

    def _transfer_answer(self, row: dict, *, replay: bool) -> dict:
        return bodies.transfer_answer(
            pending_id=row["id"], tx_hash=row["tx_hash"], from_miner=row["from_miner"],
            to_miner=row["to_miner"], amount_i64=row["amount_i64"], confirms_at=row["confirms_at"],
            confirm_delay_seconds=self.confirm_delay_seconds, phase=row["status"], replay=replay)

    def _row(self, *, tx_hash: str | None = None, pending_id: Any = None) -> dict | None:
        return next((row for row in self.pending if row["tx_hash"] == tx_hash
                     or row["id"] == pending_id), None)

    def tx_status(self, _req: Request, tx_hash: str) -> Answer:
        if not _TX_HASH.fullmatch(tx_hash):
            return 400, bodies.ok_false("tx_hash must be exactly 32 hexadecimal characters")
        row = self._row(tx_hash=tx_hash.lower())
        if row is None:
            return 404, bodies.tx_not_found()
        status = {"pending": "pending", "voided": "failed", "confirmed": "confirmed"}[row["status"]]
        height = row["epoch"] if status == "confirmed" else None
        return 200, bodies.tx_answer(row["tx_hash"], status, height)

    def _overdue(self) -> dict:
        due = [row["confirms_at"] for row in self.pending
               if row["status"] == "pending" and row["confirms_at"] <= self.now]
        return bodies.overdue_stats(len(due), self.now - min(due) if due else 0)

    def confirm(self, req: Request) -> Answer:
        if not self._is_admin(req, "X-Admin-Key"):
            return 401, bodies.error(bodies.ADMIN_REQUIRED)
        limit = max(1, min(500, int((req.body or {}).get("limit", 100))))
        before = self._overdue()
        due = [row for row in self.pending
               if row["status"] == "pending" and row["confirms_at"] <= self.now][:limit]
        confirmed = [row["id"] for row in due if self._confirm_one(row)]
        return 200, bodies.confirm_answer(limit=limit, selected=len(due), confirmed_ids=confirmed,
                                          stats_before=before, stats_after=self._overdue())

    def _confirm_one(self, row: dict) -> bool:
        """Move the money, or void the row when the sender's full balance fell short (§1.12)."""
        if self.balances.get(row["from_miner"], 0) < row["amount_i64"]:
            row.update(status="voided", voided_by="system",
                       voided_reason="insufficient_balance_at_confirm")
            return False
        self._move(row["from_miner"], row["to_miner"], row["amount_i64"])
        row["status"] = "confirmed"
        return True

    def void(self, req: Request) -> Answer:
        if not self._is_admin(req, "X-Admin-Key"):
            return 401, bodies.error(bodies.ADMIN_REQUIRED)
        body = req.body if isinstance(req.body, dict) else {}
        tx_hash, pending_id = str(body.get("tx_hash") or "").lower(), body.get("pending_id")
        if not tx_hash and pending_id is None:
            return 400, bodies.error("Provide pending_id or tx_hash")
        row = self._row(tx_hash=tx_hash or None, pending_id=pending_id)
        if row is None:
            return 404, bodies.error(bodies.PENDING_NOT_FOUND)
        if row["status"] != "pending":
            return 400, bodies.void_refused(row["status"])
        reason = str(body.get("reason") or "admin_void")
        row.update(status="voided", voided_by="admin", voided_reason=reason)
        return 200, bodies.void_answer(voided_id=row["id"], from_miner=row["from_miner"],
                                       to_miner=row["to_miner"], amount_i64=row["amount_i64"],
                                       reason=reason)

    def list_pending(self, req: Request) -> Answer:
        miner = req.query.get("miner_id", "").strip()
        if not self._is_admin(req, "X-Admin-Key", "X-API-Key") and not miner:
            return 401, bodies.error(bodies.PENDING_LIST_UNAUTHORIZED)
        raw_limit = req.query.get("limit", "100")
        if not re.fullmatch(r"[+-]?\d+", raw_limit.strip()):
            return 400, bodies.ok_false("limit must be an integer")
        status = req.query.get("status", "pending").strip() or "pending"
        rows = [row for row in reversed(self.pending)  # newest first; offset is ignored (§1.12)
                if status in ("all", row["status"]) and miner in ("", row["from_miner"],
                                                                  row["to_miner"])]
        items = [{**{k: row[k] for k in bodies.PENDING_ITEM_KEYS if k != "amount_rtc"},
                  "amount_rtc": bodies.rtc(row["amount_i64"])} for row in rows]
        return 200, bodies.pending_list(items[:max(1, min(500, int(raw_limit)))], self._overdue())


# (method, Flask-style rule, handler name): the rule is also what a fault's endpoint names.
ROUTES = (
    ("POST", "/agent/jobs", "create_job"),
    ("GET", "/agent/jobs", "list_jobs"),
    ("GET", "/agent/jobs/<job_id>", "get_job"),
    *(("POST", f"/agent/jobs/<job_id>/{action}", action)
      for action in ("claim", "deliver", "accept", "dispute", "cancel")),
    ("GET", "/wallet/balance", "balance"),
    ("POST", "/wallet/transfer", "transfer"),
    ("GET", "/wallet/tx/<tx_hash>", "tx_status"),
    ("POST", "/pending/confirm", "confirm"),
    ("POST", "/pending/void", "void"),
    ("GET", "/pending/list", "list_pending"),
)


def _rule_regex(rule: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"<[a-z_]+>", "([^/]+)", rule))


class FakeEscrowNode(_Jobs, _Wallet):
    """The whole fake node. ``install(mock)`` routes every request to ``base_url`` into it."""

    def __init__(self, base_url: str, admin_key: str, *, now: int = FAKE_NOW,
                 confirm_delay_seconds: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_key = admin_key
        self.now = now
        self.confirm_delay_seconds = confirm_delay_seconds
        self.balances: dict[str, int] = {}
        self.jobs: dict[str, dict] = {}
        self.pending: list[dict] = []
        self.faults: list[dict] = []
        self._routes = [(method, rule, _rule_regex(rule), getattr(self, name))
                        for method, rule, name in ROUTES]

    def install(self, mock: responses.RequestsMock) -> None:
        pattern = re.compile(re.escape(self.base_url) + r"/")
        for method in ("GET", "POST"):
            mock.add_callback(method, pattern, callback=self._serve)

    # -- what a test does behind the node's back (the dev node's /dev/* routes) ------------

    def fund(self, wallet: str, amount_i64: int) -> None:
        self.balances[wallet] = self.balances.get(wallet, 0) + amount_i64

    def expire(self, job_id: str) -> None:
        self.jobs[job_id]["expires_at"] = self.now - 1

    def add_fault(self, endpoint: str, kind: str, *, status: int = 500,
                  html: bool = False) -> None:
        self.faults.append({"endpoint": endpoint, "kind": kind, "status": status, "html": html})

    # -- HTTP plumbing --------------------------------------------------------------------

    def _serve(self, prepared: requests.PreparedRequest) -> tuple[int, dict, str]:
        parts = urlsplit(prepared.url)
        raw = prepared.body or b""
        if len(raw.encode() if isinstance(raw, str) else raw) > MAX_BODY_BYTES:
            return _reply(413, bodies.too_large())
        found = self._route(prepared.method, parts.path)
        if found is None:
            return 404, {"Content-Type": "text/html"}, "<html>404 Not Found</html>"
        rule, handler, args = found
        fault = self._take_fault(f"{prepared.method} {rule}", f"{prepared.method} {parts.path}")
        if fault is not None and fault["kind"] != "timeout_after":
            return _fault_answer(fault)
        answer = handler(_request(prepared, parts.query), *args)
        if fault is not None:  # timeout_after: the effect is applied, the answer never comes
            raise requests.exceptions.ReadTimeout("fake node held its answer back")
        return _reply(*answer)

    def _route(self, method: str, path: str) -> tuple[str, Callable, list[str]] | None:
        for want, rule, regex, handler in self._routes:
            match = regex.fullmatch(path)
            if want == method and match:
                return rule, handler, [unquote(group) for group in match.groups()]
        return None

    def _take_fault(self, *endpoints: str) -> dict | None:
        for fault in self.faults:
            if fault["endpoint"] in ("*", *endpoints):
                self.faults.remove(fault)
                return fault
        return None


def _request(prepared: requests.PreparedRequest, query: str) -> Request:
    is_json = prepared.headers.get("Content-Type", "").startswith("application/json")
    body = json.loads(prepared.body) if is_json and prepared.body else None
    return Request(query=dict(parse_qsl(query)), body=body, headers=prepared.headers)


def _reply(status: int, body: Any, headers: dict | None = None) -> tuple[int, dict, str]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body)


def _fault_answer(fault: dict) -> tuple[int, dict, str]:
    """The dev node's fault answers (otc_bridge/dev/node/faults.py), without any effect."""
    if fault["kind"] == "drop_before":
        raise requests.exceptions.ConnectionError("fake node dropped the connection")
    if fault["kind"] == "rate_limit":
        return _reply(429, bodies.rate_limited(), {"Retry-After": "60"})
    if fault["html"]:
        return fault["status"], {"Content-Type": "text/html"}, bodies.HTML_500
    return _reply(fault["status"], bodies.error(bodies.INTERNAL_ERROR))
