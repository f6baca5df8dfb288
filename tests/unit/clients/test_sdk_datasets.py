"""Loading evaluation sets: boxguard JSONL and VLM-R1 REC JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.clients.datasets import Sample, detect_format, load_dataset


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return path


def test_jsonl_images_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = write_jsonl(
        tmp_path / "sub" / "val.jsonl",
        [
            {"id": "a", "image": "img/a.png", "expression": "the dog", "bbox": [1, 2, 3, 4]},
            {"id": "b", "image": "img/b.png", "expression": "the unicorn", "bbox": None},
        ],
    )
    samples = load_dataset(path)
    assert samples == [
        Sample("a", tmp_path / "sub" / "img/a.png", "the dog", (1.0, 2.0, 3.0, 4.0)),
        Sample("b", tmp_path / "sub" / "img/b.png", "the unicorn", None),
    ]
    assert samples[0].has_target and not samples[1].has_target
    assert detect_format(path) == "jsonl"


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"id": "a", "image": "a.png", "expression": "x"}, "missing"),
        ({"id": "a", "image": "a.png", "expression": "x", "bbox": [1, 2, 3]}, "bbox"),
        ({"id": "a", "image": "a.png", "expression": "x", "bbox": [5, 2, 3, 4]}, "x1 < x2"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, row: dict, match: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(ValueError, match=match) as info:
        load_dataset(path)
    assert "bad.jsonl:1" in str(info.value)


def test_jsonl_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = {"id": "a", "image": "a.png", "expression": "x", "bbox": None}
    with pytest.raises(ValueError, match="duplicate"):
        load_dataset(write_jsonl(tmp_path / "d.jsonl", [row, row]))


def test_vlm_r1_rec_json(tmp_path: Path) -> None:
    rows = [
        {
            "image": "COCO_train2014_000000580957.jpg",
            "problem": "Please provide the bounding box coordinate of the region this sentence "
            "describes: bowl behind the others can only see part.",
            "normal_caption": "bowl behind the others can only see part",
            "solution": [103.93, 299.99, 238.15, 477.41],
            "normalized_solution": [162, 468, 372, 745],
        },
        {
            "image": "COCO_train2014_000000000001.jpg",
            "problem": "Please provide the bounding box coordinate of the region this sentence "
            "describes: man in red.",
            "solution": [1, 2, 30, 40],
        },
    ]
    path = tmp_path / "refcoco_val.json"
    path.write_text(json.dumps(rows))
    samples = load_dataset(path, image_root=tmp_path / "coco")
    assert detect_format(path) == "vlm-r1"
    assert samples[0] == Sample(
        "refcoco_val-0",
        tmp_path / "coco" / "COCO_train2014_000000580957.jpg",
        "bowl behind the others can only see part",
        (103.93, 299.99, 238.15, 477.41),
    )
    assert samples[1].expression == "man in red"  # from `problem`, prompt prefix removed
    assert load_dataset(path)[0].image.parent == tmp_path  # default root: the file's folder


def test_vlm_r1_requires_solution(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"image": "a.jpg", "normal_caption": "x"}]))
    with pytest.raises(ValueError, match="solution"):
        load_dataset(path)
