#!/usr/bin/env python3
"""How WSGI servers for the bridge stand up to slow and idle connections, and their speed.

For each candidate server: starts it on a free loopback port against a dev node (run in this
process) and a fresh SQLite file, then

* ``req/s``: ``GET /api/stats`` from 16 keep-alive clients (2 processes x 8 threads) for
  ``--seconds``, no attack, the median of ``--rounds`` runs, and the server's CPU time per
  request over them (less sensitive than req/s to whatever else the machine runs);
* for each ``--modes`` (``header``: a request head sent one byte a second, the slowloris;
  ``idle``: connected, nothing sent; ``body``: a full POST head, then its body one byte a
  second): opens ``--slow`` such sockets (each one the server closes is replaced at once, as
  an attacker would), lets them run for ``--warmup`` s, then times ``--samples`` fresh
  clients' ``GET /api/stats`` (each on a new connection, 5 s timeout), and how long the
  server kept the slow sockets open.

Prints one JSON object per candidate and a Markdown table (docs/serving.md has the figures).
Not a test: every loop here is bounded, but the whole run takes a few minutes.

    python scripts/bench_serving.py           # every candidate installed (pip install gevent granian==2.8.7)
    python scripts/bench_serving.py --candidates serve,gunicorn-gthread --slow 200
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests" / "observability"), str(REPO_ROOT / "tests"), str(REPO_ROOT)]

from slow_clients import SlowClients, fresh_get  # noqa: E402

from otc_bridge.dev.node import create_app as create_devnode  # noqa: E402
from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY, start_in_thread  # noqa: E402

#: name -> what it is (the table's notes). ``serve`` is ``otc-bridge serve`` as it is now;
#: the others are started by this script (``--launch``) with the settings serve used to use.
CANDIDATES = {
    "gunicorn-sync": "gunicorn 27, sync workers (one request per process at a time)",
    "gunicorn-gthread": "gunicorn 27, gthread, threads 4 + 64 stream slots (serve before this change)",
    "gunicorn-gevent": "gunicorn 27, gevent workers (monkey-patched: threads become greenlets)",
    "granian": "granian (WSGI), its defaults: header read timeout 30 s, backpressure 512",
    "serve": "otc-bridge serve (the chosen set-up)",
}
WORKERS = 2
API_THREADS = 4
STREAM_SLOTS = 64


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the servers -------------------------------------------------------------------------------------------


def _launch(name: str, port: int) -> None:
    """Run candidate ``name`` in this process (the child side of :func:`start`)."""
    from otc_bridge.app import create_app
    from otc_bridge.config import Config

    cfg = Config.from_env(os.environ).replace(port=port)
    if name == "granian":
        from granian.constants import Interfaces
        from granian.server import Server

        server = Server("otc_bridge", address=cfg.host, port=port, interface=Interfaces.WSGI, workers=WORKERS,
                        blocking_threads=API_THREADS + STREAM_SLOTS, log_access=False)
        server.serve(target_loader=lambda _target: create_app(cfg))
        return
    from gunicorn.app.base import BaseApplication

    worker_class = name.removeprefix("gunicorn-")

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{cfg.host}:{port}")
            self.cfg.set("workers", WORKERS)
            self.cfg.set("worker_class", worker_class)
            self.cfg.set("threads", API_THREADS + STREAM_SLOTS)
            self.cfg.set("worker_connections", 1000)
            self.cfg.set("timeout", 120)

        def load(self):
            return create_app(cfg)

    _Gunicorn().run()


class Server:
    """A candidate server as a process group on a free port."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name, self.port = name, free_port()
        if name == "serve":
            args = [sys.executable, "-m", "otc_bridge.cli", "serve", "--port", str(self.port),
                    "--workers", str(WORKERS), "--threads", str(API_THREADS)]
        else:
            args = [sys.executable, __file__, "--launch", name, "--port", str(self.port)]
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until ``/api/stats`` answered 200 (raises if it never does)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n" + self.log_path.read_text()[-3000:])
            status, _ = fresh_get(self.port, timeout=1)
            if status == 200:
                return time.monotonic() - started
        raise TimeoutError(f"{self.name} did not answer within {timeout} s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's processes so far (its master and workers)."""
        tick = os.sysconf("SC_CLK_TCK")
        pids, total = {self.proc.pid}, 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in pids or int(stat.parent.name) in pids:  # fields[1]: the parent pid
                pids.add(int(stat.parent.name))
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> float:
        """SIGTERM the group; seconds until the server exited (SIGKILL after 30 s: then ``inf``)."""
        started = time.monotonic()
        if self.proc.poll() is not None:
            self.log.close()
            return 0.0
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
            took = time.monotonic() - started
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            took = float("inf")
        self.log.close()
        return took


# --- the measurements --------------------------------------------------------------------------------------


def _client_loop(port: int, threads: int, seconds: float) -> tuple[int, int]:
    """``threads`` keep-alive clients for ``seconds``: (answers 200, other outcomes)."""
    import http.client

    counts = [[0, 0] for _ in range(threads)]

    def loop(slot: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                conn.request("GET", "/api/stats")
                response = conn.getresponse()
                response.read()
                slot[response.status != 200] += 1
            except (OSError, http.client.HTTPException):
                slot[1] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    workers = [threading.Thread(target=loop, args=(slot,)) for slot in counts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(ok for ok, _ in counts), sum(bad for _, bad in counts)


def throughput(port: int, seconds: float, clients: int = 16, processes: int = 2) -> dict:
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(_client_loop, [port] * processes, [clients // processes] * processes,
                                [seconds] * processes))
    ok, bad = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"req_per_s": round(ok / seconds), "errors": bad}


def under_attack(port: int, mode: str, slow: int, samples: int, warmup: float) -> dict:
    """Fresh clients' ``GET /api/stats`` with ``slow`` slow sockets of ``mode`` open."""
    with SlowClients(port, slow, mode) as attack:
        opened_at = time.monotonic()
        time.sleep(warmup)  # a benchmark's settling time, not a wait for a state
        times, failures = [], 0
        for _ in range(samples):
            status, took = fresh_get(port)
            if status == 200:
                times.append(took * 1000)
            else:
                failures += 1
                if failures >= 3:
                    break
        open_now, outcome = attack.open_now, attack.snapshot()
        attacked_for = time.monotonic() - opened_at
    result = {"mode": mode, "slow": slow, "open_at_end": open_now, "fresh_ok": len(times),
              "fresh_failed": failures, "attack_seconds": round(attacked_for, 1),
              "slow_cut": len(outcome.lifetimes), "failed_connects": outcome.failed_connects}
    if times:
        result.update(fresh_ms_median=round(statistics.median(times), 1), fresh_ms_max=round(max(times), 1))
    if outcome.lifetimes:
        result["slow_lifetime_s_median"] = round(statistics.median(outcome.lifetimes), 2)
        result["slow_lifetime_s_max"] = round(max(outcome.lifetimes), 2)
    if outcome.answers:
        result["slow_answer"] = outcome.answers[0][:120].decode("latin-1")
    return result


def recover(port: int, timeout: float = 120.0) -> float:
    """Seconds until a fresh client is answered again after an attack."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if fresh_get(port, timeout=2)[0] == 200:
            return round(time.monotonic() - started, 2)
    return float("inf")


def bench(name: str, args: argparse.Namespace, node_url: str, workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_", "PROMETHEUS_"))}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
               RUSTCHAIN_NODE=node_url, RC_ADMIN_KEY=DEFAULT_DEV_ADMIN_KEY,
               OTC_DB_PATH=str(workdir / f"{name}.db"), OTC_RATE_LIMIT="1000000/minute",
               OTC_RECONCILE_DISABLED="1", OTC_STREAM_MAX_CLIENTS=str(STREAM_SLOTS),
               PROMETHEUS_MULTIPROC_DIR=str(workdir / f"{name}-metrics"))  # as serve runs it
    (workdir / f"{name}-metrics").mkdir(exist_ok=True)
    server = Server(name, env, workdir)
    report: dict = {"candidate": name, "what": CANDIDATES[name]}
    try:
        report["ready_s"] = round(server.wait_ready(), 2)
        cpu_before = server.cpu_seconds()
        runs = [throughput(server.port, args.seconds) for _ in range(args.rounds)]
        served = sum(r["req_per_s"] for r in runs) * args.seconds
        report.update(req_per_s=statistics.median(r["req_per_s"] for r in runs),
                      req_per_s_runs=[r["req_per_s"] for r in runs], errors=sum(r["errors"] for r in runs),
                      server_cpu_ms_per_req=round((server.cpu_seconds() - cpu_before) * 1000 / max(served, 1), 3))
        report["attacks"] = []
        for mode in filter(None, args.modes.split(",")):
            attack = under_attack(server.port, mode, args.slow, args.samples, args.warmup)
            attack["recovered_s"] = recover(server.port)
            report["attacks"].append(attack)
    finally:
        report["stop_s"] = round(server.stop(), 2)
    return report


def _cell(attack: dict) -> str:
    if not attack["fresh_ok"]:
        return f"no answer in 5 s ({attack['fresh_failed']} tries)"
    text = f"{attack['fresh_ms_median']:.0f} ms (max {attack['fresh_ms_max']:.0f})"
    if attack["fresh_failed"]:
        text += f", {attack['fresh_failed']} timed out"
    if "slow_lifetime_s_median" in attack:
        text += f"; slow cut at {attack['slow_lifetime_s_median']:.1f} s"
    return text


def table(reports: list[dict], modes: list[str]) -> str:
    columns = ["candidate", *(f"fresh GET, {m}" for m in modes), "req/s (16 keep-alive)", "server CPU ms/req", "stop"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in reports:
        cells = [_cell(a) for a in r.get("attacks", [])] or ["-"] * len(modes)
        row = [r["candidate"], *cells, r.get("req_per_s", "-"), r.get("server_cpu_ms_per_req", "-"), f"{r['stop_s']} s"]
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated, of: " + ", ".join(CANDIDATES))
    parser.add_argument("--modes", default="header,idle,body")
    parser.add_argument("--slow", type=int, default=500, help="slow sockets per attack")
    parser.add_argument("--samples", type=int, default=20, help="fresh requests timed per attack")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds the slow sockets run before timing")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs (the median is reported)")
    parser.add_argument("--launch", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.launch:
        _launch(args.launch, args.port)
        return
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        node = start_in_thread(create_devnode(str(workdir / "devnode.db"), DEFAULT_DEV_ADMIN_KEY))
        try:
            for name in args.candidates.split(","):
                needs = {"granian": "granian", "gunicorn-gevent": "gevent"}.get(name)
                if needs and importlib.util.find_spec(needs) is None:
                    print(f"skipping {name}: pip install {needs} to measure it", file=sys.stderr)
                    continue
                report = bench(name, args, node.url, workdir)
                print(json.dumps(report), flush=True)
                reports.append(report)
        finally:
            node.shutdown()
    print(table(reports, list(filter(None, args.modes.split(",")))))


if __name__ == "__main__":
    main()
