"""Printing the benchmark's results, and the issue's targets against the measurements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The targets of the performance issue (docs/performance.md).
MAX_NODE_CALLS_PER_LIFECYCLE = 7
MAX_BRIDGE_CPU_MS_PER_LIFECYCLE = 12
MIN_READS_PER_S = 2500
MAX_READ_P99_MS = 20
MIN_CEILING_SHARE = 0.85
MIN_MIXED_READ_SHARE = 0.80
MAX_MIXED_READ_P99_MS = 50
MIN_MIXED_LIFECYCLE_SHARE = 0.80
MAX_SETTLEMENT_CALLS = 1


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def endpoints_table(endpoints: dict[str, dict[str, Any]]) -> str:
    headers = ["endpoint", "count", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "4xx", "5xx", "no answer"]
    rows = [[label, e["count"], e["rps"], e["p50_ms"], e["p90_ms"], e["p99_ms"], e["max_ms"], e["errors_4xx"],
             e["errors_5xx"], e["errors_transport"]] for label, e in endpoints.items()]
    return table(headers, rows)


def _routes(by_route: dict[str, float], limit: int = 8) -> str:
    return ", ".join(f"{route} {_fmt(n, 2)}" for route, n in list(by_route.items())[:limit])


def run_text(run: dict[str, Any]) -> str:
    """One run: its endpoints table and its cost lines."""
    clients = run["clients"]
    head = (f"## {run['name']}: {clients['lifecycle']} lifecycle + {clients['readers']} read clients, "
            f"{run['seconds']} s, {run['driver_processes']} driver process(es)")
    lines = [head, "", endpoints_table(run["endpoints"]), ""]
    if "lifecycles" in run:
        per, drain = run["per_lifecycle"], run["drain"]
        lines.append(f"lifecycles: {run['lifecycles']} ({_fmt(run['lifecycles_per_s'], 2)}/s); "
                     f"{per['completed']} completed, settled {drain['waited_s']} s after the window"
                     + ("" if drain["ok"] else f" NOT SETTLED: {drain['unsettled']}"))
        lines.append(f"per completed lifecycle: bridge CPU {_fmt(per['bridge_cpu_ms'], 2)} ms "
                     f"(window only: {_fmt(per['window_bridge_cpu_ms'], 2)} ms per settled lifecycle), "
                     f"node CPU {_fmt(per['node_cpu_ms'], 2)} ms, node calls {_fmt(per['node_calls'], 2)}: "
                     f"{_routes(per['node_calls_by_route'])}")
    if "reads" in run:
        reads = run["reads"]
        lines.append(f"reads: {_fmt(reads['rps'])} req/s, p50 {_fmt(reads['p50_ms'], 2)} ms, "
                     f"p99 {_fmt(reads['p99_ms'], 2)} ms, errors {reads['errors']}"
                     + (f"; bridge CPU {_fmt(run['per_read']['bridge_cpu_ms'], 3)} ms/request"
                        if run.get("per_read", {}).get("bridge_cpu_ms") is not None else ""))
    spent = run["cost"]
    lines.append(f"CPU over {spent['seconds']} s: bridge {_fmt(spent['bridge_cpu_ms'] / 1000, 1)} s, "
                 f"node {_fmt(spent['node_cpu_ms'] / 1000, 1)} s, drivers {_fmt(spent['driver_cpu_ms'] / 1000, 1)} s, "
                 f"other {_fmt(spent['other_cpu_ms'] / 1000, 1)} s, stolen {_fmt(spent['steal_cpu_ms'] / 1000, 1)} s; "
                 f"load {spent['loadavg_1m_end']:.1f}; reconcile passes {spent['reconcile']['passes']} "
                 f"{spent['reconcile']['counts']}")
    if run.get("errors"):
        lines.append(f"driver errors: {run['errors'][:5]}")
    if run.get("leftovers"):
        lines.append(f"orders left mid-way: {run['leftovers'][:5]}")
    return "\n".join(lines)


def watch_text(run: dict[str, Any]) -> str:
    spent, per, cli = run["cost"], run["per_order"], run["cli"]
    return "\n".join([
        f"## {run['name']}: one reconcile pass over {run['open_orders']} open orders "
        f"(seeded in {run['seed_seconds']} s)", "",
        f"pass: {spent['seconds']} s wall, {spent['node_calls']} node calls ({_routes(spent['node_calls_by_route'])}), "
        f"bridge CPU {_fmt(spent['bridge_cpu_ms'], 0)} ms, node CPU {_fmt(spent['node_cpu_ms'], 0)} ms",
        f"per open order: {_fmt(per['node_calls'], 2)} node calls, {_fmt(per['bridge_cpu_ms'], 3)} ms bridge CPU, "
        f"{_fmt(per['wall_ms'], 3)} ms wall; summary {({k: v for k, v in run['summary'].items() if v})}",
        f"the same as `otc-bridge reconcile`: {cli['seconds']} s wall (process start included), "
        f"{_fmt(cli['cpu_ms'], 0)} ms CPU, {cli['node_calls']} node calls, exit {cli['exit_code']}"])


def profile_text(prof: dict[str, Any], n: int = 20) -> str:
    if "error" in prof:
        return f"profile ({prof['mode']}): {prof['error']}"
    rows = [[i + 1, o["function"], o["share"], t["function"], t["share"]]
            for i, (o, t) in enumerate(zip(prof["own"][:n], prof["total"][:n], strict=False))]
    return (f"profile ({prof['mode']}): {prof['samples']} samples ({prof['raw']})\n\n"
            + table(["#", "own time", "own %", "total time", "total %"], rows))


def summary_table(runs: list[dict[str, Any]]) -> str:
    headers = ["run", "clients (lifecycle+read)", "lifecycles/s", "reads/s", "reads p99 ms", "bridge CPU ms/lifecycle",
               "node CPU ms/lifecycle", "node calls/lifecycle", "5xx"]
    rows = []
    for run in runs:
        if run["workload"] == "watch":
            continue
        per, reads = run.get("per_lifecycle", {}), run.get("reads", {})
        five = sum(e["errors_5xx"] for e in run["endpoints"].values())
        rows.append([run["name"], f"{run['clients']['lifecycle']}+{run['clients']['readers']}",
                     run.get("lifecycles_per_s"), reads.get("rps"), reads.get("p99_ms"), per.get("bridge_cpu_ms"),
                     per.get("node_cpu_ms"), per.get("node_calls"), five])
    return table(headers, rows)


def _find(runs: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((run for run in runs if predicate(run)), None)


def _share(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def targets(runs: list[dict[str, Any]], checks: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with what this benchmark measured and whether it is met
    (None: not measured by the workloads that ran)."""
    lifecycle = [run for run in runs if run["workload"] == "lifecycle" and run["name"].startswith("lifecycle-")]
    reads = _find(runs, lambda r: r["workload"] == "reads")
    ceiling = _find(runs, lambda r: r["workload"] == "ceiling")
    baseline = _find(runs, lambda r: r["name"] == "mixed-baseline")
    mixed = _find(runs, lambda r: r["workload"] == "mixed")
    found: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: Any, met: bool | None) -> None:
        found.append({"target": name, "goal": goal, "measured": measured, "met": met})

    def per_run(key: str) -> tuple[str | None, list[float]]:
        values = [(run["clients"]["lifecycle"], run["per_lifecycle"][key]) for run in lifecycle]
        shown = ", ".join(f"{clients} clients: {_fmt(value, 2)}" for clients, value in values)
        return shown or None, [value for _, value in values if value is not None]

    shown, values = per_run("node_calls")
    add("node calls per lifecycle", f"<= {MAX_NODE_CALLS_PER_LIFECYCLE}", shown,
        all(v <= MAX_NODE_CALLS_PER_LIFECYCLE for v in values) if values else None)
    shown, values = per_run("bridge_cpu_ms")
    add("bridge CPU per lifecycle (ms)", f"<= {MAX_BRIDGE_CPU_MS_PER_LIFECYCLE}", shown,
        all(v <= MAX_BRIDGE_CPU_MS_PER_LIFECYCLE for v in values) if values else None)
    shown, values = per_run("settlement_calls_confirmed")
    add("settlement node calls per order once the payout is confirmed", f"<= {MAX_SETTLEMENT_CALLS}", shown,
        all(v <= MAX_SETTLEMENT_CALLS for v in values) if values else None)
    if reads:
        rps, p99 = reads["reads"]["rps"], reads["reads"]["p99_ms"]
        add(f"reads at {reads['clients']['readers']} clients (req/s)", f">= {MIN_READS_PER_S:,}", rps,
            rps is not None and rps >= MIN_READS_PER_S)
        add("reads p99 (ms)", f"<= {MAX_READ_P99_MS}", p99, p99 is not None and p99 <= MAX_READ_P99_MS)
    if reads and ceiling:
        share = _share(reads["reads"]["rps"], ceiling["reads"]["rps"])
        add("reads / trivial endpoint (GET /healthz)", f">= {MIN_CEILING_SHARE:.0%}",
            f"{share:.1%} of {_fmt(ceiling['reads']['rps'])} req/s" if share is not None else None,
            share is not None and share >= MIN_CEILING_SHARE)
    if mixed and reads:
        share = _share(mixed["reads"]["rps"], reads["reads"]["rps"])
        add("mixed: reads / read-only rate", f">= {MIN_MIXED_READ_SHARE:.0%}",
            f"{share:.1%} ({_fmt(mixed['reads']['rps'])} of {_fmt(reads['reads']['rps'])} req/s)"
            if share is not None else None, share is not None and share >= MIN_MIXED_READ_SHARE)
        p99 = mixed["reads"]["p99_ms"]
        add("mixed: reads p99 (ms)", f"<= {MAX_MIXED_READ_P99_MS}", p99,
            p99 is not None and p99 <= MAX_MIXED_READ_P99_MS)
    if mixed and baseline:
        share = _share(mixed["lifecycles_per_s"], baseline["lifecycles_per_s"])
        add("mixed: lifecycles / read-free rate", f">= {MIN_MIXED_LIFECYCLE_SHARE:.0%}",
            f"{share:.1%} ({_fmt(mixed['lifecycles_per_s'], 2)} of {_fmt(baseline['lifecycles_per_s'], 2)}/s)"
            if share is not None else None, share is not None and share >= MIN_MIXED_LIFECYCLE_SHARE)
    if checks:
        five = sum(c.get("errors_5xx", 0) for c in checks.values())
        locked = sum(c.get("serve_log", {}).get("database_locked", 0) for c in checks.values())
        stuck = sum(sum(c.get("terminal", {}).get("unsettled", {}).values()) for c in checks.values())
        add("5xx / 'database is locked' / stuck orders", "0 / 0 / 0", f"{five} / {locked} / {stuck}",
            five == 0 and locked == 0 and stuck == 0)
    return found


def ratios(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The comparisons of the issue as plain numbers (None when a run is missing)."""
    reads = _find(runs, lambda r: r["workload"] == "reads")
    ceiling = _find(runs, lambda r: r["workload"] == "ceiling")
    baseline = _find(runs, lambda r: r["name"] == "mixed-baseline")
    mixed = _find(runs, lambda r: r["workload"] == "mixed")

    def rps(run: dict[str, Any] | None) -> float | None:
        return run["reads"]["rps"] if run else None

    return {"reads_to_ceiling": _share(rps(reads), rps(ceiling)),
            "mixed_reads_to_read_only": _share(rps(mixed), rps(reads)),
            "mixed_lifecycles_to_read_free": _share(mixed["lifecycles_per_s"] if mixed else None,
                                                    baseline["lifecycles_per_s"] if baseline else None)}


def targets_table(found: list[dict[str, Any]]) -> str:
    marks = {True: "yes", False: "**no**", None: "-"}
    return table(["target", "goal", "measured", "met"],
                 [[t["target"], t["goal"], t["measured"], marks[t["met"]]] for t in found])
