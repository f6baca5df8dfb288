"""The public API: exports, signature, light imports, the issue's headline cases."""

from __future__ import annotations

import inspect
import subprocess
import sys

import boxguard.guards as guards
from boxguard.guards import Policy, Verdict, verify


def test_exports_exactly() -> None:
    assert sorted(guards.__all__) == sorted(
        [
            "verify",
            "prepare",
            "Plan",
            "CropQuestion",
            "Evidence",
            "Policy",
            "Verdict",
            "Detection",
            "CheckResult",
            "TokenLogprob",
            "Verifier",
            "GuardFault",
        ]
    )


def test_signature_is_binding() -> None:
    params = inspect.signature(verify).parameters
    assert list(params)[:3] == ["output", "expression", "image_size"]
    kw = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert kw["frame"] == "auto" and kw["model_size"] is None and kw["multiple"] is False
    assert kw["token_logprobs"] is None and kw["verifier"] is None
    assert isinstance(kw["policy"], Policy)


def test_import_is_light() -> None:
    code = (
        "import sys, boxguard.guards as g; "
        "g.verify('[1,2,30,40]', 'the dog', (100, 100)); "
        "bad = [m for m in ('torch', 'transformers', 'vllm', 'fastapi', "
        "'sentence_transformers', 'boxguard.server') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_known_case_metal_pole() -> None:
    out = (
        "<think>There is a metal pole on the left and a man in blue shirt next to it. The man "
        'in blue shirt is the target.</think><answer>```json\n[{"bbox_2d": [300, 100, 420, '
        '460], "label": "man in blue shirt"}]\n```</answer>'
    )
    v = verify(out, "metal pole", (640, 480), frame="pixels", model_size=(644, 476))
    assert isinstance(v, Verdict) and v.status == "abstained"
    assert v.reasons == ["label_match", "think_consistency"]
    assert v.detections == [] and len(v.candidates) == 1 and v.think is not None


def test_check_order_and_names() -> None:
    v = verify('[{"bbox_2d": [1, 2, 30, 40], "label": "dog"}]', "the dog", (100, 100))
    assert [c.name for c in v.checks] == [
        "format",
        "geometry",
        "cardinality",
        "label_match",
        "think_consistency",
        "confidence",
        "visual_check",
        "self_consistency",
    ]


def test_format_failure_only_reports_format() -> None:
    v = verify("I am not sure.", "the dog", (100, 100))
    assert v.reasons == ["format"] and [c.name for c in v.checks] == ["format"]


def test_no_object_answer_is_accepted_empty() -> None:
    v = verify("```json\n[]\n```", "the dog", (100, 100))
    assert v.accepted and v.detections == [] and v.candidates == []


def test_qwen25_pixels_mapped_to_original() -> None:
    v = verify(
        '[{"bbox_2d": [322, 238, 644, 476], "label": "dog"}]',
        "the dog",
        (1280, 960),
        frame="pixels",
        model_size=(644, 476),
    )
    assert v.detections[0].bbox == (640, 480, 1280, 960) and v.frame == "pixels"
