"""think_consistency: the trace's final decision, selected entity and quoted boxes."""

from __future__ import annotations

import pytest
from boxguard.guards import CheckResult, verify
from boxguard.guards.think import analyze_think

DEMO = "the red circle left of the blue square"
BOX = '[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]'


def _think_check(think: str, answer: str = BOX, expr: str = DEMO) -> CheckResult:
    """The think_consistency result for one R1-style output."""
    v = verify(f"<think>{think}</think><answer>{answer}</answer>", expr, (224, 224))
    return next(c for c in v.checks if c.name == "think_consistency")


def test_demo_trace_accepted() -> None:
    c = _think_check(
        "I see a red circle, a blue square and a green star. The target is the red "
        "circle left of the blue square. It is the red circle."
    )
    assert c.passed and "red circle" in c.detail


def test_no_target_trace_with_empty_answer() -> None:
    c = _think_check(
        "I see a red circle and a green star. There is no yellow hexagon.",
        "[]",
        "the yellow hexagon",
    )
    assert c.passed and "absent" in c.detail


@pytest.mark.parametrize(
    "think",
    [
        "There is no yellow hexagon.",
        "I cannot find a yellow hexagon anywhere.",
        "The yellow hexagon is not present in the image.",
        "No such object exists, nothing matches.",
    ],
)
def test_absent_but_box_returned(think: str) -> None:
    c = _think_check(think, '[{"bbox_2d": [10, 20, 50, 60]}]', "the yellow hexagon")
    assert not c.passed and "absent" in c.detail


def test_absence_of_another_object_is_not_about_target() -> None:
    assert _think_check("There is no bus, so the target is the red circle.").passed
    assert _think_check(
        "There is no blue circle. It is the red circle.", expr="the red circle"
    ).passed


def test_last_decision_wins() -> None:
    c = _think_check("At first there is no red circle. Looking again, it is the red circle.")
    assert c.passed
    c = _think_check("The target is the red circle. On second thought, there is no red circle.")
    assert not c.passed


def test_selects_other_entity() -> None:
    c = _think_check("The target is the blue square.", '[{"bbox_2d": [10, 20, 50, 60]}]')
    assert not c.passed and "square" in c.detail


def test_selects_but_empty_answer() -> None:
    assert not _think_check("It is the red circle.", "[]").passed


def test_selection_conflicts_with_label() -> None:
    c = _think_check(
        "It is the red circle.", '[{"bbox_2d": [10, 20, 50, 60], "label": "green star"}]'
    )
    assert not c.passed


def test_quoted_boxes() -> None:
    assert _think_check("The red circle is at [10, 20, 50, 60]. It is the red circle.").passed
    c = _think_check("The red circle is at [150, 150, 200, 200]. It is the red circle.")
    assert not c.passed and c.score == 0.0


def test_no_think_is_not_applicable() -> None:
    v = verify(BOX, DEMO, (224, 224))
    c = next(c for c in v.checks if c.name == "think_consistency")
    assert c.passed and not c.ran and "not run" in c.detail


def test_known_case() -> None:
    info = analyze_think(
        "There is a metal pole and a man in blue shirt next to it. The man in "
        "blue shirt is the target.",
        "metal pole",
    )
    assert info.decision == "select" and info.entity is not None and info.entity.head == "man"
