"""One dev node + one ``otc-bridge serve`` + the pool confirmer, and their measurements.

A :class:`Snapshot` is taken before and after each run; :func:`cost` turns two into what
the run cost: the bridge's and the node's CPU (milliseconds, from ``/proc``), the node calls
by route (from the dev node's ``GET /dev/stats``, ``/dev/*`` routes left out: those are the
benchmark's and the cron's, not the bridge's), the whole machine's busy CPU (so that other
load on a shared machine shows), orders completed, and the reconcile passes the serve log
reports in between.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otc_bridge.dev.bench import checks
from otc_bridge.dev.bench.procs import Bridge, BridgeSettings, DevNode, PoolConfirmer, cpu_seconds, machine_cpu_seconds
from otc_bridge.dev.bench.seed import Wallets, new_run_id

_RECONCILE_LINE = "reconcile pass: "


class Stack:
    """Starts the node, the cron and the bridge in ``workdir``; ``close()`` stops them."""

    def __init__(self, workdir: Path, settings: BridgeSettings, confirm_interval: float) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.node = DevNode(workdir)
        self.confirmer: PoolConfirmer | None = None
        self.bridge: Bridge | None = None
        try:
            self.confirmer = PoolConfirmer(self.node, confirm_interval)
            self.bridge = Bridge(workdir, self.node, settings)
        except BaseException:
            self.close()
            raise
        self.wallets = Wallets(new_run_id())

    @property
    def url(self) -> str:
        assert self.bridge is not None
        return self.bridge.url

    @property
    def db_path(self) -> Path:
        assert self.bridge is not None
        return self.bridge.db_path

    def close(self) -> dict[str, int | None]:
        """Stop everything (bridge first, so that it makes no node call to a stopped node);
        the exit codes."""
        codes: dict[str, int | None] = {}
        if self.bridge is not None:
            codes["serve"] = self.bridge.stop()
        if self.confirmer is not None:
            self.confirmer.stop()
        codes["devnode"] = self.node.stop()
        return codes


@dataclass
class Snapshot:
    """The counters at one moment (CPU in seconds: durations, never money)."""

    at: float  # time.monotonic()
    bridge_cpu: float
    node_cpu: float
    busy_cpu: float
    steal_cpu: float
    bench_cpu: float  # this (the benchmark's main) process
    node_calls: dict[str, int]
    completed: int
    log_offset: int


def take(stack: Stack) -> Snapshot:
    assert stack.bridge is not None
    busy, steal = machine_cpu_seconds()
    return Snapshot(at=time.monotonic(), bridge_cpu=cpu_seconds(stack.bridge.pid),
                    node_cpu=cpu_seconds(stack.node.pid), busy_cpu=busy, steal_cpu=steal,
                    bench_cpu=_own_cpu_seconds(),
                    node_calls=stack.node.request_counts(),
                    completed=checks.count(stack.db_path, "SELECT COUNT(*) FROM orders WHERE status = 'completed'"),
                    log_offset=stack.bridge.log_size())


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def cost(stack: Stack, before: Snapshot, after: Snapshot, driver_cpu_seconds: float = 0.0) -> dict[str, Any]:
    """What happened between two snapshots (see the module docstring). ``other_cpu_ms`` is
    the machine's busy CPU less the bridge's, the node's, the drivers' and the benchmark's
    main process's: other processes (other users of a shared machine) and kernel work charged
    to no process; ``steal_cpu_ms`` is time the hypervisor gave to other machines."""
    assert stack.bridge is not None
    calls = {route: after.node_calls.get(route, 0) - before.node_calls.get(route, 0)
             for route in after.node_calls if not route.split(" ", 1)[-1].startswith("/dev/")}
    calls = {route: n for route, n in sorted(calls.items(), key=lambda item: -item[1]) if n}
    bridge_ms, node_ms = _ms(after.bridge_cpu - before.bridge_cpu), _ms(after.node_cpu - before.node_cpu)
    busy_ms, bench_ms = _ms(after.busy_cpu - before.busy_cpu), _ms(after.bench_cpu - before.bench_cpu)
    return {"seconds": round(after.at - before.at, 2), "bridge_cpu_ms": bridge_ms, "node_cpu_ms": node_ms,
            "driver_cpu_ms": _ms(driver_cpu_seconds), "bench_cpu_ms": bench_ms, "machine_busy_cpu_ms": busy_ms,
            "steal_cpu_ms": _ms(after.steal_cpu - before.steal_cpu), "loadavg_1m_end": os.getloadavg()[0],
            "other_cpu_ms": round(busy_ms - bridge_ms - node_ms - _ms(driver_cpu_seconds) - bench_ms, 1),
            "node_calls": sum(calls.values()), "node_calls_by_route": calls,
            "completed": after.completed - before.completed,
            "reconcile": reconcile_passes(stack.bridge.log_text(before.log_offset, after.log_offset))}


def reconcile_passes(log_text: str) -> dict[str, Any]:
    """The reconcile passes the serve log reports (``reconcile pass: {counts}``): how many,
    and their non-zero counts summed (``watched``, ``promoted``, ``still_pending`` ...)."""
    passes, totals = 0, {}
    for line in log_text.splitlines():
        if _RECONCILE_LINE not in line:
            continue
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            message = line
        if _RECONCILE_LINE not in message:
            continue
        passes += 1
        try:
            counts = ast.literal_eval(message.split(_RECONCILE_LINE, 1)[1].strip())
        except (ValueError, SyntaxError):
            continue
        for name, value in counts.items():
            if isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
    return {"passes": passes, "counts": dict(sorted(totals.items()))}
