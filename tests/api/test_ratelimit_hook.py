"""The per-IP limit on POSTs as the app applies it: IPv6 clients counted per /64 (IPv4-mapped
addresses as IPv4), and ended windows pruned by the POST hook at most once per window."""

from __future__ import annotations

import pytest
from api_checks import Clock, post_raw

from otc_bridge.storage import ratelimit

T0 = 1_900_000_000


def _post(client, ip: str):
    return post_raw(client, "/api/orders", b"", environ_base={"REMOTE_ADDR": ip})


@pytest.fixture
def limited(make_app):
    """An app allowing 3 POSTs per minute per client, on a clock the test moves."""
    app = make_app(OTC_RATE_LIMIT="3/minute")
    bridge = app.extensions["otc_bridge"]
    bridge.clock = Clock(T0)
    return app.test_client(), bridge


def _buckets(bridge) -> list[str]:
    return sorted(r["bucket"] for r in ratelimit.counters(bridge.db).read("SELECT bucket FROM rate_limits"))


def test_one_ipv6_64_shares_one_budget(limited):
    client, bridge = limited
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"):
        assert _post(client, host).status_code == 400  # counted, then refused as bad input
    assert _post(client, "2001:db8:1:2:abcd::9").status_code == 429
    assert _post(client, "2001:db8:1:3::1").status_code == 400  # the next /64 has its own budget
    assert _buckets(bridge) == ["ip6:2001:db8:1:2::/64", "ip6:2001:db8:1:3::/64"]


def test_ipv4_counts_per_address_and_mapped_ipv6_as_ipv4(limited):
    client, bridge = limited
    for ip in ("::ffff:203.0.113.7", "203.0.113.7", "::ffff:cb00:7107"):
        assert _post(client, ip).status_code == 400
    assert _post(client, "203.0.113.7").status_code == 429
    assert _post(client, "203.0.113.8").status_code == 400
    assert _buckets(bridge) == ["ip:203.0.113.7", "ip:203.0.113.8"]


def test_ended_windows_are_pruned_at_most_once_per_window(limited):
    client, bridge = limited
    _post(client, "192.0.2.1")  # the first POST prunes (nothing yet); the next prune is due at T0 + 60
    bridge.clock.now = T0 + 30
    _post(client, "192.0.2.2")
    assert _buckets(bridge) == ["ip:192.0.2.1", "ip:192.0.2.2"]
    bridge.clock.now = T0 + 60  # 192.0.2.1's window has ended, 192.0.2.2's has not
    _post(client, "192.0.2.3")
    assert _buckets(bridge) == ["ip:192.0.2.2", "ip:192.0.2.3"]
    bridge.clock.now = T0 + 95  # 192.0.2.2's window ended at T0 + 90, but this window was pruned already
    _post(client, "192.0.2.4")
    assert _buckets(bridge) == ["ip:192.0.2.2", "ip:192.0.2.3", "ip:192.0.2.4"]
    bridge.clock.now = T0 + 120
    _post(client, "192.0.2.5")
    assert _buckets(bridge) == ["ip:192.0.2.4", "ip:192.0.2.5"]


def test_gets_never_prune(limited):
    client, bridge = limited
    _post(client, "192.0.2.1")
    bridge.clock.now = T0 + 3600
    assert client.get("/api/orders").status_code == 200
    assert _buckets(bridge) == ["ip:192.0.2.1"]
