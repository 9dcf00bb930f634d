"""Fixed-window rate limits in SQLite (their own file beside the database) and the client
address they key on (docs/protocol.md §8). Time is always passed in as ``now``."""

from __future__ import annotations

import ipaddress

import pytest

from otc_bridge.config import RateLimit
from otc_bridge.storage import ratelimit
from otc_bridge.storage.db import Database
from otc_bridge.storage.ratelimit import Verdict

T0 = 1_800_000_000
LIMIT = RateLimit(3, 60)


@pytest.fixture
def db(tmp_path) -> Database:
    database = Database(str(tmp_path / "x.db"))
    database.migrate()
    return database


def test_allows_n_per_window_then_refuses_with_retry_after(db):
    assert [ratelimit.hit(db, "ip:a", LIMIT, T0 + i) for i in range(3)] == [Verdict(True)] * 3
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 10) == Verdict(False, 50)
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 59) == Verdict(False, 1)
    # refused requests are not counted: the count stops at the limit + 1 (the refusing mark)
    assert ratelimit.counters(db).read_one("SELECT hits FROM rate_limits WHERE bucket = 'ip:a'")[0] == 4


def test_resets_in_the_next_window(db):
    for i in range(3):
        ratelimit.hit(db, "ip:a", LIMIT, T0 + i)
    assert not ratelimit.hit(db, "ip:a", LIMIT, T0 + 59).allowed
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 60) == Verdict(True)  # window_start + 60 <= now
    row = ratelimit.counters(db).read_one("SELECT window_start, hits FROM rate_limits WHERE bucket = 'ip:a'")
    assert tuple(row) == (T0 + 60, 1)
    assert [ratelimit.hit(db, "ip:a", LIMIT, T0 + 61).allowed for _ in range(3)] == [True, True, False]


def test_long_idle_gap_starts_a_fresh_window(db):
    for _ in range(4):
        ratelimit.hit(db, "ip:a", LIMIT, T0)
    assert ratelimit.hit(db, "ip:a", LIMIT, T0 + 10 * 86400) == Verdict(True)


def test_buckets_are_independent(db):
    for _ in range(3):
        ratelimit.hit(db, "ip:a", LIMIT, T0)
    assert not ratelimit.hit(db, "ip:a", LIMIT, T0).allowed
    assert ratelimit.hit(db, "ip:b", LIMIT, T0).allowed
    assert ratelimit.hit(db, "wallet:a", LIMIT, T0).allowed
    assert not ratelimit.hit(db, "ip:a", LIMIT, T0 + 1).allowed


@pytest.mark.parametrize(("limit", "refused_at", "retry"), [
    (RateLimit(1, 1), 0, 1),
    (RateLimit(1, 3600), 0, 3600),
    (RateLimit(2, 86400), 86399, 1),
])
def test_retry_after_is_time_to_window_end_and_at_least_one(db, limit, refused_at, retry):
    for _ in range(limit.requests):
        assert ratelimit.hit(db, "b", limit, T0).allowed
    assert ratelimit.hit(db, "b", limit, T0 + refused_at) == Verdict(False, retry)


def test_count_is_shared_across_database_handles(tmp_path, db):
    other = Database(db.path)  # another worker process opening the same file
    for _ in range(3):
        ratelimit.hit(db, "ip:a", LIMIT, T0)
    assert not ratelimit.hit(other, "ip:a", LIMIT, T0 + 1).allowed
    other.close()


def test_prune_removes_only_ended_windows(db):
    ratelimit.hit(db, "old", LIMIT, T0)
    ratelimit.hit(db, "new", LIMIT, T0 + 30)
    assert ratelimit.prune(db, T0 + 60, 60) == 1
    assert [r["bucket"] for r in ratelimit.counters(db).read("SELECT bucket FROM rate_limits")] == ["new"]
    assert ratelimit.prune(db, T0 + 60, 60) == 0


# --- client_ip -----------------------------------------------------------------------------

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(("remote", "headers", "expected"), [
    # untrusted peer: forwarding headers are forgeable and ignored
    ("203.0.113.5", {"X-Forwarded-For": "1.1.1.1"}, "203.0.113.5"),
    ("203.0.113.5", {"X-Real-IP": "1.1.1.1"}, "203.0.113.5"),
    ("203.0.113.5", {}, "203.0.113.5"),
    ("2001:db8::1", {"X-Forwarded-For": "1.1.1.1"}, "2001:db8::1"),
    # trusted proxy: right-most entry that is not itself a trusted proxy
    ("10.0.0.2", {"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7"),
    ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7"}, "198.51.100.7"),
    ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.0.0.9"}, "198.51.100.7"),
    ("10.0.0.2", {"X-Forwarded-For": " 198.51.100.7 ,10.1.1.1 , 10.0.0.3"}, "198.51.100.7"),
    ("::1", {"X-Forwarded-For": "2001:db8::7"}, "2001:db8::7"),
    ("10.0.0.2", {"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "5.5.5.5"}, "198.51.100.7"),
    # falls back to X-Real-IP, then to the peer
    ("10.0.0.2", {"X-Real-IP": "198.51.100.8"}, "198.51.100.8"),
    ("10.0.0.2", {"X-Forwarded-For": "10.0.0.5, 10.0.0.6", "X-Real-IP": "198.51.100.8"}, "198.51.100.8"),
    ("10.0.0.2", {"X-Forwarded-For": "10.0.0.5"}, "10.0.0.2"),
    ("10.0.0.2", {}, "10.0.0.2"),
    # garbage
    ("10.0.0.2", {"X-Forwarded-For": "garbage"}, "10.0.0.2"),
    ("10.0.0.2", {"X-Forwarded-For": "garbage", "X-Real-IP": "198.51.100.8"}, "198.51.100.8"),
    ("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, not-an-ip"}, "10.0.0.2"),  # stops at garbage
    ("10.0.0.2", {"X-Forwarded-For": "1.2.3.4:5678"}, "10.0.0.2"),
    ("10.0.0.2", {"X-Forwarded-For": ""}, "10.0.0.2"),
    ("10.0.0.2", {"X-Forwarded-For": ",,,"}, "10.0.0.2"),
    ("10.0.0.2", {"X-Real-IP": "nonsense"}, "10.0.0.2"),
    ("10.0.0.2", {"X-Forwarded-For": "\x00\xff", "X-Real-IP": "\n"}, "10.0.0.2"),
    (None, {"X-Forwarded-For": "1.1.1.1"}, "unknown"),
    ("", {}, "unknown"),
    ("not-an-ip", {"X-Forwarded-For": "1.1.1.1"}, "not-an-ip"),
])
def test_client_ip(remote, headers, expected):
    assert ratelimit.client_ip(remote, headers, PROXIES) == expected


def test_client_ip_without_trusted_proxies_is_the_peer():
    headers = {"X-Forwarded-For": "1.1.1.1", "X-Real-IP": "2.2.2.2"}
    assert ratelimit.client_ip("10.0.0.2", headers, ()) == "10.0.0.2"


def test_client_ip_accepts_any_iterable_of_networks():
    proxies = iter([ipaddress.ip_network("10.0.0.0/8")])
    assert ratelimit.client_ip("10.0.0.2", {"X-Forwarded-For": "6.6.6.6, 7.7.7.7"}, proxies) == "7.7.7.7"
