"""The retry delay: exponential, jittered, capped; a pure function of the attempt number."""

from __future__ import annotations

import random

import pytest

from otc_bridge.notify.outbox_worker import backoff_seconds


@pytest.mark.parametrize("seed", range(20))
def test_delays_stay_within_bounds_and_never_shrink_between_bands(seed):
    rng = random.Random(seed)
    delays = [backoff_seconds(n, base=2, cap=3600, rng=rng) for n in range(1, 16)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(3600, 2 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling, (n, delay)
    # Below the cap, the lower bound of each band is the upper bound of the previous one.
    uncapped = delays[:11]  # 2 * 2 ** 10 = 2048 is the first band reaching the 3600 s cap
    assert all(later >= earlier for earlier, later in zip(uncapped, uncapped[1:], strict=False))
    assert delays[-1] >= 1800 and max(delays) <= 3600


def test_jitter_spreads_retries():
    delays = {backoff_seconds(8, rng=random.Random(seed)) for seed in range(50)}
    assert len(delays) > 10 and min(delays) >= 128 and max(delays) <= 256


def test_huge_attempt_numbers_are_capped_and_attempt_zero_is_refused():
    assert backoff_seconds(10_000, cap=60) <= 60
    with pytest.raises(ValueError, match="start at 1"):
        backoff_seconds(0)
