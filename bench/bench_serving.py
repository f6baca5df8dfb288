"""Throughput of vLLM's own OpenAI server against boxguard in-process and as a gateway, one run.

Three server processes on one checkpoint: vLLM's OpenAI server
(`python -m vllm.entrypoints.openai.api_server`), `boxguard serve --backend vllm` (in-process
AsyncLLM) and `boxguard serve --backend openai` in front of that vLLM server. Five arms ask
them for the same answers on the same shapes images and grammar:

- `vllm`: the chat completions boxguard's gateway would send (image already resized to the
  model frame and encoded by boxguard's own translation) straight to vLLM's server;
- `vllm_orig`: the same with the sample's own PNG, as a vLLM user would send it (vLLM's
  processor resizes it);
- `vllm_server_grammar`: `vllm_orig` with the grammar text `--backend vllm` gives its engine
  (xgrammar's EBNF of the schema) instead of the gateway's compact text of the same language;
- `inproc`: `POST /ground` with the sample's PNG to `--backend vllm` (guards on, visual
  re-check off by the request's policy: the demo checkpoint's policy file turns it on);
- `inproc_visual`: the same with `policy={"visual_check": true}` (one yes/no per box, a
  request's crops in one batch);
- `inproc_vllm_frames`: `inproc` to a second `--backend vllm` server started with
  `--frame-resizer engine`: vLLM's processor resizes the client's image, as vLLM's own server
  does, instead of boxguard's PIL;
- `gateway`: the `inproc` request to `--backend openai`, which decodes, resizes, encodes,
  calls vLLM's server and runs the guards; `gateway_before` the same to a gateway running an
  older checkout (`--before`), for a before/after in one run.

Every server runs as a user would start it (default log level, access log on). Per concurrency
the arms' phases alternate (ABCDE EDCBA ...), each after a warm-up of `concurrency` requests;
each phase records throughput, latency, the CPU time of every process per request, and how many
raw answers equal the first arm's (vllm) in the warm-up. Writes bench/results/serving.json, .md.

    .venv-vllm-cpu/bin/python bench/bench_serving.py --model /tmp/bench-ckpt --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
from serving_common import (
    ENGINE_COUNTERS,
    Arm,
    chat_answer,
    context_switches,
    cpu_seconds,
    drive,
    engine_counters,
    free_port,
    ground_answer,
    load_average,
    machine,
    process,
    shapes_samples,
    upstream_bodies,
)
from serving_report import write_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVERS = ("vllm", "inproc", "inproc_vllm_frames", "gateway", "gateway_before")
# (arm, the arm it is compared with): the ratios the report states.
PAIRS = [
    ("inproc", "vllm"),
    ("inproc", "vllm_orig"),
    ("inproc_vllm_frames", "vllm_orig"),
    ("inproc_vllm_frames", "inproc"),
    ("vllm_server_grammar", "vllm_orig"),
    ("gateway", "vllm"),
    ("gateway", "vllm_orig"),
    ("gateway_before", "vllm"),
    ("gateway", "gateway_before"),
    ("inproc_visual", "inproc"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "demo" / "checkpoint"))
    parser.add_argument("--family", default="qwen2_5_vl")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument(
        "--requests", default="1:48,8:160,32:192", help="requests per phase, by concurrency"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--arms", default="vllm,vllm_orig,inproc,inproc_visual,gateway")
    parser.add_argument(
        "--engine-args",
        # Both caches off: the bench repeats its samples, production traffic rarely repeats an
        # image. A processed-image hit would skip vLLM's resize but not boxguard's; a prefix-cache
        # hit would skip the vision encoder and the whole prefill of a repeated image's prompt.
        default="--dtype float32 --max-model-len 2048 --enforce-eager --mm-processor-cache-gb 0 "
        "--no-enable-prefix-caching",
        help="engine flags both vLLM's server and boxguard --backend vllm take",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json")
    parser.add_argument(
        "--before",
        type=Path,
        help="PYTHONPATH of an older boxguard (a folder with boxguard/ linking to a checkout's "
        "packages): the gateway_before arm runs it",
    )
    parser.add_argument("--logs", type=Path, default=Path("/tmp/bench-serving-logs"))
    parser.add_argument(
        "--pin",
        action="store_true",
        help="give each server under test CPU 0 alone (vLLM's server, boxguard in-process: API "
        "and engine) and this load generator and the gateway CPU 1, the gateway's own CPU as "
        "in its deployment (CPU pods in front of a GPU pool)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="record py-spy (collapsed stacks) of the servers an arm hits during each phase here",
    )
    return parser.parse_args(argv)


def commands(args: argparse.Namespace, ports: dict[str, int]) -> dict[str, list[str]]:
    """The command line of each server process, keyed by process name."""
    from boxguard.server.models import adapter_for

    adapter = adapter_for(args.model)
    pixels = {"min_pixels": adapter.min_pixels, "max_pixels": adapter.max_pixels}
    engine = args.engine_args.split()
    boxguard = [sys.executable, "-m", "boxguard.cli", "serve", "--request-timeout-s", "600"]

    def gateway(port: int) -> list[str]:
        """boxguard --backend openai in front of vLLM's server."""
        return [
            *(*boxguard, "--backend", "openai", "--family", args.family, "--port", str(port)),
            *("--upstream-url", f"http://127.0.0.1:{ports['vllm']}/v1"),
            *("--min-pixels", str(pixels["min_pixels"]), "--max-pixels", str(pixels["max_pixels"])),
        ]

    return {
        "vllm": [
            *(sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model),
            *("--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(ports["vllm"])),
            *("--seed", "0", "--logprobs-mode", "processed_logprobs"),
            *("--generation-config", "vllm", "--limit-mm-per-prompt", '{"image": 1, "video": 0}'),
            *("--mm-processor-kwargs", json.dumps(pixels)),
            *("--structured-outputs-config", '{"backend": "xgrammar"}', *engine),
        ],
        "inproc": [
            *(*boxguard, "--backend", "vllm", "--model", args.model),
            *("--port", str(ports["inproc"]), *engine),
        ],
        "inproc_vllm_frames": [
            *(*boxguard, "--backend", "vllm", "--model", args.model, "--frame-resizer", "engine"),
            *("--port", str(ports["inproc_vllm_frames"]), *engine),
        ],
        "gateway": gateway(ports["gateway"]),
        "gateway_before": gateway(ports["gateway_before"]),
    }


# The servers that run a model engine; --pin gives them CPU 0.
ENGINE_SERVERS = ("vllm", "inproc", "inproc_vllm_frames")


def pinned(name: str, cmd: list[str]) -> tuple[list[str], dict[str, str]]:
    """`cmd` under taskset on its CPU for --pin, and the environment that keeps it there."""
    if name not in ENGINE_SERVERS:
        return ["taskset", "-c", "1", *cmd], {}
    # vLLM's CPU engine binds its own OpenMP threads and reserves a CPU for its scheduler by
    # default: both on CPU 0 too, or the engine would spread back onto the load generator's.
    env = {"VLLM_CPU_OMP_THREADS_BIND": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    return ["taskset", "-c", "0", *cmd], env


def arms(args: argparse.Namespace, ports: dict[str, int]) -> list[Arm]:
    """The arms asked for, on the first `--samples` shapes samples."""
    samples = shapes_samples(args.samples)
    # The demo checkpoint's policy file turns the visual re-check on: each arm says what it wants.
    ground = [
        {"image": base64.b64encode(png).decode(), "expression": text, "return_raw": True}
        for png, text in samples
    ]
    visual = [{**body, "policy": {"visual_check": True}} for body in ground]
    ground = [{**body, "policy": {"visual_check": False}} for body in ground]
    url = "http://127.0.0.1:{}/ground".format
    every = {
        "vllm": Arm(
            "vllm",
            f"http://127.0.0.1:{ports['vllm']}/v1/chat/completions",
            upstream_bodies(samples, args.model, "bench"),
            chat_answer,
        ),
        "vllm_orig": Arm(
            "vllm_orig",
            f"http://127.0.0.1:{ports['vllm']}/v1/chat/completions",
            upstream_bodies(samples, args.model, "bench", resized=False),
            chat_answer,
        ),
        "vllm_server_grammar": Arm(
            "vllm_server_grammar",
            f"http://127.0.0.1:{ports['vllm']}/v1/chat/completions",
            upstream_bodies(samples, args.model, "bench", resized=False, server_grammar=True),
            chat_answer,
        ),
        "inproc": Arm("inproc", url(ports["inproc"]), ground, ground_answer),
        "inproc_visual": Arm("inproc_visual", url(ports["inproc"]), visual, ground_answer),
        "inproc_vllm_frames": Arm(
            "inproc_vllm_frames", url(ports["inproc_vllm_frames"]), ground, ground_answer
        ),
        "gateway": Arm("gateway", url(ports["gateway"]), ground, ground_answer),
        "gateway_before": Arm(
            "gateway_before", url(ports["gateway_before"]), ground, ground_answer
        ),
    }
    return [every[name] for name in args.arms.split(",")]


def start(stack: ExitStack, args: argparse.Namespace, needed: set[str]) -> dict[str, Any]:
    """Start the server processes the arms need; their ports and pids."""
    ports = dict.fromkeys(SERVERS, 0)
    cmds: dict[str, list[str]] = {}
    before = {"PYTHONPATH": str(args.before)} if args.before else {}
    args.logs.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    for name in SERVERS:  # vLLM's first: a gateway checks its upstream at start
        if name in needed:
            # Picked only now: a server started before binds ports of its own (vLLM's engine
            # its ZMQ sockets), and one picked earlier could be taken by then.
            ports[name] = free_port()
            cmds = commands(args, ports)
            url = f"http://127.0.0.1:{ports[name]}{'/health' if name == 'vllm' else '/readyz'}"
            env = dict(before) if name == "gateway_before" else {}
            cmd = cmds[name]
            if args.pin:
                cmd, pin_env = pinned(name, cmd)
                env.update(pin_env)
            log = args.logs / f"{name}.log"
            pids[name] = stack.enter_context(process(cmd, url, 900, log, env))
            print(f"{name} ready (pid {pids[name]})", flush=True)
    return {"ports": ports, "pids": pids, "commands": cmds}


def per_server(
    pids: dict[str, int], read: Callable[[int], tuple[float, float]]
) -> dict[str, float]:
    """`read(pid)` of every server process and its engine process, keyed name and name_engine."""
    now = {}
    for name, pid in pids.items():
        now[name], now[f"{name}_engine"] = read(pid)
    return now


def cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of every server process, its engine process and this load generator."""
    return {"loadgen": sum(psutil.Process().cpu_times()[:2]), **per_server(pids, cpu_seconds)}


# The server processes each arm's requests reach.
REACHES = {
    "vllm": ("vllm",),
    "vllm_orig": ("vllm",),
    "vllm_server_grammar": ("vllm",),
    "inproc": ("inproc",),
    "inproc_visual": ("inproc",),
    "inproc_vllm_frames": ("inproc_vllm_frames",),
    "gateway": ("gateway", "vllm"),
    "gateway_before": ("gateway_before", "vllm"),
}


@contextmanager
def profiled(arm: str, pids: dict[str, int], into: Path | None, tag: str) -> Iterator[None]:
    """py-spy on the API process of each server `arm` reaches, while the block runs."""
    spies = []
    if into is not None:
        into.mkdir(parents=True, exist_ok=True)
        for name in REACHES[arm]:
            out = into / f"{tag}-{arm}-{name}.txt"
            # --gil: samples of the thread holding the GIL only; without it a thread waiting for
            # the GIL is counted in whatever frame it waits in (the heap-freeze hunt's lesson).
            cmd = ["py-spy", "record", "--pid", str(pids[name]), "--rate", "200", "--gil"]
            cmd += ["--format", "raw", "--nonblocking", "--output", str(out)]
            spies.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        time.sleep(1)  # py-spy attaches
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(timeout=60)


def phase(
    arm: Arm,
    n: int,
    concurrency: int,
    pids: dict[str, int],
    reference: dict[int, str],
    profile: Path | None,
    engine_url: str,
) -> dict[str, Any]:
    """One measured phase after a warm-up: throughput, latency, CPU ms/request, identical,
    and the engine's steps a request and tokens a step (`engine_url`: the server that runs
    the engine this arm reaches)."""
    asyncio.run(drive(arm, concurrency, concurrency))
    before, counted = cpu_now(pids), engine_counters(engine_url)
    switched = per_server(pids, context_switches)
    with profiled(arm.name, pids, profile, f"c{concurrency}-{time.time():.0f}"):
        stats, answers = asyncio.run(drive(arm, n, concurrency))
    after, steps = cpu_now(pids), engine_counters(engine_url)
    stats["cpu_ms_per_request"] = {
        name: round((after[name] - before[name]) * 1000 / n, 1) for name in before
    }
    # The servers under test share one core with their engine: each switch costs it cache.
    stats["context_switches_per_request"] = {
        name: round((count - switched[name]) / n, 1)
        for name, count in per_server(pids, context_switches).items()
    }
    ran, generated = (steps[k] - counted[k] for k in ENGINE_COUNTERS)
    # Fewer steps a request means fuller batches: the engine's cost a step is mostly fixed.
    stats["engine_steps_per_request"] = round(ran / n, 2)
    stats["generated_tokens_per_step"] = round(generated / ran, 2) if ran else None
    same = sum(answer == reference.get(i) for i, answer in answers)
    stats["identical_to_reference"] = f"{same}/{len(answers)}"
    return stats


# Student's t at 97.5 % for 1-30 degrees of freedom (the normal's 1.96 beyond).
# fmt: off
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
)
# fmt: on


def mean_ci95(values: list[float]) -> tuple[float, float] | None:
    """The 95 % confidence interval of the rounds' mean (t), None for fewer than two rounds."""
    if len(values) < 2:
        return None
    df = len(values) - 1
    half = (T_975[df - 1] if df <= len(T_975) else 1.96) * statistics.stdev(values)
    half /= len(values) ** 0.5
    mean = statistics.mean(values)
    return round(mean - half, 3), round(mean + half, 3)


def spread(values: list[float]) -> dict[str, Any]:
    """Per-round values with their mean, its 95 % interval, median, min and max."""
    return {
        "per_round": [round(v, 3) for v in values],
        "mean": round(statistics.mean(values), 3),
        "ci95": mean_ci95(values),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def summarize(rounds: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Ratios of each pair and mean CPU ms/request of each arm, per concurrency."""
    out: dict[str, Any] = {}
    for c in sorted({r["concurrency"] for r in rounds}):
        mine = [r["arms"] for r in rounds if r["concurrency"] == c]
        ratios = {
            f"{a}/{b}": spread([m[a]["throughput_rps"] / m[b]["throughput_rps"] for m in mine])
            for a, b in PAIRS
            if a in names and b in names
        }
        cpu = {
            name: {
                proc: round(statistics.mean(m[name]["cpu_ms_per_request"][proc] for m in mine), 1)
                for proc in mine[0][name]["cpu_ms_per_request"]
            }
            for name in names
        }
        rps = {name: spread([m[name]["throughput_rps"] for m in mine]) for name in names}
        engine = {
            name: {
                key: round(statistics.mean(m[name][key] or 0.0 for m in mine), 2)
                for key in ("engine_steps_per_request", "generated_tokens_per_step")
            }
            for name in names
        }
        out[str(c)] = {
            "ratios": ratios,
            "cpu_ms_per_request": cpu,
            "throughput_rps": rps,
            "engine": engine,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """Start the servers, warm every arm up, run the interleaved phases, write the report."""
    args = parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    per_phase = {int(k): int(v) for k, v in (p.split(":") for p in args.requests.split(","))}
    if missing := sorted(set(concurrencies) - set(per_phase)):
        raise SystemExit(f"--requests names no count for concurrency {missing}; e.g. 32:256")
    names = args.arms.split(",")
    serves = {"inproc_visual": "inproc", "vllm_orig": "vllm", "vllm_server_grammar": "vllm"}
    gateways = {"gateway", "gateway_before"} & set(names)
    needed = {serves.get(a, a) for a in names} | ({"vllm"} if gateways else set())
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average_before": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "model": args.model,
        "samples": args.samples,
        "engine_args": args.engine_args,
        "requests_per_phase": per_phase,
        "rounds": [],
    }
    if args.pin:
        os.sched_setaffinity(0, {1})
        report["pinned"] = "servers under test on CPU 0, load generator and gateway on CPU 1"
    with ExitStack() as stack:
        servers = start(stack, args, needed)
        report["commands"] = {k: v for k, v in servers["commands"].items() if k in needed}
        chosen = arms(args, servers["ports"])
        pids = servers["pids"]
        engines = {
            a.name: f"http://127.0.0.1:{servers['ports'][REACHES[a.name][-1]]}" for a in chosen
        }
        reference: dict[int, str] = {}
        warm: dict[str, str] = {}
        for arm in chosen:  # warm-up: every sample once; the first arm's answers are the reference
            _, answers = asyncio.run(drive(arm, len(arm.bodies), 8))
            reference = reference or dict(answers)
            same = sum(answer == reference.get(i) for i, answer in answers)
            warm[arm.name] = f"{same}/{len(answers)}"
            print(f"warmed up {arm.name}: identical to the reference {warm[arm.name]}", flush=True)
        report["warmup_identical_to_reference"] = warm
        for c in concurrencies:
            for r in range(args.rounds):
                order = chosen if r % 2 == 0 else chosen[::-1]
                load = load_average()
                measured = {
                    a.name: phase(
                        a, per_phase[c], c, pids, reference, args.profile, engines[a.name]
                    )
                    for a in order
                }
                result = {"concurrency": c, "round": r + 1, "load_average": load}
                result["arms"] = {name: measured[name] for name in names}
                print(json.dumps(result), flush=True)
                report["rounds"].append(result)
    report["load_average_after"] = load_average()
    report["summary"] = summarize(report["rounds"], names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, names, args.out.with_suffix(".md"))
    print(json.dumps(report["summary"], indent=1))


if __name__ == "__main__":
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    main()
