"""A local EVM dev chain (anvil) with our HTLC and a test USDC deployed, for ``otc-bridge dev``
and the tests.

:class:`DevChain` runs anvil (found or installed, and launched, by :mod:`otc_bridge.dev.anvil`)
on 127.0.0.1 (chain id 31337, anvil's well-known test mnemonic, automine unless a block time
is given), deploys the contracts, mints test USDC to the demo wallets, and offers the
time-travel and snapshot calls tests use. Its accounts are the mnemonic's, named by role
(:data:`ROLES`). Everything here is for development: the accounts' private keys are public
knowledge.

    with DevChain() as chain:
        chain.info()        # for dev.json
        chain.env()         # OTC_EVM_* for the bridge's Config
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from otc_bridge.chain import tx
from otc_bridge.chain.artifacts import HTLC, TEST_USDC, load_artifact
from otc_bridge.chain.erc20 import ERC20Client
from otc_bridge.chain.htlc import HTLCClient
from otc_bridge.dev.anvil import (
    ACCOUNT_COUNT,
    ANVIL_ENV,
    ANVIL_VERSION,
    CHAIN_ID,
    MNEMONIC,
    TOOLS_DIR_ENV,
    DevChainError,
    ensure_anvil,
    free_port,
    launch,
    npm_package,
    terminate,
    wait_ready,
)

#: This module's names, and those of otc_bridge.dev.anvil that are imported from here.
__all__ = ["DEMO_USDC", "ROLES", "USDC_DECIMALS", "DevAccount", "DevChain", "derive_accounts", "ANVIL_ENV",
           "ANVIL_VERSION", "TOOLS_DIR_ENV", "DevChainError", "ensure_anvil", "free_port", "npm_package"]

#: Roles of the first accounts (index in the mnemonic's derivation path m/44'/60'/0'/0/i);
#: indexes 4..9 are left for tests (:attr:`DevChain.spare_accounts`).
ROLES = {"deployer": 0, "seller": 1, "buyer": 2, "claimer": 3}
#: Test USDC minted to the seller and the buyer at start, in base units (1,000,000 USDC).
DEMO_USDC = 1_000_000 * 10**6
USDC_DECIMALS = 6


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


class DevChain:
    """anvil on 127.0.0.1 with the HTLC and test USDC deployed and the demo wallets funded.

    ``port`` None picks a free port. ``block_time`` None means automine (one block per
    transaction, at once); a number of seconds mines on that interval instead. ``log_path``
    receives anvil's output (default: a temporary file, removed by :meth:`stop`).

    :meth:`start` (or ``with DevChain() as chain``) raises :class:`DevChainError` when anvil
    cannot be found or installed, exits early, or is not answering within
    :data:`~otc_bridge.dev.anvil.READY_TIMEOUT_SECONDS`; a failure during deployment stops
    anvil before raising. After start: :attr:`rpc_url`, :attr:`w3`, :attr:`htlc`,
    :attr:`usdc` (clients), :attr:`accounts` (by role: ``deployer``, ``seller``, ``buyer``,
    ``claimer``, and ``spare4``..``spare9``).
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
        :data:`~otc_bridge.dev.anvil.STOP_TIMEOUT_SECONDS`) and wait for it. Idempotent."""
        process, self.process = self.process, None
        self._w3 = self._htlc = self._usdc = None
        if process is not None:
            atexit.unregister(self.stop)
            if process.poll() is None:
                terminate(process)
        if self._own_log is not None:
            self._own_log.unlink(missing_ok=True)
            self._own_log = None

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, binary: Path) -> None:
        if self._log_path is None and self._own_log is None:
            fd, name = tempfile.mkstemp(prefix="otc-anvil-", suffix=".log")
            os.close(fd)
            self._own_log = Path(name)
        log_path = self._log_path or self._own_log
        assert log_path is not None
        self.process = launch(binary, port=self.port, block_time=self.block_time, log_path=log_path)
        atexit.register(self.stop)

    def _wait_ready(self) -> None:
        """Poll ``eth_chainId`` until anvil answers (:func:`~otc_bridge.dev.anvil.wait_ready`)."""
        assert self.process is not None
        wait_ready(self.process, self.rpc_url, self._log_path or self._own_log)

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
