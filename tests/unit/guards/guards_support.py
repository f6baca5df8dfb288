"""Helpers the guards unit tests import (a unique module name, unlike `conftest`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parents[2] / "data" / "guards" / "corpus.jsonl"


class FakeVerifier:
    """A scripted Verifier: fixed P(yes) and fixed samples; records what it was asked."""

    def __init__(
        self, p_yes: float = 0.9, samples: list[str] | None = None, fail: bool = False
    ) -> None:
        self.p_yes = p_yes
        self.samples = samples or []
        self.fail = fail
        self.questions: list[tuple[tuple[float, float, float, float], str]] = []
        self.k_asked: list[int] = []

    def yes_probability(self, bbox: tuple[float, float, float, float], question: str) -> float:
        """Return the scripted P(yes)."""
        if self.fail:
            raise RuntimeError("backend down")
        self.questions.append((bbox, question))
        return self.p_yes

    def sample_outputs(self, k: int) -> list[str]:
        """Return the scripted samples (at most k)."""
        if self.fail:
            raise RuntimeError("backend down")
        self.k_asked.append(k)
        return self.samples[:k]


def load_corpus() -> list[dict[str, Any]]:
    """The labelled corpus cases."""
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
