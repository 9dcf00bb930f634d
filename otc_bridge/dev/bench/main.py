"""``scripts/bench``: options, the order of the workloads, the JSON file and the exit code.

Each group of workloads gets a fresh dev node and serve (a "stack"): ``lifecycle`` (the idle
figure, the lifecycle runs, the profiled runs), ``book`` (a seeded book, then the reads,
their ceiling and mixed: the book is the same whatever ran before) and ``watch`` (the escrow
watch, with the background reconciler off).

Exit codes: 0 when every check held (every order terminal, money conserved on the dev node,
no 5xx, no request without an answer, no ``database is locked`` in the serve log, both
servers alive); 1 when one failed or the benchmark could not run; 2 for bad options. The
targets (docs/performance.md) are reported, never turned into the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from otc_bridge.dev.bench import drivers, profile, report
from otc_bridge.dev.bench.procs import BridgeSettings
from otc_bridge.dev.bench.stack import Stack
from otc_bridge.dev.bench.workloads import RunSettings, Workloads

WORKLOADS = ("lifecycle", "reads", "mixed", "watch")


@dataclass
class Options:
    """Every setting of a benchmark run (seconds are floats: durations)."""

    workloads: tuple[str, ...] = WORKLOADS
    seconds: float = 20.0
    lifecycle_clients: tuple[int, ...] = (1, 4, 16)
    readers: int = 16
    mixed_lifecycle: int = 8
    mixed_readers: int = 8
    open_orders: int = 200
    trades: int = 300
    watch_orders: int = 1000
    driver_processes: int = 2
    workers: int = 2
    threads: int = 4
    confirm_interval: float = 1.0
    reconcile_interval: int | None = None  # None: the production default (OTC_RECONCILE_INTERVAL_SECONDS)
    drain_timeout: float = 90.0
    idle_seconds: float = 10.0  # one reconcile interval of the production default
    profile_clients: int = 0  # > 0: an extra, profiled lifecycle run with this many clients
    profile_dir: str | None = None
    json_path: str | None = None
    workdir: str | None = None
    tiny: bool = False
    env: dict[str, str] = field(default_factory=dict)


#: ``--tiny``: seconds in all, 1-2 clients, a short reconcile interval so the drains are short.
TINY = {"seconds": 1.5, "lifecycle_clients": (1,), "readers": 2, "mixed_lifecycle": 1, "mixed_readers": 1,
        "open_orders": 6, "trades": 3, "watch_orders": 8, "driver_processes": 1, "reconcile_interval": 1,
        "confirm_interval": 0.5, "drain_timeout": 60.0, "idle_seconds": 0.5}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("client counts must be >= 1")
    return values


def _workloads(text: str) -> tuple[str, ...]:
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"workloads are a comma-separated subset of {','.join(WORKLOADS)}")
    return chosen


def _env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/bench", description=(
        "Benchmark otc-bridge serve against a dev node: lifecycles, reads, mixed, escrow watch. "
        "See docs/performance.md."))
    add = p.add_argument
    add("--workloads", type=_workloads, help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    add("--seconds", "--duration", dest="seconds", type=float, help="length of each measured window (default 20)")
    add("--lifecycle-clients", type=_ints, help="client counts of the lifecycle runs (default 1,4,16)")
    add("--readers", type=int, help="read clients of the reads and ceiling runs (default 16)")
    add("--mixed-lifecycle", type=int, help="lifecycle clients of the mixed run (default 8)")
    add("--mixed-readers", type=int, help="read clients of the mixed run (default 8)")
    add("--open-orders", type=int, help="open orders seeded before the reads (default 200)")
    add("--trades", type=int, help="completed trades seeded before the reads (default 300)")
    add("--watch-orders", type=int, help="open orders for the escrow-watch pass (default 1000)")
    add("--driver-processes", type=int, help="processes the clients of a run are spread over (default 2)")
    add("--workers", type=int, help="otc-bridge serve --workers (default 2, as serve)")
    add("--threads", type=int, help="otc-bridge serve --threads (default 4, as serve)")
    add("--confirm-interval", type=float, help="seconds between the cron's pending-pool confirms (default 1)")
    add("--reconcile-interval", type=int,
        help="OTC_RECONCILE_INTERVAL_SECONDS for serve (default: unset, the production 10 s)")
    add("--drain-timeout", type=float, help="seconds to wait for the reconciler to settle every order (default 90)")
    add("--idle-seconds", type=float,
        help="length of the idle measurement before the lifecycle runs (default 10; 0: none)")
    add("--profile", dest="profile_dir", metavar="DIR",
        help="add two lifecycle runs profiled with py-spy (GIL holder, active threads); raw stacks in DIR")
    add("--profile-clients", type=int, help="clients of the profiled run (default: the most of --lifecycle-clients)")
    add("--json", dest="json_path", metavar="PATH", help="write the results as JSON to PATH")
    add("--workdir", metavar="DIR", help="keep databases and logs in DIR (default: a temporary directory, removed)")
    add("--env", action="append", type=_env, default=[], metavar="NAME=VALUE",
        help="an extra environment variable for serve (repeatable), e.g. OTC_SQLITE_SYNCHRONOUS=NORMAL")
    add("--tiny", action="store_true", help="a quick configuration (seconds, 1-2 clients): the test's")
    return p


def options(argv: list[str] | None) -> Options:
    """Options from the command line: the defaults, then ``--tiny``'s, then what was given."""
    args = parser().parse_args(argv)
    chosen = Options(tiny=args.tiny)
    if args.tiny:
        for name, value in TINY.items():
            setattr(chosen, name, value)
    for name in ("workloads", "seconds", "lifecycle_clients", "readers", "mixed_lifecycle", "mixed_readers",
                 "open_orders", "trades", "watch_orders", "driver_processes", "workers", "threads",
                 "confirm_interval", "reconcile_interval", "drain_timeout", "idle_seconds", "profile_dir",
                 "profile_clients", "json_path", "workdir"):
        value = getattr(args, name)
        if value is not None:
            setattr(chosen, name, value)
    chosen.env = dict(args.env)
    if chosen.profile_dir and not chosen.profile_clients:
        chosen.profile_clients = max(chosen.lifecycle_clients)
    for name in ("readers", "mixed_lifecycle", "mixed_readers", "driver_processes", "workers", "threads"):
        if getattr(chosen, name) < 1:
            parser().error(f"--{name.replace('_', '-')} must be >= 1")
    if chosen.seconds <= 0 or chosen.confirm_interval <= 0:
        parser().error("--seconds and --confirm-interval must be > 0")
    return chosen


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("gunicorn", "flask", "werkzeug", "requests"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg(), "packages": versions,
            "git_commit": commit or None}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _show(text: str) -> None:
    print(text + "\n", flush=True)


def _run_settings(opts: Options) -> RunSettings:
    return RunSettings(opts.seconds, opts.driver_processes, opts.drain_timeout)


def _bridge_settings(opts: Options, **env: str) -> BridgeSettings:
    extra = dict(opts.env)
    if opts.reconcile_interval is not None:
        extra["OTC_RECONCILE_INTERVAL_SECONDS"] = str(opts.reconcile_interval)
    extra.update(env)
    return BridgeSettings(workers=opts.workers, threads=opts.threads, env=extra)


def lifecycle_stack(opts: Options, workdir: Path, result: dict[str, Any]) -> None:
    """The idle figure, the lifecycle runs and the profiled ones, on a fresh node + serve."""
    stack = Stack(workdir / "lifecycle", _bridge_settings(opts), opts.confirm_interval)
    try:
        work = Workloads(stack, _run_settings(opts))
        if opts.idle_seconds > 0:
            result["idle"] = work.idle(opts.idle_seconds)
            _say(f"idle: {result['idle']}")
        if "lifecycle" in opts.workloads:
            for clients in opts.lifecycle_clients:
                _say(f"lifecycle run: {clients} client(s), {opts.seconds} s")
                _record(result, work.lifecycles(clients))
        if opts.profile_clients:
            for mode in profile.MODES:
                _say(f"profiled lifecycle run ({mode}): {opts.profile_clients} client(s)")
                _record(result, work.lifecycles(
                    opts.profile_clients, name=f"profiled-{mode}-lifecycle-{opts.profile_clients}",
                    profile_to=(Path(opts.profile_dir or workdir / "profile"), mode)))
        _say("lifecycle stack: waiting for every order to end")
        result["checks"]["lifecycle"] = work.finish()
    finally:
        result["exit_codes"]["lifecycle"] = stack.close()


def book_stack(opts: Options, workdir: Path, result: dict[str, Any]) -> None:
    """Reads, their ceiling and mixed, on a fresh node + serve with a seeded book (so that the
    book is the same whatever ran before)."""
    stack = Stack(workdir / "book", _bridge_settings(opts), opts.confirm_interval)
    try:
        work = Workloads(stack, _run_settings(opts))
        _say(f"seeding {opts.open_orders} open orders and {opts.trades} completed trades")
        result["seed"], ids = work.seed_book(opts.open_orders, opts.trades)
        _say(f"seeded: {result['seed']}")
        paths = drivers.read_paths(ids)
        if "reads" in opts.workloads:
            _say(f"reads: {opts.readers} clients, then the ceiling")
            _record(result, work.reads(opts.readers, paths, f"reads-{opts.readers}"))
            _record(result, work.ceiling(opts.readers))
        if "mixed" in opts.workloads:
            _say(f"mixed: {opts.mixed_lifecycle} lifecycle clients alone, then with {opts.mixed_readers} readers")
            _record(result, work.lifecycles(opts.mixed_lifecycle, name="mixed-baseline"))
            _record(result, work.mixed(opts.mixed_lifecycle, opts.mixed_readers, paths))
        _say("book stack: cancelling the open orders, waiting for every order to end")
        result["checks"]["book"] = work.finish()
    finally:
        result["exit_codes"]["book"] = stack.close()


def watch_stack(opts: Options, workdir: Path, result: dict[str, Any]) -> None:
    """The escrow-watch pass on a fresh node + serve whose background reconciler is off."""
    stack = Stack(workdir / "watch", _bridge_settings(opts, OTC_RECONCILE_DISABLED="1"), opts.confirm_interval)
    try:
        work = Workloads(stack, _run_settings(opts))
        _say(f"escrow watch: seeding {opts.watch_orders} open orders, then one reconcile pass")
        run = work.watch_pass(opts.watch_orders)
        result["runs"].append(run)
        _show(report.watch_text(run))
        result["checks"]["watch"] = work.finish(nudge_reconcile=True)
    finally:
        result["exit_codes"]["watch"] = stack.close()


def _record(result: dict[str, Any], run: dict[str, Any]) -> None:
    result["runs"].append(run)
    _show(report.run_text(run))
    if "profile" in run:
        _show(report.profile_text(run["profile"]))


def run(opts: Options) -> dict[str, Any]:
    """Run the chosen workloads; the results (``ok`` says whether every check held)."""
    started = time.monotonic()
    result: dict[str, Any] = {"bench": "otc_bridge scripts/bench", "schema": 1,
                              "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "options": asdict(opts), "runs": [], "checks": {},
                              "exit_codes": {}, "idle": None, "seed": None, "error": None}
    keep = opts.workdir is not None
    workdir = Path(opts.workdir) if keep else Path(tempfile.mkdtemp(prefix="otc-bench-"))
    try:
        if "lifecycle" in opts.workloads or opts.profile_clients:
            lifecycle_stack(opts, workdir, result)
        if "reads" in opts.workloads or "mixed" in opts.workloads:
            book_stack(opts, workdir, result)
        if "watch" in opts.workloads:
            watch_stack(opts, workdir, result)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON and the exit code, traceback to stderr
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["ratios"] = report.ratios(result["runs"])
    result["targets"] = report.targets(result["runs"], result["checks"])
    result["ok"] = (result["error"] is None and bool(result["checks"])
                    and all(check["ok"] for check in result["checks"].values()))
    return result


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    result = run(opts)
    _show("## summary\n\n" + report.summary_table(result["runs"]))
    _show("## targets\n\n" + report.targets_table(result["targets"]))
    for name, check in result["checks"].items():
        _show(f"checks ({name}): ok={check['ok']} terminal={check['terminal']['ok']} "
              f"{check['terminal']['by_status']} conservation={check['conservation']['ok']} "
              f"5xx={check['errors_5xx']} no-answer={check['errors_transport']} "
              f"'database is locked'={check['serve_log']['database_locked']} "
              f"error log lines={check['serve_log']['error_lines']}")
    if result["error"]:
        _show(f"ERROR: {result['error']}")
    if opts.json_path:
        Path(opts.json_path).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    _show(f"{'OK' if result['ok'] else 'FAILED'} in {result['seconds']} s")
    return 0 if result["ok"] else 1
