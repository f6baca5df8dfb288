"""A broken embedding extra is a fault that propagates, never an abstention (no extra needed)."""

from __future__ import annotations

import sys
import types

import pytest
from boxguard.guards import GuardFault, Policy, embed, verify
from boxguard.guards.embed import EmbeddingUnavailable

# "lantern" is not in the lexicon's entry for "lamp": only the embedding model can decide.
ANSWER = '[{"bbox_2d": [10, 10, 90, 90], "label": "lantern"}]'


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in for the extra's module, as if installed, with a fresh embed state."""
    module = types.ModuleType(embed._MODULE)
    monkeypatch.setitem(sys.modules, embed._MODULE, module)
    monkeypatch.setattr(embed, "available", lambda: True)
    monkeypatch.setattr(embed, "_model", None)
    embed._vector.cache_clear()
    return module


def _fails_to_load(device: str) -> object:
    raise OSError("model files are missing")


def test_a_model_that_fails_to_load_raises_at_warmup_and_on_use(
    installed: types.ModuleType,
) -> None:
    installed.load_model = _fails_to_load  # type: ignore[attr-defined]
    with pytest.raises(EmbeddingUnavailable, match="failed to load: OSError"):
        embed.warmup()
    # Not a silent fallback: every later use fails the same way.
    with pytest.raises(GuardFault):
        verify(ANSWER, "the lamp", (100, 100), policy=Policy(min_confidence=0.0))


def test_a_model_that_fails_to_encode_is_a_fault(installed: types.ModuleType) -> None:
    class Broken:
        def encode(self, texts: list[str], normalize_embeddings: bool) -> object:
            raise RuntimeError("out of memory")

    installed.load_model = lambda device: Broken()  # type: ignore[attr-defined]
    with pytest.raises(EmbeddingUnavailable, match="out of memory"):
        verify(ANSWER, "the lamp", (100, 100))


def test_without_the_extra_the_label_check_still_decides() -> None:
    if embed.available():
        pytest.skip("the embedding extra is installed")
    verdict = verify(ANSWER, "the lamp", (100, 100))
    label = next(c for c in verdict.checks if c.name == "label_match")
    assert label.ran and not label.passed and "not in the lexicon" in label.detail
