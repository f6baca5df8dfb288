"""Pick the confidence threshold from labelled results (for `boxguard eval`); pure Python.

An outcome is one evaluated request: the verdict's confidence (the lowest detection confidence,
or the no-object branch confidence; None when there were no logprobs), whether the answer was
right (REC: IoU > 0.5; no-target: zero boxes), and whether the guards already abstained for
another reason. At threshold t a request is answered iff it was not abstained and its
confidence is >= t (a None confidence cannot be thresholded, so it stays answered).

Scores follow Whitehead et al. (ECCV 2022): coverage, risk, risk-coverage AUC and
``Phi_c = mean(1 if answered and right, -c if answered and wrong, 0 if abstained)``.

Example:
    >>> rs = [(0.9, True), (0.8, True), (0.4, False), (0.3, True)]
    >>> pick_threshold(rs, "phi10")
    0.8
    >>> pick_threshold(rs, "risk", target_risk=0.25)
    0.0
    >>> pick_threshold(rs, "risk", target_risk=0.1)
    0.8
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Objective = Literal["phi1", "phi10", "phi100", "phi", "risk"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One labelled result: confidence (None = no logprobs), correctness, prior abstention."""

    confidence: float | None
    correct: bool
    abstained: bool = False


def as_outcomes(results: Iterable[Any]) -> list[Outcome]:
    """Accept Outcome, (conf, correct[, abstained]) tuples, dicts or objects with attributes."""
    out: list[Outcome] = []
    for r in results:
        if isinstance(r, Outcome):
            out.append(r)
        elif isinstance(r, dict):
            out.append(Outcome(r.get("confidence"), bool(r["correct"]),
                               bool(r.get("abstained", False))))
        elif isinstance(r, Sequence) and not isinstance(r, str):
            out.append(Outcome(r[0], bool(r[1]), bool(r[2]) if len(r) > 2 else False))
        else:
            out.append(Outcome(getattr(r, "confidence", None), bool(r.correct),
                               bool(getattr(r, "abstained", False))))
    return out


def verdict_confidence(verdict: Any) -> float | None:
    """The confidence to threshold for one Verdict: the `confidence` check's score.

    That score is the lowest detection confidence, or the branch confidence of a "no object"
    answer (which has no Detection to carry it); None without token logprobs.
    """
    for check in getattr(verdict, "checks", ()):
        if check.name == "confidence":
            return None if check.score is None else float(check.score)
    return None


def _answered(o: Outcome, threshold: float) -> bool:
    """Whether this outcome is answered at the threshold."""
    return not o.abstained and (o.confidence is None or o.confidence >= threshold)


def coverage_risk(results: Iterable[Any], threshold: float = 0.0) -> tuple[float, float]:
    """(coverage, risk) at a threshold; risk is 0 when nothing is answered."""
    outs = as_outcomes(results)
    if not outs:
        return 0.0, 0.0
    answered = [o for o in outs if _answered(o, threshold)]
    coverage = len(answered) / len(outs)
    risk = sum(1 for o in answered if not o.correct) / len(answered) if answered else 0.0
    return coverage, risk


def phi_c(results: Iterable[Any], threshold: float = 0.0, c: float = 10.0) -> float:
    """Effective reliability Phi_c at a threshold (mean of +1 / -c / 0)."""
    outs = as_outcomes(results)
    if not outs:
        return 0.0
    total = 0.0
    for o in outs:
        if _answered(o, threshold):
            total += 1.0 if o.correct else -c
    return total / len(outs)


def candidate_thresholds(results: Iterable[Any]) -> list[float]:
    """Thresholds worth trying: 0, every observed confidence, and just above the largest."""
    confs = sorted({float(o.confidence) for o in as_outcomes(results)
                    if o.confidence is not None and not o.abstained})
    cands = [0.0, *confs]
    if confs:
        cands.append(min(1.0, math.nextafter(confs[-1], math.inf)))
    return sorted(set(cands))


def risk_coverage_curve(results: Iterable[Any]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, risk) for every candidate threshold, by increasing threshold."""
    outs = as_outcomes(results)
    return [(t, *coverage_risk(outs, t)) for t in candidate_thresholds(outs)]


def aurc(results: Iterable[Any]) -> float:
    """Area under the risk-coverage curve (trapezoids over coverage; lower is better)."""
    pts = sorted((cov, risk) for _, cov, risk in risk_coverage_curve(results))
    area = 0.0
    for (c0, r0), (c1, r1) in zip(pts, pts[1:], strict=False):
        area += (c1 - c0) * (r0 + r1) / 2.0
    return area


def pick_threshold(results: Iterable[Any], objective: Objective = "phi10", *,
                   c: float | None = None, target_risk: float | None = None) -> float:
    """The min_confidence to use: maximise Phi_c, or reach a target risk at maximum coverage.

    "phi1"/"phi10"/"phi100" fix c; "phi" takes `c`. "risk" returns the lowest threshold whose
    risk is <= `target_risk`; if none reaches it, the threshold of least risk. Ties go to the
    lower threshold (more coverage). Returns 0.0 when there is nothing to threshold.
    """
    outs = as_outcomes(results)
    cands = candidate_thresholds(outs)
    if objective == "risk":
        if target_risk is None or not 0.0 <= target_risk <= 1.0:
            raise ValueError("objective 'risk' needs target_risk in [0, 1]")
        best_t, best_r = 0.0, math.inf
        for t in cands:
            cov, risk = coverage_risk(outs, t)
            if risk <= target_risk and cov > 0:
                return t
            if risk < best_r:
                best_t, best_r = t, risk
        return best_t
    costs = {"phi1": 1.0, "phi10": 10.0, "phi100": 100.0}
    if objective == "phi":
        if c is None or c < 0:
            raise ValueError("objective 'phi' needs c >= 0")
        cost = c
    elif objective in costs:
        cost = costs[objective]
    else:
        raise ValueError(f"unknown objective {objective!r}")
    best_t, best_phi = 0.0, -math.inf
    for t in cands:
        phi = phi_c(outs, t, cost)
        if phi > best_phi + 1e-12:
            best_t, best_phi = t, phi
    return best_t
