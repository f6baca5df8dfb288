"""Threshold picking: Phi_c, risk-coverage, and the objectives."""

from __future__ import annotations

import pytest
from boxguard.guards import TokenLogprob, verify
from boxguard.guards.threshold import (
    Outcome,
    as_outcomes,
    aurc,
    coverage_risk,
    phi_c,
    pick_threshold,
    risk_coverage_curve,
    verdict_confidence,
)

RS = [(0.9, True), (0.8, True), (0.4, False), (0.3, True)]


def test_phi_c_definition() -> None:
    assert phi_c(RS, 0.0, 10) == pytest.approx((3 - 10) / 4)
    assert phi_c(RS, 0.5, 10) == pytest.approx(2 / 4)
    assert phi_c(RS, 0.95, 10) == 0.0
    assert phi_c([], 0.0) == 0.0


def test_coverage_risk() -> None:
    assert coverage_risk(RS, 0.0) == (1.0, 0.25)
    assert coverage_risk(RS, 0.5) == (0.5, 0.0)
    assert coverage_risk(RS, 0.99) == (0.0, 0.0)


def test_pick_phi() -> None:
    assert pick_threshold(RS, "phi10") == 0.8
    assert pick_threshold(RS, "phi1") == 0.0  # one error costs less than the two rights lost
    assert pick_threshold(RS, "phi", c=100) == 0.8


def test_pick_risk() -> None:
    assert pick_threshold(RS, "risk", target_risk=0.3) == 0.0
    assert pick_threshold(RS, "risk", target_risk=0.0) == 0.8
    with pytest.raises(ValueError):
        pick_threshold(RS, "risk")


def test_risk_unreachable_returns_least_risk() -> None:
    rs = [(0.9, False), (0.5, True)]
    t = pick_threshold(rs, "risk", target_risk=0.0)
    assert t == 0.0 or coverage_risk(rs, t)[1] <= 0.5


def test_prior_abstentions_and_missing_confidence() -> None:
    rs = [Outcome(None, False), Outcome(0.9, True), Outcome(0.1, False, abstained=True)]
    assert coverage_risk(rs, 0.95) == (pytest.approx(1 / 3), 1.0)  # None stays answered
    assert as_outcomes([{"confidence": 0.2, "correct": True}])[0] == Outcome(0.2, True)


def test_curve_and_aurc() -> None:
    curve = risk_coverage_curve(RS)
    assert curve[0] == (0.0, 1.0, 0.25) and curve[-1][1] == 0.0
    assert 0.0 <= aurc(RS) <= 0.25
    perfect = [(0.9, True), (0.1, False)]
    assert aurc(perfect) < aurc([(0.1, True), (0.9, False)])


def test_unknown_objective() -> None:
    with pytest.raises(ValueError):
        pick_threshold(RS, "accuracy")  # type: ignore[arg-type]


def test_verdict_confidence() -> None:
    out = "[]"
    v = verify(out, "the dog", (10, 10), token_logprobs=[TokenLogprob(token="[", logprob=-0.1),
                                                           TokenLogprob(token="]", logprob=-0.5)])
    assert verdict_confidence(v) == pytest.approx(0.6065, abs=1e-3)
    assert verdict_confidence(verify(out, "the dog", (10, 10))) is None
