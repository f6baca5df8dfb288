"""Throughput of vLLM's own OpenAI server against boxguard --backend openai in front of it.

One upstream (vLLM's OpenAI server on one checkpoint) takes, at the same concurrency, (a) the
chat completions boxguard sends (built by boxguard's own translation, image already resized and
encoded) straight from the load generator, and (b) `POST /ground` with the original image to a
boxguard gateway process, which resizes, encodes, sends the same completion and runs the guards
(default policy: one upstream call per request). The phases alternate, each after a warm-up.
Writes bench/results/gateway.json and gateway.md.

    .venv-vllm-cpu/bin/python bench/bench_gateway.py --model demo/checkpoint --requests 96
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(cmd: list[str], ready_url: str, timeout_s: float) -> Iterator[int]:
    """Run `cmd` until the block ends; yields its pid once `ready_url` answers 200."""
    proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_NO_USAGE_STATS": "1"})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:4]} did not become ready")
            time.sleep(1)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its children so far."""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def shapes_samples(n: int) -> list[tuple[bytes, str]]:
    """(PNG bytes, expression) of the first `n` samples of the shapes test split (seed 0)."""
    out = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    cmd = [sys.executable, "-m", "boxguard.demo.dataset", "--out", str(out), "--splits", "test"]
    subprocess.run([*cmd, "--n", "200", "--seed", "0"], check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()][:n]
    return [((out / r["image"]).read_bytes(), r["expression"]) for r in rows]


def upstream_bodies(
    samples: list[tuple[bytes, str]], model_dir: str, served: str
) -> list[dict[str, Any]]:
    """The chat completion bodies boxguard's gateway sends for each sample."""
    import io

    from boxguard.server.backends import GenerationRequest
    from boxguard.server.backends.openai_translate import answer_body, image_data_url
    from boxguard.server.models import adapter_for, resize_to_frame
    from PIL import Image

    adapter = adapter_for(model_dir)
    bodies = []
    for png, expression in samples:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        frame = adapter.model_frame(*image.size)
        constraint = adapter.constraint(
            frame,
            multiple=False,
            think=False,
            max_detections=16,
            max_label_chars=48,
            max_tokens=128,
            think_max_tokens=256,
        )
        resized = resize_to_frame(image, (frame.width, frame.height))
        user_text = adapter.user_text(expression, multiple=False, think=False)
        request = GenerationRequest(
            prompt="", image=resized, constraint=constraint, user_text=user_text, seed=0
        )
        bodies.append(
            answer_body(
                request,
                model=served,
                system_prompt=adapter.system_prompt,
                image_url=image_data_url(resized),
                form="structured_outputs",
            )
        )
    return bodies


async def load(url: str, bodies: list[dict[str, Any]], n: int, concurrency: int) -> dict[str, Any]:
    """POST `n` bodies (cycled) at `concurrency`; throughput and latency percentiles."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            for i in queue:
                t0 = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": n,
        "wall_s": round(wall, 3),
        "throughput_rps": round(n / wall, 3),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
        "statuses": statuses,
    }


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The report as a table: throughput, latency and CPU per request of each phase."""
    lines = [
        "# boxguard --backend openai vs vLLM's own server",
        "",
        f"`bench/bench_gateway.py`: {report['model']}, concurrency {report['concurrency']}, "
        f"{report['requests_per_phase']} requests per phase, {report['machine']}. CPU ms/req: "
        "user + system time of the process (vLLM: its server and engine) over the phase.",
        "",
        "| round | vLLM req/s | gateway req/s | ratio | p50/p95 ms vLLM | p50/p95 ms gateway "
        "| gateway CPU ms/req | vLLM CPU ms/req, direct / via gateway |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(report["rounds"], 1):
        v, g = r["vllm"], r["gateway"]
        lines.append(
            f"| {i} | {v['throughput_rps']:.2f} | {g['throughput_rps']:.2f} | "
            f"{g['throughput_rps'] / v['throughput_rps']:.3f} | "
            f"{v['p50_ms']:.0f}/{v['p95_ms']:.0f} | {g['p50_ms']:.0f}/{g['p95_ms']:.0f} | "
            f"{g['gateway_cpu_ms_per_request']:.1f} | {v['vllm_cpu_ms_per_request']:.1f} / "
            f"{g['vllm_cpu_ms_per_request']:.1f} |"
        )
    lines += ["", f"Mean ratio {report['ratio_mean']:.3f}."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "demo" / "checkpoint"))
    parser.add_argument("--family", default="qwen2_5_vl")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument(
        "--vllm-args",
        default="--dtype float32 --max-model-len 2048 --enforce-eager",
        help="extra arguments of vLLM's server",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "gateway.json")
    args = parser.parse_args()

    from boxguard.server.models import adapter_for

    adapter = adapter_for(args.model)
    pixels = {"min_pixels": adapter.min_pixels, "max_pixels": adapter.max_pixels}
    samples = shapes_samples(args.samples)
    vllm_port, gateway_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{vllm_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    vllm_cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        args.model,
        "--served-model-name",
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        str(vllm_port),
        "--seed",
        "0",
        "--logprobs-mode",
        "processed_logprobs",
        "--generation-config",
        "vllm",
        "--limit-mm-per-prompt",
        '{"image": 1, "video": 0}',
        "--mm-processor-kwargs",
        json.dumps(pixels),
        *args.vllm_args.split(),
    ]
    gateway_cmd = [
        sys.executable,
        "-m",
        "boxguard.cli",
        "serve",
        "--backend",
        "openai",
        "--upstream-url",
        upstream + "/v1",
        "--family",
        args.family,
        "--port",
        str(gateway_port),
        "--log-level",
        "warning",
        "--min-pixels",
        str(pixels["min_pixels"]),
        "--max-pixels",
        str(pixels["max_pixels"]),
        "--request-timeout-s",
        "600",
    ]
    direct = upstream_bodies(samples, args.model, "bench")
    ground = [
        {"image": base64.b64encode(png).decode(), "expression": expression}
        for png, expression in samples
    ]
    rounds: list[dict[str, Any]] = []
    with (
        process(vllm_cmd, upstream + "/health", 900) as vllm_pid,
        process(gateway_cmd, gateway + "/readyz", 120) as gateway_pid,
    ):
        phases = {
            "vllm": (upstream + "/v1/chat/completions", direct),
            "gateway": (gateway + "/ground", ground),
        }
        for name, (url, bodies) in phases.items():  # warm-up: every image once
            asyncio.run(load(url, bodies, len(bodies), args.concurrency))
            print(f"warmed up {name}", flush=True)
        for _ in range(args.rounds):
            result = {}
            for name, (url, bodies) in phases.items():
                before = cpu_seconds(vllm_pid), cpu_seconds(gateway_pid)
                result[name] = asyncio.run(load(url, bodies, args.requests, args.concurrency))
                after = cpu_seconds(vllm_pid), cpu_seconds(gateway_pid)
                per_request = [
                    (b - a) * 1000 / args.requests for a, b in zip(before, after, strict=True)
                ]
                result[name]["vllm_cpu_ms_per_request"] = round(per_request[0], 1)
                result[name]["gateway_cpu_ms_per_request"] = round(per_request[1], 1)
                print(name, result[name], flush=True)
            rounds.append(result)
    ratios = [r["gateway"]["throughput_rps"] / r["vllm"]["throughput_rps"] for r in rounds]
    report = {
        "model": os.path.relpath(args.model, ROOT),
        "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "rounds": rounds,
        "ratio_per_round": [round(x, 3) for x in ratios],
        "ratio_mean": round(statistics.mean(ratios), 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out.with_suffix(".md"))
    print(f"gateway/vLLM throughput ratio: {report['ratio_mean']:.3f}")


if __name__ == "__main__":
    main()
