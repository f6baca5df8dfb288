"""bench/bench_serving.py's set-up: both engines get the same flags, and --pin gives the servers
under test CPU 0 and everything else CPU 1."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))  # its sibling modules (serving_common, ...)
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench/bench_serving.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_engines_get_the_same_flags_with_the_image_cache_off(bench: Any) -> None:
    args = bench.parse_args([])
    ports = {"vllm": 1, "inproc": 2, "gateway": 3, "gateway_before": 4}
    cmds = bench.commands(args, ports)
    engine = args.engine_args.split()
    assert engine[-2:] == ["--mm-processor-cache-gb", "0"]
    for name in ("vllm", "inproc"):
        assert cmds[name][-len(engine) :] == engine
    assert "--mm-processor-cache-gb" not in cmds["gateway"]  # the gateway runs no engine


def test_pin_puts_engines_on_cpu_0_and_the_rest_on_cpu_1(bench: Any) -> None:
    for name in ("vllm", "inproc"):
        cmd, env = bench.pinned(name, ["python", "-m", "x"])
        assert cmd == ["taskset", "-c", "0", "python", "-m", "x"]
        assert env == {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    for name in ("gateway", "gateway_before"):
        assert bench.pinned(name, ["boxguard"]) == (["taskset", "-c", "1", "boxguard"], {})
