"""Evaluation end to end over a mock server: scoring, summary and the report files."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from boxguard.clients import Client, Overloaded
from boxguard.clients.datasets import Sample
from boxguard.clients.evaluation import run_eval, score_sample
from sdk_fakes import EVAL_ROWS, eval_handler, write_eval_set

# Hand-computed for EVAL_ROWS / EVAL_ANSWERS:
#   s1 right (IoU 361/400), s2 wrong, s3 abstained (confidence; raw right), s4 no-target answered
#   empty (right), s5 no-target abstained (label_match; raw wrong: it had a candidate).
# Confidences (raw, ranked): s4 0.95 R, s1 0.9 R, s2 0.6 W, s5 0.5 W, s3 0.2 R.
EXPECTED = {
    "n": 5,
    "accuracy": 2 / 5,
    "raw_accuracy": 3 / 5,
    "coverage": 3 / 5,
    "selective_accuracy": 2 / 3,
    "aurc": (0 + 0 + 1 / 3 + 2 / 4 + 2 / 5) / 5,
    "n_acc": 1 / 2,
    "t_acc": 1.0,
    # s5 is abstained by label_match, so no threshold answers it; answering s1 and s4 only
    # (t = 0.9) gives Φ10 = 2/5, the best.
    "best_threshold_phi10": 0.9,
    "phi10_at_best_threshold": 2 / 5,
    "coverage_at_best_threshold": 2 / 5,
}


def eval_client() -> Client:
    return Client("http://t", transport=httpx.MockTransport(eval_handler))


def test_run_eval_summary_matches_hand_computed_values(tmp_path: Path) -> None:
    dataset = write_eval_set(tmp_path / "data")
    with eval_client() as client:
        summary = run_eval(dataset, client, progress=False)
    for key, value in EXPECTED.items():
        assert summary[key] == pytest.approx(value), key
    assert summary["phi"] == {
        "1": pytest.approx((1 - 1 + 1) / 5),
        "10": pytest.approx((2 - 10) / 5),
        "100": pytest.approx((2 - 100) / 5),
    }
    assert summary["abstentions_by_reason"] == {"confidence": 1, "label_match": 1}
    assert summary["model"] == "tiny" and summary["errors"] == 0


def test_report_files(tmp_path: Path) -> None:
    dataset = write_eval_set(tmp_path / "data")
    out = tmp_path / "report"
    with eval_client() as client:
        run_eval(dataset, client, report_dir=out, progress=False)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in EVAL_ROWS]
    for row in rows:
        assert {"id", "status", "correct", "raw_correct", "iou", "confidence", "reasons"} <= set(
            row
        )
    s1, s2, s3, s4, s5 = rows
    assert (s1["status"], s1["correct"], s1["raw_correct"]) == ("accepted", True, True)
    assert s1["iou"] == pytest.approx(361 / 400) and s1["confidence"] == 0.9
    assert (s2["correct"], s2["iou"]) == (False, 0.0)
    assert (s3["status"], s3["correct"], s3["raw_correct"]) == ("abstained", False, True)
    assert s3["reasons"] == ["confidence"] and s3["confidence"] == 0.2
    assert (s4["correct"], s4["raw_correct"], s4["iou"], s4["confidence"]) == (
        True,
        True,
        None,
        0.95,
    )
    assert (s5["correct"], s5["raw_correct"]) == (False, False)
    assert s1["request_id"] == "right box"

    report = json.loads((out / "report.json").read_text())
    for key in (
        "n",
        "accuracy",
        "raw_accuracy",
        "coverage",
        "selective_accuracy",
        "aurc",
        "phi",
        "n_acc",
        "t_acc",
        "abstentions_by_reason",
        "best_threshold_phi10",
    ):
        assert key in report
    assert set(report["phi"]) == {"1", "10", "100"}
    assert report["risk_coverage"][-1] == [1.0, pytest.approx(2 / 5)]
    assert "Φ1 / Φ10 / Φ100" in (out / "report.md").read_text()
    assert (out / "risk_coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert page.count("<figure") == 5
    for category in ("right", "wrong", "abstained"):
        assert f'class="{category}"' in page
    thumbs = sorted((out / "thumbs").iterdir())
    assert len(thumbs) == 5 and all(f"thumbs/{t.name}" in page for t in thumbs)


def test_errors_are_recorded_not_fatal(tmp_path: Path) -> None:
    dataset = write_eval_set(tmp_path / "data")

    def handler(request: httpx.Request) -> httpx.Response:
        if b"wrong box" in request.content:
            return httpx.Response(429, json={"title": "busy", "status": 429, "code": "overloaded"})
        return eval_handler(request)

    with Client("http://t", transport=httpx.MockTransport(handler), retries=0) as client:
        summary = run_eval(dataset, client, report_dir=tmp_path / "r", progress=False)
    assert summary["errors"] == 1
    assert summary["abstentions_by_reason"]["error:overloaded"] == 1
    rows = [json.loads(x) for x in (tmp_path / "r" / "samples.jsonl").read_text().splitlines()]
    assert rows[1]["status"] == "error" and "overloaded" in rows[1]["error"]


def test_missing_images_fail_before_any_request(tmp_path: Path) -> None:
    dataset = write_eval_set(tmp_path / "data")
    (tmp_path / "data" / "img" / "s2.png").unlink()
    with eval_client() as client, pytest.raises(FileNotFoundError, match="s2.png"):
        run_eval(dataset, client, progress=False)


def test_score_sample_edge_cases() -> None:
    target = Sample("t", Path("x.png"), "x", (0, 0, 10, 10))
    err = Overloaded("busy")
    rec = score_sample(target, err)
    assert (rec.status, rec.correct, rec.raw_correct, rec.reasons) == (
        "error",
        False,
        False,
        ["error:overloaded"],
    )
