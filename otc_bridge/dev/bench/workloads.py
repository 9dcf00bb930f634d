"""The workloads: lifecycles, reads (and their ceiling), mixed, and the escrow-watch pass.

Each run returns a dict (the JSON's ``runs`` entries, see docs/performance.md): the window's
per-endpoint figures and what the run cost the bridge and the node. A lifecycle run's cost
is counted from its start until every order it made is settled (the reconciler's promotion
to ``completed`` comes after the window), and divided by the orders completed meanwhile.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otc_bridge.dev.bench import checks, drivers, profile, seed, tally
from otc_bridge.dev.bench.stack import Snapshot, Stack, cost, take

SETTLEMENT_ROUTE = "GET /wallet/tx/<tx_hash>"  # the reconciler's payout status read
CEILING_PATH = ("GET /healthz", "/healthz")


@dataclass
class RunSettings:
    """What the workloads need from the options (seconds are durations, floats)."""

    seconds: float
    driver_processes: int
    drain_timeout: float


def _per(value: float | int, n: int, digits: int = 2) -> float | None:
    return round(value / n, digits) if n else None


def _reads_summary(records: tally.Tally, seconds: float) -> dict[str, Any]:
    labels = [label for label in records if label.startswith("GET ")]
    return tally.summarize_entry(tally.combined(records, labels), seconds)


def _lifecycle_cost(spent: dict[str, Any]) -> dict[str, Any]:
    """Per completed lifecycle: bridge and node CPU (ms), node calls (total, by route), and
    the payout status reads: all of them (``settlement_calls``) and those made once the node
    had confirmed the payout (``settlement_calls_confirmed``: all less the reads the serve
    log counts as ``still_pending``, which found the payout not yet confirmed by the cron)."""
    done = spent["completed"]
    status_reads = spent["node_calls_by_route"].get(SETTLEMENT_ROUTE, 0)
    pending_reads = spent["reconcile"]["counts"].get("still_pending", 0)
    return {"completed": done, "bridge_cpu_ms": _per(spent["bridge_cpu_ms"], done),
            "node_cpu_ms": _per(spent["node_cpu_ms"], done), "node_calls": _per(spent["node_calls"], done),
            "node_calls_by_route": {route: _per(n, done) for route, n in spent["node_calls_by_route"].items()},
            "settlement_calls": _per(status_reads, done),
            "settlement_calls_confirmed": _per(max(0, status_reads - pending_reads), done)}


class Workloads:
    """Runs workloads on one :class:`Stack`; ``records`` gathers every request the benchmark
    made on it (seeding and cleanup included) for the final 5xx count."""

    def __init__(self, stack: Stack, settings: RunSettings) -> None:
        self.stack, self.settings = stack, settings
        self.records: tally.Tally = tally.new()
        self.leftovers: list[dict[str, Any]] = []
        self.open_orders: list[dict[str, Any]] = []

    # --- helpers -------------------------------------------------------------------------------------

    def _run(self, clients: list[drivers.Client], profile_to: tuple[Path, str] | None = None
             ) -> tuple[drivers.GroupResult, Snapshot, Snapshot, subprocess.Popen | None]:
        """Run ``clients`` for the window (profiled into ``(dir, mode)`` if given); the
        snapshots at its start and end, and the profiler."""
        marks: dict[str, Any] = {}

        def start() -> None:
            if profile_to is not None:
                assert self.stack.bridge is not None
                marks["profiler"] = profile.start(self.stack.bridge.pid, self.settings.seconds, *profile_to)
            marks["before"] = take(self.stack)

        group = drivers.run_group(clients, self.settings.driver_processes, self.settings.seconds, start)
        window_end = take(self.stack)
        tally.merge(self.records, group.records)
        return group, marks["before"], window_end, marks.get("profiler")

    def _settle(self, leftovers: list[dict[str, Any]]) -> dict[str, Any]:
        """Finish the orders clients left, then wait for the reconciler to settle every order
        (open ones excepted: the seeded book stays)."""
        self.leftovers.extend(leftovers)
        tally.merge(self.records, seed.finish_leftovers(self.stack.url, leftovers, self.settings.drain_timeout))
        return checks.wait_settled(self.stack.db_path, self.settings.drain_timeout, allow_open=True)

    @staticmethod
    def _base(name: str, workload: str, group: drivers.GroupResult, lifecycle: int, readers: int) -> dict[str, Any]:
        return {"name": name, "workload": workload, "clients": {"lifecycle": lifecycle, "readers": readers},
                "driver_processes": group.processes, "seconds": round(group.seconds, 2),
                "endpoints": tally.summarize(group.records, group.seconds), "errors": group.errors}

    def _lifecycle_part(self, run: dict[str, Any], group: drivers.GroupResult, before: Snapshot,
                        window_end: Snapshot) -> None:
        """Settle, then add the lifecycle figures and their cost to ``run``."""
        run["lifecycles"] = group.outcome.lifecycles
        run["lifecycles_per_s"] = _per(group.outcome.lifecycles, group.seconds)  # type: ignore[arg-type]
        run["leftovers"] = [{k: v for k, v in left.items() if not k.endswith("_seed") and k != "secret"}
                            for left in group.outcome.leftovers][:10]
        run["drain"] = self._settle(group.outcome.leftovers)
        after = take(self.stack)
        run["window_cost"] = cost(self.stack, before, window_end, group.driver_cpu_seconds)
        run["cost"] = cost(self.stack, before, after, group.driver_cpu_seconds)
        run["per_lifecycle"] = _lifecycle_cost(run["cost"])
        run["per_lifecycle"]["window_bridge_cpu_ms"] = _per(run["window_cost"]["bridge_cpu_ms"],
                                                            group.outcome.lifecycles)

    # --- workloads -----------------------------------------------------------------------------------

    def idle(self, seconds: float) -> dict[str, Any]:
        """The bridge doing nothing but its background loops, for ``seconds``."""
        before = take(self.stack)
        time.sleep(seconds)  # a measurement window, not a wait for a state
        spent = cost(self.stack, before, take(self.stack))
        return {"seconds": spent["seconds"], "bridge_cpu_ms_per_s": _per(spent["bridge_cpu_ms"], spent["seconds"]),
                "node_calls": spent["node_calls"], "node_calls_by_route": spent["node_calls_by_route"]}

    def lifecycles(self, clients: int, name: str | None = None,
                   profile_to: tuple[Path, str] | None = None) -> dict[str, Any]:
        """``clients`` lifecycle clients for the window; costs until all is settled. With
        ``profile_to`` = ``(dir, mode)``, py-spy samples the bridge meanwhile (:mod:`.profile`)."""
        stack = self.stack
        group, before, window_end, profiler = self._run(
            seed.lifecycle_clients(stack.url, stack.node, stack.wallets, clients), profile_to)
        run = self._base(name or f"lifecycle-{clients}", "lifecycle", group, clients, 0)
        if profiler is not None and profile_to is not None:
            run["profile"] = profile.finish(profiler, *profile_to)
        self._lifecycle_part(run, group, before, window_end)
        return run

    def seed_book(self, open_orders: int, trades: int) -> tuple[dict[str, Any], list[str]]:
        """``open_orders`` open sell orders and at least ``trades`` completed trades; returns
        what was done and the order ids the reads rotate over (open and completed ones)."""
        stack, started = self.stack, time.monotonic()
        have = checks.count(stack.db_path, "SELECT COUNT(*) FROM trades")
        records, outcome, errors = seed.completed_trades(stack.url, stack.node, stack.wallets, trades - have)
        tally.merge(self.records, records)
        drained = self._settle(outcome.leftovers)
        created, records = seed.open_orders(stack.url, stack.node, stack.wallets, open_orders)
        tally.merge(self.records, records)
        self.open_orders.extend(created)
        done = [row[0] for row in checks.read_rows(
            stack.db_path, "SELECT order_id FROM orders WHERE status = 'completed' ORDER BY created_at DESC LIMIT ?",
            (max(trades, 1),))]
        opened = [order["order_id"] for order in created]
        ids = [order_id for pair in zip(opened, done, strict=False) for order_id in pair]
        ids += opened[len(done):] + done[len(opened):]
        report = {"open_orders": len(created), "trades_before": have,
                  "trades": checks.count(stack.db_path, "SELECT COUNT(*) FROM trades"),
                  "seconds": round(time.monotonic() - started, 1), "drain": drained, "errors": errors}
        return report, ids

    def reads(self, readers: int, paths: list[tuple[str, str]], name: str, workload: str = "reads") -> dict[str, Any]:
        """``readers`` keep-alive clients round-robin over ``paths`` for the window."""
        clients: list[drivers.Client] = [drivers.ReadClient(self.stack.url, paths, offset=i) for i in range(readers)]
        group, before, after, _ = self._run(clients)
        run = self._base(name, workload, group, 0, readers)
        run["reads"] = _reads_summary(group.records, group.seconds)
        run["cost"] = cost(self.stack, before, after, group.driver_cpu_seconds)
        count = run["reads"]["count"]
        run["per_read"] = {"bridge_cpu_ms": _per(run["cost"]["bridge_cpu_ms"], count, 3),
                           "node_calls": _per(run["cost"]["node_calls"], count, 4)}
        return run

    def ceiling(self, readers: int) -> dict[str, Any]:
        """The same readers on ``GET /healthz``: the server's and the app's fixed cost per request."""
        return self.reads(readers, [CEILING_PATH], "ceiling", workload="ceiling")

    def mixed(self, lifecycle_clients: int, readers: int, paths: list[tuple[str, str]]) -> dict[str, Any]:
        """Lifecycle clients and readers at once, for the window."""
        stack = self.stack
        clients: list[drivers.Client] = [*seed.lifecycle_clients(stack.url, stack.node, stack.wallets,
                                                                  lifecycle_clients),
                                         *(drivers.ReadClient(stack.url, paths, offset=i) for i in range(readers))]
        group, before, window_end, _ = self._run(clients)
        run = self._base(f"mixed-{lifecycle_clients}+{readers}", "mixed", group, lifecycle_clients, readers)
        run["reads"] = _reads_summary(group.records, group.seconds)
        self._lifecycle_part(run, group, before, window_end)
        run["per_read"] = {"bridge_cpu_ms": None, "node_calls": None}  # shared with the lifecycles
        return run

    def watch_pass(self, orders: int) -> dict[str, Any]:
        """Seed ``orders`` open sell orders, then time one reconcile pass in serve (``POST
        /admin/reconcile``, the background reconciler being off on this stack), then one more
        as ``otc-bridge reconcile`` (a process of its own: ``cli``)."""
        stack = self.stack
        assert stack.bridge is not None
        started = time.monotonic()
        created, records = seed.open_orders(stack.url, stack.node, stack.wallets, orders)
        tally.merge(self.records, records)
        self.open_orders.extend(created)
        seeded_s = time.monotonic() - started
        before = take(stack)
        summary = stack.bridge.reconcile()
        after = take(stack)
        spent = cost(stack, before, after)
        cli = stack.bridge.reconcile_cli()
        cli["node_calls"] = cost(stack, after, take(stack))["node_calls"]
        return {"name": f"watch-{orders}", "cli": cli, "workload": "watch", "open_orders": len(created),
                "seed_seconds": round(seeded_s, 1), "create": tally.summarize(records, seeded_s),
                "pass_seconds": spent["seconds"], "summary": summary, "cost": spent,
                "per_order": {"node_calls": _per(spent["node_calls"], len(created)),
                              "bridge_cpu_ms": _per(spent["bridge_cpu_ms"], len(created), 3),
                              "wall_ms": _per(spent["seconds"] * 1000, len(created), 3)}}

    # --- the end -------------------------------------------------------------------------------------

    def finish(self, nudge_reconcile: bool = False) -> dict[str, Any]:
        """Cancel the seeded open orders, wait until every order is terminal and the node's
        pool is confirmed, then check conservation and the serve log."""
        stack = self.stack
        assert stack.bridge is not None
        started = time.monotonic()
        open_now = {row[0] for row in checks.read_rows(stack.db_path,
                                                       "SELECT order_id FROM orders WHERE status = 'open'")}
        tally.merge(self.records, seed.cancel(stack.url, [o for o in self.open_orders if o["order_id"] in open_now]))
        terminal = checks.wait_settled(stack.db_path, self.settings.drain_timeout, allow_open=False,
                                       nudge=stack.bridge.reconcile if nudge_reconcile else None)
        state = checks.wait_pool_empty(stack.node.state, self.settings.drain_timeout)
        money = checks.conservation(stack.db_path, state, stack.wallets.minted)
        log = checks.serve_log(stack.bridge.log_text())
        five = sum(tally.summarize_entry(entry, 1)["errors_5xx"] for entry in self.records.values())
        transport = sum(tally.summarize_entry(entry, 1)["errors_transport"] for entry in self.records.values())
        alive = stack.bridge.alive() and stack.node.alive()
        return {"terminal": terminal, "conservation": money, "serve_log": log, "errors_5xx": five,
                "errors_transport": transport, "servers_alive": alive,
                "cleanup_seconds": round(time.monotonic() - started, 1),
                "ok": bool(terminal["ok"] and money["ok"] and not log["database_locked"] and not five
                           and not transport and alive)}
