"""`boxguard export`: examples as fine-tuning data for LLaMA-Factory, ms-swift and VLM-R1.

Each format is written as its consumer's loading code reads it (docs/export.md cites the files):

- `llamafactory`: multimodal ShareGPT rows (`messages` + `images`) and a `dataset_info.json`;
  the answer in boxguard's own output form, coordinates in the family's frame.
- `swift`: ms-swift grounding rows, `<bbox>` placeholders filled from `objects` in original
  pixels (`bbox_type: real`); ms-swift maps them to the model's frame itself.
- `vlm-r1`: VLM-R1 REC rows (`image`, `problem`, `solution: <answer>[x1, y1, x2, y2]</answer>`),
  in original pixels, which its IoU reward compares against after rescaling the answer.
- `dpo`: LLaMA-Factory pairwise rows: chosen = the truth, rejected = the model's answer where
  it was wrong (a wrong box, a refusal, a box for a thing not there).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .examples import Box, Example, agrees

Format = Literal["llamafactory", "swift", "vlm-r1", "dpo"]
Family = Literal["qwen2_5_vl", "qwen2_vl", "qwen3_vl"]
FORMATS: tuple[Format, ...] = ("llamafactory", "swift", "vlm-r1", "dpo")
FAMILIES: tuple[Family, ...] = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")
DEFAULT_MAX_PIXELS = 1280 * 28 * 28  # the server's default model frame
MAX_LABEL_CHARS = 48
IMAGE_TOKEN = "<image>"


@dataclass
class ExportSummary:
    """What an export wrote: rows per split, and examples left out and why."""

    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        """Count one example left out."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def split_of(example: Example, val_fraction: float) -> str:
    """'train' or 'val', by image: every expression on one image lands in the same split."""
    bucket = zlib.crc32(example.image_name.encode()) % 10_000
    return "val" if bucket < val_fraction * 10_000 else "train"


def frame_box(box: Box, example: Example, family: Family, max_pixels: int) -> list[int]:
    """A box in the family's answer frame: resized-frame pixels (Qwen2.5-VL) or 0–1000."""
    from boxguard.server.models import ADAPTERS

    if family != "qwen2_5_vl":
        sx, sy = 1000 / example.width, 1000 / example.height
    else:
        size = example.model_size
        if size is None:
            adapter = ADAPTERS[family](max_pixels=max_pixels)
            frame = adapter.model_frame(example.width, example.height)
            size = (frame.width, frame.height)
        sx, sy = size[0] / example.width, size[1] / example.height
    x1, y1, x2, y2 = box
    return [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]


def answer_text(boxes: Iterable[list[int]], expression: str) -> str:
    """boxguard's answer form: `[{"bbox_2d": [...], "label": ...}]`, `[]` for none."""
    label = expression[:MAX_LABEL_CHARS]
    return json.dumps([{"bbox_2d": box, "label": label} for box in boxes])


def user_text(example: Example, family: Family, *, multiple: bool) -> str:
    """The family's grounding question, exactly as the server asks it."""
    from boxguard.server.models import ADAPTERS

    return ADAPTERS[family]().user_text(example.expression, multiple=multiple, think=False)


def _row(
    fmt: Format, ex: Example, family: Family, max_pixels: int, image: str
) -> dict[str, Any] | str:
    """One row of `fmt`, or the reason the example does not fit it."""
    multiple = len(ex.truth) > 1
    question = user_text(ex, family, multiple=multiple)
    truth_text = answer_text(
        (frame_box(b, ex, family, max_pixels) for b in ex.truth), ex.expression
    )
    if fmt == "llamafactory":
        return {
            "messages": [
                {"role": "user", "content": IMAGE_TOKEN + question},
                {"role": "assistant", "content": truth_text},
            ],
            "images": [image],
        }
    if fmt == "dpo":
        if agrees(ex.answer, ex.truth):
            return "the model's answer was right"
        rejected = answer_text(
            (frame_box(b, ex, family, max_pixels) for b in ex.answer), ex.expression
        )
        return {
            "messages": [{"role": "user", "content": IMAGE_TOKEN + question}],
            "chosen": {"role": "assistant", "content": truth_text},
            "rejected": {"role": "assistant", "content": rejected},
            "images": [image],
        }
    if fmt == "swift":
        label = ex.expression[:MAX_LABEL_CHARS]
        row: dict[str, Any] = {
            "messages": [
                {"role": "user", "content": IMAGE_TOKEN + question},
                {
                    "role": "assistant",
                    "content": "["
                    + ", ".join(
                        '{"bbox_2d": <bbox>, "label": ' + json.dumps(label) + "}" for _ in ex.truth
                    )
                    + "]",
                },
            ],
            "images": [image],
        }
        if ex.truth:
            row["objects"] = {
                "ref": [ex.expression] * len(ex.truth),
                "bbox": [[round(v, 1) for v in b] for b in ex.truth],
                "bbox_type": "real",
            }
        return row
    if len(ex.truth) > 1:
        return "VLM-R1's REC reward scores one box"
    solution = json.dumps([round(v) for v in ex.truth[0]]) if ex.truth else "[]"
    return {
        "image": image,
        "problem": r1_problem(ex, family),
        "solution": f"<answer>{solution}</answer>",
        "normal_caption": ex.expression,
    }


def r1_problem(ex: Example, family: Family) -> str:
    """VLM-R1's `problem`: the question without the think suffix its template appends."""
    from boxguard.server.models import ADAPTERS

    return ADAPTERS[family]().question(ex.expression, multiple=False)


def export(
    examples: Iterable[Example],
    out: Path,
    fmt: Format,
    *,
    family: Family = "qwen2_5_vl",
    reviewed_only: bool = False,
    verified_only: bool = False,
    errors_only: bool = False,
    val_fraction: float = 0.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str = "boxguard",
) -> ExportSummary:
    """Write `examples` as `fmt` under `out` (images in out/images/); returns the counts.

    Example:
        >>> from boxguard.records.examples import load_examples
        >>> export(load_examples("records.db"), Path("lf"), "llamafactory")  # doctest: +SKIP
        ExportSummary(rows={'train': 120}, skipped={})
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    rows: dict[str, list[dict[str, Any]]] = {}
    for ex in examples:
        if (reviewed_only and not ex.reviewed) or (verified_only and not ex.verified):
            summary.skip("filtered out")
            continue
        # The corrections alone: where the model's answer disagrees with the truth.
        if errors_only and agrees(ex.answer, ex.truth):
            summary.skip("the model's answer was right")
            continue
        image = out / "images" / ex.image_name
        if not image.exists():
            image.write_bytes(ex.image_bytes)
        # ms-swift reads paths as given; LLaMA-Factory and VLM-R1 join them to a root folder.
        ref = str(image.resolve()) if fmt == "swift" else f"images/{ex.image_name}"
        row = _row(fmt, ex, family, max_pixels, ref)
        if isinstance(row, str):
            summary.skip(row)
            continue
        rows.setdefault(split_of(ex, val_fraction), []).append(row)
    for split, items in rows.items():
        summary.rows[split] = len(items)
        if fmt in ("llamafactory", "dpo"):
            path = out / f"{name}_{split}.json"
            path.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", "utf-8")
        else:
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
            (out / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    if fmt in ("llamafactory", "dpo"):
        _dataset_info(out, name, sorted(rows), ranking=fmt == "dpo")
    return summary


def _dataset_info(out: Path, name: str, splits: list[str], *, ranking: bool) -> None:
    """Add this export's entries to out/dataset_info.json (LLaMA-Factory's dataset registry)."""
    path = out / "dataset_info.json"
    info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    columns = {"messages": "messages", "images": "images"}
    if ranking:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    for split in splits:
        entry: dict[str, Any] = {
            "file_name": f"{name}_{split}.json",
            "formatting": "sharegpt",
            "columns": columns,
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }
        if ranking:
            entry["ranking"] = True
        info[f"{name}_{split}"] = entry
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_llamafactory(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Rows of each dataset in `out`, read as LLaMA-Factory's loader does: the dataset_info.json
    entries, the ShareGPT converter's role order and turn count, mm_plugin's one `<image>` per
    image, media paths joined to the dataset dir (which must exist)."""
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    datasets = {}
    for name, attr in info.items():
        if attr.get("formatting") != "sharegpt":
            raise ValueError(f"{name}: formatting is {attr.get('formatting')!r}, not sharegpt")
        tags, columns = attr["tags"], attr["columns"]
        turns = (tags["user_tag"], tags["assistant_tag"])
        rows = json.loads((out / attr["file_name"]).read_text(encoding="utf-8"))
        for k, row in enumerate(rows):
            messages = row[columns["messages"]]
            roles = [m[tags["role_tag"]] for m in messages]
            if roles != [turns[i % 2] for i in range(len(roles))]:
                raise ValueError(f"{name} row {k}: roles {roles} do not alternate user/assistant")
            if len(messages) % 2 != (1 if attr.get("ranking") else 0):
                raise ValueError(f"{name} row {k}: {len(messages)} turns")
            images = row[columns["images"]]
            text = "".join(m[tags["content_tag"]] for m in messages)
            if text.count(IMAGE_TOKEN) != len(images):
                raise ValueError(f"{name} row {k}: {len(images)} images, other <image> count")
            missing = [p for p in images if not (out / p).is_file()]
            if missing:
                raise FileNotFoundError(f"{name} row {k}: no image {missing[0]} in {out}")
        datasets[name] = rows
    return datasets
