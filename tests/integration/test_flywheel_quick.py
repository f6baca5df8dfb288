"""bench/flywheel.py --quick end to end: real servers on the shipped and fine-tuned weights, the
train-split eval, its export, both fine-tune arms and the test-split measures; then a second
call resumes from what the first wrote and gives the same figures."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from fake_upstream import free_port
from support import bench_module

pytestmark = pytest.mark.slow


def test_the_quick_loop_runs_every_stage_and_resumes(tmp_path: Path) -> None:
    flywheel: Any = bench_module("flywheel")
    argv = ["--work", str(tmp_path), "--quick", "--port", str(free_port())]
    summary = flywheel.main(argv)

    train = summary["train_eval"]
    assert (train["n"], train["errors"]) == (24, 0)
    export = summary["export"]
    # Errors only: every wrong or refused target at most, and at least one row to learn from.
    assert export["rows"] == export["box"] + export["empty"] > 0
    assert export["box"] <= train["n_target"] - train["n_right_raw"]
    assert export["empty"] <= train["n_no_target"]
    for arm in ("ft_export", "ft_control"):
        assert summary["finetune"][arm]["step"] == 2
        assert (tmp_path / arm / "last/boxguard_policy.json").is_file()
    for model in flywheel.MODELS:
        test = summary["test"][model]
        assert (test["n"], test["errors"], test["measured_n"], test["measured_errors"]) == (
            8,
            0,
            8,
            0,
        )

    started = time.monotonic()
    again = flywheel.main(argv)
    assert time.monotonic() - started < 30  # no stage ran twice
    for model in flywheel.MODELS:
        for key, value in summary["test"][model].items():
            other = again["test"][model][key]
            assert other == value or (math.isnan(other) and math.isnan(value)), key
