"""Dataset splits: JSONL export format, determinism, disjoint splits, speed."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from boxguard.demo import SPLITS, build_split, iter_samples
from PIL import Image


def test_jsonl_format(tmp_path: Path) -> None:
    """Records have exactly id/image/expression/bbox; images exist; boxes fit the image."""
    path = build_split("test", 23, 0, tmp_path, expressions_per_image=3)
    assert path == tmp_path / "test.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 23
    ids = set()
    for line in lines:
        rec = json.loads(line)
        assert set(rec) == {"id", "image", "expression", "bbox"}
        assert rec["id"] not in ids
        ids.add(rec["id"])
        img_path = path.parent / rec["image"]
        assert not Path(rec["image"]).is_absolute() and img_path.is_file()
        with Image.open(img_path) as im:
            w, h = im.size
            assert im.mode == "RGB"
        if rec["bbox"] is not None:
            x1, y1, x2, y2 = rec["bbox"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    meta = [json.loads(x) for x in (tmp_path / "test.meta.jsonl").read_text().splitlines()]
    assert [m["id"] for m in meta] == [json.loads(x)["id"] for x in lines]
    assert all({"label", "think", "form", "target"} <= set(m) for m in meta)


def test_build_split_is_deterministic_and_matches_iterator(tmp_path: Path) -> None:
    """Same seed -> identical files; the in-memory iterator yields the same data."""
    a = build_split("val", 6, 4, tmp_path / "a")
    b = build_split("val", 6, 4, tmp_path / "b")
    assert a.read_text() == b.read_text()
    for rec in map(json.loads, a.read_text().splitlines()):
        pa, pb = a.parent / rec["image"], b.parent / rec["image"]
        assert pa.read_bytes() == pb.read_bytes()
    recs = [json.loads(x) for x in a.read_text().splitlines()]
    for rec, (image, sample) in zip(recs, iter_samples("val", 4, n=6), strict=True):
        assert rec["expression"] == sample.expression
        assert rec["bbox"] == (list(sample.bbox) if sample.bbox else None)
        with Image.open(a.parent / rec["image"]) as im:
            assert im.convert("RGB").tobytes() == image.tobytes()


def test_splits_are_disjoint() -> None:
    """No image is shared between train, val and test (same seed)."""
    seen: dict[str, str] = {}
    for split in SPLITS:
        for image, _ in iter_samples(split, 0, n=40):
            digest = hashlib.sha1(image.tobytes()).hexdigest()
            assert seen.setdefault(digest, split) == split
    with pytest.raises(ValueError):
        next(iter_samples("dev", 0))


def test_iterator_options_and_speed() -> None:
    """Options are honoured and generation is fast (>= 100 samples/s even on a slow CI box)."""
    start = time.perf_counter()
    items = list(
        iter_samples(
            "train", 1, n=200, fixed_size=(256, 256), max_objects=3, expressions_per_image=2
        )
    )
    elapsed = time.perf_counter() - start
    assert len(items) == 200
    assert all(im.size == (256, 256) for im, _ in items)
    assert items[0][0] is items[1][0]  # several expressions share one image
    assert elapsed < 2.0, elapsed
