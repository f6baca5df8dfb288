"""Selective-prediction metrics and the confidence threshold picker; pure Python.

The one implementation of coverage, risk, the risk–coverage curve, AURC, Φc and AUROC: the
threshold picker here, the evaluation reports (`boxguard.clients.metrics`), the demo trainer
and the benchmarks use it.

An outcome is one evaluated request: the verdict's confidence (`verdict_confidence`; None when
there were no logprobs), whether the answer was right (REC: IoU > 0.5; no-target: zero boxes),
and whether the guards already abstained for another reason. At threshold t a request is
answered iff it was not abstained and its confidence is >= t (a None confidence cannot be
thresholded, so it stays answered).

Scores follow Whitehead et al. (ECCV 2022) for ``Φc = mean(1 if answered and right, -c if
answered and wrong, 0 if abstained)`` and Geifman et al. (ICLR 2019) for AURC: the mean, over
k = 1..n, of the risk of the k most confident outcomes (the area under the risk–coverage curve
at coverages 1/n … 1, with no invented point at coverage 0).

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

from .types import Verdict

Objective = Literal["phi1", "phi10", "phi100", "phi", "risk"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One labelled result: what the threshold picker and the evaluation reports score.

    The first three fields are the picker's; an evaluation (`boxguard.clients.metrics`) fills
    the rest from the served verdict.

    Example:
        >>> Outcome(0.9, correct=True).answered, Outcome(None, False, abstained=True).abstained
        (False, True)
    """

    confidence: float | None  # None: no logprobs, so no threshold can drop it
    correct: bool  # the model's own answer is right, whatever the verdict
    abstained: bool = False  # another check abstained: no confidence threshold can undo it
    has_target: bool = True  # the expression names an object in the image
    answered: bool = False  # the served verdict accepted the answer
    verdict_correct: bool = False  # accepted and right (an abstention counts as wrong)
    predicted_empty: bool = False  # the answer holds no box
    reasons: tuple[str, ...] = ()  # the abstention's reasons
    error: bool = False  # the request failed: left out of the confidence metrics


def as_outcomes(results: Iterable[Any]) -> list[Outcome]:
    """Accept Outcome, (conf, correct[, abstained]) tuples, dicts or objects with attributes."""
    out: list[Outcome] = []
    for r in results:
        if isinstance(r, Outcome):
            out.append(r)
        elif isinstance(r, dict):
            out.append(
                Outcome(r.get("confidence"), bool(r["correct"]), bool(r.get("abstained", False)))
            )
        elif isinstance(r, Sequence) and not isinstance(r, str):
            out.append(Outcome(r[0], bool(r[1]), bool(r[2]) if len(r) > 2 else False))
        else:
            out.append(
                Outcome(
                    getattr(r, "confidence", None),
                    bool(r.correct),
                    bool(getattr(r, "abstained", False)),
                )
            )
    return out


def verdict_confidence(verdict: Verdict) -> float | None:
    """The confidence to threshold for one Verdict (or a server response, which is one).

    The `confidence` check's score: the lowest detection confidence, or the branch confidence
    of a "no object" answer (which has no Detection to carry it). Without that score (no
    token logprobs, or the check did not run), the model's first box's own confidence; else
    None.

    Example:
        >>> verdict_confidence(Verdict(status="abstained",
        ...     candidates=[{"bbox": (0, 0, 1, 1), "confidence": 0.25}]))
        0.25
    """
    for check in verdict.checks:
        if check.name == "confidence" and check.score is not None:
            return float(check.score)
    boxes = verdict.detections or verdict.candidates
    return boxes[0].confidence if boxes else None


def coverage(answered: Sequence[bool]) -> float | None:
    """Share of outcomes answered (None for none)."""
    return sum(answered) / len(answered) if answered else None


def phi(answered: Sequence[bool], correct: Sequence[bool], c: float) -> float | None:
    """Φc: mean of 1 (answered, right), -c (answered, wrong), 0 (abstained); None for none.

    Example:
        >>> phi([True, True, False], [True, False, False], c=10)
        -3.0
    """
    if not answered:
        return None
    total = sum((1.0 if r else -c) for a, r in zip(answered, correct, strict=True) if a)
    return total / len(answered)


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties count half);
    NaN without both kinds. Mann–Whitney U from average ranks, O(n log n).

    Example:
        >>> auroc([0.9, 0.8, 0.1], [True, True, False]), auroc([0.5, 0.5], [True, False])
        (1.0, 0.5)
    """
    pairs = sorted(zip(scores, labels, strict=True), key=lambda pair: pair[0])
    n_pos = sum(1 for _, positive in pairs if positive)
    n_neg = len(pairs) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    rank_sum = 0.0
    start = 0
    while start < len(pairs):
        end = start
        while end < len(pairs) and pairs[end][0] == pairs[start][0]:
            end += 1
        tied_positives = sum(1 for _, positive in pairs[start:end] if positive)
        rank_sum += tied_positives * (start + 1 + end) / 2  # the group's average 1-based rank
        start = end
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _answered(o: Outcome, threshold: float) -> bool:
    """Whether this outcome is answered at the threshold."""
    return not o.abstained and (o.confidence is None or o.confidence >= threshold)


def coverage_risk(results: Iterable[Any], threshold: float = 0.0) -> tuple[float, float]:
    """(coverage, risk) at a threshold; risk is 0 when nothing is answered."""
    outs = as_outcomes(results)
    answered = [_answered(o, threshold) for o in outs]
    errors = sum(a and not o.correct for a, o in zip(answered, outs, strict=True))
    return coverage(answered) or 0.0, errors / sum(answered) if any(answered) else 0.0


def phi_c(results: Iterable[Any], threshold: float = 0.0, c: float = 10.0) -> float:
    """Effective reliability Φc at a threshold (0 for no outcomes)."""
    outs = as_outcomes(results)
    value = phi([_answered(o, threshold) for o in outs], [o.correct for o in outs], c)
    return 0.0 if value is None else value


def candidate_thresholds(results: Iterable[Any]) -> list[float]:
    """Thresholds worth trying: 0, every observed confidence, and just above the largest."""
    confs = sorted(
        {
            float(o.confidence)
            for o in as_outcomes(results)
            if o.confidence is not None and not o.abstained
        }
    )
    cands = [0.0, *confs]
    if confs:
        cands.append(min(1.0, math.nextafter(confs[-1], math.inf)))
    return sorted(set(cands))


def _rank(o: Outcome) -> float:
    """Sort key, most confident first: None above every number, prior abstentions last."""
    if o.abstained:
        return -math.inf
    return math.inf if o.confidence is None else float(o.confidence)


def _tie_groups(outs: list[Outcome]) -> list[tuple[int, int]]:
    """(size, errors) of each group of equal rank, most confident first."""
    groups: dict[float, list[int]] = {}
    for o in outs:
        group = groups.setdefault(_rank(o), [0, 0])
        group[0] += 1
        group[1] += 0 if o.correct else 1
    return [(groups[key][0], groups[key][1]) for key in sorted(groups, reverse=True)]


def risk_coverage_curve(results: Iterable[Any]) -> list[tuple[float, float]]:
    """(coverage, risk) at each distinct confidence, most confident first.

    Outcomes are ranked by confidence (None first: it cannot be thresholded away; prior
    abstentions last: no threshold answers them). Tied confidences enter together.

    Example:
        >>> risk_coverage_curve([(0.9, True), (0.9, False), (0.5, True)])
        [(0.6666666666666666, 0.5), (1.0, 0.3333333333333333)]
    """
    outs = as_outcomes(results)
    points: list[tuple[float, float]] = []
    taken = errors = 0
    for size, errs in _tie_groups(outs):
        taken += size
        errors += errs
        points.append((taken / len(outs), errors / taken))
    return points


def aurc(results: Iterable[Any]) -> float | None:
    """Area under the risk–coverage curve: mean over k of the risk of the k most confident.

    Within a tie group the order is arbitrary, so the risk at each k is its expectation
    (errors spread evenly over the group). Lower is better; None for no outcomes.

    Example:
        >>> round(aurc([(0.9, True), (0.8, False), (0.7, True), (0.6, True), (0.5, False)]), 4)
        0.2967
    """
    outs = as_outcomes(results)
    if not outs:
        return None
    total = 0.0
    taken = 0
    errors = 0.0
    for size, errs in _tie_groups(outs):
        rate = errs / size
        for j in range(1, size + 1):
            total += (errors + j * rate) / (taken + j)
        taken += size
        errors += errs
    return total / len(outs)


def pick_threshold(
    results: Iterable[Any],
    objective: Objective = "phi10",
    *,
    c: float | None = None,
    target_risk: float | None = None,
) -> float:
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
