"""The vLLM backend on a real GPU: the server over HTTP, logprobs, think, abort, metrics, guards.

Skipped without CUDA or vLLM. Runs the built-in tiny checkpoint and a full-size Qwen2.5-VL-7B
architecture with random weights (load_format="dummy", tokenizer from the tiny checkpoint).
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import re
import time
from collections.abc import Iterator
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
from boxguard.server.backends import GenerationRequest  # noqa: E402
from boxguard.server.backends.vllm_backend import VLLMBackend  # noqa: E402
from boxguard.server.constraints import Constraint, yes_no_constraint  # noqa: E402
from boxguard.server.models import adapter_for, resize_to_frame  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_vllm", ROOT / "bench" / "bench_vllm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scene(size: tuple[int, int] = (448, 336), seed: int = 0) -> str:
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w // 8 + seed, h // 4, w // 2, 3 * h // 4), fill="red")
    draw.rectangle((5 * w // 8, h // 4, 7 * w // 8, 3 * h // 4), fill="blue")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _settings(model: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = dict(
        backend="vllm", model=str(model), gpu_memory_utilization=0.3, enforce_eager=True,
        max_new_tokens=96, think_max_tokens=24, request_timeout_s=300,
    )
    return Settings(**{**base, **kw})


@pytest.fixture(scope="module")
def served(tiny_checkpoint: Path) -> Iterator[tuple[str, VLLMBackend]]:
    """The boxguard server on the tiny checkpoint with a vLLM backend we can also call."""
    settings = _settings(tiny_checkpoint)
    backend = VLLMBackend(settings, str(tiny_checkpoint), adapter_for(tiny_checkpoint))
    with serve_in_thread(create_app(settings, backend=backend), timeout_s=900) as url:
        yield url, backend


def _on_engine_loop(backend: VLLMBackend, coro: Any, timeout: float = 300) -> Any:
    assert backend.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, backend.loop).result(timeout)


def _request(backend: VLLMBackend, constraint: Constraint | None = None, **kw: Any) -> Any:
    adapter = backend.adapter
    image = Image.open(io.BytesIO(base64.b64decode(_scene())))
    frame = adapter.model_frame(*image.size)
    constraint = constraint or adapter.constraint(
        frame, multiple=False, think=False, max_detections=4, max_label_chars=32,
        max_tokens=96, think_max_tokens=24)
    return GenerationRequest(
        prompt=adapter.prompt("the red circle", think=constraint.think),
        image=resize_to_frame(image, (frame.width, frame.height)),
        constraint=constraint, **kw)


def _assert_boxes_in_frame(raw: str, width: int, height: int) -> None:
    boxes = json.loads(raw)
    assert isinstance(boxes, list)
    for item in boxes:
        x1, y1, x2, y2 = item["bbox_2d"]
        assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
        assert 0 <= x1 <= width and 0 <= x2 <= width and 0 <= y1 <= height and 0 <= y2 <= height
        assert isinstance(item["label"], str) and item["label"]


def test_ground_is_schema_valid_and_in_frame(served: tuple[str, VLLMBackend]) -> None:
    url, _ = served
    for seed in range(4):
        r = httpx.post(url + "/ground", json={"image": _scene(seed=seed), "expression":
                       "the red circle", "return_raw": True}, timeout=300)
        assert r.status_code == 200, r.text
        body = r.json()
        _assert_boxes_in_frame(body["raw_output"], body["image"]["model_width"],
                               body["image"]["model_height"])
        for det in body["detections"] + body["candidates"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= body["image"]["width"]
            assert 0 <= y1 < y2 <= body["image"]["height"]


def test_logprobs_arrive_and_tokens_spell_the_text(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    gen = _on_engine_loop(backend, backend.generate(_request(backend)))
    c = gen.completions[0]
    assert gen.prompt_tokens > 0 and c.tokens
    assert "".join(t.text for t in c.tokens) == c.text
    assert all(t.logprob <= 1e-6 for t in c.tokens)
    assert any(t.logprob < 0 for t in c.tokens)  # a random model is unsure somewhere
    json.loads(c.text)


def test_sampling_n_and_choice(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    gen = _on_engine_loop(backend, backend.generate(_request(backend, n=3, temperature=1.0,
                                                             seed=1)))
    assert len(gen.completions) == 3
    for c in gen.completions:
        json.loads(c.text)
    yes_no = _on_engine_loop(backend, backend.generate(_request(backend, yes_no_constraint())))
    assert yes_no.completions[0].text in ("yes", "no")
    assert -50 < yes_no.completions[0].tokens[0].logprob <= 0


def test_think_then_json(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    schema_constraint = _request(backend).constraint
    constraint = Constraint(json_schema=schema_constraint.json_schema, think=True,
                            think_max_tokens=24, max_tokens=96)
    c = _on_engine_loop(backend, backend.generate(_request(backend, constraint))).completions[0]
    m = re.fullmatch(r"<think>(.*)</think>\n<answer>(.*)</answer>", c.text, re.S)
    assert m is not None, c.text
    json.loads(m.group(2))
    assert "".join(t.text for t in c.tokens) == c.text


def test_cancel_aborts_in_the_engine(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    constraint = Constraint(json_schema={"type": "string"}, think=True, think_max_tokens=2000,
                            max_tokens=2000)
    assert backend.loop is not None
    fut = asyncio.run_coroutine_threadsafe(
        backend.generate(_request(backend, constraint, temperature=1.0, seed=3)), backend.loop)
    time.sleep(0.5)
    fut.cancel()
    deadline = time.monotonic() + 10
    processor = backend.engine.output_processor
    while processor.get_num_unfinished_requests() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processor.get_num_unfinished_requests() == 0
    assert backend.ready


def test_metrics_show_vllm(served: tuple[str, VLLMBackend]) -> None:
    url, _ = served
    text = httpx.get(url + "/metrics", timeout=30).text
    assert "vllm:num_requests_running" in text
    assert "vllm:generation_tokens_total" in text
    assert "boxguard_" in text


def test_visual_check_runs_through_vllm(served: tuple[str, VLLMBackend]) -> None:
    url, _ = served
    for seed in range(8):
        r = httpx.post(url + "/ground", json={"image": _scene(seed=seed), "expression":
                       "the red circle", "policy": {"visual_check": True}}, timeout=300)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["candidates"] or body["detections"]:
            names = [c["name"] for c in body["checks"]]
            assert any("visual" in n for n in names), names
            return
    pytest.skip("the tiny model wrote no box in 8 tries; the visual check had nothing to check")


@pytest.mark.slow
def test_qwen25_vl_7b_dummy(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The full-size architecture with random weights serves schema-valid answers."""
    model = _bench().write_dummy_7b(tmp_path / "qwen2_5_vl_7b_dummy", tiny_checkpoint)
    settings = _settings(model, load_format="dummy", max_model_len=4096,
                         gpu_memory_utilization=0.5, max_new_tokens=48)
    with serve_in_thread(create_app(settings), timeout_s=1200) as url:
        # The 7B's own pixel bounds (max 12,845,056): smart_resize only rounds to 28.
        for size, frame in (((640, 480), (644, 476)), ((1280, 960), (1288, 952))):
            r = httpx.post(url + "/ground", json={"image": _scene(size), "expression":
                           "the red circle", "return_raw": True}, timeout=300)
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["image"]["model_width"], body["image"]["model_height"]) == frame
            raw = body["raw_output"]
            if raw.endswith("]"):  # a dummy model may run out of max_tokens mid-answer
                _assert_boxes_in_frame(raw, *frame)
