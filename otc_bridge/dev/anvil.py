"""anvil, the local EVM node behind the dev chain (:mod:`otc_bridge.dev.chain`): finding it,
installing it, and running it as a child process.

:func:`ensure_anvil` finds the ``anvil`` binary (``$OTC_ANVIL``, ``PATH``, the tool cache),
installing the pinned release from the npm registry into a per-user tool cache when it is
missing. :func:`launch` starts it on 127.0.0.1 with chain id 31337 and anvil's well-known test
mnemonic (automine unless a block time is given), :func:`wait_ready` waits until it answers,
and :func:`terminate` stops it with everything it spawned. Everything here is for
development: the accounts' private keys are public knowledge.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

log = logging.getLogger(__name__)

#: The anvil release installed when none is found (npm package ``@foundry-rs/anvil-<os>-<cpu>``).
ANVIL_VERSION = "1.7.1"
#: Environment: the ``anvil`` binary to use, bypassing PATH and the cache.
ANVIL_ENV = "OTC_ANVIL"
#: Environment: the tool cache's root (default ``$XDG_CACHE_HOME/otc-bridge/tools``, else
#: ``~/.cache/otc-bridge/tools``); anvil goes to ``<root>/anvil-<version>/``.
TOOLS_DIR_ENV = "OTC_TOOLS_DIR"

CHAIN_ID = 31337
#: anvil's default mnemonic: its accounts and keys are in every Foundry tutorial.
MNEMONIC = "test test test test test test test test test test test junk"
ACCOUNT_COUNT = 10
#: ETH anvil gives each account at genesis.
ACCOUNT_BALANCE_ETH = 10_000

READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 5.0

_NPM_OS = {"linux": "linux", "darwin": "darwin", "win32": "win32"}
_NPM_CPU = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class DevChainError(RuntimeError):
    """anvil could not be found, installed, started or set up; the message says why."""


# --- finding and installing anvil -------------------------------------------------------------


def tools_dir() -> Path:
    """The tool cache's root (see :data:`TOOLS_DIR_ENV`)."""
    if os.environ.get(TOOLS_DIR_ENV):
        return Path(os.environ[TOOLS_DIR_ENV])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "otc-bridge" / "tools"


def npm_package() -> str:
    """The npm package holding this platform's anvil binary, e.g.
    ``@foundry-rs/anvil-linux-amd64``. Raises :class:`DevChainError` on an unknown platform."""
    os_name, cpu = _NPM_OS.get(sys.platform), _NPM_CPU.get(platform.machine().lower())
    if os_name is None or cpu is None:
        raise DevChainError(f"no anvil package known for {sys.platform}/{platform.machine()}: "
                            f"install anvil yourself and set {ANVIL_ENV}")
    return f"@foundry-rs/anvil-{os_name}-{cpu}"


def anvil_version(binary: Path | str) -> str:
    """The first line of ``binary --version`` (e.g. ``anvil Version: 1.7.1``). Raises
    :class:`DevChainError` if it does not run."""
    try:
        result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise DevChainError(f"{binary} does not run: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DevChainError(f"{binary} --version did not answer in 30 s") from exc
    first = (result.stdout or result.stderr).strip().splitlines()
    if result.returncode != 0 or not first or "anvil" not in first[0].lower():
        raise DevChainError(f"{binary} --version failed (exit {result.returncode}): {result.stderr.strip()[:300]}")
    return first[0]


def ensure_anvil(version: str = ANVIL_VERSION) -> Path:
    """The path of a working ``anvil``: ``$OTC_ANVIL`` if set, else ``anvil`` on PATH, else
    the tool cache's ``anvil-<version>``, which is installed there first if missing
    (``npm install``; needs npm and the npm registry, about 45 MB, a few seconds).

    Raises :class:`DevChainError` when the binary found does not run ``--version``, or the
    install fails (npm missing, registry unreachable, unknown platform).
    """
    if os.environ.get(ANVIL_ENV):
        binary = Path(os.environ[ANVIL_ENV])
        anvil_version(binary)
        return binary
    on_path = shutil.which("anvil")
    if on_path:
        anvil_version(on_path)
        return Path(on_path)
    home = tools_dir() / f"anvil-{version}"
    binary = home / "node_modules" / ".bin" / "anvil"
    if not binary.exists():
        _npm_install(home, f"{npm_package()}@{version}")
    found = anvil_version(binary)
    if version not in found:
        raise DevChainError(f"{binary} reports {found!r}, expected {version}")
    return binary


def _npm_install(home: Path, spec: str) -> None:
    """Install ``spec`` under a temporary prefix beside ``home``, then rename it into place:
    a concurrent or interrupted install never leaves a half-written ``home``."""
    npm = shutil.which("npm")
    if npm is None:
        raise DevChainError(f"anvil not found and npm missing: install Node.js (npm), or anvil, or set {ANVIL_ENV}")
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{home.name}-", dir=home.parent))
    log.info("installing %s into %s", spec, home)
    try:
        result = subprocess.run([npm, "install", "--prefix", str(staging), "--no-save", "--no-package-lock",
                                 "--no-audit", "--no-fund", "--ignore-scripts", spec],
                                capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            raise DevChainError(f"npm install {spec} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")
        try:
            staging.rename(home)
        except OSError:
            if not (home / "node_modules" / ".bin" / "anvil").exists():
                raise
            # Another process finished the same install first: use theirs.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- running anvil -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Looked up here, in the parent: the child between fork and exec should only call it.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: anvil gets SIGTERM if the process (strictly: the thread) that started it dies,
    # even by SIGKILL, so an interrupted test run leaves no orphan chain behind.
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(binary: Path, *, port: int, block_time: float | None, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``binary`` on 127.0.0.1:``port`` (chain :data:`CHAIN_ID`, :data:`MNEMONIC`'s
    :data:`ACCOUNT_COUNT` accounts with :data:`ACCOUNT_BALANCE_ETH` each), its output appended
    to ``log_path`` (0600), in its own session so :func:`terminate` reaches what it spawns."""
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(CHAIN_ID),
            "--mnemonic", MNEMONIC, "--accounts", str(ACCOUNT_COUNT), "--balance", str(ACCOUNT_BALANCE_ETH)]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    # 0600: anvil's log names the accounts (their keys are public, but the rest of dev's data
    # directory is private too).
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
        # Its own session (process group), so terminate() can signal anvil and anything it spawns.
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with_parent if _PRCTL is not None else None)


def wait_ready(process: subprocess.Popen[bytes], rpc_url: str, log_path: Path | None) -> None:
    """Poll ``eth_chainId`` at ``rpc_url`` until anvil answers (bounded by
    :data:`READY_TIMEOUT_SECONDS`); :class:`DevChainError` with the log's tail if it exits or
    stays silent."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    while True:
        if process.poll() is not None:
            raise DevChainError(f"anvil exited with {process.returncode}: {log_tail(log_path)}")
        try:
            answer = requests.post(rpc_url, json=body, timeout=1).json()
            if int(answer["result"], 16) == CHAIN_ID:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass  # not listening yet
        if time.monotonic() >= deadline:
            raise DevChainError(f"anvil not answering on {rpc_url} after {READY_TIMEOUT_SECONDS} s: "
                                f"{log_tail(log_path)}")
        time.sleep(0.05)


def log_tail(path: Path | None) -> str:
    """The last 800 characters of anvil's log (empty if there is none)."""
    try:
        return path.read_text(errors="replace")[-800:].strip() if path else ""
    except OSError:
        return ""


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a running anvil: SIGTERM to its process group, SIGKILL after
    :data:`STOP_TIMEOUT_SECONDS`, and wait for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
