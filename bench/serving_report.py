"""The serving bench's markdown: per-round throughput and ratios, spreads, CPU per request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROCESSES = (
    "vllm",
    "vllm_engine",
    "inproc",
    "inproc_engine",
    "inproc_vllm_frames",
    "inproc_vllm_frames_engine",
    "gateway",
    "gateway_before",
    "loadgen",
)


def _round_rows(report: dict[str, Any], names: list[str], pairs: list[str]) -> list[str]:
    """One table per concurrency: each round's req/s, p50/p95, identical answers, ratios."""
    lines: list[str] = []
    for c in sorted({r["concurrency"] for r in report["rounds"]}):
        lines += [
            f"### Concurrency {c}",
            "",
            "| round | load avg | "
            + " | ".join(f"{n} req/s (p50/p95 ms, identical)" for n in names)
            + " | "
            + " | ".join(pairs)
            + " |",
            "|---" * (2 + len(names) + len(pairs)) + "|",
        ]
        for r in (r for r in report["rounds"] if r["concurrency"] == c):
            arms = r["arms"]
            cells = [
                f"{arms[n]['throughput_rps']:.2f} ({arms[n]['p50_ms']:.0f}/{arms[n]['p95_ms']:.0f},"
                f" {arms[n]['identical_to_reference']})"
                for n in names
            ]
            ratios = []
            for pair in pairs:
                a, b = pair.split("/")
                ratios.append(f"{arms[a]['throughput_rps'] / arms[b]['throughput_rps']:.3f}")
            load = r["load_average"][0]
            lines.append(f"| {r['round']} | {load:.2f} | " + " | ".join(cells + ratios) + " |")
        lines.append("")
    return lines


def _summary_rows(summary: dict[str, Any]) -> list[str]:
    """Ratio per pair and concurrency: mean (95 % interval), median, min–max over the rounds."""
    lines = [
        "| concurrency | ratio | per round | mean | 95 % interval of the mean | median | min–max |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, s in summary.items():
        for pair, v in s["ratios"].items():
            rounds = ", ".join(f"{x:.3f}" for x in v["per_round"])
            ci = v.get("ci95")
            interval = f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "–"
            lines.append(
                f"| {c} | {pair} | {rounds} | **{v['mean']:.3f}** | {interval} | "
                f"{v['median']:.3f} | {v['min']:.3f}–{v['max']:.3f} |"
            )
    return lines


def _cpu_rows(summary: dict[str, Any]) -> list[str]:
    """Mean CPU ms per request of every process, by concurrency and arm."""
    engine_columns = " | engine steps a request | generated tokens a step"
    lines = [
        "| concurrency | arm | " + " | ".join(PROCESSES) + engine_columns + " |",
        "|---" * (4 + len(PROCESSES)) + "|",
    ]
    for c, s in summary.items():
        for arm, cpu in s["cpu_ms_per_request"].items():
            cells = [f"{cpu[p]:.1f}" if p in cpu else "" for p in PROCESSES]
            engine = s.get("engine", {}).get(arm, {})
            cells += [
                f"{engine[k]:.2f}" if k in engine else ""
                for k in ("engine_steps_per_request", "generated_tokens_per_step")
            ]
            lines.append(f"| {c} | {arm} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(report: dict[str, Any], names: list[str], path: Path) -> None:
    """The report as markdown tables."""
    pairs = [p for s in report["summary"].values() for p in s["ratios"]]
    pairs = list(dict.fromkeys(pairs))
    lines = [
        "# boxguard vs vLLM's own OpenAI server (bench/bench_serving.py)",
        "",
        f"{report['started']}, {report['machine']}; load average (1/5/15 min) before "
        f"{report['load_average_before']}, after {report['load_average_after']}. Model "
        f"`{report['model']}`, {report['samples']} shapes samples, requests per phase "
        f"{report['requests_per_phase']}. Raw answers identical to the reference arm's (the "
        f"first) in the warm-up: {report['warmup_identical_to_reference']}. Engine flags of "
        f"both servers: `{report.get('engine_args', '')}`. CPUs: "
        f"{report.get('pinned', 'not pinned (every process on both)')}.",
        "",
        "## Ratios",
        "",
        *_summary_rows(report["summary"]),
        "",
        "## CPU ms per request (user + system; `_engine`: the server's child processes, vLLM's "
        "engine core)",
        "",
        *_cpu_rows(report["summary"]),
        "",
        "## Rounds",
        "",
        *_round_rows(report, names, pairs),
    ]
    path.write_text("\n".join(lines) + "\n")
