"""bench/demo_recheck.py's summary of measured rows: raw accuracy, AUROC and the right boxes a
P(yes) threshold keeps at 10 % risk."""

from __future__ import annotations

from typing import Any

import pytest
from support import bench_module


@pytest.fixture(scope="module")
def demo_recheck() -> Any:
    return bench_module("demo_recheck")


def row(p_yes: float | None, right: bool, *, target: bool = True) -> dict[str, Any]:
    return {
        "has_target": target,
        "raw_correct": right,
        "has_box": True,
        "p_yes": p_yes,
        "error": False,
    }


def test_right_kept_at_ten_percent_risk(demo_recheck: Any) -> None:
    # Right boxes at P(yes) 0.30..0.95, wrong ones at 0.88, 0.40, 0.10: any threshold at or
    # below 0.88 accepts the wrong 0.88 box with at most two right ones (0.90, 0.95: 1 of 3
    # wrong), so the lowest one at 10 % risk is 0.90, which keeps two of the ten right boxes.
    p_right = [0.30, 0.35, 0.45, 0.50, 0.55, 0.60, 0.70, 0.80, 0.90, 0.95]
    rights = [row(p, True) for p in p_right]
    wrongs = [row(0.88, False), row(0.40, False), row(0.10, False)]
    summary = demo_recheck.summarize_measured(rights + wrongs)
    assert summary["n_right_boxed"] == 10
    assert summary["raw_acc_target"] == pytest.approx(10 / 13)
    assert summary["right_kept_at_risk_0.1"] == pytest.approx(2 / 10)


def test_a_separating_p_yes_keeps_every_right_box(demo_recheck: Any) -> None:
    rows = [row(0.8 + 0.01 * i, True) for i in range(9)] + [row(0.2, False), row(None, False)]
    summary = demo_recheck.summarize_measured(rows)
    assert summary["auroc_p_yes"] == pytest.approx(1.0)
    assert summary["right_kept_at_risk_0.1"] == pytest.approx(1.0)
    assert summary["n_boxed"] == 10  # the row without P(yes) is not scored
