"""The layer contract of docs/architecture.md holds, and it would catch a new circle.

``lint-imports`` (import-linter) runs in ``scripts/test`` on the real package; here it runs on
copies of the package with one import added, to prove the contracts in ``setup.cfg`` fail on
exactly the mistakes they exist for: an upward import, and a cycle inside a package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                "sys.exit(lint_imports_command())"]


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*LINT_IMPORTS, "--config", "setup.cfg", "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


@pytest.fixture
def copy(tmp_path) -> Path:
    shutil.copytree(REPO / "otc_bridge", tmp_path / "otc_bridge",
                    ignore=shutil.ignore_patterns("static", "__pycache__"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    return tmp_path


def inject(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n{line}  # injected by the test\n")


def test_the_package_keeps_its_layers(copy):
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(copy):
    inject(copy, "otc_bridge.domain.money", "from otc_bridge.storage import db")
    result = lint(copy)
    assert result.returncode == 1
    assert "otc_bridge.domain.money -> otc_bridge.storage.db" in result.stdout


def test_a_cycle_inside_a_package_is_refused(copy):
    inject(copy, "otc_bridge.settlement.record", "from otc_bridge.settlement import release")
    result = lint(copy)
    assert result.returncode == 1
    assert "No cycles are allowed in otc_bridge.settlement" in result.stdout
