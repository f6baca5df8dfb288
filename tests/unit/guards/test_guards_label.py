"""label_match: head nouns, synonyms, distractor nouns, think objects, attribute conflicts."""

from __future__ import annotations

import pytest
from boxguard.guards import Policy, verify
from boxguard.guards.label import judge_label

DEMO = "the red circle left of the blue square"
P = Policy(label_embeddings=False)


def _label(expr: str, label: str, think: str | None = None) -> bool:
    """Run verify on a single plausible box with `label` and return label_match's outcome."""
    out = f'[{{"bbox_2d": [10, 10, 60, 60], "label": "{label}"}}]'
    if think is not None:
        out = f"<think>{think}</think><answer>{out}</answer>"
    v = verify(out, expr, (100, 100), policy=P)
    return next(c for c in v.checks if c.name == "label_match").passed


@pytest.mark.parametrize(
    ("expr", "label", "ok"),
    [
        (DEMO, "red circle", True),
        (DEMO, "circle", True),
        (DEMO, "blue square", False),
        (DEMO, "square", False),
        ("the red circle", "blue circle", False),
        ("the small star", "large star", False),
        ("the small star", "star", True),
        ("metal pole", "man in blue shirt", False),
        ("metal pole", "Metal Poles", True),
        ("the pole left of the bus", "bus", False),
        ("the woman holding an umbrella", "umbrella", False),
        ("the woman holding an umbrella", "lady", True),
        ("the guy in red", "man", True),
        ("the man on the left", "person", True),
        ("an animal", "zebra", True),
        ("the laptop", "computer", True),
        ("the pole", "flagpole", True),
        ("the one on the left", "dog", True),
        ("the one left of the cat", "cat", False),
        ("the dog", "banana", False),
        ("the leftmost green star", "green star", True),
        ("the hexagon", "shape", True),
    ],
)
def test_label_cases(expr: str, label: str, ok: bool) -> None:
    assert _label(expr, label) is ok


def test_no_label_is_not_applicable() -> None:
    v = verify("[10, 10, 60, 60]", "the dog", (100, 100), policy=P)
    check = next(c for c in v.checks if c.name == "label_match")
    assert check.passed and not check.ran and "not run" in check.detail


def test_label_naming_think_object() -> None:
    ok, _, detail = judge_label("vase", "the lamp", "I see a lamp and a vase on the table.", P)
    assert not ok and "think trace" in detail


def test_unknown_label_fails_closed_without_embeddings() -> None:
    ok, score, detail = judge_label("lantern", "the lamp", None, P)
    assert not ok and "not in the lexicon" in detail and score == 0.0


def test_reason_names_the_distractor() -> None:
    v = verify('[{"bbox_2d": [10, 10, 60, 60], "label": "blue square"}]', DEMO, (100, 100))
    assert v.reasons == ["label_match"] and "'square'" in v.checks[3].detail
