"""Threshold picking: Phi_c, risk-coverage, and the objectives."""

from __future__ import annotations

import itertools
import math

import pytest
from boxguard.guards import TokenLogprob, Verdict, verify
from boxguard.guards.threshold import (
    Outcome,
    as_outcomes,
    aurc,
    auroc,
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


def test_aurc_hand_computed() -> None:
    """Ranked 0.9 R, 0.8 W, 0.7 R, 0.6 R, 0.5 W: risks of the k most confident 0, 1/2, 1/3,
    1/4, 2/5; AURC is their mean (no point at coverage 0, no trapezoids between thresholds)."""
    rs = [(0.6, True), (0.9, True), (0.5, False), (0.7, True), (0.8, False)]
    assert aurc(rs) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5)  # 0.29667
    assert aurc(RS) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4) / 4)
    assert aurc([(0.9, True), (0.1, False)]) < aurc([(0.1, True), (0.9, False)])
    assert aurc([]) is None


def test_aurc_ties_use_the_expected_risk_and_ignore_input_order() -> None:
    rs = [(0.9, True), (0.9, False), (0.5, True)]
    # The tie group {R, W}: expected risk 1/2 at k=1 and k=2; then 1/3 at k=3.
    for order in itertools.permutations(rs):
        assert aurc(order) == pytest.approx((0.5 + 0.5 + 1 / 3) / 3)
    assert aurc([(0.7, True)] * 3 + [(0.7, False)]) == pytest.approx(0.25)


def test_none_confidence_ranks_first_and_prior_abstentions_last() -> None:
    assert aurc([(None, False), (0.9, True)]) == pytest.approx((1.0 + 0.5) / 2)
    rs = [Outcome(0.1, True), Outcome(0.9, False, abstained=True)]
    assert risk_coverage_curve(rs) == [(0.5, 0.0), (1.0, 0.5)]


def test_risk_coverage_curve_merges_ties() -> None:
    curve = risk_coverage_curve([(0.5, True), (0.9, True), (0.9, False), (0.1, False)])
    assert curve == [
        pytest.approx((0.5, 0.5)),
        pytest.approx((0.75, 1 / 3)),
        pytest.approx((1.0, 0.5)),
    ]


def test_unknown_objective() -> None:
    with pytest.raises(ValueError):
        pick_threshold(RS, "accuracy")  # type: ignore[arg-type]


def test_verdict_confidence() -> None:
    out = "[]"
    v = verify(
        out,
        "the dog",
        (10, 10),
        token_logprobs=[
            TokenLogprob(token="[", logprob=-0.1),
            TokenLogprob(token="]", logprob=-0.5),
        ],
    )
    assert verdict_confidence(v) == pytest.approx(0.6065, abs=1e-3)
    assert verdict_confidence(verify(out, "the dog", (10, 10))) is None


def test_verdict_confidence_falls_back_to_the_first_box() -> None:
    box = {"bbox": (0, 0, 4, 4), "confidence": 0.3}
    assert verdict_confidence(Verdict(status="abstained", candidates=[box])) == 0.3
    assert verdict_confidence(Verdict(status="abstained")) is None


def test_auroc_ranks_and_ties() -> None:
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5


def test_auroc_is_the_pairwise_win_rate() -> None:
    scores = [0.3, 0.7, 0.7, 0.1, 0.9, 0.3, 0.5, 0.7]
    labels = [True, False, True, False, True, True, False, False]
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert auroc(scores, labels) == pytest.approx(wins / (len(pos) * len(neg)))
    assert math.isnan(auroc([0.1, 0.2], [True, True]))
