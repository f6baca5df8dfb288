"""bench/bench_serving.py's set-up: both engines get the same flags, and --pin gives the servers
under test CPU 0 and everything else CPU 1."""

from __future__ import annotations

import os
from typing import Any

import pytest
from support import bench_module


@pytest.fixture(scope="module")
def bench() -> Any:
    return bench_module("bench_serving")


def test_both_engines_get_the_same_flags_with_the_image_caches_off(bench: Any) -> None:
    args = bench.parse_args([])
    ports = {"vllm": 1, "inproc": 2, "inproc_vllm_frames": 5, "gateway": 3, "gateway_before": 4}
    cmds = bench.commands(args, ports)
    engine = args.engine_args.split()
    assert engine[-3:] == ["--mm-processor-cache-gb", "0", "--no-enable-prefix-caching"]
    for name in ("vllm", "inproc", "inproc_vllm_frames"):
        assert cmds[name][-len(engine) :] == engine
    framed = cmds["inproc_vllm_frames"]
    assert framed[framed.index("--frame-resizer") + 1] == "engine"
    assert "--frame-resizer" not in cmds["inproc"]
    assert "--mm-processor-cache-gb" not in cmds["gateway"]  # the gateway runs no engine


def test_pin_puts_engines_on_cpu_0_and_the_rest_on_cpu_1(bench: Any) -> None:
    for name in ("vllm", "inproc", "inproc_vllm_frames"):
        cmd, env = bench.pinned(name, ["python", "-m", "x"])
        assert cmd == ["taskset", "-c", "0", "python", "-m", "x"]
        assert env == {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    for name in ("gateway", "gateway_before"):
        assert bench.pinned(name, ["boxguard"]) == (["taskset", "-c", "1", "boxguard"], {})


def test_requests_without_a_count_for_a_concurrency_is_a_clear_error(bench: Any) -> None:
    with pytest.raises(SystemExit, match=r"no count for concurrency \[32\]"):
        bench.main(["--concurrency", "8,32", "--requests", "8:160"])


def test_engine_counters_read_vllms_steps_and_tokens_from_prometheus(bench: Any) -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    common = bench_module("serving_common")
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    steps = Histogram("vllm:iteration_tokens_total", "", labels, registry=registry)
    tokens = Counter("vllm:generation_tokens", "", labels, registry=registry)
    for engine, batch in (("0", 7), ("0", 3), ("1", 5)):  # two data-parallel engines
        steps.labels("m", engine).observe(batch)
        tokens.labels("m", engine).inc(batch)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        counted = common.engine_counters(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join()
    assert counted == {
        "vllm:iteration_tokens_total_count": 3.0,
        "vllm:generation_tokens_total": 15.0,
    }


def test_context_switches_count_a_process_and_its_children() -> None:
    import subprocess
    import sys
    import time

    common = bench_module("serving_common")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        own, _ = common.context_switches(os.getpid())
        time.sleep(0.2)  # a voluntary switch of this process's thread; the child starts
        later, children = common.context_switches(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert later > own > 0 and children > 0  # the child switched while it started up


def test_a_ratios_interval_is_students_t_and_the_report_shows_it(bench: Any) -> None:
    # Two rounds: mean 2, sample sd sqrt(2), so the half-width is t(1) = 12.706 exactly.
    assert bench.mean_ci95([1.0, 3.0]) == (-10.706, 14.706)
    assert bench.mean_ci95([1.0]) is None
    values = [1.05, 0.953, 0.99, 0.933, 0.967, 0.962, 0.879, 1.018, 1.078, 0.795]
    low, high = bench.mean_ci95(values)
    assert low < bench.statistics.mean(values) < high and high - low < 0.13
    report = bench_module("serving_report")
    summary = {32: {"ratios": {"inproc/vllm_orig": bench.spread(values)}}}
    row = report._summary_rows(summary)[2]
    assert f"**0.963** | {low:.3f}–{high:.3f} | 0.964 | 0.795–1.078" in row
    one = {1: {"ratios": {"inproc/vllm_orig": bench.spread([0.9])}}}
    assert "| **0.900** | – | 0.900 |" in report._summary_rows(one)[2]


def test_the_server_grammar_arm_differs_from_vllm_orig_only_by_the_grammar_text() -> None:
    from pathlib import Path

    common = bench_module("serving_common")
    demo = str(Path(__file__).resolve().parents[2] / "demo" / "checkpoint")
    samples = common.shapes_samples(2)
    compact = common.upstream_bodies(samples, demo, "bench", resized=False)
    ours = common.upstream_bodies(samples, demo, "bench", resized=False, server_grammar=True)
    for a, b in zip(compact, ours, strict=True):
        grammar_a = a.pop("structured_outputs")["grammar"]
        grammar_b = b.pop("structured_outputs")["grammar"]
        assert a == b
        assert grammar_a.startswith("r1 ::= ")  # the gateway's compact text
        assert grammar_b.startswith("root ::= ") and "root_additional" in grammar_b  # xgrammar's
