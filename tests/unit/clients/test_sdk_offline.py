"""Offline evaluation of stored outputs: loaders, scoring, per-check breakdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boxguard.clients.offline import (
    check_breakdown,
    evaluate_outputs,
    load_outputs,
    run_offline_eval,
)
from boxguard.guards import Policy
from sdk_fakes import TRUTH, write_vlm_r1_log

RIGHT = '[{"bbox_2d": [10, 10, 50, 50], "label": "red car"}]'
WRONG_LABEL = '[{"bbox_2d": [60, 60, 90, 90], "label": "blue truck"}]'
ANSWER_RIGHT_BOX = '[{"bbox_2d": [10, 10, 50, 50], "label": "blue truck"}]'
LEXICON_ONLY = Policy(label_embeddings=False)


def test_vlm_r1_log(tmp_path: Path) -> None:
    outs = load_outputs(write_vlm_r1_log(tmp_path / "log.json.gz", [("red car", RIGHT)]))
    assert len(outs) == 1
    assert outs[0].sample.expression == "red car"
    assert outs[0].sample.bbox == (10.0, 10.0, 50.0, 50.0)
    assert outs[0].frame == "pixels" and outs[0].image_size is None
    assert outs[0].log_parsed is False


def test_outputs_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "outs.jsonl"
    rows = [
        {
            "id": "a",
            "expression": "red car",
            "output": RIGHT,
            "bbox": TRUTH,
            "image_size": [100, 80],
            "frame": "pixels",
        },
        {"id": "b", "expression": "the cat", "output": "[]", "bbox": None},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    outs = load_outputs(path)
    assert [o.sample.id for o in outs] == ["a", "b"]
    assert outs[0].image_size == (100.0, 80.0) and outs[1].frame == "auto"
    records = evaluate_outputs(outs, LEXICON_ONLY)
    assert [r.correct for r in records] == [True, True]  # 'b': no target, answered empty


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"expression": "x", "output": "[]"}, "missing field"),
        ({"expression": "x", "output": "[]", "bbox": None, "frame": "inches"}, "frame"),
        ({"expression": "x", "output": "[]", "bbox": None, "image_size": [0, 5]}, "image_size"),
    ],
)
def test_outputs_jsonl_errors(tmp_path: Path, row: dict[str, object], error: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=error):
        load_outputs(path)


def test_unknown_size_never_comes_from_the_truth(tmp_path: Path) -> None:
    # The truth lies far outside the answer: the frame must not stretch to it.
    log = write_vlm_r1_log(tmp_path / "log.json.gz", [("red car", RIGHT)], gz=False)
    rec = evaluate_outputs(load_outputs(log), LEXICON_ONLY)[0]
    assert rec.result is not None
    assert (rec.result.image.width, rec.result.image.height) == (51, 51)


def test_check_breakdown(tmp_path: Path) -> None:
    rows = [
        ("red car", RIGHT),
        ("red car", WRONG_LABEL),
        ("red car", ANSWER_RIGHT_BOX),
        ("red car", "no box here"),
    ]
    log = write_vlm_r1_log(tmp_path / "l.json.gz", rows)
    records = evaluate_outputs(load_outputs(log), LEXICON_ONLY)
    checks = check_breakdown(records)
    # 2 right answers (1 abstained by label_match), 2 wrong (both abstained).
    assert checks["all"] == {
        "abstained": 3,
        "right_abstained": 1,
        "wrong_caught": 2,
        "false_abstention_rate": 0.5,
        "catch_rate": 1.0,
    }
    assert checks["label_match"]["right_abstained"] == 1
    assert checks["label_match"]["wrong_caught"] == 1
    assert checks["format"] == {
        "abstained": 1,
        "right_abstained": 0,
        "wrong_caught": 1,
        "false_abstention_rate": 0.0,
        "catch_rate": 0.5,
    }


def test_run_offline_eval_writes_the_live_report(tmp_path: Path) -> None:
    log = write_vlm_r1_log(tmp_path / "l.json.gz", [("red car", RIGHT), ("red car", "nothing")])
    summary = run_offline_eval(log, report_dir=tmp_path / "out", policy={"label_embeddings": False})
    assert summary["parse_rate"] == 0.5 and summary["log_parse_rate"] == 0.0
    assert summary["raw_accuracy"] == 0.5 and summary["coverage"] == 0.5
    for name in ("samples.jsonl", "report.json", "report.md", "index.html"):
        assert (tmp_path / "out" / name).is_file()
    assert "## Abstentions per check" in (tmp_path / "out" / "report.md").read_text()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["checks"]["format"]["wrong_caught"] == 1
