"""The pipeline's direction is enforced: the layers contract holds, and fails on a break."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "digest", tmp_path / "digest", ignore=shutil.ignore_patterns("shipped"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_contract_holds_for_the_package(package_copy):
    result = lint_imports(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("edition/select.py", "from ..delivery import ledger"),
        ("newsroom/stories.py", "from ..edition import render"),
        ("delivery/send.py", "from ..feedback import events"),
        ("feedback/report.py", "from .. import studio"),
        ("config.py", "from .newsroom import stories"),
    ],
)
def test_an_import_against_the_direction_breaks_the_contract(package_copy, module, line):
    path = package_copy / "digest" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
