"""Frames, mapping and the geometry / cardinality checks."""

from __future__ import annotations

import pytest
from boxguard.guards import Policy, verify
from boxguard.guards.geometry import iou, map_box, resolve_frame
from boxguard.guards.parse import parse_output


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_map_box_frames() -> None:
    assert map_box((100, 200, 300, 400), "relative1000", (2000, 1000), (1, 1)) == (
        200,
        200,
        600,
        400,
    )
    assert map_box((0.5, 0.5, 1, 1), "normalized", (640, 480), (1, 1)) == (320, 240, 640, 480)
    # Qwen2.5-VL: pixels of the resized model input, scaled back to the original.
    assert map_box((322, 238, 644, 476), "pixels", (1280, 960), (644, 476)) == (640, 480, 1280, 960)


def test_resolve_frame_auto() -> None:
    assert resolve_frame("auto", parse_output("[0.1, 0.2, 0.3, 0.4]")) == "normalized"
    assert resolve_frame("auto", parse_output("[0, 0, 1, 1]")) == "pixels"
    assert (
        resolve_frame("auto", parse_output("<|box_start|>(1,2),(3,4)<|box_end|>")) == "relative1000"
    )
    assert resolve_frame("pixels", parse_output("[0.1, 0.2, 0.3, 0.4]")) == "pixels"


def test_verdict_reports_frame() -> None:
    v = verify("[10, 10, 50, 50]", "the dog", (100, 100), frame="relative1000")
    assert v.frame == "relative1000" and v.detections[0].bbox == (1, 1, 5, 5)


def test_swapped_corners() -> None:
    v = verify('{"bbox_2d": [50, 60, 10, 20], "label": "dog"}', "the dog", (100, 100))
    assert v.accepted and v.detections[0].bbox == (10, 20, 50, 60)
    assert "swapped" in v.checks[1].detail


def test_clamp_small_overshoot_and_reject_mostly_outside() -> None:
    v = verify("[80, 80, 105, 104]", "the dog", (100, 100))
    assert v.accepted and v.detections[0].bbox == (80, 80, 100, 100)
    v = verify("[90, 90, 150, 150]", "the dog", (100, 100))
    assert v.reasons == ["geometry"] and "outside" in v.checks[1].detail
    assert v.candidates[0].bbox == (90, 90, 100, 100)


def test_nan_coordinates_never_reach_the_response() -> None:
    # Found by the guards fuzz test: min/max pass NaN through, so clamping alone kept it.
    v = verify('[{"bbox_2d": [0, NaN, 0, NaN]}]', "the dog", (1, 1))
    assert not v.accepted and v.candidates == []
    v = verify('[{"bbox_2d": [NaN, 10, 50, 50]}]', "the dog", (100, 100))
    assert v.reasons == ["geometry"] and v.candidates == []


def test_public_boxes_have_area_inside_the_image() -> None:
    # Found by the vLLM tests: a random model's [0, 0, 0, 0] came back as a candidate.
    out = "[[0, 0, 0, 0], [10, 10, 50, 50], [120, 20, 150, 60], [30, 5, 60, 5]]"
    v = verify(out, "the dog", (100, 100))
    assert v.reasons == ["geometry"] and [d.bbox for d in v.candidates] == [(10, 10, 50, 50)]
    # The geometry check says why each dropped box failed, numbered as in the answer.
    why = v.checks[1].detail
    assert all(f"box {i}: " in why for i in (0, 2, 3)) and "box 3: degenerate" in why
    # Even with geometry off, nothing degenerate is returned, as detection or candidate.
    policy = Policy(fatal=frozenset({"format"}))
    v = verify("[[0, 0, 0, 0], [10, 10, 50, 50]]", "the dog", (100, 100), policy=policy)
    assert v.accepted and [d.bbox for d in v.detections] == [(10, 10, 50, 50)]
    for d in v.detections + v.candidates:
        x1, y1, x2, y2 = d.bbox
        assert 0 <= x1 < x2 <= 100 and 0 <= y1 < y2 <= 100


def test_degenerate_and_normalized_in_pixels() -> None:
    assert verify("[10, 10, 11, 40]", "the dog", (100, 100)).reasons == ["geometry"]
    v = verify("[0.1, 0.1, 0.5, 0.5]", "the dog", (100, 100), frame="pixels")
    assert v.reasons == ["geometry"] and "normalized-looking" in v.checks[1].detail


def test_whole_image_unless_asked() -> None:
    assert verify("[0, 0, 100, 100]", "the dog", (100, 100)).reasons == ["geometry"]
    assert verify("[0, 0, 100, 100]", "the entire image", (100, 100)).accepted


def test_non_fatal_geometry_drops_bad_boxes() -> None:
    policy = Policy(fatal=frozenset({"format", "cardinality"}))
    v = verify("[[0, 0, 1, 1], [10, 10, 50, 50]]", "the dog", (100, 100), policy=policy)
    assert v.accepted and [d.bbox for d in v.detections] == [(10, 10, 50, 50)]
    assert not v.checks[1].passed and not v.checks[1].fatal


def test_cardinality() -> None:
    two = '[{"bbox_2d": [0, 0, 20, 20]}, {"bbox_2d": [50, 50, 90, 90]}]'
    assert verify(two, "the dog", (100, 100)).reasons == ["cardinality"]
    assert len(verify(two, "the dogs", (100, 100), multiple=True).detections) == 2
    dup = '[{"bbox_2d": [0, 0, 20, 20]}, {"bbox_2d": [1, 0, 20, 21]}]'
    v = verify(dup, "the dog", (100, 100))
    assert v.accepted and len(v.detections) == 1 and len(v.candidates) == 2


def test_overlapping_boxes_with_different_labels_are_distinct() -> None:
    out = (
        '[{"bbox_2d": [0, 0, 20, 20], "label": "dog"}, {"bbox_2d": [1, 0, 20, 21], "label": "cat"}]'
    )
    assert "cardinality" in verify(out, "the dog", (100, 100)).reasons


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        verify("[]", "x", (0, 10))
    with pytest.raises(ValueError):
        verify("[]", "x", (10, 10), frame="inches")  # type: ignore[arg-type]


def test_no_object_answer_abstains_when_the_policy_refuses_it() -> None:
    refuse = Policy(accept_no_object=False)
    v = verify("[]", "the dog", (100, 100), policy=refuse)
    assert v.reasons == ["cardinality"] and v.detections == []
    assert "accept_no_object false" in next(c for c in v.checks if c.name == "cardinality").detail
    assert verify("[]", "the dog", (100, 100)).accepted  # the default still accepts it
    # A box is unaffected: only answers that claim no object are refused.
    assert verify('[{"bbox_2d": [0, 0, 20, 20]}]', "the dog", (100, 100), policy=refuse).accepted
