"""One adapter and one loaded engine of the tiny checkpoint per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from boxguard.server.backends.hf_engine import HFEngine  # noqa: E402
from boxguard.server.models import ModelAdapter, adapter_for  # noqa: E402


@pytest.fixture(scope="module")
def adapter(tiny_checkpoint: Path) -> ModelAdapter:
    return adapter_for(tiny_checkpoint)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path, adapter: ModelAdapter) -> HFEngine:
    """One model load per module; backends reuse it instead of loading again."""
    return HFEngine(
        str(tiny_checkpoint),
        min_pixels=adapter.min_pixels,
        max_pixels=adapter.max_pixels,
        device="cpu",
        dtype="float32",
    )
