"""The compiled contracts, as committed JSON artifacts (no compiler needed at run time).

Each ``contracts/<Name>.vy`` has ``contracts/compiled/<Name>.json``, written by
:mod:`.build` (``scripts/build_contracts``); a test recompiles every source and compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: The package's contract sources; their artifacts are in ``CONTRACTS_DIR / "compiled"``.
CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"

HTLC = "HTLC"
TEST_USDC = "TestUSDC"


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: ``abi`` (the JSON ABI, a list of dicts), ``bytecode`` (creation
    code, ``0x`` hex) and ``deployed_bytecode`` (runtime code, ``0x`` hex, what
    ``eth_getCode`` returns once deployed)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


@cache
def load_artifact(name: str, directory: Path = CONTRACTS_DIR) -> Artifact:
    """Read ``<directory>/compiled/<name>.json``; ``name`` is e.g. :data:`HTLC` or
    :data:`TEST_USDC`. Raises ``FileNotFoundError`` for an unknown name."""
    data = json.loads((directory / "compiled" / f"{name}.json").read_text())
    return Artifact(name=data["contractName"], abi=data["abi"], bytecode=data["bytecode"],
                    deployed_bytecode=data["deployedBytecode"])
