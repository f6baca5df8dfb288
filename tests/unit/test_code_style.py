"""House style is enforced: ruff lint and format on the tree, mypy on every package.

The dev extra installs ruff and mypy; where it is installed, these tests run (the tools are
called through this interpreter, so an unactivated virtualenv cannot turn them into skips).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = importlib.util.find_spec("ruff") is not None

pytestmark = pytest.mark.skipif(
    not DEV_TOOLS, reason="the dev tools are not installed (pip install -e '.[dev]')"
)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_is_clean() -> None:
    out = _ruff("check", ".")
    assert out.returncode == 0, out.stdout[-4000:]


def test_the_tree_is_ruff_formatted() -> None:
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout[-4000:]


MYPY_CLEAN_PACKAGES = ["server", "guards", "clients", "cli", "bench", "demo", "records"]


def test_mypy_is_clean_on_the_shipped_packages() -> None:
    # mypy keeps its incremental cache in ROOT/.mypy_cache: a warm run takes seconds.
    out = subprocess.run(
        [sys.executable, "-m", "mypy", *MYPY_CLEAN_PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-4000:]
