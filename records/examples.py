"""Training examples with their truth, read from a record store or an `eval` report.

An example's truth comes from a person (a review, or the eval dataset's label) or from the
guards (an accepted, unreviewed answer: "verified"). Unreviewed abstentions have no truth and
are left out. Boxes are in original-image pixels; `[]` truth means "not in the image".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .backends import sqlite_path
from .store import Record, RecordStore

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Example:
    """One image, one expression, the right boxes and what the model answered."""

    key: str
    image_bytes: bytes
    image_ext: str
    width: int
    height: int
    expression: str
    truth: list[Box]
    answer: list[Box]  # the model's parsed boxes (its candidates); [] = "nothing there"
    verified: bool  # the guards accepted the model's answer
    reviewed: bool  # a person (a review, or the eval label) set the truth
    model_size: tuple[int, int] | None = None  # the pixel frame the model saw, when known

    @property
    def image_name(self) -> str:
        """The content-addressed file name the export writes the image under."""
        return f"{hashlib.sha256(self.image_bytes).hexdigest()}.{self.image_ext}"


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes.

    Example:
        >>> iou((0, 0, 10, 10), (5, 0, 15, 10))
        0.3333333333333333
    """
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def agrees(answer: list[Box], truth: list[Box], threshold: float = 0.5) -> bool:
    """True when the answer has one box per truth box, each matched at IoU >= `threshold`."""
    if len(answer) != len(truth):
        return False
    left = list(answer)
    for box in truth:
        best = max(left, key=lambda a: iou(a, box), default=None)
        if best is None or iou(best, box) < threshold:
            return False
        left.remove(best)
    return True


def _boxes(items: list[Any]) -> list[Box]:
    """Boxes from detections (`{"bbox": [...]}`) or bare lists."""
    out = []
    for item in items:
        x1, y1, x2, y2 = item["bbox"] if isinstance(item, dict) else item
        out.append((float(x1), float(y1), float(x2), float(y2)))
    return out


def from_record(record: Record, image: bytes) -> Example | None:
    """The example a record teaches, or None (an unreviewed abstention has no truth)."""
    verified = record.status == "accepted"
    if record.review is not None:
        truth = _boxes(record.review["boxes"])
    elif verified:
        truth = _boxes(record.verdict.get("detections", []))
    else:
        return None
    pixels = record.frame == "pixels"
    return Example(
        key=f"record-{record.id}",
        image_bytes=image,
        image_ext=record.image_ext,
        width=record.image_width,
        height=record.image_height,
        expression=record.expression,
        truth=truth,
        answer=_boxes(record.verdict.get("candidates", [])),
        verified=verified,
        reviewed=record.review is not None,
        model_size=(record.model_width, record.model_height) if pixels else None,
    )


def from_store(url: str) -> Iterator[Example]:
    """Examples of every record with a truth, oldest first (records whose image is gone skip)."""
    store = RecordStore.open(url)
    try:
        for record in store.all():
            image = store.image(record)
            example = None if image is None else from_record(record, image)
            if example is not None:
                yield example
    finally:
        store.close()


def from_eval_report(path: Path) -> Iterator[Example]:
    """Examples of an `eval` output directory's samples.jsonl (the dataset's labels as truth)."""
    samples = path / "samples.jsonl" if path.is_dir() else path
    for line in samples.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("status") == "error":
            continue
        image_path = Path(row["image"])
        if not image_path.is_absolute() and not image_path.exists():
            image_path = samples.parent / image_path
        data = image_path.read_bytes()
        with Image.open(image_path) as image:
            size = image.size
        yield Example(
            key=f"eval-{row['id']}",
            image_bytes=data,
            image_ext=image_path.suffix.lstrip(".").lower() or "png",
            width=size[0],
            height=size[1],
            expression=row["expression"],
            truth=_boxes([row["bbox"]] if row.get("bbox") else []),
            answer=_boxes(row.get("candidates") or row.get("detections") or []),
            verified=row["status"] == "accepted",
            reviewed=True,
        )


def load_examples(source: str) -> Iterator[Example]:
    """Examples from a record store URL or SQLite file, or an `eval` report (directory or
    its samples.jsonl)."""
    path = Path(source)
    if path.is_dir() and (path / "samples.jsonl").is_file() or path.suffix == ".jsonl":
        return from_eval_report(path)
    db = sqlite_path(source)
    if db is not None and not db.is_file():
        raise FileNotFoundError(f"no record store or eval report at {source}")
    return from_store(source)
