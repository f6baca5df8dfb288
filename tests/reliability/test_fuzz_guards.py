"""boxguard.guards.verify fed random and adversarial model outputs.

It never raises for model output, always returns a Verdict, and every returned box lies within
the image (finite, 0 <= x1 < x2 <= W, 0 <= y1 < y2 <= H when accepted).
"""

from __future__ import annotations

import json
import math
from typing import Any

from boxguard.guards import Policy, TokenLogprob, Verdict, verify
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rel_support import TALLY, examples

numbers = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 999, 1000, 1001, -1, 1e308, -1e308, 0.5, 1e-300]),
)
coord_values = st.one_of(numbers, st.text(max_size=5), st.none(), st.booleans())
boxes = st.one_of(
    st.lists(numbers, min_size=4, max_size=4),
    st.lists(coord_values, min_size=0, max_size=6),
)
labels = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(),
    st.sampled_from(["red circle", "blue square", "", "the red circle"]),
)
objects = st.fixed_dictionaries(
    {"bbox_2d": boxes},
    optional={"label": labels, "confidence": numbers, "point_2d": boxes, "extra": st.text()},
)
json_answers = st.one_of(
    st.lists(objects, max_size=20).map(json.dumps),
    objects.map(json.dumps),
    st.lists(st.lists(numbers, min_size=4, max_size=4), max_size=5).map(json.dumps),
    st.recursive(
        st.none() | st.booleans() | numbers | st.text(max_size=10),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=30,
    ).map(lambda v: json.dumps(v, allow_nan=True)),
)
wrapped = st.tuples(
    st.sampled_from(
        [
            "",
            "```json\n",
            "<answer>",
            "<think>I see it at [1, 2, 3, 4]</think>",
            "<think>" + "x" * 3000,
            "<|box_start|>",
            "Sure! ",
        ]
    ),
    json_answers,
    st.sampled_from(["", "\n```", "</answer>", "<|box_end|>", "<|im_end|>", "}}]]"]),
).map("".join)
box_tokens = st.tuples(numbers, numbers, numbers, numbers).map(
    lambda c: (
        "<|object_ref_start|>thing<|object_ref_end|><|box_start|>"
        f"({c[0]},{c[1]}),({c[2]},{c[3]})<|box_end|>"
    )
)
outputs = st.one_of(
    st.text(max_size=500),
    wrapped,
    box_tokens,
    json_answers,
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)
logprobs = st.one_of(
    st.none(),
    st.lists(
        st.builds(
            TokenLogprob,
            token=st.text(max_size=4),
            logprob=st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=40,
    ),
)
sizes = st.tuples(st.integers(1, 10_000), st.integers(1, 10_000))
policies = st.builds(
    Policy,
    min_confidence=st.floats(0, 1),
    max_outside_frac=st.floats(0, 1),
    min_box_side_px=st.floats(0, 100),
    whole_image_frac=st.floats(0.5, 1),
    fatal=st.frozensets(st.sampled_from(sorted(Policy().fatal))),
)


def _inside(bbox: Any, width: float, height: float) -> bool:
    """The public box rule: finite, 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height."""
    x1, y1, x2, y2 = bbox
    if not all(math.isfinite(v) for v in bbox):
        return False
    return 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(
    output=outputs,
    expression=st.one_of(st.text(max_size=80), st.sampled_from(["the red circle", "every shape"])),
    image_size=sizes,
    model_size=st.one_of(st.none(), sizes),
    frame=st.sampled_from(["auto", "pixels", "relative1000", "normalized"]),
    multiple=st.booleans(),
    token_logprobs=logprobs,
    policy=policies,
)
def test_verify_never_raises_and_keeps_boxes_in_the_image(
    output: str,
    expression: str,
    image_size: tuple[int, int],
    model_size: Any,
    frame: Any,
    multiple: bool,
    token_logprobs: Any,
    policy: Policy,
) -> None:
    TALLY["verify"] += 1
    verdict = verify(
        output,
        expression,
        image_size,
        frame=frame,
        model_size=model_size,
        multiple=multiple,
        token_logprobs=token_logprobs,
        policy=policy,
    )
    assert isinstance(verdict, Verdict)
    assert verdict.status in ("accepted", "abstained")
    assert (verdict.status == "abstained") == bool(verdict.reasons)
    width, height = image_size
    for det in verdict.candidates:
        assert _inside(det.bbox, width, height), (det, image_size)
    if verdict.status == "accepted":
        for det in verdict.detections:
            assert _inside(det.bbox, width, height), (
                det,
                output,
                image_size,
                model_size,
                frame,
                multiple,
                sorted(policy.fatal),
            )
            assert det.confidence is None or 0 <= det.confidence <= 1
    else:
        assert verdict.detections == []


@settings(max_examples=examples(100), deadline=None, database=None)
@given(
    output=st.sampled_from(
        [
            "[0,0,10,10]",
            '[{"bbox_2d": [0, 0, 10, 10], "label": "x"}]',
            '[{"bbox_2d": [-1e308, -1e308, 1e308, 1e308], "label": "the red circle"}]',
            '[{"bbox_2d": [NaN, 0, 10, 10], "label": "the red circle"}]',
            '[{"bbox_2d": [Infinity, 0, 10, 10], "label": "the red circle"}]',
            '[{"bbox_2d": [5, 5, 5, 5], "label": "the red circle"}]',
            '[{"bbox_2d": [90, 90, 10, 10], "label": "the red circle"}]',
            '{"bbox_2d": "1,2,3,4"}',
            "<think>" * 1000,
            "[" * 5000,
            '{"a":' * 3000,
        ]
    ),
    image_size=sizes,
)
def test_verify_adversarial_outputs(output: str, image_size: tuple[int, int]) -> None:
    verdict = verify(output, "the red circle", image_size)
    assert isinstance(verdict, Verdict)
    for det in verdict.detections:
        assert _inside(det.bbox, *image_size), det


def test_non_fatal_format_still_runs_geometry() -> None:
    fatal = frozenset(Policy().fatal) - {"format"}
    verdict = verify(
        '[{"bbox_2d": []}, {"bbox_2d": [0, 0, 0, 0]}]', "x", (100, 100), policy=Policy(fatal=fatal)
    )
    for det in verdict.detections:
        assert _inside(det.bbox, 100, 100), det
