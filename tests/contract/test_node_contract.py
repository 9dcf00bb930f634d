"""One contract, two nodes: the client's view of the stateful fake equals its view of the dev node.

Every test takes the parametrised ``backend`` fixture (conftest.py), so it runs against the
``responses`` fake and against a live dev node, drives the real ``EscrowNodeClient`` and
asserts on what the client exposes: outcome, status code, the node's error string, parsed
``Job`` fields, ``TxStatus``, transfer phases. The expected values come from
docs/escrow-node.md (cited per test) and the shared bodies of tests/node_bodies.py. Key
lists of the answers are quoted from the doc, so both backends are also held to its field
names.

Values that depend on the wall clock (``expires_at``, ``confirms_at``, ``block_height``)
differ between the fake's fixed clock and the dev node's real one: tests compare them only
relative to another field of the same node, or only by type.
"""

from __future__ import annotations

import node_bodies as bodies
import pytest

from otc_bridge.node.amounts import credited_micro_rtc, expected_escrow_micro_rtc, payout_tx_hash
from otc_bridge.node.client import EscrowNodeClient
from otc_bridge.node.results import EscrowClientError, NodeResult, Outcome, expect_shape

POSTER, WORKER, INTRUDER, PAYEE = "alice", "otc_bridge_worker", "mallory", "carol"
REWARD = 10_000_000  # 10 RTC; the node adds a 5 % fee
ODD_REWARD = 2_010_000  # 2.01 RTC: the float-truncation trap of docs/escrow-node.md §0
TITLE, DESCRIPTION = "OTC order 42", "Escrow for OTC order 42 (sell RTC)"
PAY_KEY = "otc_payout:42"

# Field lists quoted from docs/escrow-node.md §1 (the ``job`` and list items from §1.8).
POSTED_KEYS = ("ok", "job_id", "status", "poster_wallet", "reward_rtc", "platform_fee_rtc",
               "escrow_total_rtc", "expires_at", "expires_in_hours", "message")
CLAIMED_KEYS = ("ok", "job_id", "status", "worker_wallet", "reward_rtc", "expires_at", "message")
STATUS_KEYS = ("ok", "job_id", "status", "message")  # deliver, dispute
COMPLETED_KEYS = ("ok", "job_id", "status", "worker_wallet", "reward_paid_rtc",
                  "platform_fee_rtc", "message")
CANCELLED_KEYS = ("ok", "job_id", "status", "refunded_rtc", "message")
JOB_KEYS = ("job_id", "poster_wallet", "worker_wallet", "title", "description", "category",
            "reward_rtc", "reward_i64", "escrow_i64", "platform_fee_i64", "status",
            "deliverable_url", "deliverable_hash", "result_summary", "rejection_reason",
            "created_at", "claimed_at", "delivered_at", "completed_at", "expires_at", "tags",
            "activity_log", "ratings")
LIST_KEYS = ("ok", "jobs", "total", "limit", "offset", "categories")
SUMMARY_KEYS = ("job_id", "poster_wallet", "title", "description", "category", "reward_rtc",
                "status", "created_at", "expires_at", "tags", "worker_wallet")
ESCROW_REFUSAL_KEYS = ("error", "balance_rtc", "escrow_required_rtc", "reward_rtc",
                       "platform_fee_rtc", "hint")
BALANCE_KEYS = ("miner_id", "amount_i64", "amount_rtc")
TRANSFER_KEYS = ("ok", "phase", "pending_id", "tx_hash", "from_miner", "to_miner", "amount_rtc",
                 "confirms_at", "confirms_in_hours", "message")
AVAILABLE_REFUSAL_KEYS = ("error", "balance_rtc", "pending_debits_rtc", "available_rtc",
                          "requested_rtc")
TX_KEYS = ("ok", "status", "confirmations", "block_height")  # the doc's table; tx_hash optional
CONFIRM_KEYS = ("ok", "limit", "selected_count", "confirmed_count", "confirmed_ids", "errors",
                "stale_pending_count_before", "max_confirm_overdue_seconds_before",
                "overdue_stats_measured_before", "stale_pending_count",
                "max_confirm_overdue_seconds", "overdue_stats_measured", "overdue_stats_error")
VOID_KEYS = ("ok", "voided_id", "from_miner", "to_miner", "amount_rtc", "voided_by", "reason")
PENDING_LIST_KEYS = ("ok", "count", "pending", "stale_pending_count",
                     "max_confirm_overdue_seconds", "overdue_stats_measured",
                     "overdue_stats_error")
PENDING_ITEM_KEYS = ("id", "ts", "from_miner", "to_miner", "amount_rtc", "reason", "status",
                     "confirms_at", "voided_by", "voided_reason", "tx_hash")


# -- helpers ------------------------------------------------------------------------------

def assert_failed(result: NodeResult, status: int, error: str) -> None:
    """An explicit refusal: the client passes the node's own error string on."""
    assert (result.outcome, result.status_code, result.error) == (Outcome.FAILED, status, error)


def assert_keys(body: dict, keys: tuple[str, ...]) -> None:
    assert sorted(body) == sorted(keys)


def balance(node: EscrowNodeClient, wallet: str) -> int:
    result, amount = node.balance_micro_rtc(wallet)
    assert result.ok, result
    return amount


def create(node: EscrowNodeClient, amount: int = REWARD, *, poster: str = POSTER,
           ttl: int = 86_400, **fields: str) -> NodeResult:
    return node.create_job(poster_wallet=poster, amount_micro_rtc=amount, ttl_seconds=ttl,
                           title=fields.get("title", TITLE),
                           description=fields.get("description", DESCRIPTION),
                           tags=["otc_bridge", "escrow"],
                           category=fields.get("category", "other"))


def post_job(backend, node: EscrowNodeClient, amount: int = REWARD, **kwargs) -> str:
    """A funded, open job of ``amount`` micro-RTC; returns its id."""
    backend.fund(kwargs.get("poster", POSTER), expected_escrow_micro_rtc(amount))
    result = create(node, amount, **kwargs)
    assert result.ok, result
    return result.body["job_id"]


def claimed_job(backend, node: EscrowNodeClient, amount: int = REWARD) -> str:
    job_id = post_job(backend, node, amount)
    assert node.claim_job(job_id, worker_wallet=WORKER).ok
    return job_id


def delivered_job(backend, node: EscrowNodeClient, amount: int = REWARD) -> str:
    job_id = claimed_job(backend, node, amount)
    assert node.deliver_job(job_id, worker_wallet=WORKER, result_summary="RTC held").ok
    return job_id


def job_status(node: EscrowNodeClient, job_id: str) -> str:
    read = node.get_job(job_id)
    assert read.result.ok, read.result
    return read.job.status


def pay(node: EscrowNodeClient, key: str = PAY_KEY, amount: int = REWARD, *,
        to: str = PAYEE, reason: str = "otc_payout:42") -> NodeResult:
    return node.transfer(from_wallet=WORKER, to_wallet=to, amount_micro_rtc=amount,
                         reason=reason, idempotency_key=key)


def list_pending(node: EscrowNodeClient, *, admin: bool = True, **params) -> NodeResult:
    """``GET /pending/list`` through the client's own request and classification path.

    The client has no public method for it (the bridge reads payouts by ``/wallet/tx``,
    docs/escrow-node.md §4 "Paging /pending/list"), so the private ``_request`` is the
    nearest thing to what a caller of the client would see.
    """
    return node._request("GET", "/pending/list", "/pending/list", params=params, admin=admin,
                         expect=expect_shape(count=int, pending=list))


# -- POST /agent/jobs (§1.2) --------------------------------------------------------------

def test_create_job_locks_reward_plus_fee(backend, node):
    backend.fund(POSTER, 20_000_000)
    result = create(node)
    assert (result.outcome, result.status_code, result.error) == (Outcome.OK, 201, None)
    assert_keys(result.body, POSTED_KEYS)
    assert result.body["job_id"].startswith("job_") and result.body["status"] == "open"
    assert (result.body["platform_fee_rtc"], result.body["escrow_total_rtc"]) == (0.5, 10.5)
    assert balance(node, POSTER) == 20_000_000 - 10_500_000
    assert balance(node, "agent_escrow") == 10_500_000


def test_create_job_without_the_escrow_is_refused(backend, node):
    backend.fund(POSTER, 10_499_999)  # one micro-RTC short of reward + fee
    result = create(node)
    assert_failed(result, 400, bodies.INSUFFICIENT_ESCROW)
    assert_keys(result.body, ESCROW_REFUSAL_KEYS)
    assert result.body["escrow_required_rtc"] == 10.5
    assert balance(node, POSTER) == 10_499_999


@pytest.mark.parametrize(("fields", "error"), [
    ({"poster": " "}, bodies.POSTER_REQUIRED),
    ({"title": "OTC"}, bodies.TITLE_TOO_SHORT),
    ({"description": "too short"}, bodies.DESCRIPTION_TOO_SHORT),
    ({"category": "bribes"}, bodies.BAD_CATEGORY),
], ids=["blank_poster", "short_title", "short_description", "bad_category"])
def test_create_job_field_rules(backend, node, fields, error):
    backend.fund(POSTER, 20_000_000)
    assert_failed(create(node, **fields), 400, error)
    assert balance(node, POSTER) == 20_000_000


@pytest.mark.parametrize("amount", [9_999, 10_000_000_001])
def test_create_job_reward_out_of_range_never_reaches_the_node(backend, node, amount):
    # The node's 400 for a bad reward (§1.2) is unreachable through the client: it refuses
    # first, so no escrow can be locked by such a call on either backend.
    backend.fund(POSTER, 20_000_000)
    with pytest.raises(ValueError):
        create(node, amount)
    assert balance(node, POSTER) == 20_000_000
    assert node.list_open_jobs().body["total"] == 0


def test_create_job_beyond_twenty_active_jobs_is_429(backend, node):
    backend.fund(POSTER, 21 * expected_escrow_micro_rtc(10_000))
    job_ids = [create(node, 10_000).body["job_id"] for _ in range(20)]
    result = create(node, 10_000)
    assert_failed(result, 429, bodies.ACTIVE_JOB_CAP)
    assert result.retry_after_seconds == 60  # no Retry-After header: the client's default
    assert result.body["active_jobs"] == 20
    assert node.cancel_job(job_ids[0], poster_wallet=POSTER).ok  # cancelled ones do not count
    assert create(node, 10_000).ok


# -- GET /agent/jobs/<id> and GET /agent/jobs (§1.8) --------------------------------------

def test_get_job_reads_the_truncated_amounts_and_tags(backend, node):
    job_id = post_job(backend, node, ODD_REWARD, ttl=7_200)
    read = node.get_job(job_id)
    assert (read.result.outcome, read.result.status_code, read.not_found) == (Outcome.OK, 200,
                                                                               False)
    job = read.job
    assert (job.job_id, job.poster_wallet, job.worker_wallet, job.status) == (
        job_id, POSTER, None, "open")
    # The client's wire float makes the node lock exactly 2,010,000 (not 2,009,999).
    assert (job.reward_i64, job.platform_fee_i64, job.escrow_i64) == (2_010_000, 100_500,
                                                                      2_110_500)
    assert (job.title, job.description, job.tags) == (TITLE, DESCRIPTION, ["otc_bridge",
                                                                           "escrow"])
    raw = read.result.body["job"]
    assert_keys(raw, JOB_KEYS)
    assert job.expires_at - raw["created_at"] == 7_200  # clock-free: relative to creation


def test_get_unknown_job_is_not_found(node):
    read = node.get_job("job_0000000000000000")
    assert_failed(read.result, 404, bodies.JOB_NOT_FOUND)
    assert read.not_found and read.job is None


def test_list_jobs_filters_by_status_and_pages_by_offset(backend, node):
    # Distinct rewards: the node orders by reward descending (ties fall back to the clock).
    high, middle, low = (post_job(backend, node, amount) for amount in (3_000_000, 2_000_000,
                                                                         1_000_000))
    assert node.claim_job(middle, worker_wallet=WORKER).ok
    pages = [node.list_jobs(status="open", limit=1, offset=offset) for offset in (0, 1, 2)]
    assert all(page.ok and page.status_code == 200 for page in pages)
    assert [[job["job_id"] for job in page.body["jobs"]] for page in pages] == [[high], [low], []]
    assert (pages[1].body["total"], pages[1].body["limit"], pages[1].body["offset"]) == (2, 1, 1)
    assert_keys(pages[0].body, LIST_KEYS)
    assert_keys(pages[0].body["jobs"][0], SUMMARY_KEYS)
    claimed = node.list_jobs(status="claimed").body["jobs"]
    assert [(job["job_id"], job["worker_wallet"]) for job in claimed] == [(middle, WORKER)]


# -- claim (§1.3) ---------------------------------------------------------------------------

def test_claim_open_job(backend, node):
    job_id = post_job(backend, node)
    result = node.claim_job(job_id, worker_wallet=WORKER)
    assert (result.outcome, result.status_code) == (Outcome.OK, 200)
    assert_keys(result.body, CLAIMED_KEYS)
    assert (result.body["status"], result.body["worker_wallet"]) == ("claimed", WORKER)
    assert node.get_job(job_id).job.worker_wallet == WORKER


@pytest.mark.parametrize("second_worker", [INTRUDER, WORKER])
def test_claim_of_a_claimed_job_is_409_whoever_asks(backend, node, second_worker):
    # docs/escrow-node.md §4: claiming twice looks exactly like losing the job to someone else.
    job_id = claimed_job(backend, node)
    assert_failed(node.claim_job(job_id, worker_wallet=second_worker), 409,
                  bodies.not_open("claimed"))


def test_claim_own_job_is_400(backend, node):
    job_id = post_job(backend, node)
    assert_failed(node.claim_job(job_id, worker_wallet=POSTER), 400, bodies.OWN_JOB)
    assert job_status(node, job_id) == "open"


def test_claim_unknown_job_is_404(node):
    assert_failed(node.claim_job("job_0000000000000000", worker_wallet=WORKER), 404,
                  bodies.JOB_NOT_FOUND)


def test_claim_past_ttl_is_410_and_refunds(backend, node):
    job_id = post_job(backend, node)
    backend.expire(job_id)
    assert_failed(node.claim_job(job_id, worker_wallet=WORKER), 410, bodies.JOB_EXPIRED)
    assert job_status(node, job_id) == "expired"
    assert balance(node, POSTER) == 10_500_000
    assert_failed(node.claim_job(job_id, worker_wallet=WORKER), 409, bodies.not_open("expired"))


# -- deliver (§1.4) -----------------------------------------------------------------------

def test_deliver_claimed_job(backend, node):
    job_id = claimed_job(backend, node)
    result = node.deliver_job(job_id, worker_wallet=WORKER, result_summary="RTC held")
    assert (result.outcome, result.status_code, result.body["status"]) == (Outcome.OK, 200,
                                                                            "delivered")
    assert_keys(result.body, STATUS_KEYS)
    assert job_status(node, job_id) == "delivered"


def test_deliver_by_another_worker_is_403(backend, node):
    job_id = claimed_job(backend, node)
    assert_failed(node.deliver_job(job_id, worker_wallet=INTRUDER, result_summary="mine"), 403,
                  bodies.WRONG_WORKER)
    assert job_status(node, job_id) == "claimed"


@pytest.mark.parametrize(("setup", "status"), [(post_job, "open"), (delivered_job, "delivered")])
def test_deliver_in_the_wrong_status_is_409(backend, node, setup, status):
    job_id = setup(backend, node)
    assert_failed(node.deliver_job(job_id, worker_wallet=WORKER, result_summary="again"), 409,
                  bodies.not_claimed(status))


# -- accept (§1.5) ------------------------------------------------------------------------

def test_accept_pays_the_truncated_reward_once(backend, node):
    job_id = delivered_job(backend, node, ODD_REWARD)
    result = node.accept_job(job_id, poster_wallet=POSTER, rating=5)
    assert (result.outcome, result.status_code, result.body["status"]) == (Outcome.OK, 200,
                                                                            "completed")
    assert_keys(result.body, COMPLETED_KEYS)
    assert credited_micro_rtc(result.body) == ODD_REWARD
    assert (balance(node, WORKER), balance(node, "founder_community"),
            balance(node, "agent_escrow")) == (ODD_REWARD, 100_500, 0)
    assert_failed(node.accept_job(job_id, poster_wallet=POSTER), 409,
                  bodies.not_delivered("completed"))
    assert balance(node, WORKER) == ODD_REWARD


def test_accept_checks_status_before_poster(backend, node):
    # A wrong poster on a claimed job sees 409, not 403 (§1.5 check order).
    job_id = claimed_job(backend, node)
    assert_failed(node.accept_job(job_id, poster_wallet=INTRUDER), 409,
                  bodies.not_delivered("claimed"))


def test_accept_by_another_poster_on_a_delivered_job_is_403(backend, node):
    job_id = delivered_job(backend, node)
    assert_failed(node.accept_job(job_id, poster_wallet=INTRUDER), 403,
                  bodies.WRONG_POSTER_ACCEPT)
    assert job_status(node, job_id) == "delivered"


# -- cancel (§1.7) ------------------------------------------------------------------------

def test_cancel_refunds_reward_and_fee(backend, node):
    job_id = post_job(backend, node)
    result = node.cancel_job(job_id, poster_wallet=POSTER)
    assert (result.outcome, result.status_code, result.body["status"]) == (Outcome.OK, 200,
                                                                            "cancelled")
    assert_keys(result.body, CANCELLED_KEYS)
    assert result.body["refunded_rtc"] == 10.5
    assert (balance(node, POSTER), balance(node, "agent_escrow")) == (10_500_000, 0)
    assert_failed(node.cancel_job(job_id, poster_wallet=POSTER), 409,
                  bodies.cannot_cancel("cancelled"))


def test_cancel_checks_poster_before_status(backend, node):
    # The reverse of accept: a wrong poster on a completed job sees 403, not 409 (§1.7).
    job_id = delivered_job(backend, node)
    assert node.accept_job(job_id, poster_wallet=POSTER).ok
    assert_failed(node.cancel_job(job_id, poster_wallet=INTRUDER), 403,
                  bodies.WRONG_POSTER_CANCEL)


@pytest.mark.parametrize(("setup", "status"), [(claimed_job, "claimed"),
                                               (delivered_job, "delivered")])
def test_cancel_of_a_claimed_or_delivered_job_is_409(backend, node, setup, status):
    job_id = setup(backend, node)
    assert_failed(node.cancel_job(job_id, poster_wallet=POSTER), 409,
                  bodies.cannot_cancel(status))
    assert balance(node, POSTER) == 0


def test_cancel_of_a_claimed_job_past_ttl_answers_expired(backend, node):
    job_id = claimed_job(backend, node)
    backend.expire(job_id)
    result = node.cancel_job(job_id, poster_wallet=POSTER)
    assert (result.outcome, result.body["status"], result.body["refunded_rtc"]) == (
        Outcome.OK, "expired", 10.5)
    assert balance(node, POSTER) == 10_500_000


# -- dispute (§1.6) -----------------------------------------------------------------------

def test_dispute_holds_the_escrow_until_cancel(backend, node):
    job_id = delivered_job(backend, node)
    result = node.dispute_job(job_id, poster_wallet=POSTER, reason="order unwound")
    assert (result.outcome, result.status_code, result.body["status"]) == (Outcome.OK, 200,
                                                                            "disputed")
    assert_keys(result.body, STATUS_KEYS)
    assert balance(node, "agent_escrow") == 10_500_000
    assert node.cancel_job(job_id, poster_wallet=POSTER).ok  # the only exit from disputed
    assert (balance(node, POSTER), balance(node, WORKER)) == (10_500_000, 0)


def test_dispute_of_an_open_job_is_409(backend, node):
    job_id = post_job(backend, node)
    assert_failed(node.dispute_job(job_id, poster_wallet=POSTER, reason="why"), 409,
                  bodies.cannot_dispute("open"))


def test_dispute_by_another_poster_is_403(backend, node):
    job_id = delivered_job(backend, node)
    assert_failed(node.dispute_job(job_id, poster_wallet=INTRUDER, reason="grief"), 403,
                  bodies.WRONG_POSTER_DISPUTE)


# -- GET /wallet/balance (§1.10) ----------------------------------------------------------

def test_balance_reads_confirmed_micro_rtc(backend, node):
    assert balance(node, "nobody.yet") == 0
    backend.fund(POSTER, 1_234_567)
    result, amount = node.balance_micro_rtc(POSTER)
    assert (result.outcome, result.status_code, amount) == (Outcome.OK, 200, 1_234_567)
    assert_keys(result.body, BALANCE_KEYS)  # no "ok" key on success


def test_balance_of_an_invalid_wallet_id_is_400(node):
    result, amount = node.balance_micro_rtc("not a wallet")
    assert_failed(result, 400, bodies.INVALID_MINER_ID)
    assert amount is None


# -- POST /wallet/transfer (§1.11) and GET /wallet/tx (§1.12) -------------------------------

@pytest.fixture
def funded_worker(backend) -> int:
    """The worker holds 50 RTC, confirmed, ready to pay out."""
    backend.fund(WORKER, 50_000_000)
    return 50_000_000


def test_transfer_queues_a_pending_payout(node, funded_worker):
    result = pay(node)
    assert (result.outcome, result.status_code, result.body["phase"]) == (Outcome.OK, 200,
                                                                           "pending")
    assert_keys(result.body, TRANSFER_KEYS)
    assert result.body["tx_hash"] == payout_tx_hash(PAY_KEY)
    assert (balance(node, WORKER), balance(node, PAYEE)) == (funded_worker, 0)  # nothing moved
    status = node.tx_status(payout_tx_hash(PAY_KEY))
    assert (status.result.status_code, status.status) == (200, "pending")
    assert_keys(status.result.body, (*TX_KEYS, "tx_hash"))


def test_transfer_replay_returns_the_same_row_and_its_phase(node, funded_worker):
    first = pay(node)
    replay = pay(node)
    assert replay.ok and replay.body["message"] == bodies.TRANSFER_REPLAY_MESSAGE
    same = ("pending_id", "tx_hash", "phase")
    assert [replay.body[k] for k in same] == [first.body[k] for k in same]
    assert node.confirm_pending().ok
    assert pay(node).body["phase"] == "confirmed"
    assert balance(node, PAYEE) == REWARD  # paid once


@pytest.mark.parametrize("change", [{"amount": REWARD + 1}, {"reason": "otc_payout:43"},
                                    {"to": "dave"}], ids=["amount", "reason", "payee"])
def test_transfer_with_a_reused_key_and_other_fields_is_409(node, funded_worker, change):
    assert pay(node).ok
    result = pay(node, **change)
    assert_failed(result, 409, bodies.IDEMPOTENCY_CONFLICT)
    assert result.body["tx_hash"] == payout_tx_hash(PAY_KEY)


def test_transfer_counts_pending_debits_against_the_balance(backend, node):
    backend.fund(WORKER, 10_000_000)
    assert pay(node, "key-a", 6_000_000).ok
    result = pay(node, "key-b", 6_000_000)
    assert_failed(result, 400, bodies.INSUFFICIENT_AVAILABLE)
    assert_keys(result.body, AVAILABLE_REFUSAL_KEYS)
    assert (result.body["pending_debits_rtc"], result.body["available_rtc"]) == (6.0, 4.0)


def test_transfer_with_a_wrong_admin_key_is_401(backend, funded_worker):
    intruder = backend.client(admin_key="wrong-admin-key-0123456789abcdefghijklmn")
    assert_failed(pay(intruder), 401, bodies.ADMIN_REQUIRED)
    assert intruder.tx_status(payout_tx_hash(PAY_KEY)).status == "not_found"
    with pytest.raises(EscrowClientError):  # without any key the client does not even send
        pay(backend.client(admin_key=None))


def test_transfer_to_a_blank_wallet_is_400(node, funded_worker):
    assert_failed(pay(node, to=" "), 400, "missing_from_or_to")


def test_tx_status_of_an_unknown_hash_is_an_authoritative_not_found(node):
    status = node.tx_status(payout_tx_hash("never-sent"))
    assert (status.result.outcome, status.result.status_code, status.status) == (
        Outcome.OK, 404, "not_found")
    assert status.result.body["error"] == bodies.TX_NOT_FOUND


# -- the pending pool (§1.12) ---------------------------------------------------------------

def test_confirm_moves_the_money_and_the_tx_becomes_confirmed(node, funded_worker):
    pending_id = pay(node).body["pending_id"]
    result = node.confirm_pending()
    assert (result.outcome, result.status_code, result.body["confirmed_ids"]) == (
        Outcome.OK, 200, [pending_id])
    assert_keys(result.body, CONFIRM_KEYS)
    assert (balance(node, WORKER), balance(node, PAYEE)) == (funded_worker - REWARD, REWARD)
    status = node.tx_status(payout_tx_hash(PAY_KEY))
    assert status.status == "confirmed" and status.result.body["confirmations"] == 1
    assert isinstance(status.result.body["block_height"], int)  # an epoch: clock-dependent


def test_confirm_voids_a_payout_the_balance_no_longer_covers(backend, node):
    # Job creation ignores pending debits (§1.2 check 3), so the sender can spend the money
    # a pending payout counts on; confirm then voids it as 'system' (§4).
    backend.fund(WORKER, 10_000_000)
    assert pay(node, amount=8_000_000).ok
    assert create(node, 2_000_000, poster=WORKER).ok  # 2.1 RTC escrowed: 7.9 RTC left
    result = node.confirm_pending()
    assert (result.body["selected_count"], result.body["confirmed_count"]) == (1, 0)
    assert node.tx_status(payout_tx_hash(PAY_KEY)).status == "failed"
    assert pay(node, amount=8_000_000).body["phase"] == "voided"
    [item] = list_pending(node, status="voided").body["pending"]
    assert (item["voided_by"], item["voided_reason"]) == ("system",
                                                          "insufficient_balance_at_confirm")


def test_pending_list_is_newest_first_and_ignores_offset(node, funded_worker):
    first, second = (pay(node, key).body["pending_id"] for key in ("key-a", "key-b"))
    result = list_pending(node, status="pending", limit=10)
    assert (result.outcome, result.status_code, result.body["count"]) == (Outcome.OK, 200, 2)
    assert_keys(result.body, PENDING_LIST_KEYS)
    items = result.body["pending"]
    assert [item["id"] for item in items] == [second, first]
    assert_keys(items[0], PENDING_ITEM_KEYS)  # no idempotency_key: match on tx_hash
    assert items[0]["tx_hash"] == payout_tx_hash("key-b")
    assert list_pending(node, status="pending", limit=1, offset=1).body["pending"] == items[:1]


def test_pending_list_without_key_needs_a_miner_id(node, funded_worker):
    assert pay(node).ok
    assert_failed(list_pending(node, admin=False), 401, bodies.PENDING_LIST_UNAUTHORIZED)
    public = list_pending(node, admin=False, miner_id=PAYEE)
    assert public.ok and [item["to_miner"] for item in public.body["pending"]] == [PAYEE]


def test_void_fails_the_tx_and_spends_the_key(node, funded_worker):
    pending_id = pay(node).body["pending_id"]
    result = node.void_pending(tx_hash=payout_tx_hash(PAY_KEY), reason="operator void")
    assert (result.outcome, result.status_code, result.body["voided_id"]) == (Outcome.OK, 200,
                                                                              pending_id)
    assert_keys(result.body, VOID_KEYS)
    assert node.tx_status(payout_tx_hash(PAY_KEY)).status == "failed"
    replay = pay(node)  # ok, but the phase says the payout is dead (§4: read phase, not ok)
    assert (replay.outcome, replay.body["phase"], replay.body["pending_id"]) == (
        Outcome.OK, "voided", pending_id)
    assert_failed(node.void_pending(tx_hash=payout_tx_hash(PAY_KEY), reason="again"), 400,
                  bodies.cannot_void("voided"))
    assert (balance(node, WORKER), balance(node, PAYEE)) == (funded_worker, 0)


def test_void_of_an_unknown_tx_is_404(node):
    assert_failed(node.void_pending(tx_hash=payout_tx_hash("never-sent"), reason="r"), 404,
                  bodies.PENDING_NOT_FOUND)


# -- answers without a usable refusal: 5xx, HTML, dropped connections (§1.1, §4) -------------

@pytest.mark.parametrize(("status", "html", "error"), [
    (500, False, bodies.INTERNAL_ERROR),
    (503, False, bodies.INTERNAL_ERROR),
    (500, True, "http 500"),
], ids=["json_500", "json_503", "html_500"])
def test_server_errors_are_unknown(backend, node, status, html, error):
    backend.fund(POSTER, 20_000_000)
    backend.fault("POST /agent/jobs", "error_5xx", status=status, html=html)
    result = create(node)
    assert (result.outcome, result.status_code, result.error) == (Outcome.UNKNOWN, status, error)
    assert balance(node, POSTER) == 20_000_000  # this fault answers before any effect


def test_html_404_of_a_misrouted_call_is_unknown_not_a_refusal(backend):
    # A wrong node URL (say, a proxy prefix) meets the server's HTML 404, which must not read
    # as the node's JSON "Job not found" (failed) nor as /wallet/tx's "not_found" (ok).
    misrouted = backend.client(admin_key=None, path="/proxy")
    read = misrouted.get_job("job_0000000000000000")
    assert (read.result.outcome, read.result.status_code, read.result.error) == (
        Outcome.UNKNOWN, 404, "bad json")
    assert not read.not_found
    status = misrouted.tx_status(payout_tx_hash(PAY_KEY))
    assert (status.result.outcome, status.status) == (Outcome.UNKNOWN, None)


def test_dropped_connection_is_unknown(backend, node):
    job_id = delivered_job(backend, node)
    backend.fault("POST /agent/jobs/<job_id>/accept", "drop_before")
    result = node.accept_job(job_id, poster_wallet=POSTER)
    assert (result.outcome, result.status_code, result.error) == (Outcome.UNKNOWN, None,
                                                                  "connection error")
    assert job_status(node, job_id) == "delivered"


def test_timeout_after_commit_is_unknown_and_a_replay_finds_the_row(backend, funded_worker):
    backend.fault("POST /wallet/transfer", "timeout_after", latency_ms=5_000)
    impatient = backend.client(read_timeout_seconds=0.3)
    result = pay(impatient)
    assert (result.outcome, result.status_code, result.error) == (Outcome.UNKNOWN, None,
                                                                  "timeout")
    replay = pay(backend.client())
    assert replay.ok and replay.body["phase"] == "pending"
    assert replay.body["message"] == bodies.TRANSFER_REPLAY_MESSAGE


def test_admin_rate_limit_is_failed_with_retry_after(backend, node, funded_worker):
    backend.fault("POST /wallet/transfer", "rate_limit")
    result = pay(node)
    assert_failed(result, 429, bodies.RATE_LIMITED)
    assert result.retry_after_seconds == 60
    assert node.tx_status(payout_tx_hash(PAY_KEY)).status == "not_found"  # refused, no effect
    assert pay(node).ok


def test_body_over_one_megabyte_is_413(backend, node):
    backend.fund(POSTER, 20_000_000)
    assert_failed(create(node, description="x" * (1024 * 1024)), 413, bodies.TOO_LARGE)
    assert balance(node, POSTER) == 20_000_000
