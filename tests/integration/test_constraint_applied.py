"""The decoding constraint is really applied: random weights still give valid, in-frame JSON."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from boxguard.server.backends.hf_engine import DecodeParams, HFEngine, SequenceJob
from boxguard.server.constraints import ANSWER_CLOSE
from boxguard.server.models import adapter_for, resize_to_frame
from PIL import Image

WORDS = [
    "red",
    "green",
    "blue",
    "circle",
    "square",
    "star",
    "pole",
    "bus",
    "man",
    "shirt",
    "left",
    "of",
    "the",
    "a",
    "big",
    "tiny",
]


def _random_image(rng: random.Random) -> Image.Image:
    w, h = rng.randint(40, 900), rng.randint(40, 900)
    image = Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3)))
    for _ in range(rng.randint(0, 6)):
        x, y = rng.randint(0, w - 1), rng.randint(0, h - 1)
        box = (x, y, min(w, x + rng.randint(1, 200)), min(h, y + rng.randint(1, 200)))
        image.paste(tuple(rng.randint(0, 255) for _ in range(3)), box)
    return image


@pytest.fixture(scope="module")
def engine_and_adapter(tiny_checkpoint: Path) -> tuple[HFEngine, object]:
    adapter = adapter_for(tiny_checkpoint)
    engine = HFEngine(
        str(tiny_checkpoint), min_pixels=adapter.min_pixels, max_pixels=adapter.max_pixels
    )
    return engine, adapter


def _check_answer(text: str, bounds: tuple[int, int], max_items: int, max_label: int) -> None:
    items = json.loads(text)
    assert isinstance(items, list) and len(items) <= max_items
    for item in items:
        assert set(item) == {"bbox_2d", "label"}
        box = item["bbox_2d"]
        assert len(box) == 4 and all(isinstance(v, int) for v in box)
        assert 0 <= box[0] <= bounds[0] and 0 <= box[2] <= bounds[0]
        assert 0 <= box[1] <= bounds[1] and 0 <= box[3] <= bounds[1]
        assert isinstance(item["label"], str) and 1 <= len(item["label"]) <= max_label


def test_fifty_random_requests_are_schema_valid_and_in_frame(engine_and_adapter: tuple) -> None:
    engine, adapter = engine_and_adapter
    rng = random.Random(1234)
    for i in range(50):
        image = _random_image(rng)
        frame = adapter.model_frame(*image.size)
        multiple = i % 3 == 0
        expression = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        constraint = adapter.constraint(
            frame,
            multiple=multiple,
            think=False,
            max_detections=4,
            max_label_chars=12,
            max_tokens=320,
            think_max_tokens=16,
        )
        job = SequenceJob(
            adapter.prompt(expression, multiple=multiple),
            resize_to_frame(image, (frame.width, frame.height)),
            constraint,
        )
        params = DecodeParams(max_new_tokens=320, do_sample=i % 2 == 1, temperature=1.5, seed=i)
        (result,) = engine.generate([job], params)
        assert result.finish_reason == "stop", result.text
        _check_answer(result.text, frame.coord_bounds, 4 if multiple else 1, 12)


def test_without_the_constraint_the_same_model_writes_garbage(engine_and_adapter: tuple) -> None:
    """The control: the JSON above comes from the grammar, not from the random model."""
    engine, adapter = engine_and_adapter
    rng = random.Random(7)
    image = _random_image(rng)
    frame = adapter.model_frame(*image.size)
    job = SequenceJob(
        adapter.prompt("the red circle"), resize_to_frame(image, (frame.width, frame.height)), None
    )
    (result,) = engine.generate([job], DecodeParams(max_new_tokens=40))
    with pytest.raises(ValueError):
        json.loads(result.text)


def test_think_answers_are_bounded_and_well_formed(live_server: str) -> None:
    import httpx
    from support import b64, png_bytes

    for expression in ("the red circle", "a star above the square", "the bus"):
        r = httpx.post(
            live_server + "/ground",
            json={
                "image": b64(png_bytes((200, 300))),
                "expression": expression,
                "think": True,
                "return_raw": True,
            },
            timeout=60,
        )
        assert r.status_code == 200, r.text
        raw = r.json()["raw_output"]
        match = re.fullmatch(r"<think>(.*)</think>\n<answer>(.*)</answer>", raw, flags=re.S)
        assert match, raw
        assert ANSWER_CLOSE not in match.group(2)
        img = r.json()["image"]
        _check_answer(match.group(2), (img["model_width"], img["model_height"]), 1, 48)
