"""The evaluation's metrics: per-sample outcomes, N-acc/T-acc and the report summary.

IoU, coverage, Φc, the risk–coverage curve and AURC are guards' (`boxguard.guards.geometry`,
`boxguard.guards.threshold`), the one implementation the threshold picker uses too; they are
re-exported here.

Conventions (see /work/shared/QWEN-FACTS.md, "Scoring conventions"):

- REC: a target sample is right when the answer's IoU with the ground truth is > 0.5 (strict).
- gRefCOCO: a no-target sample is right only when answered with zero boxes.
- Whitehead et al. (ECCV 2022): ``Φc = mean(1 if answered and right, -c if answered and wrong,
  0 if abstained)``; risk–coverage curves rank samples by confidence.

A confidence of ``None`` (an empty answer, or a server without logprobs) cannot be thresholded,
so it counts as answered at every threshold: it ranks above every number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from boxguard.guards import threshold as guard_threshold
from boxguard.guards.geometry import iou
from boxguard.guards.threshold import Outcome, aurc, coverage, phi, risk_coverage_curve

from .risk_bounds import clopper_pearson

__all__ = [
    "Outcome",
    "aurc",
    "coverage",
    "coverage_at_risk",
    "iou",
    "n_acc",
    "phi",
    "best_threshold",
    "risk_coverage_curve",
    "selective_accuracy",
    "summarize",
    "t_acc",
]

IOU_THRESHOLD = 0.5
RISK_LEVELS = (0.01, 0.05, 0.1)


def coverage_at_risk(outcomes: Sequence[Outcome], risk: float) -> float:
    """The largest coverage of the raw answers ranked by confidence whose risk is <= `risk`
    (0 when even the most confident exceed it).

    Example:
        >>> coverage_at_risk([Outcome(0.9, True), Outcome(0.5, False)], 0.1)
        0.5
    """
    return max((c for c, r in risk_coverage_curve(outcomes) if r <= risk), default=0.0)


def selective_accuracy(answered: Sequence[bool], correct: Sequence[bool]) -> float | None:
    """Accuracy over the answered samples only (None when nothing was answered)."""
    hits = [c for a, c in zip(answered, correct, strict=True) if a]
    return sum(hits) / len(hits) if hits else None


def best_threshold(outcomes: Sequence[Outcome], c: float = 10.0) -> dict[str, float] | None:
    """The min_confidence maximizing Φc, via ``boxguard.guards.threshold.pick_threshold``.

    At threshold t a sample is answered iff no other guard abstained and its confidence is
    >= t (None: always); its correctness is that of the model's raw top answer. Returns
    ``{"threshold", "phi", "coverage"}`` at the pick, None for no samples.

    Example:
        >>> best_threshold([Outcome(0.9, True, answered=True, verdict_correct=True),
        ...                 Outcome(0.4, False, answered=True)])
        {'threshold': 0.9, 'phi': 0.5, 'coverage': 0.5}
    """
    if not outcomes:
        return None
    t = guard_threshold.pick_threshold(outcomes, "phi", c=c)
    cov, _ = guard_threshold.coverage_risk(outcomes, t)
    return {"threshold": t, "phi": guard_threshold.phi_c(outcomes, t, c), "coverage": cov}


def n_acc(outcomes: Sequence[Outcome]) -> float | None:
    """gRefCOCO N-acc: share of no-target samples answered with no boxes."""
    rows = [o for o in outcomes if not o.has_target]
    return sum(o.answered and o.predicted_empty for o in rows) / len(rows) if rows else None


def t_acc(outcomes: Sequence[Outcome]) -> float | None:
    """gRefCOCO T-acc: share of target samples not wrongly answered as 'no target'."""
    rows = [o for o in outcomes if o.has_target]
    return sum(not (o.answered and o.predicted_empty) for o in rows) / len(rows) if rows else None


def summarize(
    outcomes: Sequence[Outcome], *, phi_costs: Sequence[int] = (1, 10, 100)
) -> dict[str, Any]:
    """Every report metric of a list of outcomes (see report.json in docs/client.md).

    Abstentions and errors count as wrong in ``accuracy``; the risk–coverage area and the Φ10
    threshold use the model's raw top answer and its confidence, errors left out.

    Example:
        >>> summarize([Outcome(0.8, True, answered=True, verdict_correct=True)])["accuracy"]
        1.0
    """
    n = len(outcomes)
    answered = [o.answered for o in outcomes]
    correct = [o.verdict_correct for o in outcomes]
    scored = [o for o in outcomes if not o.error]
    reasons: Counter[str] = Counter()
    for o in outcomes:
        if not o.answered:
            reasons.update(dict.fromkeys(o.reasons or ("unspecified",), 1))
    pick = best_threshold(scored, c=10.0)
    return {
        "n": n,
        "accuracy": sum(correct) / n if n else None,
        "raw_accuracy": sum(o.correct for o in outcomes) / n if n else None,
        "coverage": coverage(answered),
        "selective_accuracy": selective_accuracy(answered, correct),
        "selective_risk": None if not any(answered) else 1 - sum(correct) / sum(answered),
        "selective_risk_ci95": list(clopper_pearson(sum(answered) - sum(correct), sum(answered)))
        if any(answered)
        else None,
        "coverage_at_risk": {f"{r:g}": coverage_at_risk(scored, r) for r in RISK_LEVELS},
        "aurc": aurc((o.confidence, o.correct) for o in scored),
        "phi": {str(c): phi(answered, correct, float(c)) for c in phi_costs},
        "n_acc": n_acc(outcomes),
        "t_acc": t_acc(outcomes),
        "n_target": sum(o.has_target for o in outcomes),
        "n_no_target": sum(not o.has_target for o in outcomes),
        "errors": sum(o.error for o in outcomes),
        "abstentions_by_reason": dict(reasons.most_common()),
        "best_threshold_phi10": None if pick is None else pick["threshold"],
        "phi10_at_best_threshold": None if pick is None else pick["phi"],
        "coverage_at_best_threshold": None if pick is None else pick["coverage"],
    }
