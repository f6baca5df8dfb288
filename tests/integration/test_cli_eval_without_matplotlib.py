"""`boxguard eval` on the base install (no matplotlib) says why there is no PNG, and how to fix
it; report.md explains its metrics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from boxguard.cli import commands as cli
from typer.testing import CliRunner

HINT = 'pip install "boxguard[eval]"'


def test_eval_without_matplotlib_says_so(
    live_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from boxguard.demo.dataset import build_split

    dataset = build_split("val", 2, seed=11, out_dir=tmp_path / "shapes")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = tmp_path / "report"
    argv = ["eval", str(dataset), "--server", live_server, "--report", str(report)]
    result = CliRunner().invoke(cli.app, [*argv, "--no-progress"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no risk–coverage PNG" in result.output and HINT in result.output
    assert not (report / "risk_coverage.png").exists()
    markdown = (report / "report.md").read_text()
    assert HINT in markdown and "risk_coverage.png" not in markdown
    assert json.loads((report / "report.json").read_text())["notes"] == [
        f"no risk–coverage PNG: matplotlib is not installed ({HINT})"
    ]
    for term in ("**AURC**", "**Φc**", "**N-acc**", "**T-acc**"):
        assert term in markdown


def test_eval_with_matplotlib_writes_the_png(live_server: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from boxguard.demo.dataset import build_split

    dataset = build_split("val", 1, seed=12, out_dir=tmp_path / "shapes")
    report = tmp_path / "report"
    argv = ["eval", str(dataset), "--server", live_server, "--report", str(report)]
    result = CliRunner().invoke(cli.app, [*argv, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (report / "risk_coverage.png").is_file() and HINT not in result.output
    assert "notes" not in json.loads((report / "report.json").read_text())
