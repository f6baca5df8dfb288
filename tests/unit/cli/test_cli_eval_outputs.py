"""`boxguard eval --outputs`: stored model outputs evaluated offline, no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.cli import commands as cli
from sdk_fakes import write_vlm_r1_log
from typer.testing import CliRunner

runner = CliRunner()
RIGHT = '[{"bbox_2d": [10, 10, 50, 50], "label": "red car"}]'


def test_cli_eval_outputs(tmp_path: Path) -> None:
    log = write_vlm_r1_log(tmp_path / "l.json.gz", [("red car", RIGHT)])
    res = runner.invoke(
        cli.app,
        ["eval", "--outputs", str(log), "--json", "--policy", '{"label_embeddings": false}'],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["parse_rate"] == 1.0
    res = runner.invoke(cli.app, ["eval", "--outputs", str(log), "--report", str(tmp_path / "r")])
    assert res.exit_code == 0 and "parse rate 1.000" in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["eval"],
        ["eval", "data.jsonl", "--outputs", "x.json"],
        ["eval", "--outputs", "missing.json"],
        ["eval", "--outputs", "{log}", "--policy", '{"min_confidence": 7}'],
    ],
)
def test_cli_eval_outputs_bad_usage(tmp_path: Path, args: list[str]) -> None:
    log = write_vlm_r1_log(tmp_path / "l.json.gz", [("red car", RIGHT)])
    res = runner.invoke(cli.app, [a.replace("{log}", str(log)) for a in args])
    assert res.exit_code == 2, res.output
