"""Guards on real Qwen2.5-VL outputs: evaluate the 9 VLM-R1 logs of bench/data/real-outputs/.

Runs ``boxguard eval --outputs``'s code (``boxguard.clients.offline``) on every log with the
default policy and writes one JSON per run; with ``--before`` it also writes the markdown table
of bench/results/real_outputs.md (before/after, per file, dev and held-out halves, the issue's
done-when criteria, and the time of one 2,000-output evaluation).

Split: the dev set is the even-indexed half of 7 files; everything else is held out: the
odd-indexed half of every file and all of ``rec__grpo-ckpt100`` and ``gui__grpo-ckpt200``
(what was seen of which is stated in the results).

    python bench/real_outputs.py --guards-dir /tmp/main-guards --json /tmp/before.json
    python bench/real_outputs.py --json bench/results/real_outputs.json \
        --before bench/results/real_outputs_before.json --markdown bench/results/real_outputs.md

``--guards-dir`` evaluates another checkout's ``guards/`` package (e.g. main's, for "before").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "real-outputs"
HELD_OUT_FILES = ("rec__grpo-ckpt100", "gui__grpo-ckpt200")
MIN_ACC = 0.8  # the criteria on false abstentions and catches apply to files this accurate
TIMED_FILE = "rec__grpo-ckpt3000__refcoco_val.json.gz"


def use_guards_from(path: Path) -> None:
    """Make ``boxguard.guards`` the package in `path` (before boxguard.clients is imported)."""
    import boxguard

    spec = importlib.util.spec_from_file_location(
        "boxguard.guards", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["boxguard.guards"] = module
    spec.loader.exec_module(module)
    boxguard.guards = module  # type: ignore[attr-defined]


def _scores(records: list[Any], outputs: list[Any]) -> dict[str, Any]:
    """The table's figures for one set of records."""
    from boxguard.clients.metrics import phi
    from boxguard.clients.offline import summarize_outputs

    summary = summarize_outputs(records, outputs)
    everything = phi([True] * len(records), [r.raw_correct for r in records], 10.0)
    checks = summary["checks"]
    return {
        "n": summary["n"],
        "log_parse_rate": summary["log_parse_rate"],
        "parse_rate": summary["parse_rate"],
        "raw_accuracy": summary["raw_accuracy"],
        "coverage": summary["coverage"],
        "selective_accuracy": summary["selective_accuracy"],
        "false_abstention_rate": checks["all"]["false_abstention_rate"],
        "catch_rate": checks["all"]["catch_rate"],
        "phi10": summary["phi"]["10"],
        "phi10_answer_all": everything,
        "checks": checks,
    }


def evaluate_file(path: Path) -> dict[str, Any]:
    """Full file, dev half and held-out half of one log."""
    from boxguard.clients.offline import evaluate_outputs, load_outputs

    outputs = load_outputs(path)
    records = evaluate_outputs(outputs)
    log = json.loads(_gunzip(path))
    held_file = any(name in path.name for name in HELD_OUT_FILES)
    even = (records[0::2], outputs[0::2])
    odd = (records[1::2], outputs[1::2])
    return {
        "file": path.name,
        "held_out_file": held_file,
        "log_accuracy": float(log["accuracy"]) / 100.0,
        "all": _scores(records, outputs),
        "dev": None if held_file else _scores(*even),
        "held_out": _scores(*odd) if not held_file else _scores(records, outputs),
    }


def _gunzip(path: Path) -> str:
    """The text of a gzipped file."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def time_eval(path: Path, repeats: int = 3, cli: bool = True) -> dict[str, float]:
    """Seconds to load, verify and score one file in process (wall and CPU, best and median of
    `repeats`), and of the whole ``boxguard eval --outputs FILE --json`` command (best of
    `repeats`, CPU of the child process; only with `cli`), with the load average: the machine
    is shared."""
    from boxguard.clients.offline import evaluate_outputs, load_outputs, summarize_outputs

    walls, cpus, cli_walls, cli_cpus = [], [], [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        outputs = load_outputs(path)
        records = evaluate_outputs(outputs)
        summarize_outputs(records, outputs)
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
        if not cli:
            continue
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "boxguard.cli",
                "eval",
                "--outputs",
                str(path),
                "--json",
            ],
            check=True,
            capture_output=True,
        )
        cli_walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    walls.sort()
    return {
        "n": len(outputs),
        "best_s": walls[0],
        "median_s": walls[len(walls) // 2],
        "cpu_s": min(cpus),
        "cli_best_s": min(cli_walls, default=math.nan),
        "cli_cpu_s": min(cli_cpus, default=math.nan),
        "load_average": os.getloadavg()[0],
    }


def _commit(path: Path) -> str | None:
    """The git commit of the checkout holding `path`, if any."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def run(guards_dir: Path | None) -> dict[str, Any]:
    """Evaluate every log; returns the JSON document of this run."""
    if guards_dir is not None:
        use_guards_from(guards_dir)
    import boxguard.guards as guards

    guards_path = Path(guards.__file__).parent
    files = sorted(DATA.glob("*.json.gz"))
    return {
        "guards": str(guards_path),
        "commit": _commit(guards_path),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, "
        f"Python {platform.python_version()}",
        "files": [evaluate_file(f) for f in files],
        "timing": time_eval(DATA / TIMED_FILE, cli=guards_dir is None),
    }


def _pct(value: float | None) -> str:
    """A rate as a percentage with one decimal."""
    return "—" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    """A number with fixed decimals."""
    return "—" if value is None else f"{value:.{digits}f}"


def _name(file: str) -> str:
    """'rec__grpo-ckpt3000__refcoco_val.json.gz' -> 'grpo-ckpt3000, RefCOCO val'."""
    kind, model, _ = file.split("__")
    return f"{model}, {'RefCOCO val' if kind == 'rec' else 'ScreenSpot web'}"


def _main_table(run_: dict[str, Any], title: str) -> list[str]:
    """The issue's table for one run."""
    lines = [
        f"### {title}",
        "",
        "| file | the log's own accuracy | log parse | boxguard parse | raw acc | coverage |"
        " selective acc | right answers abstained | wrong answers caught | Φ10 guards |"
        " Φ10 answer all |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in run_["files"]:
        a = f["all"]
        held = " (held out)" if f["held_out_file"] else ""
        lines.append(
            f"| {_name(f['file'])}{held} | {_num(f['log_accuracy'])} | {_num(a['log_parse_rate'])}"
            f" | {_num(a['parse_rate'])} | {_num(a['raw_accuracy'])} | {_num(a['coverage'])} |"
            f" {_num(a['selective_accuracy'])} | {_pct(a['false_abstention_rate'])} |"
            f" {_pct(a['catch_rate'])} | {_num(a['phi10'])} | {_num(a['phi10_answer_all'])} |"
        )
    return [*lines, ""]


def _split_table(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Right answers abstained / wrong answers caught / Φ10 gain, dev vs held-out halves."""
    lines = [
        "| file | half | n | right abstained before → after | wrong caught before → after |"
        " Φ10 − Φ10 answer-all before → after |",
        "|---|---|---|---|---|---|",
    ]
    for b, a in zip(before["files"], after["files"], strict=True):
        for half in ("dev", "held_out"):
            if a[half] is None:
                continue
            x, y = b[half], a[half]
            lines.append(
                f"| {_name(a['file'])} | {half.replace('_', '-')} | {y['n']} |"
                f" {_pct(x['false_abstention_rate'])} → {_pct(y['false_abstention_rate'])} |"
                f" {_pct(x['catch_rate'])} → {_pct(y['catch_rate'])} |"
                f" {x['phi10'] - x['phi10_answer_all']:+.3f} → "
                f"{y['phi10'] - y['phi10_answer_all']:+.3f} |"
            )
    return [*lines, ""]


def _criteria(run_: dict[str, Any]) -> list[str]:
    """The issue's done-when criteria, checked on one run."""
    files = run_["files"]
    accurate = [f for f in files if f["all"]["raw_accuracy"] >= MIN_ACC]
    parse_ok = all(f["all"]["parse_rate"] >= 0.98 for f in files)
    fa_bad = [f for f in accurate if f["all"]["false_abstention_rate"] > 0.01]
    catch = sum(f["all"]["catch_rate"] for f in accurate) / len(accurate) if accurate else 0.0
    phi_bad = [f for f in files if f["all"]["phi10"] < f["all"]["phi10_answer_all"]]
    timing = run_["timing"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"- parse rate ≥ 0.98 on every file: {mark(parse_ok)} (lowest "
        f"{min(f['all']['parse_rate'] for f in files):.3f})",
        f"- right answers abstained ≤ 1% on every file with raw acc ≥ {MIN_ACC} "
        f"({len(accurate)} files): {mark(not fa_bad)}"
        + (f" (over: {', '.join(_name(f['file']) for f in fa_bad)})" if fa_bad else ""),
        f"- wrong answers caught ≥ 20% on average over those files: {mark(catch >= 0.2)} "
        f"({100 * catch:.1f}%)",
        f"- Φ10 with guards ≥ Φ10 answering everything on every file: {mark(not phi_bad)}"
        + (f" (below: {', '.join(_name(f['file']) for f in phi_bad)})" if phi_bad else ""),
        f"- `boxguard eval --outputs` on {timing['n']} outputs < 5 s: "
        f"{mark(timing['cli_best_s'] < 5)} (the whole command: best {timing['cli_best_s']:.2f} s "
        f"wall, {timing['cli_cpu_s']:.2f} s CPU; load, verify and score in process: best "
        f"{timing['best_s']:.2f} s wall, median {timing['median_s']:.2f} s, "
        f"{timing['cpu_s']:.2f} s CPU; of 3 runs at load average {timing['load_average']:.1f} "
        "on 2 cores)",
    ]


def _per_check(run_: dict[str, Any]) -> list[str]:
    """Abstentions per check (right answers among them), full files."""
    names = sorted({n for f in run_["files"] for n in f["all"]["checks"] if n != "all"})
    lines = [
        "| file | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for f in run_["files"]:
        cells = []
        for n in names:
            c = f["all"]["checks"].get(n)
            cells.append("—" if c is None else f"{c['abstained']} ({c['right_abstained']} right)")
        lines.append(f"| {_name(f['file'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]


NOTES = [
    "## Reading the numbers",
    "",
    "- **Parsing.** Most of main's catches on the base models were `format` failures: answers "
    'whose trace sat in a JSON string (`"thought": "<think>…</think>"`), whose box sat in '
    "a string value, a tuple, `top_left`/`bottom_right` or `x1,y1,width,height` keys, whose "
    "`<think>` never closed, or whose labels held `<think>` blocks. Those boxes now parse and "
    "are scored; they are right about as often as the rest of the file, so raw accuracy rises "
    "(RefCOCO base model 0.834 → 0.879) and the catches they gave for free are gone. On the "
    "ScreenSpot files (raw accuracy 0.31-0.48) accepting more answers lowers Φ10, which would "
    "be best at zero coverage there; Φ10 with guards stays above answering everything.",
    "- **False abstentions** are at most 1% on every file with raw accuracy ≥ 0.8 except the "
    "RefCOCO base model (3.2% → 1.3%): 19 of its 30 `cardinality` abstentions are answers "
    "with two or more *disjoint* boxes whose first box happens to be right (dev half: 9 "
    "right, 8 wrong). Those answers name two different places for one target; keeping the "
    "first would be a coin flip, so the check still abstains (overlapping boxes of one label "
    "now keep the first).",
    "- **Catches** stay far below 20% on the accurate files. The text these models write "
    "barely predicts a wrong box: the label restates the expression, and the think trace's "
    "denials of the target are as often followed by a right box as by a wrong one (dev: "
    "`think_consistency` after the change 10 right / 7 wrong). A learned text-only risk score "
    "was tried and dropped: see `risk_experiment.md`. Its ceiling on the held-out RefCOCO "
    "answers, with the threshold read off those answers themselves: 8% of the wrong ones "
    "caught at 1% of the right ones, and 5.3% of the right ones flagged to catch 20%; every "
    "word of expression, label and trace added changes nothing (held-out AUROC 0.723 vs "
    "0.719). The 20% needs logprobs or the image, which these logs do not carry.",
    "",
]


def markdown(before: dict[str, Any], after: dict[str, Any]) -> str:
    """bench/results/real_outputs.md."""
    lines = [
        "# Guards on real Qwen2.5-VL outputs",
        "",
        "Generated by `python bench/real_outputs.py` (see its docstring) from the 9 VLM-R1 "
        "evaluation logs in `bench/data/real-outputs/` (provenance in its README). Default "
        "policy; the logs carry no image sizes, so the frame is the smallest one holding every "
        "parsed coordinate (never the true box) and the whole-image check is off; text-only "
        "checks (no logprobs, no verifier). Correct = IoU of the first parsed box with the truth "
        "> 0.5. *Right answers abstained* = abstained right answers / all right answers; *wrong "
        "answers caught* = abstained wrong answers (unparsed included) / all wrong answers. "
        "*The log's own accuracy* is the log's strict parser's score (its `<answer>` tags "
        "required); *log parse* the share that parser extracted a box from.",
        "",
        f"Machine: {after['machine']} (2-core x86_64 VM shared with other agents).",
        "",
        "Split: **dev** = even-indexed half of 7 files; **held out** = odd-indexed half of "
        f"every file, and all of {' and '.join(HELD_OUT_FILES)}. What was seen: the parser's "
        "new formats came from the unparsed outputs of both halves of the 7 files (format "
        "coverage, no threshold), and 24 random wrong answers of two files were read before the "
        "split; the label, think and cardinality rules were decided on dev-half outputs only. "
        "Of the two held-out files only aggregate numbers were seen, no output was read.",
        "",
        *_main_table(before, f"Before: main's guards ({before['commit']})"),
        *_main_table(after, f"After: this branch ({after['commit']})"),
        "## Done-when criteria (after)",
        "",
        *_criteria(after),
        "",
        "## Dev and held-out halves",
        "",
        *_split_table(before, after),
        "## Abstentions per check (after, full files)",
        "",
        *_per_check(after),
        *NOTES,
    ]
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guards-dir", type=Path, help="evaluate this guards/ package instead")
    parser.add_argument("--json", type=Path, required=True, help="write this run's figures here")
    parser.add_argument("--before", type=Path, help="a previous run's JSON (the 'before')")
    parser.add_argument("--markdown", type=Path, help="write the before/after table here")
    args = parser.parse_args()
    result = run(args.guards_dir)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.markdown is not None:
        if args.before is None:
            parser.error("--markdown needs --before")
        before = json.loads(args.before.read_text(encoding="utf-8"))
        args.markdown.write_text(markdown(before, result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
