"""A local EVM dev chain (anvil) with our HTLC and a test USDC deployed, for ``otc-bridge dev``
and the tests.

:func:`ensure_anvil` finds the ``anvil`` binary, installing the pinned release from the npm
registry into a per-user tool cache when it is missing. :class:`DevChain` runs it on
127.0.0.1 (chain id 31337, anvil's well-known test mnemonic, automine unless a block time
is given), deploys the contracts, mints test USDC to the demo wallets, and offers the
time-travel and snapshot calls tests use. Everything here is for development: the accounts'
private keys are public knowledge.

    with DevChain() as chain:
        chain.info()        # for dev.json
        chain.env()         # OTC_EVM_* for the bridge's Config
"""

from __future__ import annotations

import atexit
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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from otc_bridge.chain import tx
from otc_bridge.chain.artifacts import HTLC, TEST_USDC, load_artifact
from otc_bridge.chain.erc20 import ERC20Client
from otc_bridge.chain.htlc import HTLCClient

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
#: Roles of the first accounts (index in the mnemonic's derivation path m/44'/60'/0'/0/i);
#: indexes 4..9 are left for tests (:attr:`DevChain.spare_accounts`).
ROLES = {"deployer": 0, "seller": 1, "buyer": 2, "claimer": 3}
#: Test USDC minted to the seller and the buyer at start, in base units (1,000,000 USDC).
DEMO_USDC = 1_000_000 * 10**6
USDC_DECIMALS = 6

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


# --- the chain -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevAccount:
    """One of anvil's prefunded accounts: ``name`` (its role, or ``spare<i>``), ``address``
    (checksummed) and ``private_key`` (``0x`` hex; public knowledge, dev only)."""

    name: str
    address: str
    private_key: str

    @cached_property
    def signer(self) -> LocalAccount:
        """The account as web3 signs with it."""
        return Account.from_key(self.private_key)


def derive_accounts(mnemonic: str = MNEMONIC, count: int = ACCOUNT_COUNT) -> list[DevAccount]:
    """The first ``count`` accounts of ``mnemonic`` (path m/44'/60'/0'/0/i), as anvil derives
    them, named by :data:`ROLES` and ``spare<i>`` for the rest."""
    Account.enable_unaudited_hdwallet_features()  # BIP-39 derivation; dev keys only
    names = {index: name for name, index in ROLES.items()}
    accounts = []
    for index in range(count):
        key = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(DevAccount(names.get(index, f"spare{index}"), key.address, key.key.to_0x_hex()))
    return accounts


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


class DevChain:
    """anvil on 127.0.0.1 with the HTLC and test USDC deployed and the demo wallets funded.

    ``port`` None picks a free port. ``block_time`` None means automine (one block per
    transaction, at once); a number of seconds mines on that interval instead. ``log_path``
    receives anvil's output (default: a temporary file, removed by :meth:`stop`).

    :meth:`start` (or ``with DevChain() as chain``) raises :class:`DevChainError` when anvil
    cannot be found or installed, exits early, or is not answering within
    :data:`READY_TIMEOUT_SECONDS`; a failure during deployment stops anvil before raising.
    After start: :attr:`rpc_url`, :attr:`w3`, :attr:`htlc`, :attr:`usdc` (clients),
    :attr:`accounts` (by role: ``deployer``, ``seller``, ``buyer``, ``claimer``, and
    ``spare4``..``spare9``).
    """

    def __init__(self, *, port: int | None = None, block_time: float | None = None,
                 log_path: Path | None = None, anvil: Path | None = None, usdc_per_wallet: int = DEMO_USDC) -> None:
        self._want_port = port
        self.block_time = block_time
        self._log_path = log_path
        self._anvil = anvil
        self.usdc_per_wallet = usdc_per_wallet
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.accounts = {account.name: account for account in derive_accounts()}
        self._own_log: Path | None = None
        self._w3: Web3 | None = None
        self._htlc: HTLCClient | None = None
        self._usdc: ERC20Client | None = None

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> DevChain:
        """Start anvil, wait until it answers, deploy and fund; returns ``self``. Raises
        :class:`DevChainError` if this chain is already running."""
        if self.process is not None:
            raise DevChainError(f"the dev chain is already running on {self.rpc_url}")
        binary = self._anvil or ensure_anvil()
        attempts = 1 if self._want_port else 3  # a picked free port can be taken before anvil binds it
        for attempt in range(attempts):
            self.port = self._want_port or free_port()
            self._spawn(binary)
            try:
                self._wait_ready()
                break
            except DevChainError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        try:
            self._deploy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop anvil (SIGTERM to its process group, SIGKILL after
        :data:`STOP_TIMEOUT_SECONDS`) and wait for it. Idempotent."""
        process, self.process = self.process, None
        self._w3 = self._htlc = self._usdc = None
        if process is not None:
            atexit.unregister(self.stop)
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self._own_log is not None:
            self._own_log.unlink(missing_ok=True)
            self._own_log = None

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, binary: Path) -> None:
        args = [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(CHAIN_ID),
                "--mnemonic", MNEMONIC, "--accounts", str(ACCOUNT_COUNT), "--balance", str(ACCOUNT_BALANCE_ETH)]
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        if self._log_path is None and self._own_log is None:
            fd, name = tempfile.mkstemp(prefix="otc-anvil-", suffix=".log")
            os.close(fd)
            self._own_log = Path(name)
        log_path = self._log_path or self._own_log
        assert log_path is not None
        # 0600: anvil's log names the accounts (their keys are public, but the rest of dev's data
        # directory is private too).
        with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as out:
            # Its own session (process group), so stop() can signal anvil and anything it spawns.
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent if _PRCTL is not None else None)
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        """Poll ``eth_chainId`` until anvil answers (bounded by :data:`READY_TIMEOUT_SECONDS`)."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise DevChainError(f"anvil exited with {self.process.returncode}: {self._log_tail()}")
            try:
                answer = requests.post(self.rpc_url, json=body, timeout=1).json()
                if int(answer["result"], 16) == CHAIN_ID:
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass  # not listening yet
            if time.monotonic() >= deadline:
                raise DevChainError(f"anvil not answering on {self.rpc_url} after {READY_TIMEOUT_SECONDS} s: "
                                    f"{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        path = self._log_path or self._own_log
        try:
            return path.read_text(errors="replace")[-800:].strip() if path else ""
        except OSError:
            return ""

    def _deploy(self) -> None:
        self._w3 = tx.connect(self.rpc_url)
        deployer = self.accounts["deployer"].signer
        htlc_address = tx.deploy(self._w3, deployer, load_artifact(HTLC))
        usdc_address = tx.deploy(self._w3, deployer, load_artifact(TEST_USDC))
        self._htlc = HTLCClient(self._w3, htlc_address)
        self._usdc = ERC20Client(self._w3, usdc_address)
        for role in ("seller", "buyer"):
            self._usdc.mint(deployer, self.accounts[role].address, self.usdc_per_wallet)

    # --- what the bridge and the demo need --------------------------------------------------------

    @property
    def rpc_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def w3(self) -> Web3:
        """A web3 client of this chain. Raises :class:`DevChainError` before start/after stop."""
        return self._started(self._w3)

    @property
    def htlc(self) -> HTLCClient:
        """The deployed HTLC. Raises :class:`DevChainError` before start/after stop."""
        return self._started(self._htlc)

    @property
    def usdc(self) -> ERC20Client:
        """The deployed test USDC (6 decimals, open mint). Raises as :attr:`htlc`."""
        return self._started(self._usdc)

    @property
    def spare_accounts(self) -> list[DevAccount]:
        """The prefunded accounts no role uses (for tests: extra buyers, third parties)."""
        return [account for account in self.accounts.values() if account.name.startswith("spare")]

    def info(self) -> dict[str, Any]:
        """What ``dev.json`` records: ``evm_rpc_url``, ``evm_chain_id``, ``htlc_address``,
        ``usdc_address``, ``usdc_decimals``, ``evm_confirmations`` (0: automine), and
        ``evm_accounts``: ``{role: {"address", "private_key"}}`` for seller, buyer, claimer
        and deployer."""
        return {
            "evm_rpc_url": self.rpc_url,
            "evm_chain_id": CHAIN_ID,
            "htlc_address": self.htlc.address,
            "usdc_address": self.usdc.address,
            "usdc_decimals": USDC_DECIMALS,
            "evm_confirmations": 0,
            "evm_accounts": {role: {"address": self.accounts[role].address,
                                    "private_key": self.accounts[role].private_key} for role in ROLES},
        }

    def env(self) -> dict[str, str]:
        """The bridge's settings for this chain: ``OTC_EVM_RPC_URL``, ``OTC_HTLC_ADDRESS``,
        ``OTC_USDC_ADDRESS``, ``OTC_EVM_CHAIN_ID``, ``OTC_EVM_CLAIMER_KEY`` and
        ``OTC_EVM_CONFIRMATIONS`` (``0``: automine makes every block final at once)."""
        return {"OTC_EVM_RPC_URL": self.rpc_url, "OTC_HTLC_ADDRESS": self.htlc.address,
                "OTC_USDC_ADDRESS": self.usdc.address, "OTC_EVM_CHAIN_ID": str(CHAIN_ID),
                "OTC_EVM_CLAIMER_KEY": self.accounts["claimer"].private_key, "OTC_EVM_CONFIRMATIONS": "0"}

    # --- time travel, snapshots, reorgs (anvil's own RPC methods) -----------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        """Call a JSON-RPC ``method``; returns its result. Raises :class:`DevChainError` on
        an error answer."""
        answer = self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        if "error" in answer:
            raise DevChainError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    def latest_timestamp(self) -> int:
        """The latest block's timestamp (unix seconds): what a read at ``latest`` sees."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def snapshot(self) -> str:
        """Record the chain's state; returns an id for :meth:`revert`."""
        return self.rpc("evm_snapshot")

    def revert(self, snapshot_id: str) -> None:
        """Go back to :meth:`snapshot` ``snapshot_id`` (blocks after it are dropped, as in a
        reorg). An id can be reverted to once: take a new snapshot to go back again.
        Raises :class:`DevChainError` if anvil refuses."""
        if self.rpc("evm_revert", snapshot_id) is not True:
            raise DevChainError(f"evm_revert({snapshot_id}) refused")

    @contextlib.contextmanager
    def isolated(self) -> Iterator[DevChain]:
        """Run a block against the chain and revert everything it did afterwards."""
        snapshot_id = self.snapshot()
        try:
            yield self
        finally:
            self.revert(snapshot_id)

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks at once, stamped with the chain's current time."""
        self.rpc("anvil_mine", hex(blocks))

    def increase_time(self, seconds: int) -> int:
        """Move the chain's clock ``seconds`` forward and mine a block there; returns its
        timestamp."""
        self.rpc("evm_increaseTime", hex(seconds))
        self.rpc("evm_mine")
        return self.latest_timestamp()

    def set_next_block_timestamp(self, timestamp: int) -> None:
        """The next mined block gets exactly ``timestamp`` (must be later than the latest)."""
        self.rpc("evm_setNextBlockTimestamp", hex(timestamp))

    def mine_at(self, timestamp: int) -> None:
        """Mine one block with exactly ``timestamp``."""
        self.rpc("evm_mine", hex(timestamp))

    def reorg(self, depth: int) -> None:
        """Replace the last ``depth`` blocks with as many new empty ones: same heights, new
        hashes, and the transactions they held are gone (no receipt, not in the pool), as in
        a reorg onto a fork that never saw them. To put some back in the new blocks, call
        ``rpc("anvil_reorg", depth, [[raw_signed_tx_hex, block_offset], ...])`` instead."""
        self.rpc("anvil_reorg", depth, [])

    @staticmethod
    def _started(value: Any) -> Any:
        if value is None:
            raise DevChainError("the dev chain is not started")
        return value
