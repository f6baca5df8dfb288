"""Close the flywheel loop once on the demo world: the shipped checkpoint's errors on a train split,
exported, fine-tuned on, and measured before/after on test (bench/results/flywheel.md).

    python bench/flywheel.py --work runs/flywheel --max-steps 150
    python bench/flywheel.py --work /tmp/fw --quick     # a few samples and steps, end to end

Stages, each skipped when its output is there (a stopped loop resumes where it was):

1. ``shipped/``: a copy of demo/checkpoint, "the shipped weights" throughout (another job may
   replace demo/checkpoint meanwhile).
2. ``data/``: the demo world's train split at ``--train-seed`` (no evaluation uses it: val and
   test are seed 0, shifted seed 1; the split name keys the generator, so no image is shared
   with test) and the test split at seed 0.
3. ``eval_train/``: ``boxguard eval`` of the train split through a server on the shipped weights
   with their own policy.
4. ``export/``: ``boxguard export eval_train --format llamafactory --errors-only --max-pixels``
   (the checkpoint's frame): wrong boxes, refusals of real objects and boxes for absent things,
   each with its truth (``[]`` for an absent thing).
5. ``ft_export/``, ``ft_control/``: the demo trainer from the shipped weights, the same recipe,
   steps and synthetic stream, with ``--extra-per-step`` export rows in every batch
   (``--extra-data``) and without them (the control); run side by side so both share the CPU.
6. ``test_<model>/``: ``boxguard eval`` of the test split (the shipped policy for all three, copied
   into the fine-tuned exports) and ``demo_recheck.measure`` (AUROC of the re-check's P(yes));
   ``summary.json`` holds every figure. Nothing is picked on test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import demo_recheck  # a sibling script: bench/ is on sys.path when run
import httpx

ROOT = Path(__file__).resolve().parents[1]
# The recipe of the shipped checkpoint's last fine-tune (docs/demo-training.md), one thread.
RECIPE = [
    "--threads", "1", "--lr", "5e-5", "--warmup-steps", "20", "--batch-size", "8",
    "--questions-per-image", "4", "--p-think", "0.3", "--think-weight", "0.5",
    "--digit-weight", "4", "--decision-weight", "3", "--recheck-per-image", "2",
    "--no-gen-eval", "--eval-every-min", "1000", "--n-val", "4", "--n-probe", "4",
]  # fmt: skip
MODELS = ("shipped", "ft_export", "ft_control")


# This interpreter's CLI, as the trainer runs: no `boxguard` on PATH needed.
BOXGUARD = [sys.executable, "-m", "boxguard.cli"]


def run(cmd: list[str], cwd: Path) -> None:
    """Run one command, echoed, failing loudly."""
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


@contextmanager
def serving(model: Path, port: int, log: Path) -> Iterator[str]:
    """A ``boxguard serve`` on ``model`` (its own policy file) until the block ends."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*BOXGUARD, "serve", "--model", str(model), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"server not ready after 240 s; see {log}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def finetune_command(args: argparse.Namespace, out: Path, export: Path | None) -> list[str]:
    """The trainer's command line for one arm (with the export's rows, or the control)."""
    cmd = [sys.executable, "-m", "boxguard.demo.train", "--out", str(out)]
    cmd += ["--init-from", str(args.work / "shipped"), "--minutes", str(args.minutes)]
    cmd += ["--max-steps", str(args.max_steps), *RECIPE]
    if export is not None:
        cmd += ["--extra-data", str(export), "--extra-per-step", str(args.extra_per_step)]
    return cmd


def checkpoint_max_pixels(model: Path) -> int:
    """The model frame's pixel cap the checkpoint serves with (its preprocessor config)."""
    from boxguard.server.models import adapter_for

    return adapter_for(model).max_pixels


def prepare(args: argparse.Namespace) -> None:
    """Stages 1-4: the shipped copy, the splits, the train-split eval and its export."""
    work = args.work
    if not (work / "shipped").is_dir():
        shutil.copytree(args.checkpoint, work / "shipped")
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", str(args.checkpoint)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        (work / "shipped_commit.txt").write_text(commit + "\n")
    data = work / "data"
    if not (data / "train.jsonl").is_file():
        dataset = [sys.executable, "-m", "boxguard.demo.dataset", "--out", "data"]
        run(
            [
                *dataset,
                "--splits",
                "train",
                "--n",
                str(args.n_train),
                "--seed",
                str(args.train_seed),
            ],
            work,
        )
        run([*dataset, "--splits", "test", "--n", str(args.n_test), "--seed", "0"], work)
    if not (work / "eval_train/samples.jsonl").is_file():
        with serving(work / "shipped", args.port, work / "serve_train.log") as url:
            run(
                [
                    *BOXGUARD,
                    "eval",
                    "data/train.jsonl",
                    "--server",
                    url,
                    "--report",
                    "eval_train",
                    "--concurrency",
                    "4",
                    "--no-progress",
                ],
                work,
            )
    if not (work / "export/dataset_info.json").is_file():
        pixels = str(checkpoint_max_pixels(work / "shipped"))
        run(
            [
                *BOXGUARD,
                "export",
                "eval_train",
                "--format",
                "llamafactory",
                "--out",
                "export",
                "--errors-only",
                "--max-pixels",
                pixels,
            ],
            work,
        )


def finetune(args: argparse.Namespace) -> None:
    """Stage 5: both arms side by side, each to ``--max-steps`` in all (a stopped arm resumes:
    the budget is steps, since other jobs may pause these); each ends exported in ``ft_*/last``."""
    arms = {"ft_export": args.work / "export", "ft_control": None}
    procs = []
    for name, export in arms.items():
        out = args.work / name
        if (out / "last/model.safetensors").is_file():
            continue
        cmd = finetune_command(args, out, export)
        if (out / "train_state.pt").is_file():
            import torch

            state = torch.load(out / "train_state.pt", map_location="cpu", weights_only=False)
            left = args.max_steps - state["state"]["step"]
            if left < 1:  # --max-steps 0 would mean no limit
                raise RuntimeError(f"{name} stopped at its budget before exporting; resume it")
            cmd = [*cmd[:5], "--resume", "--max-steps", str(left), "--minutes", str(args.minutes)]
        print("$", " ".join(cmd), flush=True)
        log = (args.work / f"{name}.log").open("a")  # a resumed arm appends
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
    for name, proc, log in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"{name} failed; see {args.work / name}.log")
        log.close()
    for name in arms:
        last = args.work / name / "last"
        if not last.is_dir():  # stopped (SIGTERM) before its final export: run the loop again
            raise RuntimeError(f"{name} has no export yet; rerun to resume it")
        # The fine-tuned exports serve with the shipped policy: one policy before and after.
        shutil.copy2(args.work / "shipped/boxguard_policy.json", last)


def measure_test(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Stage 6 for one model: eval (its policy) + re-check AUROC on the test split."""
    work = args.work
    model = work / name if name == "shipped" else work / name / "last"
    out = work / f"test_{name}"
    if not (out / "measured.jsonl").is_file():
        with serving(model, args.port, work / f"serve_{name}.log") as url:
            run(
                [
                    *BOXGUARD,
                    "eval",
                    "data/test.jsonl",
                    "--server",
                    url,
                    "--report",
                    str(out),
                    "--concurrency",
                    "4",
                    "--no-progress",
                ],
                work,
            )
            demo_recheck.measure(url, work / "data/test.jsonl", out / "measured.jsonl", 4)
    scored: dict[str, Any] = demo_recheck.score(out / "samples.jsonl", out / "measured.jsonl")
    return scored


def train_stats(out: Path) -> dict[str, Any]:
    """Steps, samples and training minutes of a fine-tune (its last curve row)."""
    row = json.loads((out / "curve.jsonl").read_text().splitlines()[-1])
    keys = ("step", "samples", "minutes", "val_loss", "val_digit_loss", "recheck_auroc")
    return {k: row.get(k) for k in keys}


def export_counts(export: Path) -> dict[str, int]:
    """Exported rows by kind: a corrected box, or ``[]`` for an absent thing."""
    rows = json.loads((export / "boxguard_train.json").read_text())
    empty = sum(r["messages"][1]["content"] == "[]" for r in rows)
    return {"rows": len(rows), "box": len(rows) - empty, "empty": empty}


def finite_or_null(value: Any) -> Any:
    """`value` with every NaN or infinity as None: strict JSON has no NaN (an AUROC without
    both kinds of box is one).

    Example:
        >>> finite_or_null({"auroc": float("nan"), "rows": [1.5, float("inf")]})
        {'auroc': None, 'rows': [1.5, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI (see the module docstring); returns and writes WORK/summary.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="the loop's directory")
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "demo/checkpoint")
    ap.add_argument("--train-seed", type=int, default=7)
    ap.add_argument("--n-train", type=int, default=800, help="train-split samples evaluated")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--max-steps", type=int, default=150, help="fine-tune steps, each arm")
    ap.add_argument("--minutes", type=float, default=120.0, help="fine-tune wall-clock cap")
    ap.add_argument("--extra-per-step", type=int, default=4)
    ap.add_argument("--port", type=int, default=8781)
    ap.add_argument("--quick", action="store_true", help="a few samples and steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.max_steps, args.minutes = 24, 8, 2, 5.0
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    load = {"start": os.getloadavg()}
    prepare(args)
    t0 = time.time()
    finetune(args)
    summary: dict[str, Any] = {
        "shipped_commit": (args.work / "shipped_commit.txt").read_text().strip(),
        "train_split": {"seed": args.train_seed, "n": args.n_train},
        "test_split": {"seed": 0, "n": args.n_test},
        "train_eval": demo_recheck.score(args.work / "eval_train/samples.jsonl", None),
        "export": export_counts(args.work / "export"),
        "finetune": {
            "command_export": finetune_command(args, args.work / "ft_export", args.work / "export"),
            "wall_minutes_this_call": (time.time() - t0) / 60,
            **{name: train_stats(args.work / name) for name in ("ft_export", "ft_control")},
        },
        "test": {name: measure_test(args, name) for name in MODELS},
    }
    load["end"] = os.getloadavg()
    summary["load_average"] = load
    text = json.dumps(finite_or_null(summary), indent=2, allow_nan=False)
    (args.work / "summary.json").write_text(text + "\n")
    print(json.dumps(summary["test"], indent=2))
    return summary


if __name__ == "__main__":
    main()
