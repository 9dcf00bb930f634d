"""A py-spy profile of ``otc-bridge serve`` (master and workers) during a run.

``py-spy record --subprocesses --format raw`` samples the threads 100 times a second and
writes collapsed stacks (``frame;frame;... count``), in one of two modes:

* ``gil``: only the thread holding the GIL: where the interpreter spends CPU on Python code.
  Work done with the GIL released (SQLite statements, fsync, socket I/O) is not in it;
* ``active``: every thread py-spy does not judge idle: closer to wall time spent inside
  requests and background passes, waits included (a COMMIT's fsync, the SQLite write lock,
  a node answer). Its idle detection is a heuristic: some timed waits (``Condition.wait``)
  show up too.

From them :func:`top` ranks functions by **own** samples (the function itself was running)
and **total** samples (it was on the stack), as a share of all samples. py-spy pauses the
process for each sample, so a profiled run's figures are not the baseline's (the benchmark
profiles extra runs).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from otc_bridge.dev.bench.procs import py_spy

RATE_PER_SECOND = 100
TOP = 25
MODES = {"gil": ["--gil"], "active": []}
_LINE_NUMBER = re.compile(r":\d+\)$")


class ProfilerMissing(RuntimeError):
    """py-spy is not installed (``pip install -r requirements-dev.txt``)."""


def start(pid: int, seconds: float, out_dir: Path, mode: str) -> subprocess.Popen:
    """Start sampling ``pid`` and its children for ``seconds`` in ``mode`` (see :data:`MODES`);
    raw stacks to ``out_dir/serve.<mode>.txt``."""
    exe = py_spy()
    if exe is None:
        raise ProfilerMissing("py-spy not found: pip install -r requirements-dev.txt")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [exe, "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE_PER_SECOND),
            "--duration", str(max(1, round(seconds))), "--format", "raw", "--nolineno",
            "--output", str(out_dir / f"serve.{mode}.txt"), *MODES[mode]]
    with open(out_dir / f"py-spy.{mode}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, out_dir: Path, mode: str, timeout: float = 120.0) -> dict[str, Any]:
    """Wait for py-spy, then rank the functions of its output (see :func:`top`)."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=30)
    raw = out_dir / f"serve.{mode}.txt"
    if not raw.exists():
        return {"mode": mode, "error": f"py-spy wrote nothing (exit {proc.returncode}); "
                                      f"see {out_dir / f'py-spy.{mode}.log'}"}
    return {"mode": mode, "raw": str(raw), **top(raw.read_text())}


def _frame(frame: str) -> str | None:
    """``"fn (pkg/mod.py)"`` or None for py-spy's own process/thread pseudo-frames."""
    frame = frame.strip()
    if not frame or frame.startswith(("process ", "thread ")):
        return None
    return _LINE_NUMBER.sub(")", frame)


def top(collapsed: str, n: int = TOP) -> dict[str, Any]:
    """``{"samples", "own": [...], "total": [...]}``: the ``n`` functions with the most own
    and total samples, each ``{"function", "samples", "share"}`` (share of all samples, %)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, weight = line.rpartition(" ")
        if not stack or not weight.isdigit():
            continue
        frames = [f for f in (_frame(part) for part in stack.split(";")) if f]
        if not frames:
            continue
        count = int(weight)
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": name, "samples": hits, "share": round(100 * hits / samples, 1)}
                for name, hits in counter.most_common(n)]

    return {"samples": samples, "own": ranked(own) if samples else [], "total": ranked(total) if samples else []}
