"""The eval report's selective risk (with its exact interval) and coverage at 1/5/10% risk."""

from __future__ import annotations

import pytest
from boxguard.clients.metrics import Outcome, coverage_at_risk, summarize


def test_selective_risk_and_its_clopper_pearson_interval() -> None:
    # 10 answered, 5 wrong: the textbook 95% interval [0.1871, 0.8129]; 2 abstained.
    outs = [Outcome(0.9, i % 2 == 0, answered=True, verdict_correct=i % 2 == 0) for i in range(10)]
    outs += [Outcome(0.1, False, abstained=True), Outcome(0.1, False, abstained=True)]
    summary = summarize(outs)
    assert summary["selective_risk"] == 0.5
    low, high = summary["selective_risk_ci95"]
    assert (round(low, 4), round(high, 4)) == (0.1871, 0.8129)


def test_coverage_at_risk() -> None:
    outs = [Outcome(0.99 - i / 100, i not in (9, 30), answered=True) for i in range(40)]
    assert coverage_at_risk(outs, 0.01) == pytest.approx(9 / 40)  # the 9 before the first wrong
    assert coverage_at_risk(outs, 0.05) == 1.0  # 2 wrong of 40
    assert summarize(outs)["coverage_at_risk"] == {"0.01": 9 / 40, "0.05": 1.0, "0.1": 1.0}
    assert summarize([])["selective_risk"] is None
