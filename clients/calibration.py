"""`boxguard calibrate`: thresholds whose risk of accepted answers is certified, as a policy file.

Learn then Test (Angelopoulos et al. 2021) on recorded signals. Each labelled sample was sent
once under `MEASURE_POLICY` (every check runs, only `format` vetoes), so its token confidence,
P(yes) of the visual re-check and every check's verdict are known. A candidate policy accepts a
sample when the checks it keeps fatal pass and its confidence and P(yes) reach the thresholds;
an accepted sample is wrong when its top box has IoU <= 0.5 with the truth, it boxes a no-target
expression, or it answers `[]` for a present target. Along each pre-ordered path of thresholds,
strict to loose, the null "risk of accepted > α" is tested with the exact binomial tail of the
errors among the accepted (fixed-sequence testing, δ split evenly over the paths); the certified
policy of largest coverage is chosen. The text checks (`label_match`, `think_consistency`) are
not fixed vetoes: each path comes once with every subset of them fatal, so the data decide
whether a veto removes enough wrong answers to pay for the right ones it refuses, and the policy
written names its `fatal` checks. See docs/calibration.md for what this promises.

Example:
    >>> rows = [{"id": str(i), "has_target": True, "has_box": True, "p_yes": i / 200,
    ...          "correct": i >= 100 or i % 4 == 0, "confidence": None} for i in range(200)]
    >>> choice = calibrate(load_signal_rows(rows), alpha=0.1, delta=0.1)
    >>> choice.certified, choice.fields["visual_min_yes"], choice.coverage
    (True, 0.5, 0.5)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from boxguard.guards.types import CHECK_NAMES

from .risk_bounds import binomial_p_value, fixed_sequence, min_accepted, upper_bound

__all__ = [
    "MEASURE_POLICY",
    "Choice",
    "Signals",
    "calibrate",
    "load_signal_rows",
    "load_signals",
    "smallest_certifiable_risk",
]

# Sent with every calibration request: every check runs and reports, none but `format` vetoes.
MEASURE_POLICY: dict[str, Any] = {
    "fatal": ["format"],
    "visual_check": True,
    "visual_min_yes": 0.0,
    "min_confidence": 0.0,
    "accept_no_object": True,
}
# The checks calibration thresholds itself; every other check keeps its recorded verdict.
THRESHOLDED = frozenset({"confidence", "visual_check", "self_consistency"})
# Checks calibration keeps fatal or not, whichever certifies the larger coverage.
OPTIONAL_VETOES: tuple[str, ...] = ("label_match", "think_consistency")
# Pre-registered threshold grid, strict to loose: dense near 1 (P(yes) of a trained re-check and
# token confidences crowd there), then every 0.05.
GRID: tuple[float, ...] = tuple(
    sorted(
        {round(1 - 10 ** (-e / 10), 6) for e in range(10, 41)} | {i / 20 for i in range(19)},
        reverse=True,
    )
)
_GRID = np.array(GRID)
METHOD = (
    "Learn then Test: exact binomial-tail p-values of the errors among accepted samples, "
    "fixed-sequence testing along strict-to-loose threshold paths, delta split over the paths"
)


@dataclass(frozen=True)
class Signals:
    """One labelled sample's recorded signals (a row of an eval report's `signals`)."""

    id: str
    has_target: bool
    has_box: bool
    correct: bool  # the model's raw top answer is right
    confidence: float | None
    p_yes: float | None
    checks: dict[str, bool] = field(default_factory=dict)
    scores: dict[str, float | None] = field(default_factory=dict)  # each check's score

    def gates(self, dropped: frozenset[str] = frozenset()) -> bool:
        """The checks calibration does not threshold, less `dropped`, all passed (a `[]`
        answer's cardinality verdict is left out: accept_no_object decides it)."""
        return all(
            passed
            for name, passed in self.checks.items()
            if name not in THRESHOLDED
            and name not in dropped
            and (self.has_box or name != "cardinality")
        )


def load_signal_rows(rows: Iterable[dict[str, Any]]) -> list[Signals]:
    """Signals from dict rows: compact signal rows, or eval samples.jsonl rows (`signals` key;
    failed requests, which have none, are left out)."""
    out = []
    for row in rows:
        sig = row.get("signals", row)
        if sig is None:
            continue
        out.append(
            Signals(
                id=str(sig["id"]),
                has_target=bool(sig["has_target"]),
                has_box=bool(sig["has_box"]),
                correct=bool(sig["correct"]),
                confidence=sig.get("confidence"),
                p_yes=sig.get("p_yes"),
                checks=dict(sig.get("checks") or {}),
                scores=dict(sig.get("scores") or {}),
            )
        )
    return out


def load_signals(path: Path) -> list[Signals]:
    """Signals from a JSONL file (compact rows, or an eval report's samples.jsonl / its folder)."""
    if path.is_dir():
        path = path / "samples.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return load_signal_rows(json.loads(line) for line in lines if line.strip())


@dataclass(frozen=True)
class ThresholdPath:
    """One pre-ordered path: one signal's threshold swept over GRID, strict to loose, with the
    optional vetoes in `dropped` not fatal."""

    # "p_yes" (visual_min_yes), "confidence" (min_confidence), or "gates": no threshold, the
    # vetoes alone (for signals with neither score, e.g. stored outputs without logprobs).
    signal: str
    accept_no_object: bool
    dropped: frozenset[str] = frozenset()  # optional vetoes that only report on this path
    optional: frozenset[str] = frozenset()  # optional vetoes the data let calibration weigh

    @property
    def name(self) -> str:
        """E.g. 'visual_min_yes, accept_no_object false, label_match not fatal'."""
        field_name = {"p_yes": "visual_min_yes", "confidence": "min_confidence"}.get(
            self.signal, "checks only"
        )
        dropped = "".join(f", {c} not fatal" for c in OPTIONAL_VETOES if c in self.dropped)
        return f"{field_name}, accept_no_object {str(self.accept_no_object).lower()}{dropped}"

    def fields(self, t: float) -> dict[str, Any]:
        """The Policy fields at threshold t (a P(yes) threshold of 0 turns the re-check off);
        `fatal` is written when the path weighed optional vetoes."""
        if self.signal == "p_yes":
            visual = {"visual_check": t > 0, "visual_min_yes": t} if t > 0 else {}
            out: dict[str, Any] = {"visual_check": False, **visual, "min_confidence": 0.0}
        elif self.signal == "gates":
            out = {"visual_check": False, "min_confidence": 0.0}
        else:
            out = {"visual_check": False, "min_confidence": t}
        out["accept_no_object"] = self.accept_no_object
        if self.optional:
            out["fatal"] = [c for c in CHECK_NAMES if c not in self.dropped]
        return out

    def scores(self, signals: Sequence[Signals]) -> np.ndarray:
        """Each sample's score: accepted at threshold t iff score >= t (+inf: always, -inf:
        never)."""
        out = np.empty(len(signals))
        for i, s in enumerate(signals):
            if not s.gates(self.dropped) or (not s.has_box and not self.accept_no_object):
                out[i] = -np.inf
            elif self.signal == "gates":
                out[i] = np.inf
            elif self.signal == "p_yes":
                out[i] = np.inf if not s.has_box or s.p_yes is None else s.p_yes
            else:
                out[i] = np.inf if s.confidence is None else s.confidence
        return out


def paths(signals: Sequence[Signals]) -> list[ThresholdPath]:
    """The paths the recorded signals allow: P(yes) (when every gated box has one) and token
    confidence (when any sample has one), or the checks alone when neither was recorded; each
    with accept_no_object off and on, and each with
    every subset of the optional vetoes that fail somewhere made not fatal (all fatal first).

    Which vetoes fail is read from the unlabelled verdicts, never from which answers are right.
    """
    optional = frozenset(
        c for c in OPTIONAL_VETOES if any(s.checks.get(c) is False for s in signals)
    )
    subsets = [
        frozenset(c for i, c in enumerate(sorted(optional)) if m >> i & 1)
        for m in range(2 ** len(optional))
    ]
    gated_boxes = [s for s in signals if s.has_box and s.gates(optional)]
    have_yes = bool(gated_boxes) and all(s.p_yes is not None for s in gated_boxes)
    have_conf = any(s.confidence is not None for s in signals)
    signal_names = [n for n, ok in (("p_yes", have_yes), ("confidence", have_conf)) if ok]
    # Neither score recorded: what is left to certify is the vetoes themselves.
    signal_names = signal_names or ["gates"]
    return [
        ThresholdPath(n, empty, dropped, optional)
        for dropped in subsets
        for empty in (False, True)
        for n in signal_names
    ]


def wrong_mask(signals: Sequence[Signals]) -> np.ndarray:
    """True where accepting the raw answer would be wrong."""
    return np.array([not s.correct for s in signals], dtype=bool)


@dataclass
class Choice:
    """The outcome of calibrating one risk level: a certified policy, or why there is none."""

    alpha: float
    delta: float
    n: int
    certified: bool
    fields: dict[str, Any] = field(default_factory=dict)  # Policy fields; empty if not certified
    path: str | None = None
    accepted: int = 0
    errors: int = 0
    upper_bound: float | None = None  # (1 - δ/paths) Clopper–Pearson bound at the chosen point
    paths: int = 0

    @property
    def coverage(self) -> float:
        """Share of calibration samples the chosen policy accepts (0 when none is certified)."""
        return self.accepted / self.n if self.n else 0.0

    @property
    def empirical_risk(self) -> float | None:
        """Wrong among accepted calibration samples."""
        return self.errors / self.accepted if self.accepted else None


def calibrate_scores(
    scores: Sequence[np.ndarray],
    wrong: np.ndarray,
    path_list: Sequence[ThresholdPath],
    alpha: float,
    delta: float,
) -> Choice:
    """Learn then Test on precomputed path scores (rows of samples; the simulation's fast path).

    Grid points that accept fewer samples than ``min_accepted(α, δ/paths)`` (too few to certify
    α even at half that observed risk) are a strict prefix of each path, since acceptance only
    grows along it; they are passed over untested, so testing starts where it has power. The
    start depends on the unlabelled signals only, never on which answers are right.
    """
    n = len(wrong)
    choice = Choice(alpha, delta, n, certified=False, paths=len(path_list))
    if not path_list:
        return choice
    level = delta / len(path_list)
    n_start = min_accepted(alpha, level)
    for path, score in zip(path_list, scores, strict=True):
        counts = list(zip(_at_least(score), _at_least(score[wrong]), strict=True))
        start = next((i for i, (k, _) in enumerate(counts) if k >= n_start), len(counts))
        tested = counts[start:]
        rejected = fixed_sequence((binomial_p_value(e, k, alpha) for k, e in tested), level)
        for offset in range(rejected):
            k, e = tested[offset]
            if k > choice.accepted:
                choice.certified = True
                choice.fields = path.fields(GRID[start + offset])
                choice.path, choice.accepted, choice.errors = path.name, k, e
    if choice.certified:
        choice.upper_bound = upper_bound(choice.errors, choice.accepted, level)
    return choice


def _at_least(scores: np.ndarray) -> list[int]:
    """How many scores are >= each GRID threshold."""
    ordered = np.sort(scores)
    return [int(v) for v in len(ordered) - np.searchsorted(ordered, _GRID, side="left")]


def calibrate(signals: Sequence[Signals], alpha: float, delta: float) -> Choice:
    """The certified policy of largest calibration coverage at risk α, confidence 1 − δ."""
    if not 0.0 < alpha < 1.0 or not 0.0 < delta < 1.0:
        raise ValueError("risk and delta must be in (0, 1)")
    path_list = paths(signals)
    scores = [p.scores(signals) for p in path_list]
    return calibrate_scores(scores, wrong_mask(signals), path_list, alpha, delta)


def smallest_certifiable_risk(signals: Sequence[Signals], delta: float) -> float | None:
    """The smallest risk on a 0.005 grid that these signals certify at δ (None: not even 0.995).

    Example:
        >>> smallest_certifiable_risk([], 0.1) is None
        True
    """
    path_list = paths(signals)
    scores = [p.scores(signals) for p in path_list]
    wrong = wrong_mask(signals)
    for step in range(1, 200):
        alpha = step / 200
        if calibrate_scores(scores, wrong, path_list, alpha, delta).certified:
            return alpha
    return None


def _note(choice: Choice, source: dict[str, Any]) -> dict[str, Any]:
    """The `_calibration` note of one certified risk."""
    return {
        "risk": choice.alpha,
        "delta": choice.delta,
        "bound": f"P(risk of accepted answers <= {choice.alpha:g}) >= {1 - choice.delta:g} "
        "over the calibration draw (exchangeable data)",
        "coverage": round(choice.coverage, 4),
        "empirical_risk": None
        if choice.empirical_risk is None
        else round(choice.empirical_risk, 4),
        "accepted": choice.accepted,
        "errors": choice.errors,
        "n": choice.n,
        "upper_bound_at_choice": None
        if choice.upper_bound is None
        else round(choice.upper_bound, 4),
        "path": choice.path,
        "method": f"{METHOD} ({choice.paths} paths)",
        **source,
    }


def policy_document(
    choices: Sequence[Choice],
    *,
    model: dict[str, str | None],
    data: str,
    date: str,
    smallest: float | None = None,
) -> dict[str, Any]:
    """The policy file `calibrate` writes: the first certified risk's Policy fields at the top,
    every certified risk under `_by_risk`, the rest under `_not_certified`.

    Raises ValueError when no risk is certified (such a policy would abstain on everything).

    Example:
        >>> c = Choice(0.2, 0.1, 100, True, {"min_confidence": 0.5}, "p", 50, 5, 0.18, 2)
        >>> doc = policy_document([c], model={"name": "m", "family": None}, data="v.jsonl",
        ...                       date="2026-01-01")
        >>> doc["min_confidence"], list(doc["_by_risk"]), doc["_calibration"]["coverage"]
        (0.5, ['0.2'], 0.5)
    """
    certified = [c for c in choices if c.certified]
    if not certified:
        raise ValueError("no risk level is certified on this data")
    source = {"model": model, "data": data, "date": date}
    primary = certified[0]
    doc: dict[str, Any] = {
        "_comment": f"written by `boxguard calibrate` on {data}; the top-level fields are the "
        f"policy for risk {primary.alpha:g}; recalibrate whenever the model changes",
        "_model": model,
        "_calibration": _note(primary, source),
        **primary.fields,
        "_by_risk": {
            f"{c.alpha:g}": {**c.fields, "_calibration": _note(c, source)} for c in certified
        },
    }
    missed = [c for c in choices if not c.certified]
    if missed:
        doc["_not_certified"] = {
            f"{c.alpha:g}": {"coverage": 0.0, "n": c.n, "smallest_certifiable_risk": smallest}
            for c in missed
        }
    return doc
