"""Points end to end in the guards: the parser's forms, real ScreenSpot outputs, every check."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from boxguard.guards import Detection, Evidence, Policy, TokenLogprob, prepare, verify
from boxguard.guards.parse import parse_output
from boxguard.guards.points import parse_points
from boxguard.guards.visual import point_crop
from pydantic import ValidationError

LOGS = Path(__file__).resolve().parents[3] / "bench" / "data" / "real-outputs"
GUI_LOGS = sorted(LOGS.glob("gui__*__screenspot_web.json.gz"))
LEXICON_ONLY = Policy(label_embeddings=False)


def _check(verdict: object, name: str) -> object:
    return next(c for c in verdict.checks if c.name == name)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "point", "label"),
    [
        ('[{"point_2d": [120, 48], "label": "search button"}]', (120, 48), "search button"),
        ('```json\n[{"point_2d": [0.25, 0.5]}]\n```', (0.25, 0.5), None),
        ('[{"bbox_2d": [340, 586], "text_content": "star"}]', (340, 586), None),
        ('{"x": 10, "y": 20, "label": "ok"}', (10, 20), "ok"),
        ("<point>(12, 34)</point>", (12, 34), None),
        ("<point>[12.5, 34]</point>", (12.5, 34), None),
        ('<points x1="61.5" y1="40.6" alt="a cat">a cat</points>', (61.5, 40.6), "a cat"),
        ("<think>top left</think><answer>(100, 200)</answer>", (100, 200), None),
        ("the X icon is around (x: 1500, y: 250)", (1500, 250), None),
        # A box written instead of a point: its centre.
        ('[{"bbox_2d": [10, 20, 30, 40], "label": "a"}]', (20, 30), "a"),
        (
            "<|object_ref_start|>a woman<|object_ref_end|><|box_start|>(462,371),(708,785)"
            "<|box_end|>",
            (585, 578),
            "a woman",
        ),
        (
            '{"bounding_box": {"top_left": [30, 985], "bottom_right": [730, 1060]}}',
            (380, 1022.5),
            None,
        ),
        ('{"final_answer": "<answer>[2446, 35, 2476, 69]</answer>"}', (2461, 52), None),
    ],
)
def test_point_forms(text: str, point: tuple[float, float], label: str | None) -> None:
    p = parse_points(text)
    assert p.ok, p.detail
    assert p.boxes[0].coords == (*point, *point)
    assert p.boxes[0].label == label


def test_box_centre_says_so_and_keeps_every_digit() -> None:
    p = parse_points('[{"bbox_2d": [10, 20, 30, 40], "label": "a"}]')
    assert "the centre is the point" in p.detail
    assert len(p.boxes[0].coord_spans) == 4


def test_points_tag_with_several_points() -> None:
    p = parse_points('<points x1="1" y1="2" x2="30" y2="40" alt="cups">cups</points>')
    assert [b.coords[:2] for b in p.boxes] == [(1, 2), (30, 40)]


def test_two_number_bbox_in_box_mode_says_it_is_a_point() -> None:
    p = parse_output('[{"bbox_2d": [340, 586], "label": "star"}]')
    assert not p.ok
    assert "bbox_2d [340, 586] is a point (x, y)" in p.detail
    v = verify('[{"bbox_2d": [340, 586], "label": "star"}]', "star", (1000, 1000))
    assert v.reasons == ["format"] and "is a point" in v.checks[0].detail


def _gui_records() -> list[dict]:
    records = []
    for path in GUI_LOGS:
        with gzip.open(path) as f:
            records += json.load(f)["results"]
    return records


def test_real_screenspot_outputs_parse_as_points() -> None:
    records = _gui_records()
    assert len(records) == 4 * 437
    parsed = [parse_points(r["model_output"]) for r in records]
    rate = sum(p.ok for p in parsed) / len(parsed)
    assert rate >= 0.99, rate
    with_point = sum(bool(p.boxes) for p in parsed) / len(parsed)
    assert with_point >= 0.97, with_point


def test_real_two_number_bbox_is_read_as_a_point() -> None:
    path = LOGS / "gui__original-model__screenspot_web.json.gz"
    with gzip.open(path) as f:
        record = json.load(f)["results"][428]
    assert '"bbox_2d": [340, 586]' in record["model_output"]
    point = parse_points(record["model_output"])
    assert point.ok and point.boxes[0].coords[:2] == (340, 586)
    box = verify(
        record["model_output"],
        "star the awesome-huggingface project",
        (2560, 1440),
        policy=LEXICON_ONLY,
    )
    assert box.reasons == ["format"] and "is a point" in _check(box, "format").detail  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("frame", "model_size", "raw", "expected"),
    [
        # Qwen2.5-VL: pixels of the 1288x728 model frame of a 2560x1440 screenshot.
        ("pixels", (1288, 728), (644, 182), (1280.0, 360.0)),
        # Qwen2-VL and Qwen3-VL: 0..1000 relative.
        ("relative1000", None, (500, 250), (1280.0, 360.0)),
    ],
)
def test_point_mapped_to_original_pixels(
    frame: str,
    model_size: tuple[int, int] | None,
    raw: tuple[int, int],
    expected: tuple[float, float],
) -> None:
    out = f'[{{"point_2d": [{raw[0]}, {raw[1]}], "label": "search button"}}]'
    v = verify(
        out,
        "the search button",
        (2560, 1440),
        frame=frame,  # type: ignore[arg-type]
        model_size=model_size,
        mode="point",
        policy=LEXICON_ONLY,
    )
    assert v.status == "accepted", v.reasons
    assert v.detections[0].point == expected and v.detections[0].bbox is None


def test_point_outside_the_image_abstains_in_geometry() -> None:
    v = verify('[{"point_2d": [120, 48]}]', "the button", (100, 100), mode="point")
    assert v.reasons == ["geometry"]
    assert "outside the 100x100 image" in _check(v, "geometry").detail  # type: ignore[attr-defined]
    assert v.candidates == []


def test_two_distant_points_are_ambiguous_and_near_ones_merge() -> None:
    far = '[{"point_2d": [10, 10], "label": "icon"}, {"point_2d": [90, 90], "label": "icon"}]'
    assert verify(far, "the icon", (100, 100), mode="point").reasons == ["cardinality"]
    near = '[{"point_2d": [10, 10], "label": "icon"}, {"point_2d": [11, 10], "label": "icon"}]'
    v = verify(near, "the icon", (100, 100), mode="point")
    assert v.accepted and len(v.detections) == 1
    assert len(verify(far, "the icons", (100, 100), mode="point", multiple=True).detections) == 2


def test_label_mismatch_abstains_for_points() -> None:
    v = verify(
        '[{"point_2d": [10, 10], "label": "blue square"}]',
        "the red circle",
        (100, 100),
        mode="point",
        policy=LEXICON_ONLY,
    )
    assert v.reasons == ["label_match"]


def test_think_disagreeing_with_the_point() -> None:
    out = (
        "<think>The button is at [60, 60, 80, 80].</think>"
        '<answer>[{"point_2d": [10, 10], "label": "button"}]</answer>'
    )
    v = verify(out, "the button", (100, 100), mode="point")
    assert v.reasons == ["think_consistency"]
    inside = out.replace("[10, 10]", "[70, 71]")
    assert verify(inside, "the button", (100, 100), mode="point").accepted


@pytest.mark.parametrize(
    "answer",
    [
        "<think>I looked everywhere.</think><answer>There is no such button in the image.</answer>",
        "[]",
    ],
)
def test_absent_element_abstains_in_words(answer: str) -> None:
    v = verify(answer, "the settings button", (100, 100), mode="point")
    assert v.status == "abstained" and v.reasons == ["cardinality"]
    assert "the model says the element is absent" in _check(v, "cardinality").detail  # type: ignore[attr-defined]


def test_confidence_over_coordinate_and_label_tokens() -> None:
    out = '[{"point_2d": [12, 34], "label": "button"}]'
    pieces = ['[{"point_2d": [', "12", ", ", "34", '], "label": "', "button", '"}]']
    logprobs = [0.0, -3.0, 0.0, -3.0, 0.0, -3.0, 0.0]
    tokens = [TokenLogprob(token=t, logprob=lp) for t, lp in zip(pieces, logprobs, strict=True)]
    v = verify(
        out, "the button", (100, 100), mode="point", token_logprobs=tokens, policy=LEXICON_ONLY
    )
    assert v.reasons == ["confidence"]
    # The branch token ('{' inside the first piece) counts too: mean of 0, -3, -3, -3.
    assert v.candidates[0].confidence == pytest.approx(pow(2.718281828, -2.25), rel=1e-3)


def test_visual_check_crop_is_centred_on_the_point() -> None:
    assert point_crop(50, 50, 0.2, (200, 100)) == (40.0, 40.0, 60.0, 60.0)
    assert point_crop(2, 50, 0.2, (200, 100)) == (0.0, 40.0, 12.0, 60.0)
    plan = prepare(
        '[{"point_2d": [100, 50], "label": "cat"}]',
        "the cat",
        (200, 100),
        mode="point",
        policy=Policy(visual_check=True, point_crop_frac=0.4),
    )
    assert [c.bbox for c in plan.crops] == [(80.0, 30.0, 120.0, 70.0)]
    assert plan.crops[0].question == "Is this a cat?"
    assert plan.finish(Evidence(yes_probabilities=(0.2,))).reasons == ["visual_check"]
    assert plan.finish(Evidence(yes_probabilities=(0.9,))).accepted


def test_self_consistency_is_the_spread_of_sampled_points() -> None:
    policy = Policy(self_consistency_k=3, label_embeddings=False)
    plan = prepare(
        '[{"point_2d": [50, 50], "label": "cat"}]',
        "the cat",
        (100, 100),
        mode="point",
        policy=policy,
    )
    close = Evidence(samples=('[{"point_2d": [51, 50]}]', '[{"point_2d": [49, 52]}]', "[]"))
    v = plan.finish(close)
    assert v.accepted
    detail = _check(v, "self_consistency").detail  # type: ignore[attr-defined]
    assert "67% of 3 samples" in detail and "spread (median distance)" in detail
    scattered = Evidence(samples=('[{"point_2d": [5, 5]}]', '[{"point_2d": [90, 90]}]', "[]"))
    assert plan.finish(scattered).reasons == ["self_consistency"]


def test_detection_needs_exactly_one_of_bbox_and_point() -> None:
    with pytest.raises(ValidationError):
        Detection()
    with pytest.raises(ValidationError):
        Detection(bbox=(0, 0, 1, 1), point=(0, 0))
