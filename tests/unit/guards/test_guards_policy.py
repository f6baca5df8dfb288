"""Policy validation: bounds, unknown fields, fatal check names, JSON round trip."""

from __future__ import annotations

import pytest
from boxguard.guards import CheckResult, Detection, Policy, Verdict, verify
from boxguard.guards.types import CHECK_NAMES
from pydantic import ValidationError


def test_defaults_and_all_checks_fatal() -> None:
    p = Policy()
    assert p.fatal == frozenset(CHECK_NAMES) and 0 < p.min_confidence < 1


@pytest.mark.parametrize(
    "bad",
    [
        {"min_confidence": 1.5},
        {"min_confidence": -0.1},
        {"duplicate_iou": 0.0},
        {"self_consistency_k": -1},
        {"self_consistency_k": 1000},
        {"whole_image_frac": 0.1},
        {"fatal": ["format", "no_such_check"]},
        {"unknown_field": 1},
    ],
)
def test_out_of_range_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate(bad)


def test_frozen_and_json_round_trip() -> None:
    p = Policy(min_confidence=0.5, fatal=frozenset({"format", "geometry"}))
    with pytest.raises(ValidationError):
        p.min_confidence = 0.1  # type: ignore[misc]
    assert Policy.model_validate_json(p.model_dump_json()) == p


def test_non_fatal_failures_are_reported_not_reasons() -> None:
    p = Policy(fatal=frozenset({"format"}))
    v = verify('[{"bbox_2d": [1, 1, 50, 50], "label": "cat"}]', "the dog", (100, 100), policy=p)
    assert v.accepted and v.reasons == []
    failed = [c for c in v.checks if not c.passed]
    assert failed and all(not c.fatal for c in failed)


def test_verdict_json_round_trip() -> None:
    v = verify(
        '<think>It is the dog.</think><answer>[{"bbox_2d": [1, 2, 30, 40], "label": '
        '"dog"}]</answer>',
        "the dog",
        (100, 100),
    )
    again = Verdict.model_validate_json(v.model_dump_json())
    assert again == v and again.think == "It is the dog."
    assert isinstance(again.detections[0], Detection) and isinstance(again.checks[0], CheckResult)
