"""Evaluate stored model outputs with the guards, without a server (``boxguard eval --outputs``).

Two input formats, gzipped or not:

- a VLM-R1 evaluation log (``src/eval/test_rec_r1.py``): ``{"accuracy": float, "results":
  [{"image", "question", "ground_truth", "model_output", "extracted_answer", "correct"}, ...]}``;
  the expression is the ``question`` without its "Please provide the bounding box coordinate of
  the region this sentence describes:" prefix;
- boxguard outputs JSONL, one answer a line::

    {"id": "a1", "expression": "the red car", "output": "<raw model text>",
     "bbox": [x1, y1, x2, y2] | null, "image_size": [w, h], "frame": "pixels",
     "model_size": [w_in, h_in], "image": "images/a1.jpg"}

  ``image_size``, ``frame`` (default "auto"), ``model_size`` (default: the image size, i.e. the
  model answered in original pixels) and ``image`` (only for thumbnails) are optional.

When the image size is unknown (VLM-R1 logs record none), the frame is the smallest one holding
every parsed coordinate, plus one pixel (never the true box, which would leak the target), and
the whole-image check is off (``whole_image_frac=1.0``): without the real size it cannot be
judged.

Example:
    >>> from boxguard.clients.offline import run_offline_eval
    >>> summary = run_offline_eval("rec__grpo-ckpt3000__refcoco_val.json.gz")  # doctest: +SKIP
    >>> summary["parse_rate"], summary["checks"]["label_match"]["catch_rate"]  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boxguard.guards import Policy, Verdict, verify
from boxguard.guards.points import parse_answer
from boxguard.guards.types import Frame, OutputMode

from .datasets import Sample, jsonl_rows, r1_expression, validated_bbox
from .evaluation import SampleRecord, score_sample
from .metrics import summarize
from .results import GroundResult

__all__ = [
    "StoredOutput",
    "check_breakdown",
    "evaluate_outputs",
    "load_outputs",
    "run_offline_eval",
]

OFFLINE_MODEL = "stored outputs"
_FRAMES = ("pixels", "relative1000", "normalized", "auto")


@dataclass(frozen=True)
class StoredOutput:
    """One stored model answer with its sample; `log_parsed` is the log's own parse, if any."""

    sample: Sample
    output: str
    image_size: tuple[float, float] | None = None
    model_size: tuple[float, float] | None = None
    frame: Frame = "auto"
    log_parsed: bool | None = None


def _read_text(path: Path) -> str:
    """The file's text, gunzipped when it is gzip."""
    with path.open("rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rt", encoding="utf-8") as gz:
            return gz.read()
    return path.read_text(encoding="utf-8")


def _size(value: Any, where: str, name: str) -> tuple[float, float] | None:
    """A validated (width, height) pair, or None."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{where}: {name} must be [width, height], got {value!r}")
    w, h = (float(v) for v in value)
    if not (w > 0 and h > 0):
        raise ValueError(f"{where}: {name} must be positive, got {value!r}")
    return w, h


def _from_vlm_r1_log(data: Mapping[str, Any], path: Path, image_root: Path) -> list[StoredOutput]:
    """Stored outputs of a VLM-R1 evaluation log."""
    rows = data.get("results")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a VLM-R1 log has a 'results' list")
    out: list[StoredOutput] = []
    for index, row in enumerate(rows):
        where = f"{path}:results[{index}]"
        if not isinstance(row, dict) or "model_output" not in row or "ground_truth" not in row:
            raise ValueError(f"{where}: missing 'model_output' or 'ground_truth'")
        extracted = row.get("extracted_answer")
        log_parsed = None
        if isinstance(extracted, list):
            log_parsed = any(float(v) != 0.0 for v in extracted)
        image = row.get("image") or ""
        out.append(
            StoredOutput(
                sample=Sample(
                    id=f"{index:05d}",
                    image=image_root / (image[0] if isinstance(image, list) else image),
                    expression=r1_expression({"problem": row.get("question")}, where),
                    bbox=validated_bbox(row["ground_truth"], where),
                ),
                output=str(row["model_output"] or ""),
                frame="pixels",
                log_parsed=log_parsed,
            )
        )
    return out


def _from_jsonl(text: str, path: Path, image_root: Path) -> list[StoredOutput]:
    """Stored outputs of a boxguard outputs JSONL file."""
    out: list[StoredOutput] = []
    seen: set[str] = set()
    for lineno, where, row in jsonl_rows(text, path, {"expression", "output", "bbox"}):
        sample_id = str(row.get("id", lineno))
        if sample_id in seen:
            raise ValueError(f"{where}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        frame = row.get("frame", "auto")
        if frame not in _FRAMES:
            raise ValueError(f"{where}: frame must be one of {_FRAMES}, got {frame!r}")
        out.append(
            StoredOutput(
                sample=Sample(
                    sample_id,
                    image_root / str(row.get("image") or ""),
                    str(row["expression"]),
                    validated_bbox(row["bbox"], where),
                ),
                output=str(row["output"]),
                image_size=_size(row.get("image_size"), where, "image_size"),
                model_size=_size(row.get("model_size"), where, "model_size"),
                frame=frame,
            )
        )
    return out


def load_outputs(path: str | Path, *, image_root: str | Path | None = None) -> list[StoredOutput]:
    """Load stored outputs: a VLM-R1 log (JSON object) or boxguard outputs JSONL, gzip or not.

    Example:
        >>> outs = load_outputs("rec__grpo-ckpt3000__refcoco_val.json.gz")  # doctest: +SKIP
        >>> outs[0].sample.expression, outs[0].output[:20]  # doctest: +SKIP
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    text = _read_text(path)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None  # several lines of objects: JSONL
        if isinstance(data, dict) and "results" in data:
            return _from_vlm_r1_log(data, path, root)
    return _from_jsonl(text, path, root)


def _unknown_size(stored: StoredOutput, output: OutputMode = "box") -> tuple[float, float]:
    """The smallest frame holding every parsed coordinate, plus one pixel.

    The true box is left out on purpose: a frame fitted to it would tell the guards where the
    target is.
    """
    xs = [1.0]
    ys = [1.0]
    for box in parse_answer(stored.output, output).boxes:
        x1, y1, x2, y2 = box.coords
        xs += [v for v in (x1, x2) if math.isfinite(v)]
        ys += [v for v in (y1, y2) if math.isfinite(v)]
    return float(math.ceil(max(xs)) + 1), float(math.ceil(max(ys)) + 1)


def _result(verdict: Verdict, stored: StoredOutput, size: tuple[float, float]) -> GroundResult:
    """The verdict in the server's response shape, so live and offline reports share code."""
    dump = verdict.model_dump(
        include={"status", "detections", "candidates", "reasons", "checks", "think"}
    )
    mw, mh = stored.model_size if stored.model_size is not None else (None, None)
    return GroundResult.model_validate(
        {
            **dump,
            "id": stored.sample.id,
            "raw_output": stored.output,
            "image": {
                "width": round(size[0]),
                "height": round(size[1]),
                "model_width": None if mw is None else round(mw),
                "model_height": None if mh is None else round(mh),
            },
            "model": OFFLINE_MODEL,
        }
    )


def evaluate_outputs(
    outputs: Iterable[StoredOutput],
    policy: Policy | None = None,
    *,
    multiple: bool = False,
    output: OutputMode = "box",
) -> list[SampleRecord]:
    """Run the guards on every stored output and score it as a live evaluation would.

    With ``output="point"`` each answer is read as points (a box's centre where the model wrote
    a box) and scored as point-in-box accuracy against the truth box.
    """
    base = policy or Policy()
    unknown = base.model_copy(update={"whole_image_frac": 1.0})
    records: list[SampleRecord] = []
    for stored in outputs:
        size = stored.image_size or _unknown_size(stored, output)
        verdict = verify(
            stored.output,
            stored.sample.expression,
            size,
            frame=stored.frame,
            model_size=stored.model_size,
            multiple=multiple,
            policy=base if stored.image_size else unknown,
            mode=output,
        )
        records.append(score_sample(stored.sample, _result(verdict, stored, size)))
    return records


def _rate(part: int, whole: int) -> float | None:
    """part / whole, None for an empty whole."""
    return part / whole if whole else None


def check_breakdown(records: Sequence[SampleRecord]) -> dict[str, dict[str, Any]]:
    """Per failed check: abstentions, how many were right answers, false-abstention and catch
    rates (of all right / all wrong raw answers); ``"all"`` is the verdict as a whole.

    A sample abstained by two checks counts for both. Only samples with a target are counted.

    Example:
        >>> check_breakdown([])
        {'all': {'abstained': 0, 'right_abstained': 0, 'wrong_caught': 0, 'false_abstention_rate': None, 'catch_rate': None}}
    """  # noqa: E501 - a doctest line
    scored = [r for r in records if r.status != "error" and r.sample.has_target]
    right = sum(r.raw_correct for r in scored)
    wrong = len(scored) - right
    counts: dict[str, list[int]] = {"all": [0, 0]}
    for record in scored:
        if record.status != "abstained":
            continue
        for name in ("all", *dict.fromkeys(record.reasons)):
            cell = counts.setdefault(name, [0, 0])
            cell[0 if record.raw_correct else 1] += 1
    return {
        name: {
            "abstained": r + w,
            "right_abstained": r,
            "wrong_caught": w,
            "false_abstention_rate": _rate(r, right),
            "catch_rate": _rate(w, wrong),
        }
        for name, (r, w) in counts.items()
    }


def summarize_outputs(
    records: Sequence[SampleRecord], outputs: Sequence[StoredOutput]
) -> dict[str, Any]:
    """The live report's summary plus parse rates and the per-check breakdown."""
    summary = summarize([r.outcome() for r in records])
    parsed = [
        r.result is not None and any(c.name == "format" and c.passed for c in r.result.checks)
        for r in records
    ]
    logged = [o.log_parsed for o in outputs if o.log_parsed is not None]
    summary["parse_rate"] = _rate(sum(parsed), len(parsed))
    summary["log_parse_rate"] = _rate(sum(logged), len(logged)) if logged else None
    summary["checks"] = check_breakdown(records)
    return summary


def run_offline_eval(
    outputs_path: str | Path,
    *,
    report_dir: str | Path | None = None,
    image_root: str | Path | None = None,
    policy: Mapping[str, Any] | None = None,
    multiple: bool = False,
    limit: int | None = None,
    max_thumbnails: int = 500,
    output: OutputMode = "box",
) -> dict[str, Any]:
    """Load stored outputs, verify and score them, write the report; return the summary.

    The report is the live evaluation's (samples.jsonl, report.json, report.md, PNG, index.html;
    thumbnails only when the images exist) plus ``parse_rate``, ``log_parse_rate`` and
    ``checks`` (see `check_breakdown`).
    """
    outputs = load_outputs(outputs_path, image_root=image_root)
    if limit is not None:
        outputs = outputs[:limit]
    records = evaluate_outputs(
        outputs, Policy(**dict(policy or {})), multiple=multiple, output=output
    )
    summary = summarize_outputs(records, outputs)
    summary["dataset"] = str(outputs_path)
    summary["server"] = "offline"
    summary["model"] = OFFLINE_MODEL
    summary["options"] = {"multiple": multiple, "output": output, "policy": dict(policy or {})}
    if report_dir is not None:
        from .report import write_report

        has_images = bool(outputs) and outputs[0].sample.image.is_file()
        write_report(
            records, summary, Path(report_dir), max_thumbnails=max_thumbnails if has_images else 0
        )
    return summary
