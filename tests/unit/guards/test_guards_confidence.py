"""confidence: logprobs of coordinate digits, label and branch tokens."""

from __future__ import annotations

import math
import re

import pytest
from boxguard.guards import Policy, TokenLogprob, verify
from boxguard.guards.confidence import TokenIndex, align

OUT = '[{"bbox_2d": [10, 20, 50, 60], "label": "red circle"}]'
DEMO = "the red circle left of the blue square"


def toks(text: str, lp: float = -0.01, digit_lp: float | None = None) -> list[TokenLogprob]:
    """Qwen-like pieces: one token per digit."""
    pieces = re.findall(r"\d|<\|[a-z_]+\|>| ?[A-Za-z]+|\s+|[^\sA-Za-z\d]", text)
    assert "".join(pieces) == text
    return [
        TokenLogprob(token=p, logprob=digit_lp if digit_lp is not None and p.isdigit() else lp)
        for p in pieces
    ]


def test_token_index_overlap() -> None:
    idx = TokenIndex([TokenLogprob(token=t, logprob=0.0) for t in ("ab", "c", "", "de")])
    assert list(idx.overlapping((1, 3))) == [0, 1]
    assert list(idx.overlapping((3, 5))) == [3]
    assert list(idx.overlapping((2, 2))) == []


def test_align_prefix_prefilled() -> None:
    tokens = [TokenLogprob(token="x]", logprob=0.0)]
    assert align("[x]", tokens) == 1
    assert align("abc", tokens) is None


def test_geometric_mean_over_digits_label_branch() -> None:
    v = verify(OUT, DEMO, (224, 224), token_logprobs=toks(OUT, -0.1, digit_lp=-1.0))
    # 8 digits at -1.0, 2 label tokens + 1 branch token at -0.1.
    expected = math.exp((8 * -1.0 + 3 * -0.1) / 11)
    assert v.accepted and v.detections[0].confidence == pytest.approx(expected)
    assert v.checks[5].score == pytest.approx(expected)


def test_low_confidence_abstains_and_policy_threshold() -> None:
    tokens = toks(OUT, -0.01, digit_lp=-3.0)
    v = verify(OUT, DEMO, (224, 224), token_logprobs=tokens)
    assert v.reasons == ["confidence"] and v.candidates[0].confidence is not None
    v = verify(OUT, DEMO, (224, 224), token_logprobs=tokens, policy=Policy(min_confidence=0.0))
    assert v.accepted


def test_no_object_branch_confidence() -> None:
    out = "<answer>[]</answer>"
    tokens = toks(out)
    tokens[[t.token for t in tokens].index("]")] = TokenLogprob(token="]", logprob=-3.0)
    v = verify(out, "the dog", (10, 10), token_logprobs=tokens)
    assert v.reasons == ["confidence"] and "no-object" in v.checks[5].detail


def test_box_tokens() -> None:
    out = "<|box_start|>(100,200),(300,400)<|box_end|>"
    v = verify(out, "the dog", (1000, 1000), token_logprobs=toks(out, -0.01))
    assert v.accepted and v.detections[0].confidence == pytest.approx(math.exp(-0.01))


def test_not_applicable_without_or_with_mismatched_tokens() -> None:
    v = verify(OUT, DEMO, (224, 224))
    assert v.checks[5].passed and not v.checks[5].ran and "not run" in v.checks[5].detail
    v = verify(OUT, DEMO, (224, 224), token_logprobs=[TokenLogprob(token="zz", logprob=-9.0)])
    assert v.accepted and "do not concatenate" in v.checks[5].detail


def test_stated_confidence_used_without_logprobs() -> None:
    v = verify(
        "<answer>[{'Position': [1, 2, 300, 400], 'Confidence': 0.7}]</answer>", "dog", (100, 100)
    )
    assert v.detections[0].confidence == 0.7
