"""Compile the contracts' Vyper sources into the JSON artifacts committed beside them.

Development only: the bridge loads the committed artifacts (:mod:`.artifacts`) and never
needs the compiler, so ``vyper`` is a dev dependency (requirements-dev.txt) imported only
inside these functions. Compiler settings (EVM version, optimisation) come from each
source's pragmas, so this module, the ``vyper`` command line and a reviewer's own build
agree byte for byte.

    python3 -m otc_bridge.chain.build                # rewrite the package's artifacts
    python3 -m otc_bridge.chain.build --check DIR..  # exit 1 when an artifact is stale

``scripts/build_contracts`` runs it on the package's contracts and the tests' contracts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from otc_bridge.chain.artifacts import CONTRACTS_DIR

#: The compiler every committed artifact was built with (also each source's version pragma).
VYPER_VERSION = "0.4.3"


def compile_contract(source_path: Path) -> dict[str, Any]:
    """Compile one ``.vy`` file into the artifact's JSON shape.

    Returns ``{"contractName", "compiler", "source", "sourceSha256", "abi", "bytecode",
    "deployedBytecode"}`` (bytecodes as ``0x`` hex). Raises ``RuntimeError`` when the installed
    vyper is not :data:`VYPER_VERSION`, and vyper's own exceptions on a source error.
    """
    import vyper

    if vyper.__version__ != VYPER_VERSION:
        raise RuntimeError(f"vyper {VYPER_VERSION} needed, {vyper.__version__} installed "
                           "(pip install -r requirements-dev.txt)")
    source = source_path.read_text()
    # Only the file name is passed: absolute paths must not leak into the output.
    out = vyper.compile_code(source, contract_path=source_path.name,
                             output_formats=["abi", "bytecode", "bytecode_runtime"])
    return {
        "contractName": source_path.stem,
        "compiler": f"vyper {VYPER_VERSION}",
        "source": source_path.name,
        "sourceSha256": hashlib.sha256(source.encode()).hexdigest(),
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "deployedBytecode": out["bytecode_runtime"],
    }


def artifact_path(source_path: Path) -> Path:
    """Where the artifact of ``source_path`` lives: ``<dir>/compiled/<Name>.json``."""
    return source_path.parent / "compiled" / f"{source_path.stem}.json"


def render(artifact: dict[str, Any]) -> str:
    """The artifact as committed: indented JSON, one trailing newline."""
    return json.dumps(artifact, indent=2) + "\n"


def build_directory(contracts_dir: Path, *, check: bool = False) -> list[Path]:
    """Compile every ``*.vy`` in ``contracts_dir``; return the artifacts that were stale.

    With ``check`` nothing is written; otherwise stale or missing artifacts are rewritten.
    """
    stale = []
    for source_path in sorted(contracts_dir.glob("*.vy")):
        target = artifact_path(source_path)
        text = render(compile_contract(source_path))
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not check:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command line: ``[--check] [DIR ...]`` (default: the package's contracts). Exit 1 if
    ``--check`` found a stale artifact."""
    parser = argparse.ArgumentParser(prog="python3 -m otc_bridge.chain.build", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale artifacts")
    parser.add_argument("dirs", nargs="*", type=Path, default=[CONTRACTS_DIR])
    args = parser.parse_args(argv)
    stale = [path for directory in args.dirs for path in build_directory(directory, check=args.check)]
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
