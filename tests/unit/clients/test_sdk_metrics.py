"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest
from boxguard.clients.metrics import (
    Outcome,
    best_threshold,
    coverage,
    iou,
    n_acc,
    phi,
    selective_accuracy,
    summarize,
    t_acc,
)


def test_iou_hand_values() -> None:
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # degenerate: no division by zero
    assert iou([0, 0, 4, 4], [1, 1, 3, 3]) == pytest.approx(4 / 16)


def test_phi_coverage_and_selective_accuracy() -> None:
    answered = [True, True, False, True]
    correct = [True, False, False, True]
    assert phi(answered, correct, 1) == pytest.approx((1 - 1 + 0 + 1) / 4)
    assert phi(answered, correct, 10) == pytest.approx((1 - 10 + 1) / 4)
    assert phi(answered, correct, 100) == pytest.approx((2 - 100) / 4)
    assert coverage(answered) == 0.75
    assert selective_accuracy(answered, correct) == pytest.approx(2 / 3)
    assert phi([], [], 10) is None and coverage([]) is None


def test_all_abstain() -> None:
    answered = [False, False, False]
    correct = [False, False, False]
    assert phi(answered, correct, 100) == 0.0
    assert coverage(answered) == 0.0
    assert selective_accuracy(answered, correct) is None


def _o(
    has_target: bool = True,
    answered: bool = True,
    correct: bool = True,
    raw: bool | None = None,
    empty: bool = False,
    conf: float | None = None,
    reasons: tuple[str, ...] = (),
    other: bool = False,
    error: bool = False,
) -> Outcome:
    return Outcome(
        confidence=conf,
        correct=correct if raw is None else raw,
        abstained=other,
        has_target=has_target,
        answered=answered,
        verdict_correct=correct,
        predicted_empty=empty,
        reasons=reasons,
        error=error,
    )


def test_no_target_only_set() -> None:
    outcomes = [
        _o(has_target=False, answered=True, correct=True, empty=True),  # right: no boxes
        _o(has_target=False, answered=True, correct=False, conf=0.8),  # a hallucinated box
        _o(
            has_target=False,
            answered=False,
            correct=False,
            raw=False,
            conf=0.3,
            reasons=("label_match",),
            other=True,
        ),
    ]
    assert n_acc(outcomes) == pytest.approx(1 / 3)
    assert t_acc(outcomes) is None
    s = summarize(outcomes)
    assert s["n"] == 3 and s["n_target"] == 0 and s["n_no_target"] == 3
    assert s["accuracy"] == pytest.approx(1 / 3)
    assert s["raw_accuracy"] == pytest.approx(1 / 3)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert s["selective_accuracy"] == pytest.approx(1 / 2)
    assert s["phi"] == {
        "1": pytest.approx(0.0),
        "10": pytest.approx(-3.0),
        "100": pytest.approx(-33.0),
    }
    assert s["abstentions_by_reason"] == {"label_match": 1}
    # Ranked: None (R), 0.8 (W), 0.3 (W) -> risks 0, 1/2, 2/3.
    assert s["aurc"] == pytest.approx((0 + 1 / 2 + 2 / 3) / 3)


def test_t_acc_counts_target_samples_wrongly_answered_as_empty() -> None:
    outcomes = [
        _o(answered=True, correct=False, empty=True),  # said "nothing here": T-acc miss
        _o(answered=False, correct=False),  # abstained: not a no-target answer
        _o(answered=True, correct=True),
        _o(answered=True, correct=False),  # wrong box, but not "no target"
    ]
    assert t_acc(outcomes) == pytest.approx(3 / 4)
    assert n_acc(outcomes) is None


def test_summarize_all_abstain() -> None:
    outcomes = [
        _o(answered=False, correct=False, raw=True, conf=0.9, reasons=("confidence",)),
        _o(
            answered=False,
            correct=False,
            raw=False,
            conf=0.2,
            reasons=("geometry", "label_match"),
            other=True,
        ),
    ]
    s = summarize(outcomes)
    assert s["accuracy"] == 0.0 and s["coverage"] == 0.0
    assert s["selective_accuracy"] is None
    assert s["phi"] == {"1": 0.0, "10": 0.0, "100": 0.0}
    assert s["raw_accuracy"] == 0.5
    assert s["abstentions_by_reason"] == {"confidence": 1, "geometry": 1, "label_match": 1}
    # Only the confidence-abstained sample can be answered by lowering the threshold:
    # answering it (any t <= 0.9) gives Φ10 = 1/2; equal Φ goes to the lowest threshold, 0.
    assert s["best_threshold_phi10"] == 0.0
    assert s["phi10_at_best_threshold"] == pytest.approx(0.5)
    assert s["coverage_at_best_threshold"] == pytest.approx(0.5)


def test_best_threshold_hand_values() -> None:
    # 0.9 R, 0.8 R, 0.4 W, 0.3 R: Φ10 is 1/4, 2/4, -8/4, -7/4 at 0.9, 0.8, 0.4, 0.3.
    outcomes = [
        _o(conf=c, correct=r) for c, r in [(0.9, True), (0.8, True), (0.4, False), (0.3, True)]
    ]
    assert best_threshold(outcomes) == {
        "threshold": pytest.approx(0.8),
        "phi": pytest.approx(0.5),
        "coverage": pytest.approx(0.5),
    }


def test_best_threshold_with_tied_confidences_abstains_above_the_tie() -> None:
    # 0.6 R and 0.6 W cannot be separated: answering both costs 1 - 10 < 0, so the best is
    # abstaining on everything (threshold just above 0.6).
    outcomes = [_o(conf=0.6, correct=True), _o(conf=0.6, correct=False), _o(conf=0.2, correct=True)]
    pick = best_threshold(outcomes)
    assert pick is not None
    assert pick["threshold"] > 0.6 and pick["threshold"] == pytest.approx(0.6)
    assert pick["phi"] == 0.0 and pick["coverage"] == 0.0


def test_best_threshold_none_confidence_is_always_answered() -> None:
    outcomes = [_o(conf=None, correct=False, empty=True), _o(conf=0.5, correct=True)]
    pick = best_threshold(outcomes)
    assert pick is not None
    assert pick["phi"] == pytest.approx((-10 + 1) / 2) and pick["coverage"] == 1.0
    assert best_threshold([]) is None


def test_summarize_leaves_errors_out_of_aurc_and_counts_them_wrong() -> None:
    outcomes = [
        _o(conf=0.9, correct=True),
        _o(answered=False, correct=False, error=True, reasons=("error:overloaded",)),
    ]
    s = summarize(outcomes)
    assert s["accuracy"] == 0.5 and s["errors"] == 1
    assert s["aurc"] == 0.0
    assert s["abstentions_by_reason"] == {"error:overloaded": 1}
    assert not math.isnan(s["phi"]["10"])


def test_summarize_empty() -> None:
    s = summarize([])
    assert s["n"] == 0 and s["accuracy"] is None and s["aurc"] is None
    assert s["best_threshold_phi10"] is None
