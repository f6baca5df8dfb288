"""GroundResult helpers: draw, to_coco, to_supervision."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from boxguard.clients import GroundResult
from boxguard.clients.draw import ABSTAIN_COLOR, PALETTE
from PIL import Image
from sdk_fakes import make_body

DET = {"bbox": [10.0, 8.0, 40.0, 30.0], "label": "red circle", "confidence": 0.87}


def accepted() -> GroundResult:
    return GroundResult.model_validate(make_body(detections=[DET], candidates=[DET]))


def abstained() -> GroundResult:
    return GroundResult.model_validate(
        make_body(status="abstained", candidates=[DET], reasons=["label_match", "confidence"])
    )


def test_properties() -> None:
    r = accepted()
    assert r.accepted and not r.abstained
    assert r.top is not None and r.top.label == "red circle"
    assert r.boxes == [[10.0, 8.0, 40.0, 30.0]]
    a = abstained()
    assert a.boxes == [] and a.top is None
    assert a.top_candidate is not None and a.top_candidate.confidence == 0.87


def test_draw_accepted_draws_solid_boxes() -> None:
    image = Image.new("RGB", (64, 48), "white")
    out = accepted().draw(image)
    assert out.size == (64, 48) and out is not image
    assert out.getpixel((10, 20)) == PALETTE[0]  # left edge of the box
    assert out.getpixel((25, 29)) == PALETTE[0]  # bottom edge
    assert image.getpixel((10, 20)) == (255, 255, 255)  # the input is left alone


def test_draw_abstention_is_distinct_banner_and_dashed_candidates() -> None:
    out = abstained().draw(Image.new("RGB", (64, 48), "white"))
    assert out.getpixel((1, 1)) == ABSTAIN_COLOR  # banner with the reasons
    bottom = [out.getpixel((x, 30)) for x in range(12, 39)]
    assert ABSTAIN_COLOR in bottom and (255, 255, 255) in bottom  # dashes and gaps


def test_draw_accepted_no_object_and_scaling(tmp_path: Path) -> None:
    empty = GroundResult.model_validate(make_body())
    assert empty.draw(np.zeros((48, 64, 3), dtype=np.uint8)).size == (64, 48)
    # Drawn on an image twice the original size, boxes scale with it.
    path = tmp_path / "big.png"
    Image.new("RGB", (128, 96), "white").save(path)
    big = accepted().draw(path)
    assert big.size == (128, 96)
    assert big.getpixel((21, 40)) == PALETTE[0]


def test_draw_applies_exif_orientation(tmp_path: Path) -> None:
    image = Image.new("RGB", (48, 64), "white")  # stored portrait, displayed landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    out = accepted().draw(buf.getvalue())
    assert out.size == (64, 48)


def test_draw_rejects_urls() -> None:
    with pytest.raises(TypeError):
        accepted().draw("https://example.com/a.png")


def test_to_coco() -> None:
    rows = accepted().to_coco(image_id=7, category_id=3)
    assert rows == [
        {
            "image_id": 7,
            "category_id": 3,
            "bbox": [10.0, 8.0, 30.0, 22.0],
            "score": 0.87,
            "label": "red circle",
        }
    ]
    assert abstained().to_coco(7) == []
    no_conf = GroundResult.model_validate(make_body(detections=[{"bbox": [0, 0, 2, 2]}]))
    assert no_conf.to_coco("img")[0]["score"] == 1.0


def test_to_supervision_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes `import supervision` fail
    with pytest.raises(ImportError, match=r'pip install "boxguard\[supervision\]"'):
        accepted().to_supervision()


def test_to_supervision_with_a_stub(monkeypatch: pytest.MonkeyPatch) -> None:
    class Detections:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

        @classmethod
        def empty(cls) -> Detections:
            return cls(empty=True)

    stub = types.ModuleType("supervision")
    stub.Detections = Detections  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "supervision", stub)
    dets = accepted().to_supervision()
    assert dets.kwargs["xyxy"].tolist() == [[10.0, 8.0, 40.0, 30.0]]
    assert dets.kwargs["confidence"].tolist() == [pytest.approx(0.87)]
    assert dets.kwargs["data"]["class_name"].tolist() == ["red circle"]
    assert abstained().to_supervision().kwargs == {"empty": True}
