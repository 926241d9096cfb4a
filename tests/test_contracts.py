"""The architecture's contracts (docs/architecture.md) and the lint rules, run with the tests.

Both tools come with the test extra; their configuration is in pyproject.toml. A broken
contract or a lint finding fails here with the tool's own report.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_import_contracts_are_kept():
    """core never imports Qt, pyqtgraph, OpenGL or the gui; the gui's layers import
    downwards only (import-linter, contracts in pyproject.toml)."""
    r = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in r.stdout, r.stdout[-2000:]


def test_ruff_finds_nothing():
    r = subprocess.run([_tool("ruff"), "check", "--no-cache", "lossview", "tests", "benchmarks"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
