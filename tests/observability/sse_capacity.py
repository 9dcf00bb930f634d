"""How many SSE clients one ``otc-bridge serve`` holds while the API still answers.

    python tests/observability/sse_capacity.py --streams 64 --threads 68

Starts a dev node (in this process) and ``otc-bridge serve`` (gunicorn, its buffering gthread
worker) on free loopback ports in a temporary directory, opens ``--streams`` clients on
``/api/stream``, and then, with all of them open, times ``GET /api/orderbook`` and the
delivery of one new order's events to every stream. Prints one JSON report.
``tests/observability/test_serve_streams.py`` runs the same measurement with a few streams.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from bridge_support import ADMIN_TOKEN, NODE_ADMIN_KEY, NodeHandle, open_sell  # noqa: E402
from sse_support import SseClient, reached  # noqa: E402

from otc_bridge.client import BridgeClient, Wallet  # noqa: E402
from otc_bridge.dev.node import create_app as create_devnode  # noqa: E402
from otc_bridge.dev.node.server import start_in_thread  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_env(node_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a measured bridge (no background reconciler, generous rate limit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTC_", "RUSTCHAIN_", "RC_", "PROMETHEUS_"))}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
               RUSTCHAIN_NODE=node_url, RC_ADMIN_KEY=NODE_ADMIN_KEY, OTC_DB_PATH=str(workdir / "bridge.db"),
               OTC_ADMIN_TOKEN=ADMIN_TOKEN, OTC_RATE_LIMIT="100000/minute", OTC_RECONCILE_DISABLED="1")
    env.update(extra)
    return env


@contextmanager
def serve(env: dict[str, str], workdir: Path, *, workers: int, threads: int,
          output: list[str] | None = None) -> Iterator[str]:
    """``otc-bridge serve`` until the block ends; yields its URL once every worker booted
    (requests wait on the bound socket until a worker accepts). Its output lines are
    appended to ``output`` if given."""
    port = free_port()
    args = [sys.executable, "-m", "otc_bridge.cli", "serve", "--port", str(port), "--workers", str(workers),
            "--threads", str(threads)]
    proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    booted = 0
    try:
        lines = [] if output is None else output
        for line in proc.stdout:
            lines.append(line)
            booted += "Booting worker" in line
            if booted == workers:
                break
        assert booted == workers, "serve ended before its workers booted"

        def drain() -> None:  # keep reading its output, or it blocks on a full pipe
            for line in proc.stdout:
                lines.append(line)

        threading.Thread(target=drain, daemon=True).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # gunicorn's quick shutdown of master and workers
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a worker still finishing its streams' threads
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def open_streams(url: str, count: int) -> tuple[list[SseClient], int, int]:
    """``count`` streams, each past its ``ready`` frame; also returns how many got a 503 and
    how many got no answer within 5 s (no server thread free to take them)."""
    streams, refused, stalled = [], 0, 0
    for _ in range(count):
        try:
            sse = SseClient(url, read_timeout=5)
        except requests.Timeout:
            stalled += 1
            continue
        if sse.response.status_code == 503:
            refused += 1
            sse.close()
            continue
        sse.ready()
        streams.append(sse)
    return streams, refused, stalled


def api_latency_ms(url: str, samples: int) -> list[float]:
    """Wall time of ``samples`` sequential ``GET /api/orderbook`` calls (each must be 200);
    empty if the first one got no answer within 5 s."""
    times = []
    with requests.Session() as http:
        for _ in range(samples):
            started = time.perf_counter()
            try:
                response = http.get(url + "/api/orderbook", timeout=(5, 5))
            except requests.Timeout:
                return times
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return times


def fan_out_ms(url: str, node: NodeHandle, streams: list[SseClient]) -> tuple[float, float]:
    """Create one sell order; milliseconds from the request and from its response until every
    stream saw the order reach ``open``."""
    seller = Wallet.generate()
    node.fund(seller.address, "100")
    done = threading.Barrier(len(streams) + 1)
    order: dict[str, str] = {}
    created = threading.Event()

    def watch(sse: SseClient) -> None:
        created.wait()
        sse.read_until(reached(order["id"], "open"), timeout=60)
        done.wait()

    for sse in streams:
        threading.Thread(target=watch, args=(sse,), daemon=True).start()
    started = time.perf_counter()
    order["id"], _ = open_sell(BridgeClient(url), seller)
    answered = time.perf_counter()
    created.set()
    done.wait(timeout=120)
    finished = time.perf_counter()
    return (finished - started) * 1000, (finished - answered) * 1000


def measure(url: str, node: NodeHandle, streams: int, samples: int = 20) -> dict:
    """Open ``streams`` clients and measure the API and the fan-out with all of them open."""
    clients, refused, stalled = open_streams(url, streams)
    try:
        times = api_latency_ms(url, samples)
        fan_out = fan_out_ms(url, node, clients) if clients and times else None
    finally:
        for sse in clients:
            sse.close()
    report = {"streams_open": len(clients), "streams_refused": refused, "streams_stalled": stalled,
              "api_answered": bool(times)}
    if times:
        report.update(orderbook_ms_median=round(statistics.median(times), 1), orderbook_ms_max=round(max(times), 1))
    if fan_out:
        report.update(create_to_all_streams_ms=round(fan_out[0], 1), response_to_all_streams_ms=round(fan_out[1], 1))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64, help="streams to open (and OTC_STREAM_MAX_CLIENTS)")
    parser.add_argument("--threads", type=int, default=None, help="gunicorn threads (default: 4 + streams)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-clients", type=int, default=None, help="OTC_STREAM_MAX_CLIENTS (default: streams)")
    args = parser.parse_args()
    threads = args.threads or 4 + args.streams
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        node_server = start_in_thread(create_devnode(str(workdir / "devnode.db"), NODE_ADMIN_KEY))
        env = serve_env(node_server.url, workdir, OTC_STREAM_MAX_CLIENTS=str(args.max_clients or args.streams))
        with serve(env, workdir, workers=args.workers, threads=threads) as url:
            report = measure(url, NodeHandle(node_server.url), args.streams)
        node_server.shutdown()
    print(json.dumps({"workers": args.workers, "threads": threads, **report}))


if __name__ == "__main__":
    main()
