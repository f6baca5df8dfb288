"""Point requests per family: the pointing prompt, the point constraint, the frame mapping."""

from __future__ import annotations

import json

import pytest
from boxguard.guards import Policy, prepare
from boxguard.server.constraints import Constraint
from boxguard.server.models import ADAPTERS

SCREEN = (2560, 1440)  # a GUI screenshot that every family resizes
TARGET = (1843.0, 211.0)  # where the search button is, in original pixels
LEXICON_ONLY = Policy(label_embeddings=False)


def _written(model_type: str) -> tuple[str, tuple[int, int]]:
    """What the family writes for TARGET in its own frame, and that frame."""
    adapter = ADAPTERS[model_type]()
    frame = adapter.model_frame(*SCREEN)
    assert (frame.width, frame.height) != SCREEN  # the frame really differs from the image
    if frame.frame == "pixels":
        x, y = TARGET[0] * frame.width / SCREEN[0], TARGET[1] * frame.height / SCREEN[1]
    else:
        x, y = TARGET[0] * 1000 / SCREEN[0], TARGET[1] * 1000 / SCREEN[1]
    if model_type == "qwen2_vl":  # no point form: a box around the target, its centre counts
        box = (round(x) - 10, round(y) - 6, round(x) + 10, round(y) + 6)
        text = (
            "<|object_ref_start|>search button<|object_ref_end|>"
            f"<|box_start|>({box[0]},{box[1]}),({box[2]},{box[3]})<|box_end|>"
        )
    else:
        text = json.dumps([{"point_2d": [round(x), round(y)], "label": "search button"}])
    return text, (frame.width, frame.height)


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_point_maps_back_to_the_original_pixel(model_type: str) -> None:
    adapter = ADAPTERS[model_type]()
    text, model_size = _written(model_type)
    plan = prepare(
        text,
        "the search button",
        SCREEN,
        frame=adapter.frame,
        model_size=model_size,
        mode="point",
        policy=LEXICON_ONLY,
    )
    verdict = plan.finish()
    assert verdict.status == "accepted", verdict.checks
    (det,) = verdict.detections
    assert det.bbox is None and det.point is not None
    # Rounding to the model's integer grid costs at most one model-frame step.
    step = SCREEN[0] / model_size[0] if adapter.frame == "pixels" else SCREEN[0] / 1000
    assert abs(det.point[0] - TARGET[0]) <= step and abs(det.point[1] - TARGET[1]) <= step


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_point_prompt_and_constraint(model_type: str) -> None:
    adapter = ADAPTERS[model_type]()
    frame = adapter.model_frame(*SCREEN)
    prompt = adapter.prompt("the search button", output="point")
    constraint = adapter.constraint(
        frame,
        multiple=False,
        think=False,
        max_detections=4,
        max_label_chars=16,
        max_tokens=64,
        think_max_tokens=16,
        output="point",
    )
    assert isinstance(constraint, Constraint) and constraint.json_schema is not None
    props = constraint.json_schema["items"]["properties"]
    max_x, max_y = frame.coord_bounds
    if model_type == "qwen2_vl":
        assert "point" not in prompt and "bbox_2d" in props
    else:
        assert "point coordinates" in prompt and "bbox" not in prompt
        coords = props["point_2d"]
        assert coords["minItems"] == coords["maxItems"] == 2
        assert [c["maximum"] for c in coords["prefixItems"]] == [max_x, max_y]
        assert "point_2d" in constraint.ebnf()


def test_box_requests_are_unchanged() -> None:
    adapter = ADAPTERS["qwen2_5_vl"]()
    assert adapter.prompt("the cat") == adapter.prompt("the cat", output="box")
    assert "point" not in adapter.prompt("the cat")
