"""House style is enforced: ruff on the tree, mypy on every package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean() -> None:
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    out = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:]


MYPY_CLEAN_PACKAGES = ["server", "guards", "clients", "cli", "bench", "demo"]


def test_mypy_is_clean_on_the_shipped_packages() -> None:
    pytest.importorskip("mypy")
    # mypy keeps its incremental cache in ROOT/.mypy_cache: a warm run takes seconds.
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *MYPY_CLEAN_PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-4000:]
