"""Benchmark verify() without a verifier and without the embedding extra.

Run: python -m pytest bench/bench_guards.py --benchmark-enable
Target (issue): <= 1 ms median and <= 3 ms p99 for a single-box answer with a 200-word think
trace. Results are recorded in bench/results/guards.md.
"""

from __future__ import annotations

import statistics
import time

import pytest

from boxguard.guards import Policy, TokenLogprob, verify

_SENTENCES = [
    "I look at the image carefully and list the objects that are visible in the scene.",
    "I see a red circle near the top left, a blue square in the middle and a green star.",
    "There is also a small yellow triangle close to the bottom edge of the picture.",
    "The expression asks for the red circle left of the blue square, so I compare positions.",
    "The red circle is clearly to the left of the blue square and slightly above it.",
    "The green star is on the right side, far from the square, so it cannot be the target.",
    "The yellow triangle is below the square and is not a circle, so it is not the target.",
    "No other circle appears anywhere in the image, which makes the choice unambiguous.",
    "Its outline is sharp and the colour is a saturated red that matches the description.",
    "I estimate the corners of the circle from its leftmost, topmost and rightmost points.",
    "The target is the red circle left of the blue square.",
    "It is the red circle.",
]


def _think(words: int = 200) -> str:
    """A think trace of about `words` words in the demo-world R1 style."""
    out: list[str] = []
    i = 0
    while sum(len(s.split()) for s in out) < words - 12:
        out.append(_SENTENCES[i % 10])
        i += 1
    out += _SENTENCES[10:]
    return " ".join(out)


THINK = _think()
OUTPUT = (f"<think>{THINK}</think><answer>```json\n"
          '[{"bbox_2d": [112, 64, 298, 250], "label": "red circle"}]\n```</answer>')
EXPRESSION = "the red circle left of the blue square"
POLICY = Policy(label_embeddings=False)


def _tokens(text: str) -> list[TokenLogprob]:
    """Qwen-like pieces: digits one by one, words, single other characters."""
    import re

    return [TokenLogprob(token=t, logprob=-0.05)
            for t in re.findall(r"\d| ?[A-Za-z]+|\s+|[^\sA-Za-z\d]", text)]


TOKENS = _tokens(OUTPUT)


def _call() -> None:
    """One verify() call as the server makes it (Qwen2.5-VL pixel frame)."""
    v = verify(OUTPUT, EXPRESSION, (1280, 960), frame="pixels", model_size=(644, 476),
               policy=POLICY)
    assert v.status == "accepted"


def _call_logprobs() -> None:
    """The same with per-token logprobs (confidence check active)."""
    v = verify(OUTPUT, EXPRESSION, (1280, 960), frame="pixels", model_size=(644, 476),
               token_logprobs=TOKENS, policy=POLICY)
    assert v.status == "accepted"


def test_think_trace_is_200_words() -> None:
    """The benchmark input is what the issue specifies."""
    assert 195 <= len(THINK.split()) <= 215


def test_verify_single_box_200_word_think(benchmark: pytest.FixtureRequest) -> None:
    """Median and p99 of verify() on a single-box answer with a 200-word think trace."""
    benchmark.pedantic(_call, rounds=2000, warmup_rounds=50)


def test_verify_with_logprobs(benchmark: pytest.FixtureRequest) -> None:
    """The same with token logprobs, which adds the confidence attribution."""
    benchmark.pedantic(_call_logprobs, rounds=2000, warmup_rounds=50)


def percentiles(fn: object, n: int = 5000) -> tuple[float, float]:
    """(median, p99) in milliseconds over n calls, for the recorded results."""
    assert callable(fn)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * n) - 1]


if __name__ == "__main__":
    for name, fn in (("no logprobs", _call), ("with logprobs", _call_logprobs)):
        for _ in range(100):
            fn()
        med, p99 = percentiles(fn)
        print(f"{name}: median {med:.3f} ms, p99 {p99:.3f} ms")
