"""The visual check's cost: a `multiple` answer with 4 boxes against one with 1 box.

Target (issue 14): with the visual check on, a 4-box request costs <= 1.3x a 1-box one in p50
latency, because the server asks about all crops of a request in one batched backend pass.

Run: python bench/bench_visual_check.py [--rounds 40] [--out bench/results/visual_check.md]

The server's own code path on the bundled demo checkpoint (TransformersBackend, CPU): per round,
the model generates its answer to the same `multiple` request (the real generation), then
`GroundingService.check` runs the guards on an answer with the 4 shapes of the scene or with
the first of them: prepare, the crops through the backend, finish. The answer text is fixed
because the demo model names one shape per answer; only the number of boxes differs between
the arms, so the ratio is the visual check's. A third arm asks about the 4 crops one after
another (the pre-issue-14 way) for comparison. Arms are interleaved round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from boxguard.demo.scenes import generate_scene, render_scene
from boxguard.guards import Policy, prepare
from boxguard.guards.wire import PolicyInForce
from boxguard.server.backends.transformers_backend import TransformersBackend
from boxguard.server.context import RequestContext
from boxguard.server.evidence import crop_request
from boxguard.server.grounding import GroundingService
from boxguard.server.metrics import get_metrics
from boxguard.server.model_source import resolve_model_dir
from boxguard.server.models import adapter_for
from boxguard.server.policy_source import server_policy
from boxguard.server.schema import GroundRequest
from boxguard.server.settings import Settings

TARGET_RATIO = 1.3
POLICY = Policy(visual_check=True, self_consistency_k=0, fatal=frozenset({"visual_check"}))


def _answer(boxes: list[tuple[int, int, int, int]], labels: list[str]) -> str:
    pairs = zip(boxes, labels, strict=True)
    return json.dumps([{"bbox_2d": list(b), "label": t} for b, t in pairs])


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run(rounds: int) -> dict[str, object]:
    settings = Settings()
    model_dir, _ = resolve_model_dir(settings.model)
    adapter = adapter_for(model_dir)
    backend = TransformersBackend(settings, model_dir, adapter)
    await backend.start()
    service = GroundingService(
        settings, adapter, backend, get_metrics(), server_policy(settings, model_dir)
    )
    scene = generate_scene(random.Random("bench/visual"), min_objects=4, max_objects=4)
    image = render_scene(scene)
    req = GroundRequest(expression="the shapes", multiple=True)
    job = service.generation_request(req, image, "bench")
    frame, gen_request = job.frame, job.generation
    sx, sy = frame.width / image.width, frame.height / image.height
    boxes = [
        (round(o.bbox[0] * sx), round(o.bbox[1] * sy), round(o.bbox[2] * sx), round(o.bbox[3] * sy))
        for o in scene.objects
    ]
    labels = [f"{o.color} {o.shape}" for o in scene.objects]
    answers = {"1 box": _answer(boxes[:1], labels[:1]), "4 boxes": _answer(boxes, labels)}

    async def batched(name: str) -> tuple[float, float]:
        started = time.perf_counter()
        await backend.generate(gen_request)
        check_started = time.perf_counter()
        ctx = RequestContext.begin("bench", timeout_s=60.0)
        ctx.policy = PolicyInForce(values=POLICY)
        verdict = await service.check(ctx, job, answers[name], [])
        assert verdict.checks[-2].score is not None, verdict.checks[-2]
        done = time.perf_counter()
        return done - started, done - check_started

    async def one_by_one() -> tuple[float, float]:
        started = time.perf_counter()
        await backend.generate(gen_request)
        check_started = time.perf_counter()
        plan = prepare(
            answers["4 boxes"],
            req.expression,
            image.size,
            frame=frame.frame,
            model_size=(frame.width, frame.height),
            multiple=True,
            policy=POLICY,
        )
        assert len(plan.crops) == 4
        for i, crop in enumerate(plan.crops):
            await backend.generate(crop_request(adapter, image, crop, f"bench-{i}"))
        done = time.perf_counter()
        return done - started, done - check_started

    arms = {
        "1 box": lambda: batched("1 box"),
        "4 boxes": lambda: batched("4 boxes"),
        "4 boxes, crops one by one": one_by_one,
    }
    for arm in arms.values():  # warm-up: grammars compiled, caches filled
        await arm()
    total: dict[str, list[float]] = {name: [] for name in arms}
    checks: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, arm in arms.items():
            t, c = await arm()
            total[name].append(t * 1000)
            checks[name].append(c * 1000)
    await backend.stop()
    return {
        "rounds": rounds,
        "frame": [frame.width, frame.height],
        "image": [image.width, image.height],
        "total_ms": {k: {"p50": _p(v, 50), "p90": _p(v, 90)} for k, v in total.items()},
        "checks_ms": {k: {"p50": _p(v, 50), "p90": _p(v, 90)} for k, v in checks.items()},
    }


def report(result: dict[str, object]) -> str:
    total = result["total_ms"]
    checks = result["checks_ms"]
    assert isinstance(total, dict) and isinstance(checks, dict)
    ratio = total["4 boxes"]["p50"] / total["1 box"]["p50"]
    check_ratio = checks["4 boxes"]["p50"] / checks["1 box"]["p50"]
    load = os.getloadavg()
    lines = [
        "# Visual check: 4 boxes against 1 box (CPU)",
        "",
        "`python bench/bench_visual_check.py` — see its docstring for the method. Bundled demo "
        f"checkpoint, scene {result['image'][0]}×{result['image'][1]} (model frame "  # type: ignore[index]
        f"{result['frame'][0]}×{result['frame'][1]}), `multiple: true`, visual check on, "  # type: ignore[index]
        f"no samples; {result['rounds']} rounds per arm, interleaved, after a warm-up.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}; load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} at the end. {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "| arm | request p50 | request p90 | checks p50 | checks p90 |",
        "|---|---|---|---|---|",
    ]
    for name in total:
        lines.append(
            f"| {name} | {total[name]['p50']:.0f} ms | {total[name]['p90']:.0f} ms | "
            f"{checks[name]['p50']:.0f} ms | {checks[name]['p90']:.0f} ms |"
        )
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    lines += [
        "",
        f"**4 boxes / 1 box, request p50: {ratio:.2f}×** (target ≤ {TARGET_RATIO}×: {verdict}); "
        f"checks alone: {check_ratio:.2f}×.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    text = report(result)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
