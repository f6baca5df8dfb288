"""A grounding verdict in words, for people reading the demo: what was decided and why."""

from __future__ import annotations

from boxguard.clients import GroundResult
from boxguard.guards.visual import question_for


def looks_like(expression: str) -> str:
    """What the visual re-check asks the crop to be: 'a red circle' for 'the red circle'."""
    return question_for(expression).removeprefix("Is this ").rstrip("?")


def _check_words(name: str, passed: bool, score: float | None, detail: str, expression: str) -> str:
    """One check's outcome as a short sentence fragment."""
    if name == "visual_check" and score is not None:
        verb = "looks" if passed else "does not look"
        return f"the crop {verb} like {looks_like(expression)}, P(yes)={score:.2f}"
    if name == "confidence" and score is not None:
        return f"the model was unsure of its box ({detail})"
    if name == "cardinality" and not passed and score == 0:
        return "the model answered [] (no such object), which no check can verify"
    if name == "label_match":
        return f"the model named another object ({detail})"
    if name == "self_consistency":
        return f"resampled answers disagree ({detail})"
    return f"{name}: {detail}" if detail else name


def verdict_words(result: GroundResult, expression: str) -> str:
    """The verdict and its main reason, e.g.
    'abstained: the crop does not look like a red circle, P(yes)=0.08'.

    Example:
        >>> verdict_words(result, "the red circle")  # doctest: +SKIP
        'accepted: the crop looks like a red circle, P(yes)=0.97'
    """
    checks = {c.name: c for c in result.checks}
    if result.abstained:
        failed = [c for c in result.checks if not c.passed and c.fatal]
        # The visual check speaks for the image; name it first when it failed.
        failed.sort(key=lambda c: c.name != "visual_check")
        words = [_check_words(c.name, c.passed, c.score, c.detail, expression) for c in failed[:2]]
        return "abstained: " + ("; ".join(words) or "unspecified")
    if not result.detections:
        return "accepted: no such object in the image (the model answered [])"
    visual = checks.get("visual_check")
    if visual is not None and visual.score is not None:
        return "accepted: " + _check_words(
            visual.name, True, visual.score, visual.detail, expression
        )
    return "accepted: every check passed (no visual re-check)"
