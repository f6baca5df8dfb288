"""Fakes of the SDK unit tests: server answers over an httpx MockTransport."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import httpx
from PIL import Image


def make_body(
    status: str = "accepted",
    detections: list[dict[str, Any]] | None = None,
    candidates: list[dict[str, Any]] | None = None,
    reasons: list[str] | None = None,
    width: int = 64,
    height: int = 48,
    **extra: Any,
) -> dict[str, Any]:
    """A GroundResponse body."""
    return {
        "id": "rid-1",
        "status": status,
        "detections": detections or [],
        "candidates": candidates or [],
        "reasons": reasons or [],
        "checks": [],
        "image": {"width": width, "height": height, "model_width": 56, "model_height": 56},
        "model": "tiny",
        "timings_ms": {"generate": 12.0},
        **extra,
    }


def problem(status: int, code: str, detail: str = "nope", request_id: str = "rid-p") -> dict:
    """A problem+json body."""
    return {
        "type": "about:blank",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }


class FakeServer:
    """Answers queued responses in order (the last one repeats) and records every request."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        return item

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """JSON bodies of the recorded requests."""
        return [json.loads(r.content) for r in self.requests if r.content]

    def transport(self) -> httpx.MockTransport:
        """A sync MockTransport backed by this fake."""
        return httpx.MockTransport(self)


def ok(body: dict[str, Any] | None = None, request_id: str = "rid-1") -> httpx.Response:
    """A 200 answer."""
    return httpx.Response(200, json=body or make_body(), headers={"X-Request-ID": request_id})


def fail(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """A problem+json answer."""
    return httpx.Response(
        status,
        content=json.dumps(problem(status, code)).encode(),
        headers={
            "content-type": "application/problem+json",
            "X-Request-ID": "rid-h",
            **(headers or {}),
        },
    )


def png_bytes(size: tuple[int, int] = (64, 48), color: str = "white") -> bytes:
    """A plain image as PNG bytes."""
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


# A tiny evaluation set and the fake server answers to it (see test_sdk_evaluation.py for the
# hand-computed metrics).
TARGET = [10, 10, 30, 30]
EVAL_ROWS = [
    {"id": "s1", "image": "img/s1.png", "expression": "right box", "bbox": TARGET},
    {"id": "s2", "image": "img/s2.png", "expression": "wrong box", "bbox": TARGET},
    {"id": "s3", "image": "img/s3.png", "expression": "unsure box", "bbox": TARGET},
    {"id": "s4", "image": "img/s4.png", "expression": "nothing here", "bbox": None},
    {"id": "s5", "image": "img/s5.png", "expression": "hallucinated", "bbox": None},
]


def _check(name: str, passed: bool, score: float | None = None) -> dict[str, Any]:
    return {"name": name, "passed": passed, "score": score, "detail": "", "fatal": True}


EVAL_ANSWERS: dict[str, dict[str, Any]] = {
    "right box": make_body(
        detections=[{"bbox": [11, 11, 30, 30], "label": "box", "confidence": 0.9}],
        candidates=[{"bbox": [11, 11, 30, 30], "label": "box", "confidence": 0.9}],
    ),
    "wrong box": make_body(
        detections=[{"bbox": [40, 30, 60, 45], "label": "box", "confidence": 0.6}],
        candidates=[{"bbox": [40, 30, 60, 45], "label": "box", "confidence": 0.6}],
    ),
    "unsure box": make_body(
        status="abstained",
        candidates=[{"bbox": [10, 10, 30, 30], "label": "box", "confidence": 0.2}],
        reasons=["confidence"],
        checks=[_check("confidence", False, 0.2)],
    ),
    "nothing here": make_body(checks=[_check("confidence", True, 0.95)]),
    "hallucinated": make_body(
        status="abstained",
        candidates=[{"bbox": [5, 5, 20, 20], "label": "cat", "confidence": 0.5}],
        reasons=["label_match"],
    ),
}


def eval_handler(request: httpx.Request) -> httpx.Response:
    """The fake server of the evaluation tests: answers by expression."""
    expression = json.loads(request.content)["expression"]
    return httpx.Response(200, json=EVAL_ANSWERS[expression], headers={"X-Request-ID": expression})


def write_eval_set(root: Path) -> Path:
    """Images and val.jsonl of EVAL_ROWS under root; returns the JSONL path."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    for row in EVAL_ROWS:
        Image.new("RGB", (64, 48), "white").save(root / row["image"])
    path = root / "val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in EVAL_ROWS))
    return path


VLM_R1_QUESTION = (
    "Please provide the bounding box coordinate of the region this sentence describes: {}."
)
TRUTH = [10, 10, 50, 50]  # the true box of every row of write_vlm_r1_log


def write_vlm_r1_log(path: Path, rows: list[tuple[str, str]], gz: bool = True) -> Path:
    """A VLM-R1 log of (expression, model_output) rows, all with the same true box."""
    data = {
        "accuracy": 50.0,
        "results": [
            {
                "image": "train2014/x.jpg",
                "question": VLM_R1_QUESTION.format(expr),
                "ground_truth": TRUTH,
                "model_output": out,
                "extracted_answer": [0, 0, 0, 0],
                "correct": 0,
            }
            for expr, out in rows
        ],
    }
    text = json.dumps(data)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
