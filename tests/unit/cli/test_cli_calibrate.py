"""`boxguard calibrate --signals`: a policy file from recorded signals, no server."""

from __future__ import annotations

import json
from pathlib import Path

from boxguard.cli.commands import app
from typer.testing import CliRunner

DEMO_VAL = Path(__file__).parents[2] / "data" / "calibration" / "demo_val600_signals.jsonl"


def test_calibrate_writes_a_policy_file_and_says_what_it_cannot(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--signals",
            str(DEMO_VAL),
            "--risk",
            "0.05,0.3",
            "--delta",
            "0.1",
            "--model-name",
            "boxguard-demo-shapes",
            "--model-family",
            "qwen2_5_vl",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "risk 0.05: NOT certified on these 600 samples" in result.output
    assert "smallest certifiable risk here is" in result.output
    doc = json.loads(out.read_text())
    assert list(doc["_by_risk"]) == ["0.3"] and "0.05" in doc["_not_certified"]
    assert doc["_model"] == {"name": "boxguard-demo-shapes", "family": "qwen2_5_vl"}
    assert doc["_calibration"]["n"] == 600 and doc["_calibration"]["delta"] == 0.1
    assert doc["visual_check"] is True and 0 < doc["visual_min_yes"] < 1


def test_nothing_certified_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "policy.json"
    result = CliRunner().invoke(
        app, ["calibrate", "--signals", str(DEMO_VAL), "--risk", "0.05", "--out", str(out)]
    )
    assert result.exit_code == 1 and not out.exists()
    assert "no policy written" in result.output


def test_a_risk_out_of_range_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["calibrate", "--signals", str(DEMO_VAL), "--risk", "1.5"])
    assert result.exit_code == 2
