"""What the serving bench's arms share: server processes, CPU time, samples, bodies, load."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

Sample = tuple[bytes, str]  # (PNG bytes, expression)


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(
    cmd: list[str], ready_url: str, timeout_s: float, log: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Run `cmd` (output to `log`) until the block ends; yields its pid once `ready_url` is 200."""
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_KVCACHE_SPACE": "2", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:6]} did not become ready; see {log}")
            time.sleep(1)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def own_and_children(pid: int, read: Callable[[Any], float]) -> tuple[float, float]:
    """`read(psutil.Process)` of a process, and summed over all its children (vLLM's engine)."""
    import psutil

    main = psutil.Process(pid)
    return read(main), sum(read(p) for p in main.children(recursive=True))


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User + system CPU time so far of a process, and of all its children."""
    return own_and_children(pid, lambda p: sum(p.cpu_times()[:2]))


def context_switches(pid: int) -> tuple[float, float]:
    """Context switches so far of a process's threads, and of all its children's."""
    return own_and_children(pid, lambda p: sum(p.num_ctx_switches()))


def shapes_samples(n: int) -> list[Sample]:
    """(PNG bytes, expression) of the first `n` samples of the shapes test split (seed 0)."""
    from boxguard.demo.dataset import build_split

    split = build_split("test", 200, 0, tempfile.mkdtemp(prefix="bench-serving-"))
    rows = [json.loads(line) for line in split.read_text().splitlines()][:n]
    return [((split.parent / r["image"]).read_bytes(), r["expression"]) for r in rows]


def upstream_bodies(
    samples: list[Sample],
    model_dir: str,
    served: str,
    *,
    resized: bool = True,
    server_grammar: bool = False,
) -> list[dict[str, Any]]:
    """The chat completion bodies boxguard's gateway sends for each sample (default policy).

    With `resized=False` the image is the sample's own PNG, as a vLLM user would send it, and
    vLLM's processor resizes it. With `server_grammar` the grammar is the text `--backend vllm`
    sends its engine (`Constraint.ebnf()`) instead of the gateway's compact one: the same
    language, so the engine gets what boxguard's in-process engine gets.
    """
    from boxguard.server.backends import GenerationRequest
    from boxguard.server.backends.openai_translate import answer_body, image_data_url
    from boxguard.server.models import adapter_for, resize_to_frame
    from boxguard.server.settings import Settings
    from PIL import Image

    adapter = adapter_for(model_dir)
    settings = Settings()  # the server's defaults: the grammar /ground compiles
    bodies = []
    for png, expression in samples:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        frame = adapter.model_frame(*image.size)
        constraint = adapter.constraint(
            frame,
            multiple=False,
            think=False,
            max_detections=settings.max_detections,
            max_label_chars=settings.max_label_chars,
            max_tokens=settings.max_new_tokens,
            think_max_tokens=settings.think_max_tokens,
        )
        frame_image = resize_to_frame(image, (frame.width, frame.height))
        user_text = adapter.user_text(expression, multiple=False, think=False)
        request = GenerationRequest(
            prompt="", image=frame_image, constraint=constraint, user_text=user_text, seed=0
        )
        url = image_data_url(frame_image, "bmp")
        if not resized:
            url = "data:image/png;base64," + base64.b64encode(png).decode()
        body = answer_body(
            request,
            model=served,
            system_prompt=adapter.system_prompt,
            image_url=url,
            form="structured_outputs",
        )
        if server_grammar:
            body["structured_outputs"] = {"grammar": constraint.ebnf()}
        bodies.append(body)
    return bodies


def chat_answer(data: Any) -> str:
    """The raw answer of a chat completion."""
    return str(data["choices"][0]["message"]["content"])


def ground_answer(data: Any) -> str:
    """The raw answer of a `/ground` response (asked with return_raw)."""
    return str(data["raw_output"])


@dataclass(frozen=True)
class Arm:
    """One way to ask for the same answers: a URL, a body per sample, where the answer is."""

    name: str
    url: str
    bodies: list[dict[str, Any]]
    answer: Callable[[Any], str]


# vLLM's engine counters (its /metrics; boxguard's in-process engine shows them on its own):
# steps the engine ran, and tokens it generated.
ENGINE_COUNTERS = ("vllm:iteration_tokens_total_count", "vllm:generation_tokens_total")


def engine_counters(base_url: str) -> dict[str, float]:
    """ENGINE_COUNTERS summed over their labels, from a server's Prometheus text."""
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    totals = dict.fromkeys(ENGINE_COUNTERS, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted `values`."""
    return values[min(len(values) - 1, int(q * (len(values) - 1)))]


async def drive(arm: Arm, n: int, concurrency: int) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """POST `n` bodies (cycled) at `concurrency`: throughput, latency, (sample, answer) pairs."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answers: list[tuple[int, str]] = []
    queue = iter(range(n))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            for i in queue:
                t0 = time.perf_counter()
                response = await client.post(arm.url, json=arm.bodies[i % len(arm.bodies)])
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    answers.append((i % len(arm.bodies), arm.answer(response.json())))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    stats = {
        "requests": n,
        "wall_s": round(wall, 3),
        "throughput_rps": round(n / wall, 3),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "statuses": statuses,
    }
    return stats, answers


def machine() -> str:
    """CPU model, core count and architecture of this machine."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {os.uname().machine}"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
