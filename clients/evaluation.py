"""Run an evaluation set through a boxguard server and score every answer.

Example:
    >>> from boxguard.clients import Client
    >>> from boxguard.clients.evaluation import run_eval
    >>> with Client("http://127.0.0.1:8000") as client:  # doctest: +SKIP
    ...     report = run_eval("shapes/val.jsonl", client, report_dir="eval-out")
    ...     print(report["accuracy"], report["coverage"], report["phi"]["10"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boxguard.guards.threshold import verdict_confidence
from boxguard.guards.types import OutputMode

from .datasets import Format, Sample, load_dataset
from .errors import BoxguardError
from .metrics import IOU_THRESHOLD, Outcome, iou, summarize
from .results import GroundResult
from .sync import Client

__all__ = [
    "SampleRecord",
    "evaluate",
    "point_in_box",
    "run_eval",
    "score_sample",
    "verdict_confidence",
]

CONFIDENCE_CHECK = "confidence"


@dataclass
class SampleRecord:
    """The scored answer to one sample; `row()` is its line in samples.jsonl."""

    sample: Sample
    status: str
    correct: bool
    raw_correct: bool
    iou: float | None
    confidence: float | None
    reasons: list[str]
    result: GroundResult | None = None
    error: BoxguardError | None = field(default=None, repr=False)

    @property
    def category(self) -> str:
        """'right', 'wrong', 'abstained' or 'error', for the HTML grid."""
        if self.status == "error":
            return "error"
        if self.status == "abstained":
            return "abstained"
        return "right" if self.correct else "wrong"

    def outcome(self) -> Outcome:
        """What this sample contributes to the metrics."""
        result = self.result
        return Outcome(
            confidence=self.confidence,
            correct=self.raw_correct,
            abstained=self.status == "abstained"
            and any(r != CONFIDENCE_CHECK for r in self.reasons or ["unspecified"]),
            has_target=self.sample.has_target,
            answered=self.status == "accepted",
            verdict_correct=self.correct,
            predicted_empty=result is not None and result.accepted and not result.detections,
            reasons=tuple(self.reasons),
            error=self.status == "error",
        )

    def signals(self) -> dict[str, Any] | None:
        """What `boxguard calibrate` thresholds: raw correctness, confidence, P(yes), agreement
        and every check's verdict and score (None for a failed request)."""
        result = self.result
        if result is None:
            return None
        scores = {c.name: c.score for c in result.checks}
        return {
            "id": self.sample.id,
            "has_target": self.sample.has_target,
            "has_box": result.top_candidate is not None,
            "correct": self.raw_correct,
            "confidence": self.confidence,
            "p_yes": scores.get("visual_check"),
            "agreement": scores.get("self_consistency"),
            "checks": {c.name: c.passed for c in result.checks},
            "scores": scores,
        }

    def row(self) -> dict[str, Any]:
        """The samples.jsonl row."""
        result = self.result
        return {
            "id": self.sample.id,
            "status": self.status,
            "correct": self.correct,
            "raw_correct": self.raw_correct,
            "iou": self.iou,
            "confidence": self.confidence,
            "reasons": self.reasons,
            "expression": self.sample.expression,
            "image": str(self.sample.image),
            "bbox": list(self.sample.bbox) if self.sample.bbox else None,
            "detections": [d.model_dump() for d in result.detections] if result else [],
            "candidates": [d.model_dump() for d in result.candidates] if result else [],
            "request_id": result.request_id if result else (self.error and self.error.request_id),
            "error": None if self.error is None else str(self.error),
            "signals": self.signals(),
        }


def score_sample(sample: Sample, outcome: GroundResult | BoxguardError) -> SampleRecord:
    """Score one answer.

    A target sample is right when accepted and the first detection has IoU > 0.5 (a point:
    lies in the truth box; `iou` is then 1.0 inside, 0.0 outside); a no-target sample when
    accepted with no detections, or for points when no point was accepted (an absent element
    abstains). ``raw_correct`` judges the model's top box or point regardless of the verdict
    (for no-target samples: right when there is none at all).

    Example:
        >>> from pathlib import Path
        >>> r = GroundResult.model_validate({"id": "1", "status": "abstained", "model": "m",
        ...     "image": {"width": 10, "height": 10}, "reasons": ["confidence"],
        ...     "candidates": [{"bbox": [0, 0, 5, 5], "confidence": 0.2}]})
        >>> rec = score_sample(Sample("a", Path("a.png"), "x", (0, 0, 5, 5)), r)
        >>> rec.correct, rec.raw_correct, rec.iou, rec.confidence
        (False, True, 1.0, 0.2)
    """
    if isinstance(outcome, BoxguardError):
        return SampleRecord(
            sample, "error", False, False, None, None, [f"error:{outcome.code}"], error=outcome
        )
    top = outcome.top_candidate
    confidence = verdict_confidence(outcome)
    points = any(d.point is not None for d in (*outcome.detections, *outcome.candidates))
    if sample.bbox is None:
        raw_correct = top is None
        correct = (
            not (outcome.accepted and outcome.detections)
            if points
            else (outcome.accepted and not outcome.detections)
        )
        overlap = None
    elif points:
        overlap = float(point_in_box(top.point, sample.bbox)) if top and top.point else None
        raw_correct = overlap == 1.0
        correct = outcome.accepted and bool(outcome.detections) and raw_correct
    else:
        overlap = iou(top.bbox, sample.bbox) if top is not None and top.bbox else None
        raw_correct = overlap is not None and overlap > IOU_THRESHOLD
        correct = outcome.accepted and bool(outcome.detections) and raw_correct
    return SampleRecord(
        sample=sample,
        status=outcome.status,
        correct=correct,
        raw_correct=raw_correct,
        iou=overlap,
        confidence=confidence,
        reasons=list(outcome.reasons),
        result=outcome,
    )


def point_in_box(point: Sequence[float], box: Sequence[float]) -> bool:
    """Whether (x, y) lies in [x1, y1, x2, y2], edges included: ScreenSpot's click accuracy.

    Example:
        >>> point_in_box((5, 5), (0, 0, 10, 10)), point_in_box((11, 5), (0, 0, 10, 10))
        (True, False)
    """
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def evaluate(
    samples: Sequence[Sample],
    client: Client,
    *,
    concurrency: int = 8,
    progress: bool = True,
    think: bool = False,
    multiple: bool = False,
    policy: Mapping[str, Any] | None = None,
    output: OutputMode = "box",
) -> list[SampleRecord]:
    """Ground every sample (bounded concurrency, progress bar) and score each answer."""
    missing = [str(s.image) for s in samples if not s.image.is_file()]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError(f"images not found: {', '.join(missing[:3])}{more}")
    outcomes = client.ground_many(
        [(s.image, s.expression) for s in samples],
        concurrency=concurrency,
        progress=progress,
        return_exceptions=True,
        think=think,
        multiple=multiple,
        policy=policy,
        output=output,
    )
    return [score_sample(s, o) for s, o in zip(samples, outcomes, strict=True)]


def run_eval(
    dataset: str | Path,
    client: Client,
    *,
    report_dir: str | Path | None = None,
    image_root: str | Path | None = None,
    fmt: Format = "auto",
    concurrency: int = 8,
    progress: bool = True,
    think: bool = False,
    multiple: bool = False,
    policy: Mapping[str, Any] | None = None,
    limit: int | None = None,
    max_thumbnails: int = 500,
    output: OutputMode = "box",
) -> dict[str, Any]:
    """Load `dataset`, evaluate it against `client`'s server, write the report; return the summary.

    With ``output="point"`` the server is asked for points, scored as point-in-box accuracy.

    With `report_dir`, writes samples.jsonl, report.json, report.md, risk_coverage.png and
    index.html (+ thumbs/) there.
    """
    samples = load_dataset(dataset, image_root=image_root, fmt=fmt)
    if limit is not None:
        samples = samples[:limit]
    records = evaluate(
        samples,
        client,
        concurrency=concurrency,
        progress=progress,
        think=think,
        multiple=multiple,
        policy=policy,
        output=output,
    )
    summary = summarize([r.outcome() for r in records])
    models = sorted({r.result.model for r in records if r.result is not None})
    summary["dataset"] = str(dataset)
    summary["server"] = client.base_url
    summary["model"] = models[0] if len(models) == 1 else models
    summary["options"] = {
        "think": think,
        "multiple": multiple,
        "output": output,
        "policy": dict(policy or {}),
    }
    if report_dir is not None:
        from .report import PLOT_MISSING, can_plot, write_report

        if not can_plot():
            summary["notes"] = [PLOT_MISSING]
        write_report(records, summary, Path(report_dir), max_thumbnails=max_thumbnails)
    return summary
