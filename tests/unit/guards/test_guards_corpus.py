"""The labelled corpus: every case's verdict, and abstention precision / recall."""

from __future__ import annotations

from typing import Any

import pytest
from boxguard.guards import Policy, TokenLogprob, Verdict, verify
from guards_support import load_corpus

CASES = load_corpus()


def run_case(c: dict[str, Any]) -> Verdict:
    """verify() one corpus case, lexicon only (results must not depend on the extra)."""
    policy = Policy(label_embeddings=False, **c.get("policy", {}))
    tokens = (
        [TokenLogprob(token=t, logprob=lp) for t, lp in c["token_logprobs"]]
        if c.get("token_logprobs")
        else None
    )
    return verify(
        c["output"],
        c["expression"],
        tuple(c["image_size"]),
        frame=c.get("frame", "auto"),
        model_size=tuple(c["model_size"]) if c.get("model_size") else None,
        multiple=c.get("multiple", False),
        token_logprobs=tokens,
        policy=policy,
    )


def test_corpus_size_and_coverage() -> None:
    assert len(CASES) >= 60
    cats = {c["category"] for c in CASES}
    assert {
        "format",
        "geometry",
        "cardinality",
        "label",
        "think",
        "confidence",
        "no_target",
    } <= cats


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    v = run_case(case)
    assert v.status == case["expected_status"], [c for c in v.checks if not c.passed]
    assert sorted(v.reasons) == sorted(case["expected_reasons"])
    assert len(v.detections) == len(case["expected_boxes"])
    for det, box in zip(v.detections, case["expected_boxes"], strict=True):
        assert det.bbox == pytest.approx(tuple(box), abs=1.0)


def abstention_scores() -> dict[str, float]:
    """Precision and recall of abstaining, against the corpus's should_abstain ground truth."""
    tp = fp = fn = tn = 0
    for c in CASES:
        abstained = run_case(c).status == "abstained"
        should = c["should_abstain"]
        tp += abstained and should
        fp += abstained and not should
        fn += (not abstained) and should
        tn += (not abstained) and not should
    return {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def test_abstention_precision_recall(record_property: pytest.RecordProperty) -> None:
    s = abstention_scores()
    # Shown after the run by conftest's pytest_terminal_summary, not in the progress dots.
    record_property(
        "summary",
        f"guards corpus ({len(CASES)} cases): abstention precision "
        f"{s['precision']:.3f}, recall {s['recall']:.3f} "
        f"(tp {s['tp']}, fp {s['fp']}, fn {s['fn']}, tn {s['tn']})",
    )
    assert s["precision"] >= 0.9 and s["recall"] >= 0.9
