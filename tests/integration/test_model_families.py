"""Qwen2-VL and Qwen3-VL checkpoints load and serve through the same code, in their own frames."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from boxguard.server.app import create_app
from boxguard.server.schema import GroundResponse
from boxguard.server.settings import Settings
from boxguard.server.tiny_checkpoint import build_tiny_checkpoint
from support import b64, has_area, png_bytes, serve_in_thread


@pytest.mark.parametrize(("family", "factor"), [("qwen2_vl", 28), ("qwen3_vl", 32)])
def test_family_serves_in_its_relative_frame(tmp_path: Path, family: str, factor: int) -> None:
    model_dir = build_tiny_checkpoint(tmp_path / family, family=family)
    settings = Settings(model=str(model_dir), max_new_tokens=64, max_label_chars=8)
    with serve_in_thread(create_app(settings)) as url:
        r = httpx.post(
            url + "/ground",
            json={
                "image": b64(png_bytes((640, 480))),
                "expression": "the red circle",
                "return_raw": True,
            },
            timeout=60,
        )
        assert r.status_code == 200, r.text
        body = GroundResponse.model_validate(r.json())
        assert body.image.model_width % factor == 0 and body.image.model_height % factor == 0
        raw = json.loads(body.raw_output or "")
        # The tiny random Qwen2-VL writes one zero-area box ([966, 222, 222, 222]), Qwen3-VL one
        # box with area: every raw box is bounded to 0..1000, those with area are mapped from it
        # and those without are named by the geometry check.
        assert raw, "the model wrote no box: nothing to check"
        for item in raw:
            assert max(item["bbox_2d"]) <= 1000  # bounded to 0..1000, not to the model frame
        boxes = [item for item in raw if has_area(item["bbox_2d"])]  # no area: no box
        for item, cand in zip(boxes, body.candidates, strict=True):
            x1, y1, x2, y2 = item["bbox_2d"]
            xs = sorted([x1 / 1000 * 640, x2 / 1000 * 640])
            ys = sorted([y1 / 1000 * 480, y2 / 1000 * 480])
            assert cand.bbox == pytest.approx([xs[0], ys[0], xs[1], ys[1]], abs=1.0)
        geometry = next(c for c in body.checks if c.name == "geometry")
        for i, item in enumerate(raw):
            if not has_area(item["bbox_2d"]):
                assert f"box {i}: degenerate" in geometry.detail, geometry.detail
