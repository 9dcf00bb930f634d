"""The processes the benchmark runs and measures: the dev node, the bridge, the pool confirmer.

Both servers are started through the CLI as separate processes, as an operator would
(``otc-bridge devnode`` and ``otc-bridge serve``), each in its own session so that stopping
one signals only the processes it started. CPU time is read from ``/proc/<pid>/stat``:
``utime + stime`` of a process and of its live descendants, plus ``cutime + cstime`` (the
time of descendants already reaped, e.g. a restarted gunicorn worker).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from otc_bridge.dev.node.server import DEFAULT_DEV_ADMIN_KEY

log = logging.getLogger(__name__)

CLI = [sys.executable, "-m", "otc_bridge.cli"]
#: The per-IP limit on POST routes (production default 10/minute): every bench client shares
#: 127.0.0.1, so the default would refuse all but the first few requests.
RATE_LIMIT = "100000000/minute"
_TICKS = os.sysconf("SC_CLK_TCK")
_STOP_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (index 0 = state), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids, for every process visible in /proc now."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children, grandchildren, ...)."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants, live or
    reaped; 0.0 if ``pid`` is gone. A float of seconds: a duration, never money."""
    ticks = 0
    for index, member in enumerate([pid, *descendants(pid)]):
        fields = _stat_fields(member)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if index == 0:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped descendants
    return ticks / _TICKS


def machine_cpu_seconds() -> tuple[float, float]:
    """CPU seconds of all cores since boot (``/proc/stat``): busy (user, nice, system, irq,
    softirq; guest time is inside user) and stolen by the hypervisor (steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq) / _TICKS, steal / _TICKS


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the bridge's and node's settings, plus ``extra``."""
    prefixes = ("OTC_", "RUSTCHAIN_", "RC_", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


class Service:
    """One server process started from the CLI, its output in ``log_path``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(CLI + args, env=env, cwd=workdir, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self, start: int = 0, end: int | None = None) -> str:
        """The log from byte ``start`` to byte ``end`` (the end if None), decoded leniently."""
        with open(self.log_path, "rb") as handle:
            handle.seek(start)
            data = handle.read() if end is None else handle.read(max(0, end - start))
        return data.decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def wait_until(self, ready, timeout: float, what: str) -> None:
        """Poll ``ready()`` every 0.1 s until it is true; raise if the process exits first or
        ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_text()[-3000:]}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {what} within {timeout} s")

    def stop(self) -> int | None:
        """SIGTERM this service's session (only what it started), SIGKILL after 30 s; its exit code."""
        try:
            if self.alive():
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=_STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=_STOP_SECONDS)
        finally:
            self._log.close()
        return self.proc.returncode


class DevNode(Service):
    """``otc-bridge devnode`` on a free port, with a fresh SQLite file in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = requests.Session()
        super().__init__("devnode", ["devnode", "--port", str(self.port), "--db", str(workdir / "devnode.db")],
                         clean_env(), workdir)
        self.wait_until(lambda: self.http.get(self.url + "/dev/clock", timeout=2).status_code == 200, 60,
                        "answer on /dev/clock")

    def call(self, method: str, path: str, body: Any = None) -> dict:
        response = self.http.request(method, self.url + path, json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def fund(self, wallet: str, micro_rtc: int) -> None:
        """Mint ``micro_rtc`` into ``wallet`` (``/dev/fund`` takes RTC as a decimal string)."""
        whole, micro = divmod(micro_rtc, 1_000_000)
        self.call("POST", "/dev/fund", {"wallet": wallet, "amount_rtc": f"{whole}.{micro:06d}"})

    def request_counts(self) -> dict[str, int]:
        """Requests by ``"METHOD /rule"`` since the node started (``GET /dev/stats``)."""
        return self.call("GET", "/dev/stats")["requests"]

    def state(self) -> dict:
        return self.call("GET", "/dev/state")


class PoolConfirmer:
    """A thread confirming the node's pending pool every ``interval`` seconds (the operator's
    cron: the node itself never confirms, docs/escrow-node.md §0). It uses the dev-only
    ``/dev/confirm``, so its calls stay out of the node-call counts of the bridge."""

    def __init__(self, node: DevNode, interval: float) -> None:
        self.node, self.interval, self.runs, self.confirmed = node, interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-pool-confirmer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        http = requests.Session()  # its own: a Session is not meant to be shared by threads
        while not self._stop.wait(self.interval):
            try:
                response = http.post(self.node.url + "/dev/confirm", json={}, timeout=60)
                response.raise_for_status()
                self.confirmed += int(response.json().get("confirmed_count", 0))
                self.runs += 1
            except requests.RequestException:
                log.exception("pending-pool confirm failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass
class BridgeSettings:
    """How ``otc-bridge serve`` is started: its CLI options and the environment on top of
    the production defaults (``env`` adds or overrides variables)."""

    workers: int = 2
    threads: int = 4
    env: dict[str, str] = field(default_factory=dict)


class Bridge(Service):
    """``otc-bridge serve`` (gunicorn + the buffering worker) on a free port against ``node``.

    The environment is the production default except: the node URL and its admin key, an
    admin token (for ``/admin/reconcile``), the POST rate limit (:data:`RATE_LIMIT`), the
    database and the metrics directory in ``workdir``, and ``settings.env``.
    """

    def __init__(self, workdir: Path, node: DevNode, settings: BridgeSettings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "bridge.db"
        self.workers = settings.workers
        self.admin_token = secrets.token_urlsafe(24)  # for /admin/reconcile
        metrics = workdir / "metrics"
        metrics.mkdir(exist_ok=True)
        env = clean_env(RUSTCHAIN_NODE=node.url, RC_ADMIN_KEY=DEFAULT_DEV_ADMIN_KEY, OTC_ADMIN_TOKEN=self.admin_token,
                        OTC_RATE_LIMIT=RATE_LIMIT, OTC_DB_PATH=str(self.db_path),
                        PROMETHEUS_MULTIPROC_DIR=str(metrics), **settings.env)
        self.env = env
        super().__init__("serve", ["serve", "--port", str(self.port), "--workers", str(settings.workers),
                                   "--threads", str(settings.threads)], env, workdir)
        http = requests.Session()
        self.wait_until(lambda: (http.get(self.url + "/healthz", timeout=2).status_code == 200
                                 and len(self.worker_pids()) >= self.workers), 90, "answer from every worker")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers (the master's children)."""
        tree = _children()
        return sorted(tree.get(self.pid, []))

    def reconcile(self) -> dict:
        """One reconcile pass through ``POST /admin/reconcile``; its summary."""
        response = requests.post(self.url + "/admin/reconcile", json={}, timeout=600,
                                 headers={"Authorization": f"Bearer {self.admin_token}"})
        response.raise_for_status()
        return response.json()["summary"]


    def reconcile_cli(self) -> dict[str, Any]:
        """One pass of ``otc-bridge reconcile`` (a separate process, as an operator runs it
        with ``OTC_RECONCILE_DISABLED=1``) on this bridge's database and node: its wall time
        (s, process start included), CPU (s), exit code and printed summary."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run([*CLI, "--log-level", "WARNING", "reconcile"], env=self.env, cwd=self.db_path.parent,
                              capture_output=True, text=True, timeout=600, check=False)
        seconds = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            summary = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            summary = {"output": done.stdout[-500:] + done.stderr[-500:]}
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"seconds": round(seconds, 3), "cpu_ms": round(cpu * 1000, 1), "exit_code": done.returncode,
                "summary": summary}


def py_spy() -> str | None:
    """The py-spy executable (requirements-dev.txt pins it), or None if it is not installed."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else None
