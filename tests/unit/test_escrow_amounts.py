"""Wire-edge amounts: the floats sent to the escrow node land on the exact micro-RTC integer.

The node's conversions are reproduced here independently of the module under test
(docs/escrow-node.md §0 "Rounding trap", §1.2, §1.11), then checked by brute force.
"""

from __future__ import annotations

import hashlib
import json
import random
from decimal import ROUND_DOWN, Decimal

import pytest

from otc_bridge.node.amounts import (
    expected_escrow_micro_rtc,
    expected_fee_micro_rtc,
    payout_tx_hash,
    reward_rtc_wire,
    transfer_rtc_wire,
)


def node_reward_i64(reward_rtc: float) -> int:
    """POST /agent/jobs: ``reward_i64 = int(reward_rtc * 1e6)`` after a JSON round trip."""
    return int(json.loads(json.dumps(reward_rtc)) * 1e6)


def node_transfer_i64(amount_rtc: float) -> int:
    """POST /wallet/transfer: ``Decimal(str(amount_rtc)) * 10**6`` rounded down."""
    value = Decimal(str(json.loads(json.dumps(amount_rtc)))) * 10**6
    return int(value.quantize(Decimal(1), rounding=ROUND_DOWN))


def test_the_trap_is_real():
    assert int(2.01 * 1e6) == 2_009_999
    assert node_reward_i64(reward_rtc_wire(2_010_000)) == 2_010_000


def test_reward_wire_every_micro_amount_to_one_rtc():
    for amount in range(10_000, 1_000_001):
        wire = reward_rtc_wire(amount)
        assert int(wire * 1e6) == amount, amount
        assert 0.01 <= wire <= 10_000


def test_reward_wire_every_two_decimal_amount_to_ten_thousand_rtc():
    for cents in range(1, 1_000_001):
        amount = cents * 10_000
        assert int(reward_rtc_wire(amount) * 1e6) == amount, amount


def test_reward_wire_random_amounts_survive_json():
    rng = random.Random(302)
    for amount in [10_000, 10_000_000_000] + [rng.randrange(10_000, 10_000_000_001)
                                              for _ in range(50_000)]:
        assert node_reward_i64(reward_rtc_wire(amount)) == amount, amount


@pytest.mark.parametrize("amount", [9_999, 0, -10_000, 10_000_000_001, True, 2.01, "2010000"])
def test_reward_wire_refuses_amounts_the_node_refuses(amount):
    with pytest.raises(ValueError):
        reward_rtc_wire(amount)


def test_transfer_wire_every_micro_amount_to_a_fifth_of_an_rtc():
    for amount in range(1, 200_001):
        assert node_transfer_i64(transfer_rtc_wire(amount)) == amount, amount


def test_transfer_wire_every_two_decimal_amount_to_ten_thousand_rtc():
    for cents in range(1, 1_000_001):
        amount = cents * 10_000
        wire = transfer_rtc_wire(amount)
        assert (Decimal(str(wire)) * 10**6).to_integral_value(ROUND_DOWN) == amount, amount


def test_transfer_wire_random_amounts_up_to_a_billion_rtc():
    rng = random.Random(1211)
    for digits in range(1, 16):
        for _ in range(3_000):
            amount = rng.randrange(10 ** (digits - 1), 10**digits)
            assert node_transfer_i64(transfer_rtc_wire(amount)) == amount, amount


@pytest.mark.parametrize("amount", [0, -1, 2**63, True, 1.0, None])
def test_transfer_wire_refuses_non_positive_or_non_int(amount):
    with pytest.raises(ValueError):
        transfer_rtc_wire(amount)


def test_transfer_wire_refuses_amounts_beyond_float_precision():
    with pytest.raises(ValueError):
        transfer_rtc_wire(9_797_912_329_671_134)


@pytest.mark.parametrize(("reward", "fee"), [
    (100_000_000, 5_000_000),
    (2_009_999, 100_499),  # 100,499.95 truncated
    (10_000, 500),
    (10_000_000_000, 500_000_000),
    (19, 0),
])
def test_fee_and_escrow_follow_the_node(reward, fee):
    assert expected_fee_micro_rtc(reward) == fee
    assert expected_escrow_micro_rtc(reward) == reward + fee


def test_fee_is_the_nodes_float_truncation_everywhere():
    rng = random.Random(5)
    for reward in [*range(10_000, 60_000), *(rng.randrange(10**4, 10**10) for _ in range(20_000))]:
        assert expected_fee_micro_rtc(reward) == int(reward * 0.05)


@pytest.mark.parametrize("reward", [-1, True, 1.0])
def test_fee_refuses_bad_rewards(reward):
    with pytest.raises(ValueError):
        expected_fee_micro_rtc(reward)


def test_payout_tx_hash():
    assert payout_tx_hash("otc_payout:abc") == "915d733f34397e4742408b9c49d528dc"
    for key in ("k", "otc_payout:ord_1:1", "x" * 128):
        digest = hashlib.sha256(f"wallet_transfer_idempotency:{key}".encode()).hexdigest()
        assert payout_tx_hash(key) == digest[:32]
    with pytest.raises(TypeError):
        payout_tx_hash(None)
