"""``GET /dev/stats``: the dev-only request counter (by method and route) the benchmark reads."""

from __future__ import annotations

from devnode_support import POSTER, WORKER


def stats(node) -> dict:
    status, body = node.get("/dev/stats")
    assert status == 200 and body["ok"] is True
    return body


def test_requests_are_counted_by_method_and_route(node):
    node.fund(POSTER, "100")
    job_id = node.create_job(10)
    node.act(job_id, "claim", worker_wallet=WORKER)
    node.job(job_id)
    node.balance(POSTER)
    node.get("/no/such/path")
    body = stats(node)
    requests = body["requests"]
    assert requests["POST /dev/fund"] == 1
    assert requests["POST /agent/jobs"] == 1
    assert requests["POST /agent/jobs/<job_id>/claim"] == 1
    assert requests["GET /agent/jobs/<job_id>"] == 1
    assert requests["GET /wallet/balance"] == 1
    assert requests["GET <unmatched>"] == 1
    assert requests["GET /dev/stats"] == 1  # the reading request counts itself
    assert body["total"] == sum(requests.values())
    assert set(body["seconds"]) == set(requests) - {"GET /dev/stats"}  # its own time is not over yet
    assert all(seconds >= 0 for seconds in body["seconds"].values())


def test_a_faulted_call_is_counted_and_still_faulted(node):
    assert node.post("/dev/faults", {"endpoint": "GET /wallet/balance", "kind": "error_5xx", "count": 1})[0] == 200
    status, _ = node.get(f"/wallet/balance?miner_id={POSTER}")
    assert status == 500
    assert node.balance(POSTER) == 0  # the rule fired once, the next call is served normally
    assert stats(node)["requests"]["GET /wallet/balance"] == 2


def test_counting_changes_no_answer(node):
    # A real route answers as documented (docs/escrow-node.md §1.10: no ``ok`` key, sorted JSON).
    status, body = node.get(f"/wallet/balance?miner_id={POSTER}")
    assert (status, body) == (200, {"amount_i64": 0, "amount_rtc": 0.0, "miner_id": POSTER})
    response = node.client.get(f"/wallet/balance?miner_id={POSTER}")
    assert "X-Request-Id" in response.headers
