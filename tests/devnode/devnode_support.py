"""Helpers shared by the dev node tests (a unique module name, unlike conftest)."""

from __future__ import annotations

from typing import Any

ADMIN_KEY = "test-admin-key-0123456789abcdef-0123456789"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
POSTER = "alice"
WORKER = "bob"
DESCRIPTION = "A job description long enough for the node."


class Node:
    """Small helpers over a Flask test client, answering (status, json)."""

    def __init__(self, client) -> None:
        self.client = client

    def post(self, path: str, body: Any = None, headers: dict | None = None):
        response = self.client.post(path, json=body, headers=headers or {})
        return response.status_code, response.get_json()

    def get(self, path: str, headers: dict | None = None):
        response = self.client.get(path, headers=headers or {})
        return response.status_code, response.get_json()

    def fund(self, wallet: str, amount_rtc: str | float) -> int:
        status, body = self.post("/dev/fund", {"wallet": wallet, "amount_rtc": amount_rtc})
        assert status == 200, body
        return body["amount_i64"]

    def balance(self, wallet: str) -> int:
        status, body = self.get(f"/wallet/balance?miner_id={wallet}")
        assert status == 200, body
        return body["amount_i64"]

    def create_job(self, reward_rtc: Any = 10, poster: str = POSTER, **extra: Any) -> str:
        status, body = self.post("/agent/jobs", self.job_body(reward_rtc, poster, **extra))
        assert status == 201, body
        return body["job_id"]

    @staticmethod
    def job_body(reward_rtc: Any = 10, poster: str = POSTER, **extra: Any) -> dict:
        return {"poster_wallet": poster, "title": "Escrow for order 1",
                "description": DESCRIPTION, "reward_rtc": reward_rtc, **extra}

    def job(self, job_id: str) -> dict:
        status, body = self.get(f"/agent/jobs/{job_id}")
        assert status == 200, body
        return body["job"]

    def act(self, job_id: str, action: str, **body: Any):
        return self.post(f"/agent/jobs/{job_id}/{action}", body)

    def to_delivered(self, job_id: str, worker: str = WORKER) -> None:
        assert self.act(job_id, "claim", worker_wallet=worker)[0] == 200
        assert self.act(job_id, "deliver", worker_wallet=worker, result_summary="done")[0] == 200

    def advance(self, seconds: int) -> int:
        status, body = self.post("/dev/clock", {"advance_seconds": seconds})
        assert status == 200, body
        return body["now"]

    def state(self) -> dict:
        return self.get("/dev/state")[1]

    def transfer(self, amount_rtc: Any, key: str | None = None, frm: str = WORKER,
                 to: str = "carol", headers: dict | None = None, **extra: Any):
        body = {"from_miner": frm, "to_miner": to, "amount_rtc": amount_rtc, **extra}
        if key is not None:
            body["idempotency_key"] = key
        return self.post("/wallet/transfer", body, headers=ADMIN if headers is None else headers)
