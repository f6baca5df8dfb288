"""Training rows read from a ``boxguard export``: the flywheel's corrections, mixed into each step.

``python -m boxguard.demo.train ... --extra-data DIR --extra-per-step N`` adds N rows of the
export in DIR (``--extra-format llamafactory``: the ShareGPT rows ``boxguard export`` writes,
read by ``records.export.read_llamafactory``, the reader its round-trip tests use) to every
step's grounding batch. Each row becomes a ``train_data.Example`` as the server would ask it:

- the image is resized to the checkpoint's model frame by the trainer's ``Encoder``, as the
  server resizes it; the answer's ``bbox_2d`` must lie in that frame (an export written with
  another ``--max-pixels`` is refused when a box falls outside it);
- the user turn (``<image>`` + the server's question) is rendered with the checkpoint's own chat
  template, image first, which is byte-for-byte the server's prompt (a test holds this);
- the assistant turn is the target, weighted as a grounding answer (decision and digit weights).

Rows are drawn in a fixed shuffled order, cycling, so a run is a pure function of its step.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxguard.records.export import IMAGE_TOKEN, read_llamafactory
from PIL import Image

from .train_data import Encoder, Example, Question

EXTRA_FORMATS = ("llamafactory",)


@dataclass(frozen=True)
class ExportRow:
    """One exported conversation: image path, user question, assistant answer (JSON text)."""

    image: Path
    question: str
    answer: str


def read_rows(data_dir: Path, fmt: str = "llamafactory", split: str = "train") -> list[ExportRow]:
    """The `split` rows of an export (every dataset named ``*_{split}`` in its registry)."""
    if fmt not in EXTRA_FORMATS:
        raise ValueError(f"--extra-format is one of {EXTRA_FORMATS}, not {fmt!r}")
    rows = []
    for name, items in sorted(read_llamafactory(data_dir).items()):
        if not name.endswith(f"_{split}"):
            continue
        for item in items:
            user, assistant = item["messages"]
            if not user["content"].startswith(IMAGE_TOKEN):
                raise ValueError(f"{name}: the image must open the user turn, as the server asks")
            rows.append(
                ExportRow(
                    data_dir / item["images"][0],
                    user["content"][len(IMAGE_TOKEN) :],
                    assistant["content"],
                )
            )
    return rows


def chat_prompt(encoder: Encoder, question: str) -> str:
    """The user turn rendered by the checkpoint's chat template, image before text, ready to
    generate (one ``<|image_pad|>``, expanded when encoded)."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    text = encoder.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    if not isinstance(text, str):
        raise TypeError("the chat template did not render text")
    return text


def answer_boxes(answer: str) -> list[list[int]]:
    """The ``bbox_2d`` boxes of an answer in boxguard's output form (``[]``: none)."""
    items: list[dict[str, Any]] = json.loads(answer)
    return [[int(v) for v in item["bbox_2d"]] for item in items]


def to_example(row: ExportRow, encoder: Encoder) -> Example:
    """The training example of one exported row (see the module docstring)."""
    with Image.open(row.image) as img:
        image = img.convert("RGB")
    frame = encoder.adapter.model_frame(*image.size)
    boxes = answer_boxes(row.answer)
    if len(boxes) > 1:
        raise ValueError(f"{row.image.name}: {len(boxes)} boxes; the trainer's rows hold one")
    for box in boxes:
        x1, y1, x2, y2 = box
        if not (0 <= x1 <= x2 <= frame.width and 0 <= y1 <= y2 <= frame.height):
            raise ValueError(
                f"{row.image.name}: box {box} is outside the {frame.width}x{frame.height} model "
                f"frame; export with this checkpoint's --max-pixels {encoder.adapter.max_pixels}"
            )
    question = Question(
        expression="", answer=row.answer, think=None, prompt=chat_prompt(encoder, row.question)
    )
    return Example(image, [question], [boxes[0] if boxes else None])


class ExtraRows:
    """The export's rows as examples, handed out ``per_step`` at a time in a seeded order."""

    def __init__(
        self, data_dir: Path, fmt: str, encoder: Encoder, per_step: int, seed: int = 0
    ) -> None:
        rows = read_rows(data_dir, fmt)
        if not rows:
            raise ValueError(f"no train rows in the export at {data_dir}")
        self.examples = [to_example(row, encoder) for row in rows]
        self.order = list(range(len(self.examples)))
        random.Random(f"boxguard-extra/{seed}").shuffle(self.order)
        self.per_step = per_step

    def for_step(self, step: int) -> tuple[Example, ...]:
        """The rows of ``step``: the next ``per_step`` of the cycling order."""
        start = step * self.per_step
        n = len(self.order)
        return tuple(self.examples[self.order[(start + k) % n]] for k in range(self.per_step))

    def counts(self) -> dict[str, int]:
        """Rows by kind: a box answer or a ``[]`` (no target)."""
        empty = sum(ex.boxes == [None] for ex in self.examples)
        return {"rows": len(self.examples), "box": len(self.examples) - empty, "empty": empty}
