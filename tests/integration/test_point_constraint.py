"""The point constraint is really applied on the transformers backend, and /ground answers points.

The tiny checkpoint has random weights: whatever it writes under the grammar must still be
`[{"point_2d": [x, y], "label": ...}]` with x, y inside the model frame.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from boxguard.guards import Policy, prepare
from boxguard.server.backends.hf_engine import DecodeParams, HFEngine, SequenceJob
from boxguard.server.models import adapter_for, resize_to_frame
from PIL import Image


@pytest.fixture(scope="module")
def engine_and_adapter(tiny_checkpoint: Path) -> tuple[HFEngine, object]:
    adapter = adapter_for(tiny_checkpoint)
    engine = HFEngine(
        str(tiny_checkpoint), min_pixels=adapter.min_pixels, max_pixels=adapter.max_pixels
    )
    return engine, adapter


def test_random_point_requests_are_schema_valid_and_in_frame(engine_and_adapter: tuple) -> None:
    engine, adapter = engine_and_adapter
    rng = random.Random(28)
    for i in range(12):
        size = (rng.randint(60, 900), rng.randint(60, 900))
        image = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
        frame = adapter.model_frame(*size)
        multiple = i % 3 == 0
        constraint = adapter.constraint(
            frame,
            multiple=multiple,
            think=False,
            max_detections=3,
            max_label_chars=12,
            max_tokens=160,
            think_max_tokens=16,
            output="point",
        )
        job = SequenceJob(
            adapter.prompt("the search button", multiple=multiple, output="point"),
            resize_to_frame(image, (frame.width, frame.height)),
            constraint,
        )
        params = DecodeParams(max_new_tokens=160, do_sample=i % 2 == 1, temperature=1.5, seed=i)
        (result,) = engine.generate([job], params)
        assert result.finish_reason == "stop", result.text
        items = json.loads(result.text)
        assert isinstance(items, list) and len(items) <= (3 if multiple else 1)
        for item in items:
            assert set(item) == {"point_2d", "label"}
            x, y = item["point_2d"]
            assert isinstance(x, int) and isinstance(y, int)
            assert 0 <= x <= frame.width and 0 <= y <= frame.height
        verdict = prepare(
            result.text,
            "the search button",
            size,
            frame=frame.frame,
            model_size=(frame.width, frame.height),
            multiple=multiple,
            mode="point",
            policy=Policy(label_embeddings=False),
        ).finish()
        assert verdict.checks[0].passed, verdict.checks[0].detail  # format
        for det in verdict.candidates:
            assert det.bbox is None and det.point is not None
            assert 0 <= det.point[0] <= size[0] and 0 <= det.point[1] <= size[1]


def test_ground_answers_points(live_server: str) -> None:
    import httpx
    from support import b64, png_bytes

    r = httpx.post(
        live_server + "/ground",
        json={
            "image": b64(png_bytes((320, 200))),
            "expression": "the search button",
            "output": "point",
            "return_raw": True,
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    raw = json.loads(body["raw_output"])
    assert all(set(item) == {"point_2d", "label"} for item in raw)
    for det in body["detections"] + body["candidates"]:
        assert det["bbox"] is None and len(det["point"]) == 2
    if not raw:  # the random model said "no such element": abstained, in words
        assert body["status"] == "abstained" and "cardinality" in body["reasons"]
