"""`boxguard ground` and `boxguard eval` against the real server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.cli import commands as cli
from PIL import Image
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def shapes_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few demo-world samples (the demo generator's JSONL)."""
    from boxguard.demo.dataset import build_split

    return build_split("val", 6, seed=7, out_dir=tmp_path_factory.mktemp("shapes"))


def test_ground_json_and_table(live_server: str, tmp_path: Path) -> None:
    image = tmp_path / "scene.png"
    Image.new("RGB", (320, 240), "white").save(image)
    result = runner.invoke(
        cli.app, ["ground", str(image), "the red circle", "--server", live_server, "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["status"] in ("accepted", "abstained")
    assert body["image"] == {**body["image"], "width": 320, "height": 240}
    out = tmp_path / "drawn.png"
    result = runner.invoke(
        cli.app,
        ["ground", str(image), "the red circle", "--server", live_server, "--draw", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "ACCEPTED" in result.output or "ABSTAINED" in result.output
    assert Image.open(out).size == (320, 240)


def test_eval_writes_the_report(live_server: str, shapes_set: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = runner.invoke(
        cli.app,
        [
            "eval",
            str(shapes_set),
            "--server",
            live_server,
            "--report",
            str(report),
            "--concurrency",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (report / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(r["status"] in ("accepted", "abstained") for r in rows)  # no transport errors
    summary = json.loads((report / "report.json").read_text())
    assert summary["n"] == 6 and summary["errors"] == 0
    assert set(summary["phi"]) == {"1", "10", "100"}
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 6)
    assert summary["coverage"] == pytest.approx(sum(r["status"] == "accepted" for r in rows) / 6)
    for name in ("report.md", "risk_coverage.png", "index.html"):
        assert (report / name).is_file()
    assert len(list((report / "thumbs").iterdir())) == 6
