"""The committed artifacts are what the sources compile to, the ABI keeps the signatures
clients of the reference HTLC call, and the chain runs exactly the committed code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chain_helpers import TEST_CONTRACTS_DIR
from eth_utils import event_abi_to_log_topic

from otc_bridge.chain import build, htlc
from otc_bridge.chain.artifacts import CONTRACTS_DIR, HTLC, TEST_USDC, load_artifact

SOURCES = sorted(CONTRACTS_DIR.glob("*.vy")) + sorted(TEST_CONTRACTS_DIR.glob("*.vy"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_artifact_is_what_the_source_compiles_to(source: Path):
    committed = json.loads(build.artifact_path(source).read_text())
    fresh = build.compile_contract(source)
    assert committed["sourceSha256"] == fresh["sourceSha256"], f"{source.name} changed: run scripts/build_contracts"
    assert committed["abi"] == fresh["abi"]
    assert committed["bytecode"] == fresh["bytecode"]
    assert committed["deployedBytecode"] == fresh["deployedBytecode"]
    assert build.render(fresh) == build.artifact_path(source).read_text()  # the file byte for byte


def test_every_artifact_has_its_source():
    for directory in (CONTRACTS_DIR, TEST_CONTRACTS_DIR):
        artifacts = {path.stem for path in (directory / "compiled").glob("*.json")}
        assert artifacts == {path.stem for path in directory.glob("*.vy")}


def _signature(entry: dict) -> str:
    def kind(item: dict) -> str:
        if item["type"] == "tuple":
            return "(" + ",".join(kind(c) for c in item["components"]) + ")"
        return item["type"]

    inputs = ",".join(kind(i) for i in entry["inputs"])
    outputs = ",".join(kind(o) for o in entry.get("outputs", []))
    return f"{entry['type']} {entry['name']}({inputs}) -> ({outputs}) {entry.get('stateMutability', '')}".strip()


def test_htlc_abi_keeps_the_reference_signatures():
    abi = {_signature(entry) for entry in load_artifact(HTLC).abi}
    for expected in (
        "function createSwapETH(address,bytes32,uint256,string) -> (bytes32) payable",
        "function createSwapERC20(address,address,uint256,bytes32,uint256,string) -> (bytes32) nonpayable",
        "function claim(bytes32,bytes32) -> () nonpayable",
        "function refund(bytes32) -> () nonpayable",
        "function swaps(bytes32) -> ((address,address,address,uint256,bytes32,uint256,uint8)) view",
        "function nonces(address) -> (uint256) view",
        "event SwapCreated(bytes32,address,address,address,uint256,bytes32,uint256,string) -> ()",
        "event SwapClaimed(bytes32,bytes32) -> ()",
        "event SwapRefunded(bytes32) -> ()",
    ):
        assert expected in abi
    events = {e["name"]: e for e in load_artifact(HTLC).abi if e["type"] == "event"}
    assert [i["name"] for i in events["SwapCreated"]["inputs"] if i["indexed"]] == ["swapId", "buyer", "seller"]
    assert [i["indexed"] for i in events["SwapClaimed"]["inputs"]] == [True, False]
    assert event_abi_to_log_topic(events["SwapCreated"]) == htlc.SWAP_CREATED_TOPIC
    assert event_abi_to_log_topic(events["SwapClaimed"]) == htlc.SWAP_CLAIMED_TOPIC
    assert event_abi_to_log_topic(events["SwapRefunded"]) == htlc.SWAP_REFUNDED_TOPIC
    swap_fields = next(e for e in load_artifact(HTLC).abi if e.get("name") == "swaps")["outputs"][0]["components"]
    assert [f["name"] for f in swap_fields] == ["buyer", "seller", "token", "amount", "hashlock", "timelock", "state"]


def test_test_usdc_is_a_six_decimal_erc20_with_public_mint():
    abi = {_signature(entry) for entry in load_artifact(TEST_USDC).abi}
    for expected in ("function transfer(address,uint256) -> (bool) nonpayable",
                     "function transferFrom(address,address,uint256) -> (bool) nonpayable",
                     "function approve(address,uint256) -> (bool) nonpayable",
                     "function mint(address,uint256) -> () nonpayable",
                     "function decimals() -> (uint8) view", "function name() -> (string) view"):
        assert expected in abi


def test_the_chain_runs_the_committed_code(dev_chain):
    for client, name in ((dev_chain.htlc, HTLC), (dev_chain.usdc, TEST_USDC)):
        assert dev_chain.w3.eth.get_code(client.address).to_0x_hex() == load_artifact(name).deployed_bytecode
    functions = dev_chain.htlc.contract.functions
    assert functions.MIN_LOCK_SECONDS().call() == htlc.MIN_LOCK_SECONDS == 3600
    assert functions.MAX_LOCK_SECONDS().call() == htlc.MAX_LOCK_SECONDS == 7 * 86400
    assert (dev_chain.usdc.decimals(), dev_chain.usdc.symbol()) == (6, "USDC")


def test_check_mode_reports_a_stale_artifact(tmp_path):
    source = tmp_path / "Tiny.vy"
    source.write_text("# pragma version 0.4.3\n@external\n@view\ndef one() -> uint256:\n    return 1\n")
    assert build.main(["--check", str(tmp_path)]) == 1
    assert not build.artifact_path(source).exists()
    assert build.main([str(tmp_path)]) == 0
    assert build.main(["--check", str(tmp_path)]) == 0
    source.write_text(source.read_text().replace("return 1", "return 2"))
    assert build.main(["--check", str(tmp_path)]) == 1
