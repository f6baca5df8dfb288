"""The demo package: its documented `python -m` commands run without warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boxguard.demo


def test_dataset_module_runs_without_warnings(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-m", "boxguard.demo.dataset", "--out", str(tmp_path)]
        + ["--splits", "test", "--n", "2", "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr, out.stderr
    rows = (tmp_path / "test.jsonl").read_text().splitlines()
    assert rows and all("expression" in json.loads(row) for row in rows)


def test_package_exports_load_on_first_use() -> None:
    assert "circle" in boxguard.demo.SHAPES
    assert boxguard.demo.build_split.__module__ == "boxguard.demo.dataset"
    assert set(boxguard.demo.__all__) <= set(dir(boxguard.demo))
