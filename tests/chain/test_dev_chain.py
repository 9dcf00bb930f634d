"""The dev chain: finding and installing anvil, its accounts and settings, snapshots and reorgs,
a clean stop, and its place in ``otc-bridge dev``."""

from __future__ import annotations

import json
import os
import socket
import stat
import textwrap
from pathlib import Path

import pytest
from chain_helpers import ETH, open_eth_swap

from otc_bridge.chain.htlc import SwapState
from otc_bridge.dev import chain as devchain
from otc_bridge.dev import tools
from otc_bridge.dev.chain import DevChain, DevChainError, ensure_anvil


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _anvil_processes_on(port: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"anvil") and str(port).encode() in args:
                found.append(int(entry.name))
    return found


# --- accounts and settings ---------------------------------------------------------------------


def test_accounts_are_anvils_and_the_demo_uses_them(dev_chain):
    assert [a.address for a in dev_chain.accounts.values()] == dev_chain.w3.eth.accounts
    assert dev_chain.accounts["seller"].address == tools.SELLER_QUOTE_ADDRESS
    assert dev_chain.accounts["buyer"].address == tools.BUYER_QUOTE_ADDRESS
    assert dev_chain.accounts["claimer"].signer.address == dev_chain.accounts["claimer"].address
    assert len(dev_chain.spare_accounts) == 6


def test_info_and_env_describe_the_chain(dev_chain):
    info = dev_chain.info()
    assert info["evm_rpc_url"] == dev_chain.rpc_url and info["evm_rpc_url"].startswith("http://127.0.0.1:")
    assert (info["evm_chain_id"], info["usdc_decimals"], info["evm_confirmations"]) == (31337, 6, 0)
    assert (info["htlc_address"], info["usdc_address"]) == (dev_chain.htlc.address, dev_chain.usdc.address)
    assert set(info["evm_accounts"]) == {"deployer", "seller", "buyer", "claimer"}
    assert info["evm_accounts"]["claimer"]["private_key"] == dev_chain.accounts["claimer"].private_key
    assert dev_chain.env() == {
        "OTC_EVM_RPC_URL": dev_chain.rpc_url, "OTC_HTLC_ADDRESS": dev_chain.htlc.address,
        "OTC_USDC_ADDRESS": dev_chain.usdc.address, "OTC_EVM_CHAIN_ID": "31337",
        "OTC_EVM_CLAIMER_KEY": dev_chain.accounts["claimer"].private_key, "OTC_EVM_CONFIRMATIONS": "0"}
    json.dumps(info)  # dev.json material


def test_demo_wallets_hold_eth_and_test_usdc(dev_chain):
    for role in ("seller", "buyer"):
        address = dev_chain.accounts[role].address
        assert dev_chain.usdc.balance_of(address) >= devchain.DEMO_USDC // 2
        assert dev_chain.w3.eth.get_balance(address) > 1000 * ETH
    assert dev_chain.w3.eth.get_balance(dev_chain.accounts["claimer"].address) > 1000 * ETH


# --- snapshots, reorgs, time ------------------------------------------------------------------------


def test_revert_to_a_snapshot_drops_the_blocks_after_it(evm):
    height = evm.w3.eth.block_number
    snapshot = evm.snapshot()
    created, _, receipt = open_eth_swap(evm)
    assert receipt["blockNumber"] == height + 1
    evm.revert(snapshot)
    assert evm.w3.eth.block_number == height
    assert evm.htlc.swap(created.swap_id).state is SwapState.NONE
    evm.mine()
    assert evm.w3.eth.get_block(height + 1)["hash"] != receipt["blockHash"]


def test_reorg_replaces_the_latest_blocks_and_their_transactions(evm):
    created, _, receipt = open_eth_swap(evm)
    evm.reorg(1)
    assert evm.w3.eth.block_number == receipt["blockNumber"]
    assert evm.w3.eth.get_block(receipt["blockNumber"])["hash"] != receipt["blockHash"]
    assert evm.htlc.swap(created.swap_id).state is SwapState.NONE
    assert evm.htlc.events(receipt["blockNumber"], "latest") == []


def test_time_travel(evm):
    before = evm.latest_timestamp()
    assert evm.increase_time(3600) >= before + 3600
    evm.mine_at(before + 10_000)
    assert evm.latest_timestamp() == before + 10_000
    evm.set_next_block_timestamp(before + 20_000)
    evm.mine(2)
    assert evm.latest_timestamp() >= before + 20_000


# --- finding and installing anvil ---------------------------------------------------------------


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_ensure_anvil_installs_into_the_tool_cache_once(tmp_path, monkeypatch):
    bin_dir, calls = tmp_path / "bin", tmp_path / "npm-calls"
    # A stand-in npm: records its arguments and lays out what the real package would.
    _script(bin_dir / "npm", f"""\
        PATH=/usr/bin:/bin
        echo "$@" >> {calls}
        prefix=$3
        mkdir -p "$prefix/node_modules/.bin"
        printf '#!/bin/sh\\necho "anvil Version: {devchain.ANVIL_VERSION}"\\n' > "$prefix/node_modules/.bin/anvil"
        chmod +x "$prefix/node_modules/.bin/anvil"
        """)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(devchain.ANVIL_ENV, raising=False)
    monkeypatch.setenv(devchain.TOOLS_DIR_ENV, str(tmp_path / "tools"))
    expected = tmp_path / "tools" / f"anvil-{devchain.ANVIL_VERSION}" / "node_modules" / ".bin" / "anvil"
    assert ensure_anvil() == expected
    assert ensure_anvil() == expected
    (call,) = calls.read_text().splitlines()
    assert call.startswith("install --prefix ") and call.endswith(f"{devchain.npm_package()}@{devchain.ANVIL_VERSION}")
    assert "--ignore-scripts" in call
    assert sorted(p.name for p in (tmp_path / "tools").iterdir()) == [f"anvil-{devchain.ANVIL_VERSION}"]


def test_failed_install_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _script(bin_dir / "npm", "echo 'npm ERR! 404 Not Found' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(devchain.ANVIL_ENV, raising=False)
    monkeypatch.setenv(devchain.TOOLS_DIR_ENV, str(tmp_path / "tools"))
    with pytest.raises(DevChainError, match="404 Not Found"):
        ensure_anvil()
    assert list((tmp_path / "tools").iterdir()) == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DevChainError, match="npm missing"):
        ensure_anvil()


def test_explicit_anvil_must_run(tmp_path, monkeypatch):
    monkeypatch.setenv(devchain.ANVIL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DevChainError, match="does not run"):
        ensure_anvil()
    monkeypatch.setenv(devchain.ANVIL_ENV, str(_script(tmp_path / "broken", "echo oops >&2\nexit 2\n")))
    with pytest.raises(DevChainError, match="oops"):
        ensure_anvil()


# --- starting and stopping ---------------------------------------------------------------------------


def test_stop_leaves_no_process_behind(tmp_path):
    port = devchain.free_port()
    log_path = tmp_path / "anvil.log"
    with DevChain(port=port, log_path=log_path) as chain:
        pid = chain.process.pid
        assert chain.w3.eth.chain_id == 31337
        assert _anvil_processes_on(port) == [pid]
    assert _refuses(port) and _anvil_processes_on(port) == []
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    chain.stop()  # idempotent
    with pytest.raises(DevChainError, match="not started"):
        chain.htlc  # noqa: B018


def test_an_anvil_that_dies_at_start_is_reported_with_its_output(tmp_path):
    fake = _script(tmp_path / "anvil", "echo 'Address already in use' \nexit 1\n")
    with pytest.raises(DevChainError, match="Address already in use"):
        DevChain(anvil=fake, port=devchain.free_port()).start()


def test_otc_bridge_dev_runs_the_chain_and_stops_it(tmp_path, monkeypatch):
    from otc_bridge.config import Config

    seen_env = {}
    real_from_env = Config.from_env

    def capture(env):
        seen_env.update(env)
        return real_from_env(env)

    class StopAtOnce:
        def serve_forever(self):
            raise KeyboardInterrupt  # as Ctrl-C would

        def shutdown(self):
            pass

    monkeypatch.setattr(Config, "from_env", staticmethod(capture))
    monkeypatch.setattr(tools, "make_server", lambda *args, **kwargs: StopAtOnce())
    data_dir = tmp_path / "data"
    lines = []
    tools.run_dev(tools.DevSettings(data_dir=data_dir, port=0, node_port=0, admin_token="t" * 32,
                                    auto_settle_seconds=0), echo=lines.append)
    info = json.loads((data_dir / "dev.json").read_text())
    for key in ("evm_rpc_url", "htlc_address", "usdc_address", "evm_chain_id", "evm_accounts"):
        assert key in info
    assert seen_env["OTC_EVM_RPC_URL"] == info["evm_rpc_url"]
    assert seen_env["OTC_HTLC_ADDRESS"] == info["htlc_address"]
    assert seen_env["OTC_EVM_CLAIMER_KEY"] == info["evm_accounts"]["claimer"]["private_key"]
    assert (seen_env["OTC_EVM_CHAIN_ID"], seen_env["OTC_EVM_CONFIRMATIONS"]) == ("31337", "0")
    assert any(line.startswith("evm chain") for line in lines)
    port = int(info["evm_rpc_url"].rsplit(":", 1)[1])
    assert _refuses(port) and _anvil_processes_on(port) == []
    assert stat.S_IMODE((data_dir / "anvil.log").stat().st_mode) == 0o600
    assert os.environ.get("OTC_EVM_RPC_URL") is None  # only the bridge's env got it

