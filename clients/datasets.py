"""Evaluation datasets: boxguard JSONL (also the demo world's output) and VLM-R1's REC JSON.

boxguard JSONL, one sample a line; ``image`` is relative to the JSONL file and ``bbox`` is
``[x1, y1, x2, y2]`` in pixels, or ``null`` when nothing in the image matches::

    {"id": "s1", "image": "images/s1.png", "expression": "the red circle", "bbox": [4, 5, 30, 31]}

VLM-R1 REC JSON (``rec_jsons_processed/refcoco_val.json`` and friends) is one JSON list of
``{"image", "problem", "normal_caption", "solution": [x1, y1, x2, y2], "normalized_solution"}``;
``image`` is relative to an image root (the COCO folder), ``normal_caption`` is the expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["Sample", "load_dataset"]

Format = Literal["auto", "jsonl", "vlm-r1"]
_R1_PREFIX = re.compile(
    r"^\s*please provide the bounding box coordinate of the region this sentence describes:\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sample:
    """One evaluation sample: an image file, an expression and the target box (None: no target).

    Example:
        >>> Sample("s1", Path("a.png"), "the dog", None).has_target
        False
    """

    id: str
    image: Path
    expression: str
    bbox: tuple[float, float, float, float] | None

    @property
    def has_target(self) -> bool:
        """True when a ground-truth box exists."""
        return self.bbox is not None


def validated_bbox(value: Any, where: str) -> tuple[float, float, float, float] | None:
    """A validated [x1, y1, x2, y2] box, or None for null."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 4:
        raise ValueError(f"{where}: bbox must be [x1, y1, x2, y2] or null, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{where}: bbox needs x1 < x2 and y1 < y2, got {value!r}")
    return (x1, y1, x2, y2)


def _load_jsonl(path: Path, image_root: Path) -> list[Sample]:
    """Samples of a boxguard JSONL file."""
    return [
        Sample(
            id=str(row.get("id", lineno)),
            image=image_root / row["image"],
            expression=str(row["expression"]),
            bbox=validated_bbox(row["bbox"], where),
        )
        for lineno, where, row in jsonl_rows(
            path.read_text(encoding="utf-8"), path, {"image", "expression", "bbox"}
        )
    ]


def jsonl_rows(
    text: str, path: Path, required: set[str]
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(line number, "path:line", row) of each non-blank JSONL line; missing fields raise."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        row = json.loads(line)
        missing = required - set(row)
        if missing:
            raise ValueError(f"{where}: missing field(s) {sorted(missing)}")
        yield lineno, where, row


def r1_expression(row: dict[str, Any], where: str) -> str:
    """The referring expression of a VLM-R1 row: normal_caption, else the stripped problem."""
    caption = row.get("normal_caption")
    if isinstance(caption, str) and caption.strip():
        return caption.strip()
    problem = row.get("problem")
    if isinstance(problem, str) and problem.strip():
        return _R1_PREFIX.sub("", problem).strip().rstrip(".") or problem.strip()
    raise ValueError(f"{where}: no 'normal_caption' or 'problem'")


def _load_vlm_r1(path: Path, image_root: Path) -> list[Sample]:
    """Samples of a VLM-R1 REC JSON list."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a VLM-R1 REC file is a JSON list")
    samples: list[Sample] = []
    for index, row in enumerate(rows):
        where = f"{path}[{index}]"
        if "image" not in row or "solution" not in row:
            raise ValueError(f"{where}: missing 'image' or 'solution'")
        image = row["image"][0] if isinstance(row["image"], list) else row["image"]
        samples.append(
            Sample(
                id=str(row.get("id", f"{path.stem}-{index}")),
                image=image_root / image,
                expression=r1_expression(row, where),
                bbox=validated_bbox(row["solution"], where),
            )
        )
    return samples


def detect_format(path: Path) -> Literal["jsonl", "vlm-r1"]:
    """'vlm-r1' for a file holding one JSON list, else 'jsonl'."""
    with path.open(encoding="utf-8") as fh:
        head = fh.read(4096).lstrip()
    return "vlm-r1" if head.startswith("[") else "jsonl"


def load_dataset(
    path: str | Path, *, image_root: str | Path | None = None, fmt: Format = "auto"
) -> list[Sample]:
    """Load an evaluation set; images resolve against `image_root` (default: the file's folder).

    Example:
        >>> samples = load_dataset("shapes/val.jsonl")  # doctest: +SKIP
        >>> samples = load_dataset("refcoco_val.json", image_root="train2014")  # doctest: +SKIP
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    kind = detect_format(path) if fmt == "auto" else fmt
    samples = _load_vlm_r1(path, root) if kind == "vlm-r1" else _load_jsonl(path, root)
    seen: set[str] = set()
    unique: list[Sample] = []
    for index, sample in enumerate(samples):
        if sample.id in seen:
            if kind == "jsonl":
                raise ValueError(f"{path}: duplicate sample id {sample.id!r}")
            sample = Sample(f"{sample.id}-{index}", sample.image, sample.expression, sample.bbox)
        seen.add(sample.id)
        unique.append(sample)
    return unique
