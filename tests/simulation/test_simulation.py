"""Seeded random simulation: a few hundred orders with random actions, faults and crashes.

Invariants are checked after every step (see ``sim_driver.Simulation.check``); at the end
the faults stop, time moves on, the reconciler settles everything, and the books must
balance to the micro-RTC for every wallet. A failure prints its seed and step:

    OTC_SIM_SEED=<seed> OTC_SIM_STEPS=<steps> pytest tests/simulation

``OTC_SIM_SEED`` (default :data:`DEFAULT_SEED`) and ``OTC_SIM_STEPS`` (default
:data:`DEFAULT_STEPS`, sized for CI) set the default run. The long run is marked ``slow``
and skipped unless ``-m slow`` is given, ``OTC_SIM_LONG=1`` is set, or ``OTC_SIM_STEPS`` is
at least :data:`LONG_STEPS`.
"""

from __future__ import annotations

import os

import pytest
from sim_driver import Simulation

DEFAULT_SEED = 20261121
DEFAULT_STEPS = 1200
LONG_STEPS = 4000

SEED = int(os.environ.get("OTC_SIM_SEED", DEFAULT_SEED))
STEPS = int(os.environ.get("OTC_SIM_STEPS", DEFAULT_STEPS))
#: Strict by default: the unsent-payout bug the simulation found is fixed (the reconciler
#: re-sends a keyed payout the node proves was never queued). OTC_SIM_STRICT=0 restores the
#: old tolerance, to bisect.
STRICT = os.environ.get("OTC_SIM_STRICT", "1") == "1"


def run(seed: int, steps: int, bridge, dev_node, api, node_db_path) -> Simulation:
    sim = Simulation(seed, bridge=bridge, dev_node=dev_node, api=api, node_db_path=node_db_path,
                     steps_hint=steps, strict=STRICT)
    sim.run(steps)
    final = sim.finish()
    created = sum(final.values())
    print(f"\nsimulation seed={seed} steps={steps}: {created} orders, final {dict(final)}")
    print("actions:", dict(sorted(sim.stats.items())))
    if sim.known_bug_orders:
        print(f"KNOWN BUG (unsent payout left in settlement_recovery): {sorted(sim.known_bug_orders)}")
    # The run must have exercised the money path, not just refusals.
    assert created >= steps // 6, (seed, final)
    assert final["completed"] >= steps // 40, (seed, final)
    return sim


def test_seeded_simulation(bridge, dev_node, api, node_db_path):
    run(SEED, STEPS, bridge, dev_node, api, node_db_path)


@pytest.mark.slow
@pytest.mark.skipif(
    "'slow' not in (config.getoption('markexpr') or '') and os.environ.get('OTC_SIM_LONG') != '1'"
    f" and int(os.environ.get('OTC_SIM_STEPS', '0')) < {LONG_STEPS}",
    reason=f"long simulation: give -m slow, OTC_SIM_LONG=1 or OTC_SIM_STEPS>={LONG_STEPS}")
def test_long_seeded_simulation(bridge, dev_node, api, node_db_path):
    steps = max(STEPS, LONG_STEPS)
    run(SEED + 1, steps, bridge, dev_node, api, node_db_path)
