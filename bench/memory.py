"""Server memory under mixed image sizes: RSS at start, at its peak, and after an idle spell.

Starts `boxguard serve` on loopback with the tiny test checkpoint (built into a temp dir) on CPU,
sends `--requests` /ground requests, `--concurrency` at a time, a mix of small PNGs, 2 MP JPEGs
and 25 MP JPEGs, and samples the server's RSS (psutil) every 0.2 s and for `--idle-s` after.
`--env NAME=VALUE` sets the server's environment (e.g. MALLOC_ARENA_MAX=2).

Run (the figures in bench/results/memory.md):
    python bench/memory.py --requests 300 --env MALLOC_ARENA_MAX=2 --json /tmp/after.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

# (width, height, format, share of requests): 25 MP is what the load test sent.
MIX = [(320, 240, "PNG", 0.6), (1600, 1200, "JPEG", 0.3), (6000, 4200, "JPEG", 0.1)]
MIB = 1024 * 1024


def image_body(width: int, height: int, fmt: str) -> dict[str, Any]:
    """A drawn scene as a /ground body."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.1, height * 0.1, width * 0.35, height * 0.45), fill="red")
    draw.rectangle((width * 0.5, height * 0.4, width * 0.75, height * 0.8), fill="blue")
    buf = io.BytesIO()
    image.save(buf, fmt, quality=90)
    return {"image": base64.b64encode(buf.getvalue()).decode(), "expression": "the red circle"}


def start_server(model: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`boxguard serve` on a free loopback port; returns once /readyz answers 200."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        **extra_env,
        "BOXGUARD_HOST": "127.0.0.1",
        "BOXGUARD_PORT": str(port),
        "BOXGUARD_MODEL": str(model),
        "BOXGUARD_MAX_NEW_TOKENS": "16",
        "BOXGUARD_LOG_LEVEL": "warning",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [sys.executable, "-c", "from boxguard.cli.commands import main; main()", "serve"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("the server did not become ready")


async def drive(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[int, int]:
    """Send every body, `concurrency` at a time; count answers by status."""
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post(url + "/ground", json=body)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses


async def measure(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    """RSS before, at peak during the requests, and at the end of the idle spell."""
    process = psutil.Process(pid)
    samples: list[float] = []
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(process.memory_info().rss / MIB)
            await asyncio.sleep(0.2)

    kinds = [(w, h, fmt) for w, h, fmt, share in MIX for _ in range(round(share * 10))]
    cache = {kind: image_body(*kind) for kind in set(kinds)}
    bodies = [cache[kinds[i % len(kinds)]] for i in range(args.requests)]
    start_rss = process.memory_info().rss / MIB
    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    statuses = await drive(url, bodies, args.concurrency)
    elapsed = time.monotonic() - started
    end_rss = process.memory_info().rss / MIB
    await asyncio.sleep(args.idle_s)
    stop.set()
    await sampler
    return {
        "env": args.env,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "mix": [f"{w}x{h} {fmt} {share:.0%}" for w, h, fmt, share in MIX],
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "seconds": round(elapsed, 1),
        "rss_mib": {
            "start": round(start_rss),
            "peak": round(max(samples)),
            "end_of_load": round(end_rss),
            f"after_{args.idle_s:g}s_idle": round(process.memory_info().rss / MIB),
        },
        "machine": f"{platform.machine()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 5000:
        parser.error("--requests must be within 1..5000")
    extra_env = dict(item.split("=", 1) for item in args.env)
    from boxguard.server.tiny_checkpoint import build_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_checkpoint(Path(tmp) / "tiny-qwen2_5_vl")
        proc, url = start_server(model, extra_env)
        try:
            result = asyncio.run(measure(args, url, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
