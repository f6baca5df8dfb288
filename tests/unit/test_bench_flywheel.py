"""bench/flywheel.py's parts: the two fine-tune arms differ only by the export's rows, and the
loop's counts are read from what the export and the trainer wrote."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from support import bench_module


@pytest.fixture(scope="module")
def flywheel() -> Any:
    return bench_module("flywheel")


def test_the_arms_share_the_recipe_and_budget_and_differ_by_the_export(
    flywheel: Any, tmp_path: Path
) -> None:
    args = argparse.Namespace(work=tmp_path, minutes=25.0, max_steps=240, extra_per_step=4)
    with_export = flywheel.finetune_command(args, tmp_path / "a", tmp_path / "export")
    control = flywheel.finetune_command(args, tmp_path / "b", None)
    extra = ["--extra-data", str(tmp_path / "export"), "--extra-per-step", "4"]
    assert with_export[-4:] == extra
    assert with_export[:-4] == [
        str(tmp_path / "a") if a == str(tmp_path / "b") else a for a in control
    ]
    assert ["--init-from", str(tmp_path / "shipped")] == control[5:7]
    assert "--threads" in control and control[control.index("--max-steps") + 1] == "240"


def test_counts_of_the_export_and_the_fine_tune(flywheel: Any, tmp_path: Path) -> None:
    def row(answer: str) -> dict:
        return {
            "messages": [
                {"role": "user", "content": "<image>q"},
                {"role": "assistant", "content": answer},
            ]
        }

    rows = [row("[]"), row('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]'), row("[]")]
    (tmp_path / "boxguard_train.json").write_text(json.dumps(rows))
    assert flywheel.export_counts(tmp_path) == {"rows": 3, "box": 1, "empty": 2}
    curve = [
        {"step": 5, "samples": 160, "minutes": 1.0},
        {"step": 9, "samples": 288, "minutes": 2.5},
    ]
    (tmp_path / "curve.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curve))
    stats = flywheel.train_stats(tmp_path)
    assert (stats["step"], stats["samples"], stats["minutes"]) == (9, 288, 2.5)


def test_the_summary_is_strict_json(flywheel: Any) -> None:
    """An AUROC without both kinds of box is NaN; summary.json writes null instead."""
    summary = {"test": {"shipped": {"auroc_p_yes": float("nan"), "acc": 0.5}}, "n": [float("inf")]}
    text = json.dumps(flywheel.finite_or_null(summary), allow_nan=False)
    assert json.loads(text) == {"test": {"shipped": {"auroc_p_yes": None, "acc": 0.5}}, "n": [None]}
